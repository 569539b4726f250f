"""Video and image input/output: the project's one reader and writer.

- :func:`read_video` / :func:`iter_video_frames`: PyAV decode to RGB uint8, resampled to a working fps.
- :func:`write_video`: H.264 mp4, optional audio from a source file, atomic (temp file + rename).
- :func:`load_image`: validated RGB uint8 image with a size limit.
- :func:`frame_count_4k1`: the largest 4k+1 frame count (SPEC §8).
"""

from .image import load_image, save_image
from .video import (
    DEFAULT_FPS,
    VideoFrames,
    VideoInfo,
    frame_count_4k1,
    iter_video_frames,
    probe_video,
    read_video,
    write_video,
)

__all__ = [
    "DEFAULT_FPS",
    "VideoFrames",
    "VideoInfo",
    "frame_count_4k1",
    "iter_video_frames",
    "load_image",
    "probe_video",
    "read_video",
    "save_image",
    "write_video",
]
