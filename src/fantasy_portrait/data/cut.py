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
from pathlib import Path

logger = logging.getLogger(__name__)

REENCODE_CRF = 12


def cut_clip(src: str, dst: str | Path, start: int, end: int, fps: float, num_frames: int) -> str:
    """Write frames [start, end) of ``src`` to ``dst`` (mp4); returns "remux" or "reencode".

    The file appears atomically (temporary name, then rename), so an interrupted run never leaves a
    truncated clip under its final name.
    """
    from ..io import copy_frames, iter_video_frames, probe_video, write_video

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.tmp{os.getpid()}.mp4")
    try:
        if copy_frames(src, tmp, start, end):
            os.replace(tmp, dst)
            return "remux"
    except Exception as exc:  # any container quirk: fall back to re-encoding
        logger.debug("%s: remux of %d-%d failed (%s); re-encoding", src, start, end, exc)
    tmp.unlink(missing_ok=True)
    info = probe_video(src)
    frames = iter_video_frames(src, start=start, end=end)
    write_video(
        dst,
        frames,
        fps,
        audio_from=src if info.has_audio else None,
        audio_offset_s=start / fps,
        crf=REENCODE_CRF,
    )
    return "reencode"
