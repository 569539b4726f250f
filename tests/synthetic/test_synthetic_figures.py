"""The demo's contact sheet, motion plot, summary sentence and what the command prints about them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fantasy_portrait.synthetic.demo import summary_sentence
from fantasy_portrait.synthetic.figures import contact_sheet, motion_plot, open_file, sheet_frames


def _metrics(model_mae=0.2, model_psnr=18.0):
    def row(mae, psnr):
        face = {"all": mae, "psnr": psnr}
        return {"faces": [face, face], "mean": dict(face)}

    return {
        "model": row(model_mae, model_psnr),
        "repeat portrait": row(0.23, 17.6),
        "paste driver": row(0.15, 13.1),
    }


def _follow(follow=0.4, leak=0.0, truth_leak=0.0):
    return {"model": {"follow": follow, "leak": leak}, "ground truth": {"follow": 0.6, "leak": truth_leak}}


def test_summary_sentence_reflects_the_numbers():
    base = summary_sentence(_metrics(), _follow())
    assert base.count(".") >= 1 and base.endswith(".") and "\n" not in base
    assert "0.200" in base and "18.0 dB" in base and "(0.230)" in base and "(0.150)" in base
    assert "better than repeating the portrait (0.230) and worse than pasting the driver" in base
    assert "follows its own driver, not the other's" in base
    # Flip each comparison: the sentence changes with the numbers, not fixed text.
    better_motion = summary_sentence(_metrics(model_mae=0.1), _follow())
    assert (
        "better than repeating the portrait (0.230) and better than pasting the driver (0.150)"
        in better_motion
    )
    worse_psnr = summary_sentence(_metrics(model_psnr=12.0), _follow())
    assert (
        "12.0 dB is worse than repeating the portrait (17.6) and worse than pasting the driver (13.1)"
        in worse_psnr
    )
    assert "follow the other driver as well" in summary_sentence(_metrics(), _follow(0.4, 0.35))
    # ... measured against the ground truth's own leak on the same case.
    assert "not the other's" in summary_sentence(_metrics(), _follow(0.4, 0.35, truth_leak=0.3))
    assert "hardly follow" in summary_sentence(_metrics(), _follow(0.02, 0.0))
    assert len({base, better_motion, worse_psnr}) == 3


def test_contact_sheet_has_a_row_per_frame_and_a_column_per_input():
    f, h, w = 9, 64, 128
    rng = np.random.default_rng(0)
    drivers = [rng.integers(0, 255, (f, 96, 96, 3), dtype=np.uint8) for _ in range(2)]
    result = np.zeros((f, h, w, 3), np.uint8)
    truth = np.full((f, h, w, 3), 200, np.uint8)
    boxes = np.tile(np.array([[10, 10, 40, 50], [80, 10, 110, 50]], np.float32), (f, 1, 1))
    frames = sheet_frames(f, 3)
    assert frames == [0, 4, 8]
    sheet = contact_sheet(drivers, result, truth, boxes, frames, scale=2)
    rows = (sheet.shape[0] - 28) // (2 * h + 12)
    assert rows == 3
    # 2 driver tiles (h x h), result and truth (w wide), at scale 2, plus labels and gaps
    assert sheet.shape[1] >= 2 * (2 * h + w + w)
    captioned = contact_sheet(drivers, result, truth, boxes, frames, scale=2, caption="a caption " * 30)
    assert captioned.shape[0] > sheet.shape[0] and captioned.shape[1] == sheet.shape[1]
    # the result's column holds the (black) result, with the face boxes drawn in the faces' colours
    x0 = 70 + 2 * (2 * h + 12)
    tile = sheet[28 : 28 + 2 * h, x0 : x0 + 2 * w]
    assert (tile == 0).all(axis=-1).mean() > 0.8 and tile.max() > 0


def test_motion_plot_is_written(tmp_path):
    from PIL import Image

    from fantasy_portrait.synthetic.performance import random_performance

    rng = np.random.default_rng(0)
    motion = np.stack([random_performance(17, rng) for _ in range(2)], axis=1)
    est = rng.normal(0, 0.3, (2, 16, 13))
    path = motion_plot(tmp_path / "plot.png", est, motion, est * 0.5, title="t")
    assert path.is_file()
    with Image.open(path) as img:
        assert img.size[0] >= 600 and img.size[1] >= 400


def test_open_file_without_a_display_says_so(monkeypatch, tmp_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    import sys

    if sys.platform.startswith("linux"):
        assert open_file(tmp_path / "x.png") is False


@pytest.mark.slow
def test_demo_command_writes_and_prints_the_pictures(tmp_path, capsys):
    """The real command on the shipped model: the pictures exist, have the expected size, are printed."""
    from PIL import Image

    from fantasy_portrait.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--quiet", "--steps", "2", "--open"]) == 0
    text = capsys.readouterr().out
    for name, min_size in (("contact_sheet.png", (1000, 900)), ("motion_plot.png", (600, 400))):
        path = out / name
        assert path.is_file()
        assert str(path.resolve()) in text
        with Image.open(path) as img:
            assert img.size[0] >= min_size[0] and img.size[1] >= min_size[1], (name, img.size)
    assert "The tiny model animated the 2 faces" in text
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["summary"] in text
    # the sentence is the one the run's own numbers give
    assert summary["summary"] == summary_sentence(summary["metrics"], summary["follow"])
