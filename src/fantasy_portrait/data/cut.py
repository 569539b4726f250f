"""Cutting kept clips out of their source video: lossless packet copy where the stream allows it.

A packet copy ("remux") is exact only when the clip starts on a keyframe and no frame inside the
clip depends on a frame outside it. We remux when:
- the first frame of the clip is a keyframe, and
- the clip ends at the end of the video, or the frame right after it is a keyframe and no packet
  that follows that keyframe in decode order is shown before it (no open-GOP leading B-frames),
and the copied packets are exactly the clip's frames. Otherwise the frames are decoded and
re-encoded with H.264 at a near-lossless quality (crf 12) with the project's writer, audio
included. Remuxed clips carry the video stream only (audio packets do not align to frames).
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

logger = logging.getLogger(__name__)

REENCODE_CRF = 12
_LOOKAHEAD_PACKETS = 32


def _remux(src: str, tmp: Path, start: int, end: int, fps: float, num_frames: int) -> bool:
    """Try the packet copy; returns False (and leaves no file) when it would not be exact."""
    import av

    with av.open(src) as container:
        stream = container.streams.video[0]
        tb = stream.time_base or Fraction(1, 1)
        base = stream.start_time or 0

        def index_of(pts: int) -> int:
            return round(float((pts - base) * tb) * fps)

        if start > 0:
            target = base + int((start / fps - 0.5 / fps) / tb)
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
        if end < num_frames and not ended:
            return False
        if len({index_of(p.pts) for p in kept}) != end - start or len(kept) != end - start:
            return False
        shift = min(p.pts for p in kept) - base
        with av.open(str(tmp), "w", format="mp4") as out:
            out_stream = out.add_stream_from_template(stream)
            for packet in kept:
                packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
                packet.stream = out_stream
                out.mux(packet)
    return True


def cut_clip(src: str, dst: str | Path, start: int, end: int, fps: float, num_frames: int) -> str:
    """Write frames [start, end) of ``src`` to ``dst`` (mp4); returns "remux" or "reencode".

    The file appears atomically (temporary name, then rename), so an interrupted run never leaves a
    truncated clip under its final name.
    """
    from ..io import write_video
    from .video import iter_frames

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.tmp{os.getpid()}.mp4")
    try:
        if _remux(src, tmp, start, end, fps, num_frames):
            os.replace(tmp, dst)
            return "remux"
    except Exception as exc:  # any container quirk: fall back to re-encoding
        logger.debug("%s: remux of %d-%d failed (%s); re-encoding", src, start, end, exc)
    tmp.unlink(missing_ok=True)
    from .video import probe

    info = probe(src)
    frames = (image for _, image in iter_frames(src, start, end, fps))
    write_video(
        dst,
        frames,
        fps,
        audio_from=src if info.has_audio else None,
        audio_offset_s=start / fps,
        crf=REENCODE_CRF,
    )
    return "reencode"
