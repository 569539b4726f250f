"""Everything about faces a run needs, decided before any GPU work: :func:`plan_faces`.

Given the portrait and the driving video(s) it finds the portrait faces (left to right), tracks the
driving faces (one video with N faces, or N videos with one face each, in the order given), maps
driving faces to portrait faces, picks the 4k+1 frame count at the working frame rate and computes
each face's region (SPEC §7). ``inspect`` prints and draws this plan; the pipeline consumes it and
then calls :func:`extract_plan_motion`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FaceError
from ..io import DEFAULT_FPS, frame_count_4k1
from .backend import FaceBackend, get_backend
from .portrait import PortraitFace, find_portrait_faces, portrait_regions, resolve_mapping
from .tracking import DEFAULT_MIN_COVERAGE, FaceTrack, track_faces

logger = logging.getLogger(__name__)


@dataclass
class DrivingFace:
    """One driving face: its track (at the working fps) and the video it comes from."""

    source: Path
    track: FaceTrack


@dataclass
class FacePlan:
    """portrait_faces left to right; driving faces in driving order; mapping[i] = portrait face of
    driving face i; regions (N_driving, 4) int64 pixel boxes in portrait pixels (row i for driving
    face i); num_frames: the 4k+1 frame count used; fps: the working frame rate."""

    image_hw: tuple[int, int]
    portrait_faces: list[PortraitFace]
    driving: list[DrivingFace]
    mapping: list[int]
    regions: np.ndarray
    num_frames: int
    fps: float

    def to_dict(self, with_frames: bool = True) -> dict:
        return {
            "image_size": {"height": self.image_hw[0], "width": self.image_hw[1]},
            "portrait_faces": [f.to_dict() for f in self.portrait_faces],
            "driving_faces": [
                {
                    "index": i,
                    "video": str(d.source),
                    "portrait_face": self.mapping[i],
                    **d.track.to_dict(with_frames),
                }
                for i, d in enumerate(self.driving)
            ],
            "mapping": {str(i): p for i, p in enumerate(self.mapping)},
            "regions": self.regions.tolist(),
            "fps": self.fps,
            "frames_tracked": min(d.track.num_frames for d in self.driving),
            "num_frames": self.num_frames,
        }


def plan_faces(
    image_rgb: np.ndarray,
    driving_videos: Sequence[str | os.PathLike],
    *,
    fps: float = DEFAULT_FPS,
    max_frames: int | None = None,
    num_faces: int | None = None,
    face_boxes: np.ndarray | None = None,
    mapping: dict[int, int] | None = None,
    backend: FaceBackend | str | None = None,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    image_name: str = "portrait",
    progress: bool = True,
) -> FacePlan:
    """Decide faces, tracks, mapping, regions and frame count (see the module docstring).

    One driving video: ``num_faces`` faces are tracked in it (default: as many as the portrait has,
    else every face found). Several videos: one face each, driving order = argument order.
    """
    if not driving_videos:
        raise FaceError("no driving video given")
    backend = backend if isinstance(backend, FaceBackend) else get_backend(backend or "mediapipe")
    faces = find_portrait_faces(image_rgb, backend, face_boxes=face_boxes, name=image_name)
    driving: list[DrivingFace] = []
    if len(driving_videos) == 1:
        path = Path(driving_videos[0])
        want = num_faces
        if want is None and mapping is None:
            want = len(faces)
        try:
            tracks = track_faces(
                path,
                want,
                backend,
                fps=fps,
                max_frames=max_frames,
                min_coverage=min_coverage,
                progress=progress,
            )
        except FaceError as exc:
            if want is not None and want > 1 and num_faces is None and "expected" in str(exc):
                # The portrait has more faces than the video: drive as many as the video has.
                tracks = track_faces(
                    path,
                    None,
                    backend,
                    fps=fps,
                    max_frames=max_frames,
                    min_coverage=min_coverage,
                    progress=progress,
                )
            else:
                raise
        driving = [DrivingFace(path, t) for t in tracks]
    else:
        for video in driving_videos:
            (track,) = track_faces(
                video,
                1,
                backend,
                fps=fps,
                max_frames=max_frames,
                min_coverage=min_coverage,
                progress=progress,
            )
            driving.append(DrivingFace(Path(video), track))
    order = resolve_mapping(len(driving), len(faces), mapping)
    n = frame_count_4k1(min(d.track.num_frames for d in driving), max_frames)
    regions = portrait_regions(faces, [d.track.boxes[:n] for d in driving], order, image_rgb.shape[:2])
    plan = FacePlan(image_rgb.shape[:2], faces, driving, order, regions, n, float(fps))
    logger.info(
        "%d portrait face(s), %d driving face(s), %d frames at %g fps", len(faces), len(driving), n, fps
    )
    return plan


def extract_plan_motion(plan: FacePlan, encoder, chunk: int = 32) -> list:
    """MotionFeatures (plan.num_frames rows) for every driving face, one decoding pass per video."""
    from ..motion.encoder import extract_tracks_motion

    out: list = [None] * len(plan.driving)
    by_video: dict[Path, list[int]] = {}
    for i, d in enumerate(plan.driving):
        by_video.setdefault(d.source, []).append(i)
    for video, idx in by_video.items():
        tracks = [_truncate(plan.driving[i].track, plan.num_frames) for i in idx]
        feats = extract_tracks_motion(video, tracks, encoder, fps=plan.fps, chunk=chunk)
        for i, f in zip(idx, feats):
            out[i] = f
    return out


def _truncate(track: FaceTrack, n: int) -> FaceTrack:
    from dataclasses import replace

    return replace(
        track,
        boxes=track.boxes[:n],
        five_points=track.five_points[:n],
        landmarks=None if track.landmarks is None else track.landmarks[:n],
        filled=track.filled[:n],
        scores=track.scores[:n],
    )
