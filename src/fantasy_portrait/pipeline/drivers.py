"""Driving inputs -> one motion track per portrait face (SPEC §7).

Forms accepted: one video with N faces; N videos with one face each; any N >= 1; an explicit
mapping (driving face i -> portrait face j). Faces are ordered left to right (box centre x) in the
portrait and in each driving video; with several videos, the driving faces are the videos' faces in
the order the videos were given. The counts must agree, or a FaceError says what was found.

Tracking here is a small private shim (detect on every frame, match to the previous frame's boxes
by centre distance, hold the last observation through missed frames) used until the faces
package exports its tracker; motion features come from ``fantasy_portrait.motion.extract_motion``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FaceError, InputError

logger = logging.getLogger(__name__)


@dataclass
class DrivingFace:
    """One tracked driving face. boxes (F, 4) float32, five_points (F, 5, 2) float32 in video pixels."""

    video: Path
    index: int  # face index within its video, left to right on the first frame
    boxes: np.ndarray
    five_points: np.ndarray
    detected: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (F,) frame had a detection

    @property
    def label(self) -> str:
        return f"{self.video.name}#{self.index}"


def parse_face_boxes(text: str) -> np.ndarray:
    """'x1,y1,x2,y2;x1,y1,x2,y2' -> (N, 4) float32 (pixels of the original portrait)."""
    boxes = []
    for part in text.replace(" ", "").split(";"):
        if not part:
            continue
        try:
            values = [float(v) for v in part.split(",")]
        except ValueError as exc:
            raise InputError(f"--face-boxes: {part!r} is not four numbers x1,y1,x2,y2") from exc
        if len(values) != 4 or values[2] <= values[0] or values[3] <= values[1]:
            raise InputError(f"--face-boxes: {part!r} must be x1,y1,x2,y2 with x2 > x1 and y2 > y1")
        boxes.append(values)
    if not boxes:
        raise InputError("--face-boxes: no boxes given")
    return np.asarray(boxes, np.float32)


def parse_mapping(text: str | None, num_faces: int) -> list[int]:
    """'0:1,1:0' (driving face : portrait face) -> driver index for every portrait face.

    None gives the identity. Must be a one-to-one mapping covering every portrait face.
    """
    if not text:
        return list(range(num_faces))
    pairs = {}
    for item in text.replace(" ", "").split(","):
        try:
            d, p = (int(v) for v in item.split(":"))
        except ValueError as exc:
            raise InputError(f"--map: {item!r} is not DRIVING:PORTRAIT (e.g. 0:1,1:0)") from exc
        if not (0 <= d < num_faces and 0 <= p < num_faces):
            raise InputError(f"--map: {item!r} names a face outside 0..{num_faces - 1}")
        if p in pairs:
            raise InputError(f"--map: portrait face {p} is mapped twice")
        pairs[p] = d
    if sorted(pairs) != list(range(num_faces)) or sorted(pairs.values()) != list(range(num_faces)):
        raise InputError(
            f"--map must pair each of the {num_faces} driving faces with one portrait face, got {text!r}"
        )
    return [pairs[p] for p in range(num_faces)]


def portrait_faces(
    image: np.ndarray, backend, boxes: np.ndarray | None = None, source: str = "portrait"
) -> np.ndarray:
    """(N, 4) float32 face boxes of the portrait, left to right. Given boxes are only sorted."""
    if boxes is None:
        found = backend.detect(image)
        if not found:
            raise FaceError(
                f"{source}: no face found in the portrait (give boxes by hand with --face-boxes x1,y1,x2,y2;...)"
            )
        boxes = np.stack([np.asarray(f.box, np.float32) for f in found])
    h, w = image.shape[:2]
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if (boxes[:, 2] > w + 1).any() or (boxes[:, 3] > h + 1).any() or (boxes[:, :2] < -1).any():
        raise InputError(f"{source}: face boxes {boxes.astype(int).tolist()} lie outside the {w}x{h} image")
    order = np.argsort((boxes[:, 0] + boxes[:, 2]) / 2, kind="stable")
    return boxes[order]


def _points_from_box(box: np.ndarray) -> np.ndarray:
    """Five points at their usual place inside a face box (used when the landmark stage fails)."""
    from ..faces.align import PDFGC_TEMPLATE

    x1, y1, x2, y2 = box
    return (np.asarray(PDFGC_TEMPLATE) * [x2 - x1, y2 - y1] + [x1, y1]).astype(np.float32)


def track_faces(frames: list[np.ndarray], backend, source: Path) -> list[DrivingFace]:
    """Track every face of the first frame with a detection through the clip (left to right)."""
    tracks_boxes: list[list[np.ndarray]] = []
    tracks_points: list[list[np.ndarray]] = []
    tracks_hit: list[list[bool]] = []
    for fi, frame in enumerate(frames):
        obs = backend.detect(frame)
        boxes = [np.asarray(o.box, np.float32) for o in obs]
        points = [
            np.asarray(o.five_points, np.float32) if o.five_points is not None else _points_from_box(b)
            for o, b in zip(obs, boxes)
        ]
        if not tracks_boxes:
            if not boxes:
                if fi >= min(len(frames) - 1, 24):
                    break
                continue  # wait for the first frame with faces
            order = np.argsort([(b[0] + b[2]) / 2 for b in boxes], kind="stable")
            for i in order:
                pad = fi + 1
                tracks_boxes.append([boxes[i]] * pad)
                tracks_points.append([points[i]] * pad)
                tracks_hit.append([False] * fi + [True])
            continue
        taken: set[int] = set()
        for t in range(len(tracks_boxes)):
            last = tracks_boxes[t][-1]
            c = np.array([(last[0] + last[2]) / 2, (last[1] + last[3]) / 2])
            size = max(last[2] - last[0], last[3] - last[1])
            best, best_d = None, 0.75 * size
            for j, b in enumerate(boxes):
                if j in taken:
                    continue
                d = np.hypot((b[0] + b[2]) / 2 - c[0], (b[1] + b[3]) / 2 - c[1])
                if d < best_d:
                    best, best_d = j, d
            if best is None:
                tracks_boxes[t].append(last)
                tracks_points[t].append(tracks_points[t][-1])
                tracks_hit[t].append(False)
            else:
                taken.add(best)
                tracks_boxes[t].append(boxes[best])
                tracks_points[t].append(points[best])
                tracks_hit[t].append(True)
    if not tracks_boxes:
        raise FaceError(f"{source}: no face found in the driving video")
    return [
        DrivingFace(source, i, np.stack(b), np.stack(p), np.asarray(h, bool))
        for i, (b, p, h) in enumerate(zip(tracks_boxes, tracks_points, tracks_hit))
    ]


def gather_driving_faces(
    videos: list[Path],
    frames_of: Callable[[Path], list[np.ndarray]],
    backend,
    num_portrait_faces: int,
) -> list[DrivingFace]:
    """Driving faces in driving order. One video: all its faces; several: one face per video."""
    faces: list[DrivingFace] = []
    found: list[str] = []
    for video in videos:
        tracks = track_faces(frames_of(video), backend, video)
        found.append(f"{video.name}: {len(tracks)} face{'s' if len(tracks) != 1 else ''}")
        if len(videos) > 1 and len(tracks) > 1:
            # several single-face videos: keep the face seen most often (then the largest)
            score = [(t.detected.sum(), np.prod(t.boxes[0, 2:] - t.boxes[0, :2])) for t in tracks]
            keep = max(range(len(tracks)), key=lambda i: score[i])
            logger.warning(
                "%s has %d faces; driving with face %d (seen most often)", video, len(tracks), keep
            )
            tracks = [tracks[keep]]
        faces.extend(tracks)
    if len(faces) != num_portrait_faces:
        raise FaceError(
            f"the portrait has {num_portrait_faces} face(s) but the driving input has {len(faces)} "
            f"({'; '.join(found)}): give one driving face per portrait face (one video with N faces or "
            "N single-face videos), or fix the portrait faces with --face-boxes"
        )
    return faces
