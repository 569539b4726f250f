"""The project's one video reader and writer (PyAV, no ffmpeg binary needed).

Reading decodes frame by frame and resamples to a working frame rate on the fly: output frame i
shows the source frame whose display interval contains time i / fps (nearest-in-time rule), so
memory stays flat whatever the video length when you use :func:`iter_video_frames`. Writing encodes
H.264 (yuv420p) to a temporary file beside the target, muxes the audio of a source video if asked,
and renames the file into place only when everything succeeded.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError

logger = logging.getLogger(__name__)

# Working frame rate of the reference's multi-face path (SPEC §8).
DEFAULT_FPS = 25.0


@dataclass
class VideoInfo:
    """What a video file holds, read from its header (no decoding)."""

    path: Path
    width: int
    height: int
    fps: float
    num_frames: int  # from the header, or estimated from the duration when the header has none
    duration_s: float
    has_audio: bool


@dataclass
class VideoFrames:
    """Decoded frames of one video.

    frames: (F, H, W, 3) uint8 RGB. fps: rate of ``frames`` (the working rate if resampled).
    source_index: (F,) int64, which source frame each output frame shows.
    """

    frames: np.ndarray
    fps: float
    source_fps: float
    source_index: np.ndarray
    path: Path | None = None

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration_s(self) -> float:
        return len(self) / self.fps


def _open_input(path: str | os.PathLike):
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: video file not found")
    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises several error types for broken files
        raise InputError(f"{path}: cannot read video ({exc.__class__.__name__}: {exc})") from exc
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: file has no video stream")
    return container


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Header facts of a video file. Raises InputError if it cannot be opened or has no video."""
    path = Path(path)
    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0) or DEFAULT_FPS
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = 0.0
        num_frames = int(stream.frames) if stream.frames else int(round(duration * fps))
        return VideoInfo(
            path=path,
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            fps=fps,
            num_frames=num_frames,
            duration_s=duration if duration > 0 else num_frames / fps,
            has_audio=bool(container.streams.audio),
        )
    finally:
        container.close()


def _resize_max_side(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    if max_side is None:
        return frame
    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return frame
    import cv2

    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def apply_display_rotation(image: np.ndarray, rotation: float) -> np.ndarray:
    """Turn a decoded frame upright. rotation: the stream's display-matrix angle in degrees
    (counter-clockwise, as PyAV's ``VideoFrame.rotation`` gives it; phones store -90 for portrait)."""
    theta = int(round(-rotation)) % 360
    if theta == 90:
        return np.ascontiguousarray(np.rot90(image, k=-1))  # clockwise
    if theta == 180:
        return np.ascontiguousarray(image[::-1, ::-1])
    if theta == 270:
        return np.ascontiguousarray(np.rot90(image, k=1))
    return image


def iter_video_frames(
    path: str | os.PathLike,
    fps: float | None = None,
    max_frames: int | None = None,
    max_side: int | None = None,
    with_index: bool = False,
) -> Iterator[np.ndarray] | Iterator[tuple[int, np.ndarray]]:
    """Decode a video lazily as (H, W, 3) uint8 RGB frames.

    fps: resample to this rate (None keeps every source frame). Output frame i shows the source frame
    whose display interval [t_k, t_k + 1/source_fps) contains i / fps (times from the stream's pts).
    max_frames: stop after this many output frames. max_side: downscale so the longer side is at most
    this (INTER_AREA). with_index: yield (source_frame_index, frame) pairs instead.
    Raises InputError for an unreadable file or a video without decodable frames.
    """
    path = Path(path)
    container = _open_input(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    source_fps = float(stream.average_rate or stream.guessed_rate or 0) or DEFAULT_FPS
    time_base = float(stream.time_base) if stream.time_base is not None else None
    emitted = 0
    decoded = 0
    t0 = None
    pending: tuple[int, np.ndarray, float] | None = None  # (source index, frame, start time)

    def out(index: int, frame: np.ndarray):
        return (index, frame) if with_index else frame

    try:
        try:
            for av_frame in container.decode(stream):
                if max_frames is not None and emitted >= max_frames:
                    break
                if av_frame.pts is not None and time_base is not None:
                    t = av_frame.pts * time_base
                else:
                    t = decoded / source_fps
                if t0 is None:
                    t0 = t
                t -= t0
                image = av_frame.to_ndarray(format="rgb24")
                rotation = getattr(av_frame, "rotation", 0) or 0
                if rotation:
                    image = apply_display_rotation(image, rotation)
                image = _resize_max_side(image, max_side)
                index = decoded
                decoded += 1
                if fps is None:
                    yield out(index, image)
                    emitted += 1
                    continue
                if pending is not None:
                    # The previous frame is on screen until this one starts.
                    while (max_frames is None or emitted < max_frames) and emitted / fps < t - 1e-9:
                        yield out(pending[0], pending[1])
                        emitted += 1
                pending = (index, image, t)
        except InputError:
            raise
        except Exception as exc:
            if decoded == 0:
                raise InputError(f"{path}: cannot decode video ({exc.__class__.__name__}: {exc})") from exc
            logger.warning("%s: decoding stopped after %d frames: %s", path, decoded, exc)
        if fps is not None and pending is not None:
            end = pending[2] + 1.0 / source_fps
            while (max_frames is None or emitted < max_frames) and emitted / fps < end - 1e-9:
                yield out(pending[0], pending[1])
                emitted += 1
        if decoded == 0:
            raise InputError(f"{path}: video has no frames")
    finally:
        container.close()


def read_video(
    path: str | os.PathLike,
    fps: float | None = None,
    max_frames: int | None = None,
    max_side: int | None = None,
) -> VideoFrames:
    """Decode a whole video into memory (see :func:`iter_video_frames` for the arguments).

    Returns VideoFrames with frames (F, H, W, 3) uint8 RGB at ``fps`` (or the source rate).
    """
    info = probe_video(path)
    pairs = list(iter_video_frames(path, fps=fps, max_frames=max_frames, max_side=max_side, with_index=True))
    frames = np.stack([p[1] for p in pairs])
    index = np.asarray([p[0] for p in pairs], dtype=np.int64)
    return VideoFrames(
        frames=frames,
        fps=float(fps) if fps is not None else info.fps,
        source_fps=info.fps,
        source_index=index,
        path=Path(path),
    )


def frame_count_4k1(available: int, requested: int | None = None) -> int:
    """Largest 4k+1 frame count not above min(available, requested) (SPEC §8). Raises InputError if < 1."""
    n = available if requested is None else min(available, requested)
    if n < 1:
        raise InputError(f"need at least 1 driving frame, got {n}")
    return (n - 1) // 4 * 4 + 1


# ---------------------------------------------------------------------------------------------- writing


def _read_audio(path: Path) -> tuple[np.ndarray, int, str] | None:
    """All audio of ``path`` as (C, N) float32 planar, sample rate, layout name; None if it has none."""
    import av

    if not path.is_file():
        raise InputError(f"{path}: audio source not found")
    try:
        container = av.open(str(path))
    except Exception as exc:
        raise InputError(f"{path}: cannot read audio ({exc.__class__.__name__}: {exc})") from exc
    try:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        rate = int(stream.rate)
        layout = "stereo" if (stream.channels or 1) >= 2 else "mono"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        chunks = []
        for frame in container.decode(stream):
            for rf in resampler.resample(frame):
                chunks.append(rf.to_ndarray())
        for rf in resampler.resample(None):
            chunks.append(rf.to_ndarray())
        if not chunks:
            return None
        return np.concatenate(chunks, axis=1).astype(np.float32), rate, layout
    finally:
        container.close()


def _frames_iter(frames: np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (F, H, W, 3), got {frames.shape}")
        yield from frames
    else:
        yield from frames


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    audio_from: str | os.PathLike | None = None,
    audio_offset_s: float = 0.0,
    crf: int = 18,
) -> Path:
    """Write RGB uint8 frames as an H.264 mp4, optionally with the audio of another file.

    frames: (F, H, W, 3) uint8 RGB array or an iterable of (H, W, 3) uint8 frames (streamed; odd sizes
    are padded by one edge pixel because yuv420p needs even sizes). fps: output frame rate.
    audio_from: a video or audio file whose first audio track is muxed (AAC), starting at
    ``audio_offset_s`` seconds into it (negative: that much silence first) and cut to the video's
    length. A source without audio just gives a silent video (logged).
    The file is written to a temporary name in the same folder and renamed into place at the end, so
    ``path`` is either the complete new video or untouched. Returns ``path``.
    """
    import av

    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix or '.mp4'}")
    audio = None
    if audio_from is not None:
        audio = _read_audio(Path(audio_from))
        if audio is None:
            logger.warning("%s has no audio track; writing %s without sound", audio_from, path)
    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    try:
        container = av.open(str(tmp), mode="w", format="mp4")
        try:
            vstream = None
            for frame in _frames_iter(frames):
                frame = np.asarray(frame)
                if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                    raise ValueError(f"frames must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
                h, w = frame.shape[:2]
                if h % 2 or w % 2:
                    frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                if vstream is None:
                    vstream = container.add_stream("libx264", rate=rate)
                    vstream.width, vstream.height = frame.shape[1], frame.shape[0]
                    vstream.pix_fmt = "yuv420p"
                    vstream.options = {"crf": str(crf), "preset": "medium"}
                    astream = None
                    if audio is not None:
                        astream = container.add_stream("aac", rate=audio[1])
                        astream.layout = audio[2]
                elif (frame.shape[1], frame.shape[0]) != (vstream.width, vstream.height):
                    raise ValueError("all frames must have the same size")
                vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
                vf.pts = count
                vf.time_base = 1 / rate
                for packet in vstream.encode(vf):
                    container.mux(packet)
                count += 1
            if vstream is None:
                raise InputError(f"{path}: no frames to write")
            for packet in vstream.encode():
                container.mux(packet)
            if audio is not None:
                _encode_audio(container, astream, audio, count / float(rate), audio_offset_s)
        finally:
            container.close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.debug("wrote %s: %d frames at %.3f fps", path, count, float(rate))
    return path


def _encode_audio(container, stream, audio, duration_s: float, offset_s: float) -> None:
    import av

    samples, sr, layout = audio
    start = int(round(offset_s * sr))
    n = int(math.ceil(duration_s * sr))
    if start < 0:
        samples = np.concatenate([np.zeros((samples.shape[0], -start), np.float32), samples], axis=1)
        start = 0
    clip = samples[:, start : start + n]
    chunk = 1024
    for i in range(0, clip.shape[1], chunk):
        part = np.ascontiguousarray(clip[:, i : i + chunk])
        af = av.AudioFrame.from_ndarray(part, format="fltp", layout=layout)
        af.sample_rate = sr
        af.pts = i
        af.time_base = Fraction(1, sr)
        for packet in stream.encode(af):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
