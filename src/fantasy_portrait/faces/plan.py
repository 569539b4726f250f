"""Everything about faces a run needs, decided before any GPU work: :func:`plan_faces`.

Given the portrait and the driving video(s) it finds the portrait faces (left to right), tracks the
driving faces (one video with N faces, or N videos with one face each, in the order given), maps
driving faces to portrait faces, picks the 4k+1 frame count at the working frame rate and computes
each face's region (SPEC §7). The same checks hold for every caller (``animate``, ``inspect``, the
app): without a mapping the face counts must agree; a mapping must name existing faces. ``inspect``
prints and draws the plan; the pipeline turns it into motion with
:func:`fantasy_portrait.motion.extract_plan_motion` (motion depends on faces, never the reverse).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FaceError
from ..io import DEFAULT_FPS, frame_count_4k1
from .backend import FaceBackend, get_backend
from .portrait import (
    PortraitFace,
    check_mapping,
    find_portrait_faces,
    parse_mapping,
    portrait_regions,
    resolve_mapping,
)
from .tracking import DEFAULT_MIN_COVERAGE, FaceTrack, detect_video, track_faces

logger = logging.getLogger(__name__)


@dataclass
class DrivingFace:
    """One driving face: its track (at the working fps), the video it comes from, and its number in
    the driving order (what ``--map`` calls it)."""

    source: Path
    track: FaceTrack
    index: int = 0


@dataclass
class FacePlan:
    """portrait_faces left to right; driving: the driving faces that drive a portrait face, in driving
    order; mapping[i] = portrait face of driving[i]; regions (N_used, 4) int64 pixel boxes in portrait
    pixels (row i for driving[i]); num_frames: the 4k+1 frame count used; fps: the working frame rate;
    unused: driving faces the mapping leaves out (``D:-``)."""

    image_hw: tuple[int, int]
    portrait_faces: list[PortraitFace]
    driving: list[DrivingFace]
    mapping: list[int]
    regions: np.ndarray
    num_frames: int
    fps: float
    unused: list[DrivingFace] = field(default_factory=list)

    def describe(self) -> str:
        """One line: portrait boxes and driving faces per video (used in messages)."""
        return describe_faces(self.portrait_faces, [*self.driving, *self.unused])

    def to_dict(self, with_frames: bool = True) -> dict:
        return {
            "image_size": {"height": self.image_hw[0], "width": self.image_hw[1]},
            "portrait_faces": [f.to_dict() for f in self.portrait_faces],
            "driving_faces": [
                {
                    "index": d.index,
                    "video": str(d.source),
                    "portrait_face": self.mapping[i],
                    **d.track.to_dict(with_frames),
                }
                for i, d in enumerate(self.driving)
            ],
            "unused_driving_faces": [
                {"index": d.index, "video": str(d.source), **d.track.to_dict(False)} for d in self.unused
            ],
            "mapping": {str(d.index): p for d, p in zip(self.driving, self.mapping)},
            "regions": self.regions.tolist(),
            "fps": self.fps,
            "frames_tracked": min(d.track.num_frames for d in self.driving),
            "num_frames": self.num_frames,
        }


def describe_faces(portrait_faces: Sequence[PortraitFace], driving: Sequence[DrivingFace]) -> str:
    counts: dict[Path, int] = {}
    for d in driving:
        counts[d.source] = counts.get(d.source, 0) + 1
    drivers = "; ".join(f"{p.name}: {n} face{'s' if n != 1 else ''}" for p, n in counts.items())
    boxes = ", ".join(f"[{', '.join(str(int(v)) for v in f.box)}]" for f in portrait_faces)
    return f"portrait faces (left to right) {boxes}; driving faces: {drivers}"


def plan_faces(
    image_rgb: np.ndarray,
    driving_videos: Sequence[str | os.PathLike],
    *,
    fps: float = DEFAULT_FPS,
    max_frames: int | None = None,
    num_faces: int | None = None,
    face_boxes: np.ndarray | None = None,
    mapping: dict[int, int | None] | str | None = None,
    backend: FaceBackend | str | None = None,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    image_name: str = "portrait",
    progress: bool = True,
) -> FacePlan:
    """Decide faces, tracks, mapping, regions and frame count (see the module docstring).

    One driving video: every face seen in at least ``min_coverage`` of its frames is tracked (or the
    ``num_faces`` most seen ones). Several videos: one face each, driving order = argument order.
    mapping: ``{driving: portrait or None}`` or the ``--map`` text. Each video is decoded and run
    through the face detector once. Raises FaceError when the faces cannot be paired (the message
    lists what was found and a ``--map`` that would work).
    """
    if not driving_videos:
        raise FaceError("no driving video given")
    if isinstance(mapping, str):
        mapping = parse_mapping(mapping)
    backend = backend if isinstance(backend, FaceBackend) else get_backend(backend or "mediapipe")
    faces = find_portrait_faces(image_rgb, backend, face_boxes=face_boxes, name=image_name)
    # What can be checked before any video is decoded: the portrait side of a mapping, and with one
    # video per face, everything.
    if len(driving_videos) > 1:
        videos = ", ".join(Path(v).name for v in driving_videos)
        found = describe_faces(faces, []).replace(
            "driving faces: ", f"driving videos (one face each): {videos}"
        )
        resolve_mapping(len(driving_videos), len(faces), mapping, found=found)
    elif mapping is not None:
        check_mapping(mapping, None, len(faces))
    track_args = dict(fps=fps, max_frames=max_frames, min_coverage=min_coverage, progress=progress)
    driving: list[DrivingFace] = []
    if len(driving_videos) == 1:
        path = Path(driving_videos[0])
        detections = detect_video(path, backend, fps=fps, max_frames=max_frames, progress=progress)
        tracks = track_faces(path, num_faces, detections=detections, **track_args)
        if num_faces is None and mapping is None and len(tracks) < len(faces):
            # Fewer faces than the portrait's: a face seen too rarely or with long gaps gets its own
            # error (from the same detections, no second pass); else the count error below.
            try:
                track_faces(path, len(faces), detections=detections, **track_args)
            except FaceError as exc:
                if "expected" not in str(exc):
                    raise
        driving = [DrivingFace(path, t, i) for i, t in enumerate(tracks)]
    else:
        for i, video in enumerate(driving_videos):
            path = Path(video)
            (track,) = track_faces(path, 1, backend, **track_args)
            driving.append(DrivingFace(path, track, i))
    order = resolve_mapping(len(driving), len(faces), mapping, found=describe_faces(faces, driving))
    used = [d for d, p in zip(driving, order) if p is not None]
    unused = [d for d, p in zip(driving, order) if p is None]
    targets = [p for p in order if p is not None]
    n = frame_count_4k1(min(d.track.num_frames for d in used), max_frames)
    regions = portrait_regions(faces, [d.track.boxes[:n] for d in used], targets, image_rgb.shape[:2])
    plan = FacePlan(image_rgb.shape[:2], faces, used, targets, regions, n, float(fps), unused)
    logger.info(
        "%d portrait face(s), %d driving face(s)%s, %d frames at %g fps",
        len(faces),
        len(driving),
        f" ({len(unused)} unused)" if unused else "",
        n,
        fps,
    )
    return plan

