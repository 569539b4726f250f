"""`fantasy-portrait inspect` with bad inputs, and the promise that it refuses exactly what `animate`
refuses (the same option checks, the same face checks, the same one error line)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from command_helpers import assert_error, huge_png, leftovers, make_driver, make_portrait, run

ASSETS = Path(__file__).resolve().parents[2].parent / "shared" / "assets"


@pytest.fixture
def media(tmp_path):
    return {
        "p0": make_portrait(tmp_path / "none.png", 0),
        "p1": make_portrait(tmp_path / "one.png", 1),
        "p2": make_portrait(tmp_path / "two.png", 2),
        "g16": make_portrait(tmp_path / "grey16.png", 2, mode="I;16"),
        "v1": make_driver(tmp_path / "one.mp4", 1, frames=5),
        "v2": make_driver(tmp_path / "two.mp4", 2, frames=5),
        "v3": make_driver(tmp_path / "three.mp4", 3, frames=5, size=(96, 160)),
        "gap": make_driver(tmp_path / "gap.mp4", 1, frames=40, hidden={0: range(10, 25)}),
        "text": tmp_path / "notes.mp4",
    }


# (portrait, drivers, extra options): inputs both commands must refuse.
SHARED = {
    "portrait without faces": ("p0", ["v1"], []),
    "video with more faces": ("p2", ["v3"], []),
    "video with fewer faces": ("p2", ["v1"], []),
    "more videos than faces": ("p1", ["v1", "v1"], []),
    "map names a missing face": ("p2", ["v2"], ["--map", "0:0,1:5"]),
    "map leaves a driver out": ("p2", ["v2"], ["--map", "0:1"]),
    "map malformed": ("p2", ["v2"], ["--map", "0=1"]),
    "map negative": ("p2", ["v2"], ["--map=-1:0"]),
    "face boxes malformed": ("p2", ["v2"], ["--face-boxes", "1,2,3,x"]),
    "face boxes outside": ("p2", ["v2"], ["--face-boxes", "0,0,500,500"]),
    "max frames": ("p1", ["v1"], ["--max-frames", "0"]),
    "negative fps": ("p1", ["v1"], ["--fps", "-5"]),
    "image pixels": ("p1", ["v1"], ["--max-image-pixels", "100"]),
    "not a video": ("p1", ["text"], []),
    "a long gap": ("p1", ["gap"], ["--max-frames", "40"]),
}


@pytest.mark.parametrize("case", sorted(SHARED))
def test_inspect_refuses_what_animate_refuses(case, media, tiny_weights, tmp_path, capsys, monkeypatch):
    from fantasy_portrait.pipeline.pipeline import FantasyPortraitPipeline

    media["text"].write_text("not a video")
    portrait, drivers, extra = SHARED[case]
    files = [media[d] for d in drivers]
    inspect = assert_error(
        run(capsys, "inspect", media[portrait], *files, "--backend", "stub", "--max-frames", "5", *extra)
    )
    # animate stops at the same point with the same line (its models are not needed to know that)
    loaded = []
    real = FantasyPortraitPipeline.from_pretrained.__func__

    def from_pretrained(cls, *a, **k):
        loaded.append(1)
        return real(cls, *a, **k)

    monkeypatch.setattr(FantasyPortraitPipeline, "from_pretrained", classmethod(from_pretrained))
    args = ["animate", media[portrait], *files, "--weights", tiny_weights, "-o", tmp_path / "o.mp4"]
    args += ["--face-backend", "stub", "--max-frames", "5", "--steps", "1", "--max-size", "64", *extra]
    animate = assert_error(run(capsys, *args))
    assert inspect == animate
    assert not (tmp_path / "o.mp4").exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("mode", ["I;16", "P", "LA", "CMYK", "1"])
def test_deep_and_odd_colour_portraits_are_read_right(mode, media, tmp_path, capsys):
    """16-bit grey is scaled (saturated, the portrait was all white and had no face), palette, alpha,
    CMYK and bilevel images become RGB: the stub finds both faces in every one."""
    path = make_portrait(tmp_path / ("odd.tif" if mode == "CMYK" else "odd.png"), 2, mode=mode)
    result = run(capsys, "inspect", path, media["v2"], "--backend", "stub", "--max-frames", "5", "--json")
    assert result.code == 0, result.err
    assert '"portrait_faces": [{"index": 0' in result.out and '{"index": 1' in result.out


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--num-faces", "0"], "--num-faces must be >= 1"),
        (["--min-coverage", "0"], "--min-coverage must be in (0, 1]"),
        (["--backend", "nosuch"], "--backend 'nosuch': unknown"),
        (["--fps", "fast"], "--fps"),
    ],
)
def test_inspect_options(args, needle, media, capsys):
    assert_error(run(capsys, "inspect", media["p1"], media["v1"], *args), needle)


def test_bad_files_and_preview_folder(media, tmp_path, capsys):
    bomb = huge_png(tmp_path / "bomb.png")
    assert_error(
        run(capsys, "inspect", bomb, media["v1"], "--backend", "stub"), "bomb.png", "more than the limit"
    )
    (tmp_path / "afile").write_text("x")
    line = assert_error(
        run(capsys, "inspect", media["p1"], media["v1"], "--backend", "stub", "-o", tmp_path / "afile")
    )
    assert "afile: exists and is not a folder" in line
    # a failure after the preview folder was created removes it again
    out = tmp_path / "preview"
    assert_error(
        run(capsys, "inspect", media["p1"], media["v1"], "--backend", "stub", "-o", out, "--pd-fgc", bomb)
    )
    assert not out.exists() and not leftovers(tmp_path)


def test_interrupted_preview_leaves_nothing(media, tmp_path, capsys, monkeypatch):
    from fantasy_portrait.faces import draw

    real = draw.draw_tracks
    calls = []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(draw, "draw_tracks", interrupted)
    out = tmp_path / "preview"
    result = run(
        capsys, "inspect", media["p1"], media["v1"], "--backend", "stub", "--max-frames", "5", "-o", out
    )
    assert_error(result, "interrupted (SIGTERM)", code=143)
    assert not out.exists() and not leftovers(tmp_path)


@pytest.mark.skipif(
    not ASSETS.is_dir(), reason="needs ../shared/assets (real media for the real face library)"
)
def test_real_face_library_prints_nothing_of_its_own(tmp_path):
    """MediaPipe's native log lines (W0000 ..., absl, TFLite) are silenced by default, in a fresh
    process, and the error line is the last line even after the face stack ran."""
    cmd = [sys.executable, "-m", "fantasy_portrait.cli", "inspect", str(ASSETS / "fp_man.jpeg")]
    env = {k: v for k, v in os.environ.items() if k not in ("GLOG_minloglevel", "TF_CPP_MIN_LOG_LEVEL")}
    ok = subprocess.run(
        [*cmd, str(ASSETS / "lp_d0.mp4"), "--max-frames", "3", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert "W0000" not in ok.stderr and "absl" not in ok.stderr and "TensorFlow" not in ok.stderr, ok.stderr
    bad = subprocess.run(
        [*cmd, str(ASSETS / "lp_d0.mp4"), str(ASSETS / "lp_d12.mp4")], capture_output=True, text=True, env=env
    )
    lines = [line.rsplit("\r", 1)[-1] for line in bad.stderr.splitlines() if line.rsplit("\r", 1)[-1].strip()]
    assert bad.returncode == 2 and lines[-1].startswith("error: ") and len(lines) == 1, bad.stderr


@pytest.mark.parametrize("kind", ["truncated", "pickle that runs code", "wrong shapes"])
def test_bad_motion_encoder_weights(kind, media, tiny_weights, tmp_path, capsys):
    import torch
    from command_helpers import code_running_pickle

    weights, marker = tmp_path / "pd_fpg.pth", tmp_path / "pwned"
    if kind == "truncated":
        weights.write_bytes((tiny_weights / "pd_fpg.pth").read_bytes()[:4000])
    elif kind == "pickle that runs code":
        code_running_pickle(weights, marker)
    else:
        state = torch.load(tiny_weights / "pd_fpg.pth", weights_only=True)
        key = next(k for k, v in state.items() if v.ndim >= 2)
        state[key] = torch.zeros(2, 2)
        torch.save(state, weights)
    out = tmp_path / "preview"
    args = [
        "inspect",
        media["p1"],
        media["v1"],
        "--backend",
        "stub",
        "--max-frames",
        "5",
        "--pd-fgc",
        weights,
    ]
    line = assert_error(run(capsys, *args, "-o", out), "pd_fpg.pth")
    assert not marker.exists() and not out.exists() and not leftovers(tmp_path)
    assert ("refused" in line) == (kind == "pickle that runs code") and "weights_only" not in line
