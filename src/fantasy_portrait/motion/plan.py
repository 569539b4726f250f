"""Motion of a face plan: :func:`extract_plan_motion` (the motion side of ``faces.plan``).

It lives here, not in ``faces``, so the packages import one way: motion uses faces (alignment,
tracks, plans); faces never imports motion.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..faces.plan import FacePlan
from ..faces.tracking import FaceTrack
from .encoder import MotionEncoder, MotionFeatures, extract_tracks_motion


def extract_plan_motion(
    plan: FacePlan, encoder: MotionEncoder, chunk: int = 32, progress: bool = False
) -> list[MotionFeatures]:
    """MotionFeatures (plan.num_frames rows) for every driving face of the plan, in ``plan.driving``
    order, decoding each video once (faces of one video share the pass). progress: a bar per video."""
    out: list = [None] * len(plan.driving)
    by_video: dict[Path, list[int]] = {}
    for i, d in enumerate(plan.driving):
        by_video.setdefault(d.source, []).append(i)
    for video, idx in by_video.items():
        tracks = [_truncate(plan.driving[i].track, plan.num_frames) for i in idx]
        label = f"motion {video.name}" if len(by_video) > 1 else "motion"
        feats = extract_tracks_motion(
            video, tracks, encoder, fps=plan.fps, chunk=chunk, progress=progress and label
        )
        for i, f in zip(idx, feats):
            out[i] = f
    return out


def _truncate(track: FaceTrack, n: int) -> FaceTrack:
    return replace(
        track,
        boxes=track.boxes[:n],
        five_points=track.five_points[:n],
        landmarks=None if track.landmarks is None else track.landmarks[:n],
        filled=track.filled[:n],
        scores=track.scores[:n],
    )
