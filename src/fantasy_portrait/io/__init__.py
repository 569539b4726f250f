"""Files in and out: the project's one reader and writer of video, images and weight pickles.

- :func:`probe_video` (frame rate, exact frame count, ``frames_at(fps)``), :func:`read_video` /
  :func:`iter_video_frames` (PyAV decode to RGB uint8, resampled to a working fps, or a frame range),
  :func:`read_frames`, :func:`keyframe_indices`, :func:`copy_frames` (lossless cut).
- :func:`write_video`: H.264 mp4, optional audio from a source file, atomic (temp file + rename).
- :func:`load_image` / :func:`probe_image`: validated RGB uint8 image with a size limit.
- :func:`load_torch_file`: a torch pickle with ``weights_only=True``, refusals in one line.
- :func:`new_output_folder`: a folder that is removed again when the work filling it fails.
- :func:`frame_count_4k1`: the largest 4k+1 frame count (SPEC §8).
"""

from .image import load_image, probe_image, save_image
from .outputs import check_output_file, check_output_folder, new_output_folder
from .video import (
    DEFAULT_FPS,
    VideoFrames,
    VideoInfo,
    copy_frames,
    frame_count_4k1,
    iter_video_frames,
    keyframe_indices,
    probe_video,
    read_frames,
    read_video,
    write_video,
)
from .weights import load_torch_file

__all__ = [
    "check_output_file",
    "check_output_folder",
    "new_output_folder",
    "DEFAULT_FPS",
    "VideoFrames",
    "VideoInfo",
    "copy_frames",
    "frame_count_4k1",
    "iter_video_frames",
    "keyframe_indices",
    "load_image",
    "load_torch_file",
    "probe_image",
    "probe_video",
    "read_frames",
    "read_video",
    "save_image",
    "write_video",
]
