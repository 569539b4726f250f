"""Video access for curation: probing and decoding a frame range (PyAV).

Frame indices are positions at the stream's average frame rate: index = round(time * fps), with
time measured from the stream's first frame. That is exact for constant-frame-rate video, which
covers the usual sources (OpenVid-1M, OpenHumanVid); variable-rate video is read approximately.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class VideoInfo:
    """fps: average frame rate; num_frames: decodable frames (counted when the header lacks it)."""

    fps: float
    num_frames: int
    width: int
    height: int
    codec: str
    has_audio: bool

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


def _open(path: str):
    import av

    try:
        return av.open(path)
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: cannot open video ({exc})") from exc


def probe(path: str) -> VideoInfo:
    """Read a video's basic properties; counts packets when the container has no frame count."""
    with _open(path) as container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise InputError(f"{path}: unknown frame rate")
        frames = stream.frames
        if not frames:
            frames = sum(1 for p in container.demux(stream) if p.size and p.pts is not None)
        return VideoInfo(
            fps=float(rate),
            num_frames=int(frames),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
            has_audio=bool(container.streams.audio),
        )


def keyframe_indices(path: str, fps: float) -> list[int]:
    """Frame indices of the video's keyframes (from the packets, no decoding)."""
    with _open(path) as container:
        stream = container.streams.video[0]
        base = stream.start_time or 0
        tb = stream.time_base or Fraction(1, 1)
        return sorted(
            round(float((p.pts - base) * tb) * fps)
            for p in container.demux(stream)
            if p.pts is not None and p.is_keyframe
        )


def iter_frames(
    path: str, start: int, end: int, fps: float, wanted: set[int] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, (H, W, 3) uint8 RGB) for frames start <= index < end, seeking near start.

    wanted: only these indices are converted to RGB and yielded (the others are still decoded).
    """
    import av

    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = stream.start_time or 0
        tb = stream.time_base or Fraction(1, 1)
        if start > 0:
            target = base + int((start / fps - 0.5 / fps) / tb)
            container.seek(max(target, base), stream=stream, backward=True, any_frame=False)
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                index = round(float((frame.pts - base) * tb) * fps)
                if index < start:
                    continue
                if index >= end:
                    break
                if wanted is None or index in wanted:
                    yield index, frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:
            raise InputError(f"{path}: decoding failed near frame {start} ({exc})") from exc


def read_frames(path: str, start: int, end: int, fps: float, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """Decode [start, end) and keep the frames whose index is in ``indices``: {index: RGB frame}."""
    wanted = set(indices)
    if not wanted:
        return {}
    return dict(iter_frames(path, start, min(end, max(wanted) + 1), fps, wanted))
