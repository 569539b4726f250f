"""Image loading: colour modes, size limits and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fantasy_portrait.errors import InputError
from fantasy_portrait.io import load_image, save_image


def test_modes_become_rgb(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (40, 50), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.shape == (40, 50, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[..., 0], grey)

    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:16, :, 3] = 255  # top half opaque red, bottom transparent -> white
    Image.fromarray(rgba).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert tuple(img[0, 0]) == (200, 0, 0)
    assert tuple(img[-1, -1]) == (255, 255, 255)


def test_max_side_and_roundtrip(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (100, 200, 3), dtype=np.uint8)
    save_image(tmp_path / "x.png", rgb)
    np.testing.assert_array_equal(load_image(tmp_path / "x.png"), rgb)
    assert load_image(tmp_path / "x.png", max_side=50).shape == (25, 50, 3)


def test_bad_images(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "none.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(InputError, match="bad.jpg: cannot read image"):
        load_image(tmp_path / "bad.jpg")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "tiny.png")
    with pytest.raises(InputError, match="too small"):
        load_image(tmp_path / "tiny.png")
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(InputError, match="limit"):
        load_image(tmp_path / "big.png", max_pixels=5000)


def test_deep_greys_are_scaled_not_saturated(tmp_path):
    """A 16-bit grey PNG (and 32-bit integer and float greys) become the same 8-bit picture: scaled
    to 0-255, never clipped to white."""
    ramp16 = np.linspace(0, 65535, 64 * 80).reshape(64, 80).astype(np.uint16)
    Image.fromarray(ramp16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    img = load_image(tmp_path / "g16.png")
    expected = np.round(ramp16 / 257).astype(np.uint8)
    assert img.dtype == np.uint8 and np.abs(img[..., 0].astype(int) - expected).max() <= 1
    assert img.min() == 0 and img.max() == 255 and 100 < img.mean() < 155  # a ramp, not a white sheet
    Image.fromarray(ramp16.astype(np.int32)).save(tmp_path / "g32.tif")
    assert np.abs(load_image(tmp_path / "g32.tif").astype(int) - img).max() <= 1
    Image.fromarray((ramp16 / 65535.0).astype(np.float32)).save(tmp_path / "gf.tif")
    assert np.abs(load_image(tmp_path / "gf.tif").astype(int) - img).max() <= 1


@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "CMYK", "I", "F"])
def test_odd_colour_modes_become_rgb(mode, tmp_path):
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[8:24, 12:36] = 255
    im = Image.fromarray(rgb).convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I", "F") else "x.png")
    im.save(path)
    img = load_image(path)
    assert img.shape == (32, 48, 3) and img.dtype == np.uint8
    assert img[16, 24].min() > 200 and img[2, 2].max() < 60  # the bright square stays where it was


def test_header_only_checks_refuse_decompression_bombs(tmp_path):
    """A PNG whose header claims 30000x30000 pixels is refused from its header, by probe_image and
    load_image alike, with our limit in the message (not PIL's DecompressionBombError)."""
    import struct
    import zlib

    from fantasy_portrait.io import probe_image

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 2, 0, 0, 0)
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    for read in (probe_image, load_image):
        with pytest.raises(InputError, match="bomb.png: image is 30000x30000, more than the limit"):
            read(path)
    save_image(tmp_path / "ok.png", np.zeros((20, 30, 3), np.uint8))
    info = probe_image(tmp_path / "ok.png")
    assert (info.width, info.height) == (30, 20)


def test_save_image_failure_is_an_output_error(tmp_path, monkeypatch):
    import os

    from fantasy_portrait.errors import OutputError
    from fantasy_portrait.io import image

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(image.os, "replace", refuse)
    with pytest.raises(OutputError, match="x.png: cannot write the image .Permission denied"):
        save_image(tmp_path / "x.png", np.zeros((20, 20, 3), np.uint8))
    assert os.listdir(tmp_path) == []
