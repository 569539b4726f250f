"""Shot boundaries and clip ranges.

Shots come from PySceneDetect's ContentDetector (frame-to-frame change of hue, saturation and
luma; a hard cut is a jump above ``shot_threshold``). Each shot becomes clips of at most
``max_seconds``: a long shot is split into equal parts, so no tail shorter than the others is left
over (split points move to nearby keyframes when they can, for lossless cuts); a shot shorter than
``min_seconds`` becomes one clip rejected as ``too_short``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError
from .config import CurationConfig


@dataclass(frozen=True)
class ClipRange:
    """Frames [start, end) of one video, from shot ``shot_index``."""

    start: int
    end: int
    shot_index: int

    @property
    def num_frames(self) -> int:
        return self.end - self.start


def detect_shots(path: str, num_frames: int, config: CurationConfig) -> list[tuple[int, int]]:
    """Shots as frame ranges [start, end) covering the whole video, in order."""
    import scenedetect
    from scenedetect import ContentDetector

    try:
        scenes = scenedetect.detect(
            path,
            ContentDetector(threshold=config.shot_threshold, min_scene_len=2),
            backend="pyav",
            start_in_scene=True,
        )
    except Exception as exc:  # PySceneDetect raises its own and PyAV's errors
        raise InputError(f"{path}: shot detection failed ({exc})") from exc
    cuts = sorted({int(start.frame_num) for start, _ in scenes} - {0})
    bounds = [0, *[c for c in cuts if 0 < c < num_frames], num_frames]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def split_shots(
    shots: list[tuple[int, int]], fps: float, config: CurationConfig, keyframes: list[int] | None = None
) -> list[ClipRange]:
    """Clip ranges for the shots: long shots split into equal parts of at most max_seconds.

    keyframes: frame indices of the video's keyframes. A split point moves to a keyframe within a
    quarter of a part's length when every part still fits the length limits, so that more clips
    start and end on keyframes and can be cut without re-encoding.
    """
    max_frames = max(1, int(math.floor(config.max_seconds * fps)))
    min_frames = int(math.ceil(config.min_seconds * fps))
    keys = sorted(set(keyframes or []))
    clips = []
    for shot_index, (start, end) in enumerate(shots):
        length = end - start
        parts = max(1, math.ceil(length / max_frames))
        edges = [start + round(i * length / parts) for i in range(parts + 1)]
        for i in range(1, parts):
            left = parts - i  # parts still to place after this edge
            tolerance = length / parts / 4
            fits = [
                k
                for k in keys
                if abs(k - edges[i]) <= tolerance
                and min_frames <= k - edges[i - 1] <= max_frames
                and left * min_frames <= end - k <= left * max_frames
            ]
            if fits:
                edges[i] = min(fits, key=lambda k: (abs(k - edges[i]), k))
        clips.extend(ClipRange(a, b, shot_index) for a, b in zip(edges[:-1], edges[1:], strict=True))
    return clips
