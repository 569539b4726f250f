"""Image loading with validation: one RGB uint8 array or one clear error.

:func:`probe_image` reads only the header (size, mode) with the same checks, so a dry run refuses
what a run would refuse without decoding anything (a decompression bomb included).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError, os_error_reason

# Refuse images above this many pixels before decoding them fully (decompression bombs, 100 MP scans).
MAX_PIXELS = 80_000_000
MIN_SIDE = 16


@dataclass
class ImageInfo:
    path: Path
    width: int
    height: int
    mode: str


def _open_checked(path: Path, max_pixels: int):
    """PIL image opened lazily and checked against the limits (no pixel decoded yet)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError(f"{path}: image file not found" if not path.is_dir() else f"{path}: is a folder")
    try:
        with _no_pil_bomb_check():
            im = Image.open(path)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: cannot read image ({exc.__class__.__name__}: {exc})") from exc
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise InputError(f"{path}: image is {w}x{h}, more than the limit of {max_pixels} pixels")
    if min(w, h) < MIN_SIDE:
        im.close()
        raise InputError(f"{path}: image is {w}x{h}, too small (need at least {MIN_SIDE} px per side)")
    return im


class _no_pil_bomb_check:
    """Our own pixel limit (``max_pixels``) is the one that applies; PIL's global one is lifted
    while opening, so the error is always ours, with the numbers."""

    def __enter__(self):
        from PIL import Image

        self.before = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None

    def __exit__(self, *exc):
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = self.before


def probe_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Size and mode of an image from its header, with the checks of :func:`load_image`."""
    path = Path(path)
    with _open_checked(path, max_pixels) as im:
        w, h = im.size
        try:
            orientation = im.getexif().get(0x0112, 1)
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"{path}: cannot read image ({exc.__class__.__name__}: {exc})") from exc
        if orientation in (5, 6, 7, 8):
            w, h = h, w
        return ImageInfo(path, w, h, im.mode)


def _to_uint8(im) -> np.ndarray:
    """Any PIL mode -> (H, W, 3) uint8 RGB. 16- and 32-bit greys are scaled to 8 bits (not clipped);
    float images in [0, 1] are scaled by 255; alpha is composited on white."""
    from PIL import Image

    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        grey = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16"):
            top = 65535.0
        elif mode == "F":
            top = 1.0 if grey.size and np.nanmax(grey) <= 1.0 else 255.0
        else:  # 32-bit integer: PNG/TIFF 16-bit greys arrive this way in some Pillow versions
            peak = float(grey.max()) if grey.size else 0.0
            top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
        grey = np.clip(np.nan_to_num(grey) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "P", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def load_image(
    path: str | os.PathLike,
    max_side: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB.

    EXIF orientation is applied; grey (8, 16 or 32 bit, scaled), palette, CMYK and alpha images become
    RGB (alpha composited on white).
    max_side: if given, downscale (area interpolation) so the longer side is at most this.
    Raises InputError when the file is missing, not an image, truncated, smaller than 16 px on a side,
    or larger than ``max_pixels``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with _open_checked(path, max_pixels) as im:
            with _no_pil_bomb_check():
                im = ImageOps.exif_transpose(im)
                image = _to_uint8(im)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: cannot read image ({exc.__class__.__name__}: {exc})") from exc
    h, w = image.shape[:2]
    if max_side is not None and max(h, w) > max_side:
        import cv2

        scale = max_side / max(h, w)
        image = cv2.resize(
            image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
    return image


def save_image(path: str | os.PathLike, image_rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB image (format from the suffix), via a temporary file and rename.
    A file-system failure raises OutputError naming ``path``."""
    from PIL import Image

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(image_rgb, dtype=np.uint8)).save(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write the image ({os_error_reason(exc)})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
