"""Portrait side: faces of the reference image (left to right), driving->portrait mapping, regions.

- :func:`find_portrait_faces`: detect (or take boxes given by hand) and order faces by box centre x.
- :func:`parse_face_boxes` / :func:`parse_mapping`: the CLI forms ``x1,y1,x2,y2;...`` and ``0:1,1:0,2:-``.
- :func:`resolve_mapping`: which portrait face each driving face drives (default: i-th from the left;
  the counts must then agree), with errors whose examples name only faces that exist.
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
    for part in (p.strip() for p in str(text).replace(" ", "").split(";")):
        if not part:
            continue
        try:
            values = [float(v) for v in part.split(",")]
        except ValueError:
            values = []
        if (
            len(values) != 4
            or not all(np.isfinite(values))
            or not (values[0] < values[2] and values[1] < values[3])
        ):
            raise InputError(f"--face-boxes {part!r}: expected x1,y1,x2,y2 (pixels) with x1 < x2 and y1 < y2")
        boxes.append(values)
    if not boxes:
        raise InputError("--face-boxes is empty: expected x1,y1,x2,y2[;x1,y1,x2,y2...] (pixels)")
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


UNUSED = "-"  # --map D:- leaves driving face D unused
MAPPING_FORM = "DRIVING:PORTRAIT pairs, e.g. 0:1,1:0, or 2:- to leave driving face 2 unused"


def parse_mapping(text: str) -> dict[int, int | None]:
    """``"0:1,1:0,2:-"`` (driving face : portrait face, both counted from 0, left to right; ``-``: the
    driving face is not used) -> {driving: portrait or None}. Raises InputError for malformed text,
    negative numbers, a driving face given twice or two driving faces sent to one portrait face."""
    mapping: dict[int, int | None] = {}
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    if not parts:
        raise InputError(f"--map is empty: expected {MAPPING_FORM}")
    for part in parts:
        d_text, sep, p_text = part.partition(":")
        try:
            d = int(d_text)
            p = None if p_text == UNUSED else int(p_text)
        except ValueError:
            d = p = None
            sep = ""
        if not sep or ":" in p_text:
            raise InputError(f"--map {part!r}: expected {MAPPING_FORM}")
        if d < 0 or (p is not None and p < 0):
            raise InputError(
                f"--map {part!r}: faces are numbered from 0 (the leftmost), a negative number names no face"
            )
        if d in mapping:
            raise InputError(f"--map: driving face {d} is given twice")
        mapping[d] = p
    targets = [p for p in mapping.values() if p is not None]
    if len(set(targets)) != len(targets):
        twice = sorted({p for p in targets if targets.count(p) > 1})
        raise InputError(f"--map sends two driving faces to portrait face {twice[0]}")
    return mapping


def mapping_example(num_driving: int, num_portrait: int) -> str:
    """A --map value valid for these counts: drivers in order, the drivers beyond the portrait's
    faces unused (``D:-``). Names only faces that exist."""
    pairs = [f"{d}:{d if d < num_portrait else UNUSED}" for d in range(num_driving)]
    return ",".join(pairs)


def _numbers(n: int) -> str:
    return "none" if n == 0 else "0" if n == 1 else f"0-{n - 1}"


def check_mapping(
    mapping: dict[int, int | None], num_driving: int | None, num_portrait: int, found: str = ""
) -> None:
    """The checks of a mapping against the face counts (num_driving None: the driving side is not known
    yet, e.g. before a video is tracked; only the portrait side is checked)."""
    found = found if not found or found.startswith(" (") else f" ({found})"
    if num_driving is not None:
        extra = sorted(d for d in mapping if d >= num_driving)
        if extra:
            raise FaceError(
                f"--map names driving face {extra[0]}, but the driving input has {num_driving} "
                f"(faces {_numbers(num_driving)}){found}"
            )
    bad = sorted(p for p in mapping.values() if p is not None and p >= num_portrait)
    if bad:
        raise FaceError(
            f"--map names portrait face {bad[0]}, but the portrait has {num_portrait} "
            f"(faces {_numbers(num_portrait)}){found}"
        )
    if num_driving is not None:
        missing = [d for d in range(num_driving) if d not in mapping]
        if missing:
            example = ",".join(f"{d}:{UNUSED}" for d in missing)
            raise FaceError(
                f"--map gives no portrait face for driving face(s) {', '.join(map(str, missing))}: pair "
                f"every driving face, or leave it unused with {example}{found}"
            )


def resolve_mapping(
    num_driving: int,
    num_portrait: int,
    mapping: dict[int, int | None] | str | None = None,
    found: str = "",
) -> list[int | None]:
    """Portrait face index for each driving face (list indexed by driving face; None: unused).

    Without a mapping the counts must agree and driving face i drives portrait face i (both left to
    right). With a mapping every driving face must appear (``D:-`` leaves it unused), every number
    must name an existing face, and a portrait face gets at most one driver; portrait faces without
    a driver keep still. ``found`` (what was detected) is added to count errors. Raises FaceError
    whose examples name only faces that exist.
    """
    if isinstance(mapping, str):
        mapping = parse_mapping(mapping)
    found = f" ({found})" if found else ""
    if mapping is None:
        if num_driving > num_portrait:
            raise FaceError(
                f"the driving input has {num_driving} faces but the portrait has {num_portrait} face(s)"
                f"{found}: choose the pairs with --map, e.g. --map {mapping_example(num_driving, num_portrait)} "
                "(D:- leaves driving face D unused), or give more --face-boxes"
            )
        if num_driving < num_portrait:
            raise FaceError(
                f"the portrait has {num_portrait} face(s) but the driving input has {num_driving}{found}: give "
                "one driving face per portrait face, pair them with --map, e.g. --map "
                f"{mapping_example(num_driving, num_portrait)} (portrait faces without a driver keep still), "
                "or fix the portrait faces with --face-boxes"
            )
        return list(range(num_driving))
    check_mapping(mapping, num_driving, num_portrait, found)
    targets = [mapping[d] for d in range(num_driving)]
    used = [p for p in targets if p is not None]
    if len(set(used)) != len(used):
        raise FaceError("--map sends two driving faces to the same portrait face")
    if not used:
        raise FaceError("--map leaves every driving face unused: at least one must drive a portrait face")
    return targets


def portrait_regions(
    faces: Sequence[PortraitFace],
    driving_boxes: Sequence[np.ndarray],
    mapping: Sequence[int],
    image_hw: tuple[int, int],
) -> np.ndarray:
    """(N_driving, 4) int64 regions: portrait face mapping[i] enlarged by driving face i's motion range.

    driving_boxes: one (F, 4) box track per driving face. Rows follow the driving order (used driving
    faces only: drop the ones the mapping leaves unused first).
    """
    if any(p is None for p in mapping):
        raise ValueError("portrait_regions takes the used driving faces only (no None in mapping)")
    return np.stack(
        [face_region(faces[p].box, driving_boxes[d], image_hw) for d, p in enumerate(mapping)]
    ).astype(np.int64)
