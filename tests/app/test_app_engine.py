"""What the app does without the page (AppEngine): previews, mapping, runs with progress per stage and
step, cancellation, the loaded pipeline reused with nothing leaking between runs; example folders;
the CLI's one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fantasy_portrait.app import RunCancelled
from fantasy_portrait.app.examples import SYNTHETIC, WEIGHTS, folder_examples
from fantasy_portrait.errors import FantasyPortraitError, InputError
from fantasy_portrait.io import probe_video, read_video


@pytest.fixture(scope="module")
def example(engine):
    return engine.example(engine.example_names()[0])


def test_preview_numbers_the_faces_and_a_new_mapping_redraws(engine, example, monkeypatch):
    from PIL import Image

    p = engine.preview(example.portrait, example.driving, fps=25)
    assert [f.index for f in p.plan.portrait_faces] == [0, 1]
    assert p.mapping_text == "0:0,1:1" and p.plan.num_frames == 17
    with Image.open(p.portrait_png) as im:
        assert im.size == (1024, 512)  # the 128x64 portrait enlarged 8x so the numbers can be read
        drawn = np.asarray(im)
    info = probe_video(p.drivers_mp4)
    assert info.num_frames == 17 and info.height == 256 + 20  # both drivers side by side + captions
    assert "driver 1: driver_2.mp4" in p.summary
    assert engine.preview(example.portrait, example.driving, fps=25) is p  # same files: from the cache
    assert engine.preview(example.portrait, example.driving, fps=12.5).plan.num_frames == 9

    import fantasy_portrait.faces.plan as faces_plan

    def no_tracking(*args, **kwargs):
        raise AssertionError("a new mapping must not detect or track again")

    monkeypatch.setattr(faces_plan, "plan_faces", no_tracking)
    monkeypatch.setattr(faces_plan, "track_faces", no_tracking)
    q = engine.remap(p, "0:1,1:0")
    assert q.plan.mapping == [1, 0] and q.mapping_text == "0:1,1:0"
    with Image.open(q.portrait_png) as im:
        assert not np.array_equal(np.asarray(im), drawn)  # captions and colours follow the mapping
    assert "-> portrait face 1" in q.summary.splitlines()[4]
    with pytest.raises(FantasyPortraitError, match="two driving faces"):
        engine.remap(p, "0:1,1:1")
    assert engine.remap(q, "").plan.mapping == [0, 1]
    r = engine.remap(p, "0:1,1:-")  # driving face 1 unused: portrait face 0 keeps still
    assert r.mapping_text == "0:1,1:-" and [d.index for d in r.plan.unused] == [1]
    assert "driver 1: driver_2.mp4" in r.summary and "-> unused" in r.summary
    assert "portrait face(s) 0 keep still" in r.summary


def test_inputs_are_checked_before_any_work(engine, example):
    with pytest.raises(InputError, match="upload a portrait"):
        engine.preview(None, example.driving)
    with pytest.raises(InputError, match="driving videos"):
        engine.preview(example.portrait, [])
    with pytest.raises(InputError, match="unknown model"):
        engine.pipeline("nonsense")
    assert list(engine.models()) == [WEIGHTS, SYNTHETIC]  # the released weights first when configured


def test_runs_report_progress_cancel_and_leave_nothing_behind(engine, example):
    from fantasy_portrait.pipeline.settings import AnimationSettings

    settings = AnimationSettings(
        **{**example.settings, "window_frames": None, "num_steps": 2, "progress": False}
    )
    args = ("synthetic", str(example.portrait), [str(d) for d in example.driving], settings)
    reports = []
    first = engine.run(*args, report=lambda f, d: reports.append((f, d)), truth=example.truth)
    frames = read_video(first.result).frames
    assert frames.shape == (17, 64, 128, 3) and first.summary["num_frames"] == 17
    descs = [d for _, d in reports]
    stages = [d.split(": ")[1] for d in descs if d.startswith("stage ")]
    assert stages == [
        "inputs",
        "faces",
        "motion",
        "motion tokens",
        "encode",
        "text",
        "denoise",
        "decode+write",
    ]
    assert [f for f, d in reports if d == "denoise"] == [(1, 2), (2, 2)]
    assert probe_video(first.side_by_side).width > 3 * 128  # drivers | result | ground truth
    assert json.loads((first.folder / "summary.json").read_text())["settings"]["num_steps"] == 2

    def cancel_at_first_step(fraction, desc):
        if desc == "denoise":
            assert engine.cancel("tab-1")

    runs_before = {p.name for p in engine.workdir.glob("run_*")}
    with pytest.raises(RunCancelled, match="cancelled at step 1 of 2"):
        engine.run(*args, session="tab-1", report=cancel_at_first_step)
    cancelled = [p for p in engine.workdir.glob("run_*") if p.name not in runs_before]
    assert len(cancelled) == 1 and not any(cancelled[0].iterdir())  # nothing written
    assert not engine._run_lock.locked() and not engine.cancel("tab-1")  # free, nothing left to cancel

    again = engine.run(*args)  # the same loaded pipeline: same seed, same video
    assert np.array_equal(read_video(again.result).frames, frames)
    assert engine.pipeline("synthetic") is engine.pipeline("synthetic")


def test_example_folders(tmp_path):
    for name in ("duo.png", "duo.mp4", "duo_2.mp4", "solo.jpg", "other.mp4"):
        (tmp_path / name).write_bytes(b"")
    found = folder_examples(tmp_path)
    assert [(e.portrait.name, [d.name for d in e.driving]) for e in found] == [
        ("duo.png", ["duo.mp4", "duo_2.mp4"])
    ]
    (tmp_path / "examples.json").write_text(
        json.dumps(
            [{"name": "pair", "portrait": "solo.jpg", "driving": ["other.mp4"], "settings": {"seed": 3}}]
        )
    )
    (e,) = folder_examples(tmp_path)
    assert (e.name, e.model, e.settings) == ("pair", WEIGHTS, {"seed": 3})
    (tmp_path / "examples.json").write_text(json.dumps([{"portrait": "missing.png", "driving": []}]))
    with pytest.raises(InputError, match="entry 0: file\\(s\\) not found"):
        folder_examples(tmp_path)


def test_cli_errors_are_one_line(capsys, tmp_path):
    from fantasy_portrait.cli import main

    assert main(["app", "--port", "70000"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: --port must be in 1..65535, got 70000"
    assert main(["app", "--weights", str(tmp_path / "none")]) == 2
    assert "weight folder not found" in capsys.readouterr().err
