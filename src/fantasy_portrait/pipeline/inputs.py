"""The inputs a notebook user passes to the pipeline, turned into what the file-based stages read.

Portrait: a path, a ``PIL.Image``, a numpy array or a torch tensor -> one (H, W, 3) uint8 RGB array.
Arrays may be (H, W, 3) RGB, (H, W, 4) RGBA (composited on white, as ``io.load_image`` does), (H, W)
grey, or channel-first (3, H, W); uint8 or float in [0, 1].

Driving: one driver or a list of drivers. A driver is a video path, a :class:`~fantasy_portrait.io.VideoFrames`,
an (F, H, W, 3) array or a list of frames (arrays or PIL images, same size). A flat list of frames is
one driver; a list whose items are paths, arrays of frames or frame lists is several. Frames given in
memory are at ``fps`` (the pipeline's working rate; 25 when that is 0/None) unless they come as
``VideoFrames``, which carry their own rate.

Face tracking, motion extraction and the output's audio read driving *files*, so in-memory drivers
are written losslessly (FFV1 RGB in Matroska) into a temporary folder that lives as long as the
returned :class:`PreparedInputs` (removed by :meth:`PreparedInputs.close`, on leaving its ``with``
block, or when it is garbage collected).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

DEFAULT_FPS = 25.0


@dataclass
class PreparedInputs:
    """portrait: (H, W, 3) uint8; portrait_name: file name or a description (used in messages);
    videos: one file per driver, in the order given."""

    portrait: np.ndarray
    portrait_name: str
    videos: list[Path]
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> PreparedInputs:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def prepare_inputs(
    image,
    driving,
    *,
    fps: float | None = DEFAULT_FPS,
    max_image_pixels: int | None = None,
) -> PreparedInputs:
    """Portrait array and driver files from any accepted form (see the module docstring)."""
    portrait, name = portrait_array(image, max_pixels=max_image_pixels)
    drivers = driver_list(driving)
    if not drivers:
        raise InputError("no driving video given")
    tmp = None
    videos: list[Path] = []
    for k, d in enumerate(drivers):
        if isinstance(d, (str, os.PathLike)):
            videos.append(Path(d))
            continue
        if tmp is None:
            tmp = tempfile.TemporaryDirectory(prefix="fp_inputs_")
        frames, rate = driver_frames(d, fps or DEFAULT_FPS, index=k)
        videos.append(write_lossless(Path(tmp.name) / f"driver_{k}.mkv", frames, rate))
    return PreparedInputs(portrait, name, videos, tmp)


# -------------------------------------------------------------------------------------------- images
def _is_pil(x) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(x, Image.Image)


def _to_numpy(x) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def image_array(x, what: str = "image") -> np.ndarray:
    """One image (PIL, numpy or torch; see the module docstring) as (H, W, 3) uint8 RGB."""
    if _is_pil(x):
        from PIL import Image

        if x.mode in ("RGBA", "LA", "P", "PA"):
            x = Image.alpha_composite(Image.new("RGBA", x.size, (255, 255, 255, 255)), x.convert("RGBA"))
        return np.asarray(x.convert("RGB"), dtype=np.uint8).copy()
    a = _to_numpy(x)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channel-first
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise InputError(f"{what}: expected an (H, W, 3) RGB array, got shape {tuple(a.shape)}")
    if a.dtype != np.uint8:
        if a.dtype == bool or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise InputError(f"{what}: expected uint8 or float pixels, got {a.dtype}")
        if np.issubdtype(a.dtype, np.floating):
            if a.size and (np.nanmin(a) < -1e-6 or np.nanmax(a) > 1 + 1e-6 or np.isnan(a).any()):
                raise InputError(f"{what}: float pixels must lie in [0, 1]")
            a = np.round(np.clip(a, 0, 1) * 255)
        elif a.size and (a.min() < 0 or a.max() > 255):
            raise InputError(f"{what}: integer pixels must lie in [0, 255]")
        a = a.astype(np.uint8)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    elif a.shape[-1] == 4:
        alpha = a[..., 3:].astype(np.float32) / 255
        a = np.round(a[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(a)


def portrait_array(image, *, max_pixels: int | None = None) -> tuple[np.ndarray, str]:
    """(portrait (H, W, 3) uint8, name) from a path, PIL image, numpy array or torch tensor."""
    from ..io import load_image
    from ..io.image import MIN_SIDE

    if isinstance(image, (str, os.PathLike)):
        kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
        return load_image(image, **kwargs), str(image)
    name = f"portrait ({type(image).__name__})"
    a = image_array(image, name)
    h, w = a.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InputError(f"{name}: image is {w}x{h}, too small (need at least {MIN_SIDE} px per side)")
    if max_pixels is not None and h * w > max_pixels:
        raise InputError(f"{name}: image is {w}x{h}, more than the limit of {max_pixels} pixels")
    return a, name


# ------------------------------------------------------------------------------------------- drivers
def _is_frame(x) -> bool:
    if _is_pil(x):
        return True
    if isinstance(x, (str, os.PathLike, list, tuple)) or not hasattr(x, "shape"):
        return False
    return len(x.shape) in (2, 3) and not (len(x.shape) == 3 and x.shape[0] > 4 and x.shape[-1] > 4)


def driver_list(driving) -> list:
    """The drivers in ``driving``: one driver, or a list of them (a flat list of frames is one driver)."""
    from ..io import VideoFrames

    if driving is None:
        return []
    if isinstance(driving, (str, os.PathLike, VideoFrames)) or hasattr(driving, "shape"):
        return [driving]
    if isinstance(driving, Sequence) or hasattr(driving, "__iter__"):
        items = list(driving)
        if items and all(_is_frame(x) for x in items):
            return [items]
        return items
    raise InputError(
        f"driving input of type {type(driving).__name__} is not a path, an array or a frame list"
    )


def driver_frames(driver, fps: float, index: int = 0) -> tuple[np.ndarray, float]:
    """(F, H, W, 3) uint8 frames and their rate of one in-memory driver."""
    from ..io import VideoFrames

    what = f"driver {index}"
    if isinstance(driver, VideoFrames):
        return driver_frames(driver.frames, driver.fps, index)
    if hasattr(driver, "shape") and not _is_pil(driver):
        a = _to_numpy(driver)
        if a.ndim == 3 and not _is_frame(a):  # (F, H, W) grey clip
            a = a[..., None]
        if a.ndim != 4:
            raise InputError(f"{what}: expected (F, H, W, 3) frames, got shape {tuple(a.shape)}")
        frames = [image_array(f, f"{what} frame {t}") for t, f in enumerate(a)]
    elif isinstance(driver, (list, tuple)):
        bad = next((t for t, f in enumerate(driver) if not _is_frame(f)), None)
        if bad is not None:
            raise InputError(
                f"{what}: item {bad} is not an image (a driver is a path, an array or a frame list)"
            )
        frames = [image_array(f, f"{what} frame {t}") for t, f in enumerate(driver)]
    else:
        raise InputError(f"{what}: {type(driver).__name__} is not a video path, an array or a frame list")
    if not frames:
        raise InputError(f"{what}: no frames")
    if len({f.shape for f in frames}) > 1:
        raise InputError(f"{what}: frames differ in size ({sorted({f.shape[:2] for f in frames})})")
    if fps <= 0:
        raise InputError(f"{what}: frame rate must be positive, got {fps}")
    return np.stack(frames), float(fps)


def write_lossless(path: Path, frames: np.ndarray, fps: float) -> Path:
    """Frames as a lossless FFV1 (RGB) Matroska file at ``fps``; odd sizes are kept (no chroma subsampling)."""
    from fractions import Fraction

    import av

    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "bgr0"
        for t, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="bgr0")
            vf.pts = t
            vf.time_base = 1 / rate
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
