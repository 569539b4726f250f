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
