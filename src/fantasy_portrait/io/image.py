"""Image loading with validation: one RGB uint8 array or one clear error."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError

# Refuse images above this many pixels before decoding them fully (decompression bombs, 100 MP scans).
MAX_PIXELS = 80_000_000
MIN_SIDE = 16


def load_image(
    path: str | os.PathLike,
    max_side: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB.

    EXIF orientation is applied; grey, palette and alpha images become RGB (alpha composited on white).
    max_side: if given, downscale (area interpolation) so the longer side is at most this.
    Raises InputError when the file is missing, not an image, smaller than 16 px on a side, or larger
    than ``max_pixels``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise InputError(f"{path}: image is {w}x{h}, more than the limit of {max_pixels} pixels")
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "P", "PA"):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)
            image = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: cannot read image ({exc.__class__.__name__}: {exc})") from exc
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InputError(f"{path}: image is {w}x{h}, too small (need at least {MIN_SIDE} px per side)")
    if max_side is not None and max(h, w) > max_side:
        import cv2

        scale = max_side / max(h, w)
        image = cv2.resize(
            image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
    return image


def save_image(path: str | os.PathLike, image_rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB image (format from the suffix), via a temporary file and rename."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        Image.fromarray(np.asarray(image_rgb, dtype=np.uint8)).save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
