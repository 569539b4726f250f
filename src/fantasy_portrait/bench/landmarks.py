"""Per-face landmark tracks of a video, for the landmark-based metrics (LMD, gaze MAE, APD, AED).

Faces come from the project's face backend (MediaPipe 478-point mesh by default). The ``num_faces``
faces of a video are fixed at the first frame showing that many faces (the largest ones), numbered
from image-left to image-right, and followed through the other frames by nearest box centre; a frame
where a face is not found has NaN landmarks for it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from .geometry import NUM_WITH_IRIS

logger = logging.getLogger(__name__)

# Bump when the extraction changes, so cached tracks are recomputed.
TRACKS_VERSION = 1
# A face further than this many box widths from where its track was last seen is a different face.
MAX_JUMP = 1.0


@dataclass
class FaceTracks:
    """Landmarks of ``num_faces`` faces over a video.

    points: (T, F, 478, 3) float32 camera coordinates (x, y pixels, z same units), NaN where missing.
    found: (T, F) bool. size: (height, width) of the frames the points are in.
    """

    points: np.ndarray
    found: np.ndarray
    size: tuple[int, int]

    @property
    def num_frames(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.points.shape[1])

    def face(self, k: int) -> np.ndarray:
        """(T, 478, 3) landmarks of face k."""
        return self.points[:, k]

    def scaled_to(self, size: tuple[int, int]) -> FaceTracks:
        """The same tracks in the pixel frame of a video of ``size`` (height, width)."""
        sy, sx = size[0] / self.size[0], size[1] / self.size[1]
        scale = np.array([sx, sy, (sx + sy) / 2], np.float32)
        return FaceTracks(self.points * scale, self.found.copy(), tuple(size))

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, points=self.points, found=self.found, size=np.asarray(self.size))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> FaceTracks:
        with np.load(path) as data:
            return cls(data["points"], data["found"], tuple(int(v) for v in data["size"]))


def default_backend():
    """The project's MediaPipe face backend (built once per process)."""
    try:
        from ..faces import get_backend
    except ImportError:  # the faces package exports it from its backend module
        from ..faces.backend import get_backend
    return get_backend("mediapipe")


def _detections(frames: np.ndarray, backend) -> list[list]:
    out = []
    for frame in frames:
        faces = [f for f in backend.detect(np.ascontiguousarray(frame)) if f.landmarks_3d is not None]
        out.append(faces)
    return out


def _centre_and_size(face) -> tuple[np.ndarray, float]:
    pts = face.landmarks_3d[:, :2]
    lo, hi = pts.min(0), pts.max(0)
    return (lo + hi) / 2, float(max(hi - lo))


def track_faces(detections: list[list], num_faces: int, size: tuple[int, int]) -> FaceTracks:
    """Assign per-frame detections (lists of FaceObservation with landmarks_3d) to ``num_faces`` tracks."""
    t_count = len(detections)
    points = np.full((t_count, num_faces, NUM_WITH_IRIS, 3), np.nan, np.float32)
    found = np.zeros((t_count, num_faces), bool)
    counts = [len(d) for d in detections]
    if not counts or max(counts) == 0:
        return FaceTracks(points, found, size)
    enough = [t for t, c in enumerate(counts) if c >= num_faces]
    start = enough[0] if enough else int(np.argmax(counts))
    # The largest faces of the start frame, left to right.
    first = sorted(detections[start], key=lambda f: -_centre_and_size(f)[1])[:num_faces]
    first.sort(key=lambda f: _centre_and_size(f)[0][0])
    # Tracks that the start frame could not fill stay empty (slot order still left to right).
    state = [_centre_and_size(f) for f in first]

    def assign(t: int, last: list) -> list:
        faces = detections[t]
        if not faces:
            return last
        cs = [_centre_and_size(f) for f in faces]
        cost = np.array([[np.linalg.norm(c - lc) / max(ls, 1.0) for c, _ in cs] for lc, ls in last])
        rows, cols = linear_sum_assignment(cost)
        new = list(last)
        for r, c in zip(rows, cols):
            if cost[r, c] <= MAX_JUMP:
                pts = faces[c].landmarks_3d
                if pts.shape[0] >= NUM_WITH_IRIS:
                    points[t, r] = pts[:NUM_WITH_IRIS]
                    found[t, r] = True
                    new[r] = cs[c]
        return new

    last = assign(start, state)
    for t in range(start + 1, t_count):
        last = assign(t, last)
    last = state
    for t in range(start - 1, -1, -1):
        last = assign(t, last)
    return FaceTracks(points, found, size)


def extract_tracks(frames: np.ndarray, num_faces: int, backend=None) -> FaceTracks:
    """Landmark tracks of (T, H, W, 3) uint8 RGB frames."""
    backend = backend or default_backend()
    frames = np.asarray(frames)
    return track_faces(_detections(frames, backend), num_faces, (int(frames.shape[1]), int(frames.shape[2])))


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex, first 24 characters)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:24]


def cached_tracks(
    video_path: Path, frames: np.ndarray, num_faces: int, cache_dir: Path | None, backend=None, tag: str = ""
) -> FaceTracks:
    """:func:`extract_tracks`, stored under ``cache_dir`` keyed by the file's content and the settings."""
    if cache_dir is None:
        return extract_tracks(frames, num_faces, backend)
    key = hashlib.sha256(
        f"{file_digest(video_path)}|{num_faces}|{len(frames)}|{frames.shape[1:3]}|{tag}|v{TRACKS_VERSION}".encode()
    ).hexdigest()[:24]
    path = Path(cache_dir) / f"{key}.npz"
    if path.is_file():
        try:
            return FaceTracks.load(path)
        except (OSError, ValueError, KeyError):
            logger.warning("ignoring unreadable landmark cache %s", path)
    tracks = extract_tracks(frames, num_faces, backend)
    path.parent.mkdir(parents=True, exist_ok=True)
    tracks.save(path)
    return tracks
