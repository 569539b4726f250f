"""Bad inputs of `demo`, `synth`, `make-tiny-weights` and `info`: one `error:` line (the last), exit 2,
no output folder or file left behind."""

from __future__ import annotations

import os
import signal

import pytest
from command_helpers import assert_error, leftovers, run


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--steps", "0"], "--steps must be >= 1"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--seed", "x"], "--seed"),
    ],
)
def test_demo_options(args, needle, tmp_path, capsys):
    assert_error(run(capsys, "demo", "-o", tmp_path / "demo", *args), needle)
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("kind", ["truncated", "not safetensors", "missing"])
def test_demo_weights(kind, tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    if kind == "truncated":
        from fantasy_portrait.synthetic.tiny_model import WEIGHTS_PATH

        weights.write_bytes(WEIGHTS_PATH.read_bytes()[:1000])
    elif kind == "not safetensors":
        weights.write_text("hello")
    line = assert_error(run(capsys, "demo", "-o", tmp_path / "demo", "--weights", weights, "--quiet"))
    assert "w.safetensors" in line
    assert not (tmp_path / "demo").exists() and not leftovers(tmp_path)


def test_demo_output_that_is_a_file(tmp_path, capsys):
    (tmp_path / "demo").write_text("x")
    assert_error(run(capsys, "demo", "-o", tmp_path / "demo"), "demo: exists and is not a folder")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["render", "{t}/x.mp4", "--characters", "5"], "--characters must be 1 to 4"),
        (["render", "{t}/x.mp4", "--frames", "0"], "--frames must be at least 1"),
        (["render", "{t}/x.mp4", "--size", "big"], "--size"),
        (["render", "{t}/x.avi"], "must be a .mp4"),
        (["render", "{t}/afile/x.mp4"], "afile is a file)"),
        (["render", "{t}/x.png", "--frames", "3"], "needs --frames 1"),
        (["dataset", "{t}/set", "--characters", "a,b"], "--characters must be comma-separated numbers"),
        (["dataset", "{t}/afile"], "afile: exists and is not a folder"),
        (["dataset", "{t}/set", "--samples", "0"], "at least one sample"),
    ],
)
def test_synth(args, needle, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    args = [a.replace("{t}", str(tmp_path)) for a in args]
    assert_error(run(capsys, "synth", *args), needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_synth_dataset_interrupted_leaves_no_folder(tmp_path, capsys, monkeypatch):
    from fantasy_portrait.synthetic import dataset

    real = dataset.write_clip_video
    calls = []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(dataset, "write_clip_video", interrupted)
    result = run(
        capsys, "synth", "dataset", tmp_path / "set", "--samples", "3", "--frames", "2", "--size", "64x64"
    )
    assert_error(result, "interrupted (SIGTERM)", code=143)
    assert list(tmp_path.iterdir()) == []


def test_make_tiny_weights_and_info(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert_error(run(capsys, "make-tiny-weights", tmp_path / "afile"), "afile: exists and is not a folder")
    assert_error(run(capsys, "info", "--preset", "nosuch"), "--preset")
    assert_error(run(capsys, "animate"), "the following arguments are required")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
