"""Portrait side: faces of the reference image (left to right), driving->portrait mapping, regions.

- :func:`find_portrait_faces`: detect (or take boxes given by hand) and order faces by box centre x.
- :func:`parse_face_boxes` / :func:`parse_mapping`: the CLI forms ``x1,y1,x2,y2;...`` and ``0:1,1:0``.
- :func:`resolve_mapping`: which portrait face each driving face drives (default: i-th from the left).
- :func:`portrait_regions`: each face box enlarged by its driver's motion range (SPEC §7, ``face_region``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import FaceError, InputError
from .backend import FaceBackend, get_backend
from .regions import face_region

FACE_BOXES_HINT = "give the face boxes by hand with --face-boxes x1,y1,x2,y2[;x1,y1,x2,y2...] (pixels)"


@dataclass
class PortraitFace:
    """One face of the portrait. index: position from the left (0 = leftmost).

    box (4,) float32 x1,y1,x2,y2; five_points (5, 2) or None; source "detected" or "manual".
    """

    index: int
    box: np.ndarray
    score: float | None = None
    five_points: np.ndarray | None = None
    source: str = "detected"

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "box": np.round(self.box, 1).tolist(),
            "score": None if self.score is None else round(self.score, 4),
            "source": self.source,
        }


def parse_face_boxes(text: str) -> np.ndarray:
    """``"x1,y1,x2,y2;x1,y1,x2,y2"`` -> (N, 4) float32. Raises InputError for malformed text."""
    boxes = []
    for part in (p.strip() for p in text.replace(" ", "").split(";")):
        if not part:
            continue
        try:
            values = [float(v) for v in part.split(",")]
        except ValueError:
            values = []
        if len(values) != 4 or not (values[0] < values[2] and values[1] < values[3]):
            raise InputError(f"face box {part!r}: expected x1,y1,x2,y2 with x1 < x2 and y1 < y2")
        boxes.append(values)
    if not boxes:
        raise InputError("--face-boxes is empty")
    return np.asarray(boxes, np.float32)


def find_portrait_faces(
    image_rgb: np.ndarray,
    backend: FaceBackend | str | None = None,
    face_boxes: np.ndarray | Sequence | None = None,
    num_faces: int | None = None,
    name: str = "portrait",
) -> list[PortraitFace]:
    """Faces of the portrait ordered left to right.

    face_boxes: (N, 4) boxes given by hand (skips detection; checked against the image size).
    num_faces: keep the num_faces most confident detections (error if fewer are found).
    Raises FaceError with the --face-boxes hint when no (or too few) faces are found.
    """
    h, w = image_rgb.shape[:2]
    if face_boxes is not None:
        boxes = np.asarray(face_boxes, np.float32).reshape(-1, 4)
        for b in boxes:
            if b[0] < 0 or b[1] < 0 or b[2] > w or b[3] > h or b[0] >= b[2] or b[1] >= b[3]:
                raise InputError(f"{name}: face box {b.tolist()} is outside the {w}x{h} image or empty")
        faces = [PortraitFace(0, b, None, None, "manual") for b in boxes]
    else:
        backend = backend if isinstance(backend, FaceBackend) else get_backend(backend or "mediapipe")
        found = sorted(backend.detect(image_rgb), key=lambda f: -f.score)
        if not found:
            raise FaceError(
                f"{name}: no face found (cartoons and animals are often missed); {FACE_BOXES_HINT}"
            )
        if num_faces is not None:
            if len(found) < num_faces:
                raise FaceError(f"{name}: found {len(found)} face(s), need {num_faces}; {FACE_BOXES_HINT}")
            found = found[:num_faces]
        faces = [PortraitFace(0, f.box.astype(np.float32), f.score, f.five_points, "detected") for f in found]
    faces.sort(key=lambda f: float(f.box[0] + f.box[2]) / 2)
    for i, f in enumerate(faces):
        f.index = i
    return faces


def parse_mapping(text: str) -> dict[int, int]:
    """``"0:1,1:0"`` (driving face : portrait face, both counted from 0, left to right) -> dict."""
    mapping = {}
    for part in (p.strip() for p in text.replace(" ", "").split(",")):
        if not part:
            continue
        try:
            d, p = (int(v) for v in part.split(":"))
        except ValueError as exc:
            raise InputError(f"face mapping {part!r}: expected DRIVING:PORTRAIT, e.g. 0:1") from exc
        if d in mapping:
            raise InputError(f"face mapping: driving face {d} is mapped twice")
        mapping[d] = p
    return mapping


def resolve_mapping(num_driving: int, num_portrait: int, mapping: dict[int, int] | None = None) -> list[int]:
    """Portrait face index for each driving face (list indexed by driving face).

    Without a mapping driving face i drives portrait face i (both left to right); portrait faces
    without a driver stay still. Raises FaceError when there are more driving faces than portrait
    faces without a mapping, or when the mapping is out of range or maps two drivers to one face.
    """
    if mapping is None:
        if num_driving > num_portrait:
            raise FaceError(
                f"{num_driving} driving faces but only {num_portrait} portrait face(s): map them with "
                "--map DRIVING:PORTRAIT,... (e.g. 0:0,2:1) or give more --face-boxes"
            )
        return list(range(num_driving))
    missing = [d for d in range(num_driving) if d not in mapping]
    if missing:
        raise FaceError(f"face mapping has no portrait face for driving face(s) {missing}")
    extra = [d for d in mapping if not 0 <= d < num_driving]
    if extra:
        raise FaceError(f"face mapping names driving face(s) {extra}, but there are {num_driving}")
    targets = [mapping[d] for d in range(num_driving)]
    bad = [p for p in targets if not 0 <= p < num_portrait]
    if bad:
        raise FaceError(f"face mapping names portrait face(s) {bad}, but the portrait has {num_portrait}")
    if len(set(targets)) != len(targets):
        raise FaceError("face mapping sends two driving faces to the same portrait face")
    return targets


def portrait_regions(
    faces: Sequence[PortraitFace],
    driving_boxes: Sequence[np.ndarray],
    mapping: Sequence[int],
    image_hw: tuple[int, int],
) -> np.ndarray:
    """(N_driving, 4) int64 regions: portrait face mapping[i] enlarged by driving face i's motion range.

    driving_boxes: one (F, 4) box track per driving face. Rows follow the driving order.
    """
    return np.stack(
        [face_region(faces[p].box, driving_boxes[d], image_hw) for d, p in enumerate(mapping)]
    ).astype(np.int64)
