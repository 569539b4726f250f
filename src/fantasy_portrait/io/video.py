"""The project's one video reader and writer (PyAV, no ffmpeg binary needed).

Every module that reads or writes video goes through here (the pipeline, tracking, motion,
curation, precompute, the benchmark), so one set of rules holds everywhere:

- **Frame rate**: the stream's average rate, else its guessed rate, else the rate of its packet
  timestamps; a video with none of them is refused (InputError), never given a made-up rate.
- **Frame count**: the video packets that carry a timestamp, counted by :func:`probe_video` without
  decoding (the header's count can be missing or wrong). ``VideoInfo.frames_at(fps)`` is exactly
  the number of frames :func:`iter_video_frames` yields at that rate.
- **Frame index**: frame k is the k-th frame in presentation order; when reading from a seek point
  the index is the frame's time x the frame rate (exact for constant-rate video).
- **Resampling** to a working rate: output frame i shows the source frame whose display interval
  [t_k, t_k + 1/rate) contains time i / fps (nearest in time), frame by frame, so memory stays flat.

Writing encodes H.264 (yuv420p) to a temporary file beside the target, muxes the audio of a source
video if asked, and renames the file into place only when everything succeeded; a failure of the
file system (permission denied, disk full) is an :class:`~fantasy_portrait.errors.OutputError`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError, os_error_reason

logger = logging.getLogger(__name__)

# Working frame rate of the reference's multi-face path (SPEC §8).
DEFAULT_FPS = 25.0
_EPS = 1e-9


@dataclass
class VideoInfo:
    """What a video file holds, read from its header and packets (no decoding).

    fps: source frame rate (rule in the module docstring); num_frames: frames in the file;
    duration_s: from the first frame's start to the last frame's end; codec: video codec name.
    """

    path: Path
    width: int
    height: int
    fps: float
    num_frames: int
    duration_s: float
    has_audio: bool
    codec: str = ""

    @property
    def duration(self) -> float:
        return self.duration_s

    def frames_at(self, fps: float | None) -> int:
        """Frames :func:`iter_video_frames` yields when resampling to ``fps`` (None or 0: every frame)."""
        if not fps:
            return self.num_frames
        return frames_before(self.duration_s, fps)


def frames_before(end_s: float, fps: float) -> int:
    """Number of output frames i (at ``fps``) with i / fps < end_s: the resampler's stopping rule."""
    n = max(0, math.ceil(end_s * fps) - 1)
    while n / fps < end_s - _EPS:
        n += 1
    while n > 0 and (n - 1) / fps >= end_s - _EPS:
        n -= 1
    return n


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


def open_video(path: str | os.PathLike):
    """An open PyAV input container with at least one video stream (the only ``av.open`` for reading).
    Raises InputError when the file is missing, unreadable or has no video."""
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: video file not found" if not path.is_dir() else f"{path}: is a folder")
    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises several error types for broken files
        raise InputError(f"{path}: cannot read video ({exc.__class__.__name__}: {exc})") from exc
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: file has no video stream")
    return container


def _header_rate(stream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


def _seconds(pts: int, time_base: float) -> float:
    return pts * time_base


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Facts of a video file from its header and packet timestamps (demuxed, not decoded: a few ms per
    thousand frames). Raises InputError if it cannot be opened, has no video or no frame rate."""
    path = Path(path)
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        time_base = float(stream.time_base) if stream.time_base is not None else None
        first = last = None
        count = 0
        try:
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                count += 1
                if packet.pts is not None and time_base is not None:
                    first = packet.pts if first is None else min(first, packet.pts)
                    last = packet.pts if last is None else max(last, packet.pts)
        except Exception as exc:
            if count == 0:
                raise InputError(f"{path}: cannot read video ({exc.__class__.__name__}: {exc})") from exc
            logger.warning("%s: the file is damaged after %d frames: %s", path, count, exc)
        fps = _header_rate(stream)
        if fps is None and count > 1 and first is not None and last > first:
            fps = (count - 1) / (_seconds(last, time_base) - _seconds(first, time_base))
        if not fps:
            raise InputError(
                f"{path}: the video has no frame rate (neither in its header nor its timestamps)"
            )
        if first is not None:
            duration = _seconds(last, time_base) - _seconds(first, time_base) + 1.0 / fps
        else:
            duration = count / fps
        return VideoInfo(
            path=path,
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            fps=fps,
            num_frames=count,
            duration_s=duration if count else 0.0,
            has_audio=bool(container.streams.audio),
            codec=str(stream.codec_context.name),
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


def _decoded(path: Path, info: VideoInfo, start: int = 0) -> Iterator[tuple[int, float, object]]:
    """(source index, time from the first frame in s, av frame) in presentation order from ``start``."""
    container = open_video(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    time_base = float(stream.time_base) if stream.time_base is not None else None
    first_pts = None
    try:
        if start > 0 and time_base is not None:
            base = stream.start_time or 0
            target = base + int((start / info.fps - 0.5 / info.fps) / time_base)
            container.seek(max(target, base), stream=stream, backward=True, any_frame=False)
            first_pts = stream.start_time or 0
        count = 0
        try:
            for av_frame in container.decode(stream):
                if av_frame.pts is not None and time_base is not None:
                    if first_pts is None:
                        first_pts = av_frame.pts
                    t = _seconds(av_frame.pts, time_base) - _seconds(first_pts, time_base)
                    index = count if start == 0 else round(t * info.fps)
                else:
                    t, index = count / info.fps, count
                count += 1
                yield index, t, av_frame
        except InputError:
            raise
        except Exception as exc:
            if count == 0:
                raise InputError(f"{path}: cannot decode video ({exc.__class__.__name__}: {exc})") from exc
            logger.warning("%s: decoding stopped after %d frames: %s", path, count, exc)
    finally:
        container.close()


def _rgb(av_frame, max_side: int | None) -> np.ndarray:
    image = av_frame.to_ndarray(format="rgb24")
    rotation = getattr(av_frame, "rotation", 0) or 0
    if rotation:
        image = apply_display_rotation(image, rotation)
    return _resize_max_side(image, max_side)


def iter_video_frames(
    path: str | os.PathLike,
    fps: float | None = None,
    max_frames: int | None = None,
    max_side: int | None = None,
    with_index: bool = False,
    *,
    start: int = 0,
    end: int | None = None,
    wanted: Iterable[int] | None = None,
) -> Iterator[np.ndarray] | Iterator[tuple[int, np.ndarray]]:
    """Decode a video lazily as (H, W, 3) uint8 RGB frames.

    fps: resample to this rate (None keeps every source frame; rule in the module docstring).
    max_frames: stop after this many output frames. max_side: downscale so the longer side is at most
    this (INTER_AREA). with_index: yield (source_frame_index, frame) pairs instead.
    start / end / wanted (source frame indices, without ``fps`` only): frames start <= k < end, seeking
    near ``start``; with ``wanted`` only those frames are converted and yielded.
    Raises InputError for an unreadable file or a video without decodable frames.
    """
    if fps is not None and (start or end is not None or wanted is not None):
        raise ValueError("start, end and wanted select source frames: use them without fps")
    path = Path(path)
    info = probe_video(path)
    if info.num_frames == 0:
        raise InputError(f"{path}: video has no frames")
    keep = None if wanted is None else set(wanted)
    if keep is not None:
        end = min(end if end is not None else info.num_frames, max(keep, default=-1) + 1)
    emitted = 0

    def out(index: int, frame: np.ndarray):
        return (index, frame) if with_index else frame

    def full() -> bool:
        return max_frames is not None and emitted >= max_frames

    if end is not None and end <= start:
        return
    if fps is None:
        for index, _, av_frame in _decoded(path, info, start):
            if index < start:
                continue
            if (end is not None and index >= end) or full():
                break
            if keep is not None and index not in keep:
                continue
            yield out(index, _rgb(av_frame, max_side))
            emitted += 1
        return
    pending: list | None = None  # [source index, av frame, start time, RGB once converted]

    def shown(p: list) -> np.ndarray:
        if p[3] is None:  # converted only when shown (dropped frames cost no colour conversion)
            p[3] = _rgb(p[1], max_side)
            p[1] = None
        return p[3]

    for index, t, av_frame in _decoded(path, info):
        if full():
            break
        if pending is not None:
            # The previous frame is on screen until this one starts.
            while not full() and emitted / fps < t - _EPS:
                yield out(pending[0], shown(pending))
                emitted += 1
        pending = [index, av_frame, t, None]
    if pending is not None:
        stop = pending[2] + 1.0 / info.fps
        while not full() and emitted / fps < stop - _EPS:
            yield out(pending[0], shown(pending))
            emitted += 1


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
    if not pairs:
        raise InputError(f"{path}: video has no frames")
    frames = np.stack([p[1] for p in pairs])
    index = np.asarray([p[0] for p in pairs], dtype=np.int64)
    return VideoFrames(
        frames=frames,
        fps=float(fps) if fps is not None else info.fps,
        source_fps=info.fps,
        source_index=index,
        path=Path(path),
    )


def read_frames(
    path: str | os.PathLike, indices: Iterable[int], start: int = 0, end: int | None = None
) -> dict[int, np.ndarray]:
    """The source frames whose index is in ``indices`` (within [start, end)): {index: RGB frame}."""
    wanted = set(indices)
    if not wanted:
        return {}
    return dict(iter_video_frames(path, with_index=True, start=start, end=end, wanted=wanted))


def keyframe_indices(path: str | os.PathLike) -> list[int]:
    """Source frame indices of the video's keyframes (from the packets, no decoding)."""
    info = probe_video(path)
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        time_base = float(stream.time_base or 1)
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size and p.pts is not None]
    finally:
        container.close()
    if not packets:
        return [0]
    first = min(pts for pts, _ in packets)
    return sorted(
        round((_seconds(pts, time_base) - _seconds(first, time_base)) * info.fps)
        for pts, key in packets
        if key
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
        try:
            for frame in container.decode(stream):
                for rf in resampler.resample(frame):
                    chunks.append(rf.to_ndarray())
            for rf in resampler.resample(None):
                chunks.append(rf.to_ndarray())
        except Exception as exc:
            if not chunks:
                raise InputError(
                    f"{path}: cannot decode its audio ({exc.__class__.__name__}: {exc})"
                ) from exc
            logger.warning("%s: audio decoding stopped early: %s", path, exc)
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


def temporary_path(path: Path) -> Path:
    """The hidden name a file is written under before it is renamed into place (same folder)."""
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix or '.mp4'}")


@contextmanager
def writing(path: Path, what: str = "video"):
    """Turn a file-system failure while writing ``path`` into an OutputError naming it."""
    import av

    try:
        yield
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the {what} ({os_error_reason(exc)})") from exc
    except av.error.FFmpegError as exc:
        raise OutputError(f"{path}: cannot write the {what} ({exc.__class__.__name__}: {exc})") from exc


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
    ``path`` is either the complete new video or untouched (also when interrupted). Errors of the
    file system raise OutputError; errors of ``frames`` propagate unchanged. Returns ``path``.
    """
    import av

    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    audio = None
    if audio_from is not None:
        audio = _read_audio(Path(audio_from))
        if audio is None:
            logger.info("%s has no audio track; writing %s without sound", audio_from, path)
    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    try:
        with writing(path):
            container = av.open(str(tmp), mode="w", format="mp4")
        try:
            vstream = astream = None
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
                    if audio is not None:
                        astream = container.add_stream("aac", rate=audio[1])
                        astream.layout = audio[2]
                elif (frame.shape[1], frame.shape[0]) != (vstream.width, vstream.height):
                    raise ValueError("all frames must have the same size")
                vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
                vf.pts = count
                vf.time_base = 1 / rate
                with writing(path):
                    for packet in vstream.encode(vf):
                        container.mux(packet)
                count += 1
            if vstream is None:
                raise InputError(f"{path}: no frames to write")
            with writing(path):
                for packet in vstream.encode():
                    container.mux(packet)
                if audio is not None:
                    _encode_audio(container, astream, audio, count / float(rate), audio_offset_s)
        except BaseException:
            try:
                container.close()
            except Exception:  # the first error is the one to report
                pass
            raise
        with writing(path):
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


# ------------------------------------------------------------------------------------ lossless cuts

_LOOKAHEAD_PACKETS = 32


def copy_frames(src: str | os.PathLike, dst: str | os.PathLike, start: int, end: int) -> bool:
    """Copy the packets of source frames [start, end) into ``dst`` (mp4, video only) without
    re-encoding, when that is exact; returns False (and writes nothing) when it would not be.

    Exact means: the clip starts on a keyframe, and it ends at the end of the video or right before a
    keyframe that no packet after it (in decode order) is shown before (no open-GOP leading frames),
    and the copied packets are exactly the clip's frames.
    """
    import av

    src, dst = Path(src), Path(dst)
    info = probe_video(src)
    container = open_video(src)
    try:
        stream = container.streams.video[0]
        time_base = float(stream.time_base or 1)
        base = stream.start_time or 0

        def index_of(pts: int) -> int:
            return round((_seconds(pts, time_base) - _seconds(base, time_base)) * info.fps)

        if start > 0:
            target = base + int((start / info.fps - 0.5 / info.fps) / time_base)
            container.seek(max(target, base), stream=stream, backward=True, any_frame=False)
        kept, started, ended, after_end = [], False, False, 0
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            index = index_of(packet.pts)
            if not started:
                if index < start:
                    continue
                if index > start or not packet.is_keyframe:
                    return False
                started = True
            if ended:
                after_end += 1
                if index < end:
                    return False  # a frame of the clip decodes after the next keyframe
                if after_end >= _LOOKAHEAD_PACKETS:
                    break
                continue
            if index >= end:
                if not packet.is_keyframe:
                    return False
                ended = True
                continue
            if index >= start:
                kept.append(packet)
        if end < info.num_frames and not ended:
            return False
        if len({index_of(p.pts) for p in kept}) != end - start or len(kept) != end - start:
            return False
        shift = min(p.pts for p in kept) - base
        try:
            with writing(dst), av.open(str(dst), "w", format="mp4") as out:
                out_stream = out.add_stream_from_template(stream)
                for packet in kept:
                    packet.pts -= shift
                    if packet.dts is not None:
                        packet.dts -= shift
                    packet.stream = out_stream
                    out.mux(packet)
        except BaseException:
            dst.unlink(missing_ok=True)
            raise
        return True
    finally:
        container.close()
