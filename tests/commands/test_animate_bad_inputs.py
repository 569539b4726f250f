"""`fantasy-portrait animate` with bad inputs: exit 2 (130/143 when interrupted), one `error:` line that
is the last line and names the file or option, and no output or temporary file left.

Faces come from the stub backend (bright squares, tests/commands/command_helpers.py); the media are
built by code; the weights are the tiny random ones. Option and file errors must come before any
model is loaded or video decoded (both are made to fail loudly in those tests); the runs that get as
far as the models share one loaded tiny pipeline.
"""

from __future__ import annotations

import os
import shutil
import signal

import pytest
from command_helpers import (
    assert_error,
    audio_only,
    code_running_pickle,
    huge_png,
    leftovers,
    make_driver,
    make_portrait,
    run,
    video_without_frames,
)

FAST = ["--max-size", "64", "--steps", "1", "--max-frames", "1", "--no-progress", "--face-backend", "stub"]


@pytest.fixture
def media(tmp_path):
    """A one-face portrait and driver, a two-face portrait and driver, the output path."""
    return {
        "p1": make_portrait(tmp_path / "one.png", 1),
        "p2": make_portrait(tmp_path / "two.png", 2),
        "v1": make_driver(tmp_path / "one.mp4", 1, frames=5, audio=True),
        "v2": make_driver(tmp_path / "two.mp4", 2, frames=5),
        "v3": make_driver(tmp_path / "three.mp4", 3, frames=5, size=(96, 160)),
        "out": tmp_path / "out.mp4",
    }


@pytest.fixture
def nothing_loads(monkeypatch):
    """Loading models or decoding video fails the test: the error must come before both."""
    from fantasy_portrait.io import video
    from fantasy_portrait.pipeline.pipeline import FantasyPortraitPipeline

    def loaded(*a, **k):
        raise AssertionError("models were loaded before the bad input was refused")

    def decoded(*a, **k):
        raise AssertionError("video was decoded before the bad input was refused")

    monkeypatch.setattr(FantasyPortraitPipeline, "from_pretrained", classmethod(loaded))
    monkeypatch.setattr(video, "_decoded", decoded)


@pytest.fixture(scope="session")
def tiny_pipe(tiny_weights):
    from fantasy_portrait.pipeline.pipeline import FantasyPortraitPipeline

    return FantasyPortraitPipeline.from_pretrained(tiny_weights)


@pytest.fixture
def shared_pipe(monkeypatch, tiny_pipe, tiny_weights):
    """`animate --weights TINY` uses the session's loaded tiny pipeline (loading is the slow part)."""
    from fantasy_portrait.pipeline.pipeline import FantasyPortraitPipeline

    real = FantasyPortraitPipeline.from_pretrained.__func__

    def from_pretrained(cls, weights=None, **kwargs):
        if (
            str(weights) != str(tiny_weights)
            or kwargs.get("portrait_checkpoint")
            or kwargs.get("motion_checkpoint")
        ):
            return real(cls, weights, **kwargs)
        tiny_pipe.face_backend = kwargs.get("face_backend", "mediapipe")
        return tiny_pipe

    monkeypatch.setattr(FantasyPortraitPipeline, "from_pretrained", classmethod(from_pretrained))
    return tiny_pipe


def animate(capsys, image, videos, out, weights, *extra):
    args = ["animate", image, *videos, "-o", out, "--weights", weights, *FAST, *extra]
    return run(capsys, *args)


def assert_clean(folder, out, existed: bytes | None = None):
    """No temporary file anywhere; the output absent, or untouched if it existed before."""
    assert not leftovers(folder), leftovers(folder)
    if existed is None:
        assert not out.exists()
    else:
        assert out.read_bytes() == existed


# ------------------------------------------------------------------------------------------- files


def _bad_portrait(tmp_path, case):
    path = tmp_path / "portrait.png"
    if case == "missing":
        pass
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("not an image")
    elif case == "truncated":
        full = make_portrait(tmp_path / "full.png", 1, size=(256, 256))
        path.write_bytes(full.read_bytes()[:200])
    elif case == "a folder":
        path.mkdir()
    elif case == "tiny":
        make_portrait(path, 0, size=(8, 8))
    elif case == "decompression bomb":
        huge_png(path)
    return path


PORTRAITS = {
    "missing": "not found",
    "empty": "cannot read image",
    "text": "cannot read image",
    "truncated": "cannot read image",
    "a folder": "is a folder",
    "tiny": "too small",
    "decompression bomb": "more than the limit",
}


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize("case", sorted(PORTRAITS))
def test_bad_portrait_files(case, dry_run, media, tiny_weights, tmp_path, capsys, nothing_loads):
    path = _bad_portrait(tmp_path, case)
    extra = ["--dry-run"] if dry_run else []
    line = assert_error(
        animate(capsys, path, [media["v1"]], media["out"], tiny_weights, *extra), PORTRAITS[case]
    )
    assert "portrait.png" in line
    assert_clean(tmp_path, media["out"])


def _bad_video(tmp_path, case):
    path = tmp_path / "driver.mp4"
    if case == "missing":
        pass
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("not a video")
    elif case == "truncated":
        full = make_driver(tmp_path / "full.mp4", 1, frames=20)
        path.write_bytes(full.read_bytes()[:2000])
    elif case == "audio only":
        audio_only(path)
    elif case == "no frames":
        video_without_frames(path)
    elif case == "a folder":
        path.mkdir()
    return path


VIDEOS = {
    "missing": "not found",
    "empty": "cannot read video",
    "text": "cannot read video",
    "truncated": "driver.mp4",
    "audio only": "no video stream",
    "no frames": "driver.mp4",
    "a folder": "is a folder",
}


@pytest.mark.parametrize("case", sorted(VIDEOS))
def test_bad_driving_files(case, media, tiny_weights, tmp_path, capsys, nothing_loads):
    path = _bad_video(tmp_path, case)
    line = assert_error(animate(capsys, media["p1"], [path], media["out"], tiny_weights), VIDEOS[case])
    assert "driver.mp4" in line
    assert_clean(tmp_path, media["out"])


# ----------------------------------------------------------------------------------------- options

OPTIONS = {
    "map malformed": (["--map", "0-1"], "--map '0-1': expected DRIVING:PORTRAIT"),
    "map negative": (["--map=-1:0"], "numbered from 0"),
    "map twice": (["--map", "0:0,0:1"], "driving face 0 is given twice"),
    "map same target": (["--map", "0:1,1:1"], "two driving faces to portrait face 1"),
    "map empty": (["--map", ","], "--map is empty"),
    "face boxes malformed": (["--face-boxes", "1,2,3"], "--face-boxes '1,2,3'"),
    "face boxes inverted": (["--face-boxes", "50,50,10,10"], "x1 < x2"),
    "face boxes not finite": (["--face-boxes", "0,0,nan,9"], "--face-boxes"),
    "max frames": (["--max-frames", "0"], "--max-frames must be >= 1"),
    "steps": (["--steps", "0"], "--steps must be >= 1"),
    "fps": (["--fps", "-1"], "--fps must be >= 0"),
    "window": (["--window-frames", "10"], "--window-frames must be 0 or 4k+1"),
    "size small": (["--max-size", "10"], "--max-size must be >= 16"),
    "size huge": (["--max-size", "20000"], "more than the"),
    "device": (["--device", "toaster"], "--device 'toaster'"),
    "backend": (["--face-backend", "nosuch"], "--face-backend 'nosuch': unknown"),
    "dtype": (["--dtype", "fp64"], "--dtype"),
    "number text": (["--steps", "many"], "--steps"),
    "image pixels": (["--max-image-pixels", "100"], "more than the limit of 100 pixels"),
    "not mp4": (["-o", "out.avi"], "must be a .mp4 file"),
}


@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_bad_options_fail_before_loading(case, media, tiny_weights, tmp_path, capsys, nothing_loads):
    extra, needle = OPTIONS[case]
    assert_error(animate(capsys, media["p2"], [media["v2"]], media["out"], tiny_weights, *extra), needle)
    assert_clean(tmp_path, media["out"])


def test_dry_run_refuses_what_cannot_fit_with_the_numbers(
    media, tiny_weights, tmp_path, capsys, nothing_loads
):
    result = animate(
        capsys, media["p1"], [media["v1"]], media["out"], tiny_weights, "--dry-run", "--max-size", "20000"
    )
    line = assert_error(result, "GiB", "more than the", "--max-size")
    assert "would use" not in result.out
    ok = animate(capsys, media["p1"], [media["v1"]], media["out"], tiny_weights, "--dry-run")
    assert ok.code == 0 and "would use" in ok.out
    assert line


def test_a_mapping_naming_missing_faces_is_refused_before_tracking(
    media, tmp_path, capsys, shared_pipe, tiny_weights, monkeypatch
):
    """The portrait side of --map is checked right after the portrait's faces are found."""
    from fantasy_portrait.faces import plan

    def tracked(*a, **k):
        raise AssertionError("the driving video was tracked")

    monkeypatch.setattr(plan, "detect_video", tracked)
    out = media["out"]
    line = assert_error(animate(capsys, media["p2"], [media["v2"]], out, tiny_weights, "--map", "0:5,1:0"))
    assert "--map names portrait face 5, but the portrait has 2 (faces 0-1)" in line
    assert_clean(tmp_path, out)


# ------------------------------------------------------------------------------------------- faces

FACES = {
    "no face in the portrait": ("p0", ["v1"], [], "no face found"),
    "no face in the video": ("p1", ["v0"], [], "no face found in any of its"),
    "video with more faces": ("p2", ["v3"], [], "--map 0:0,1:1,2:-"),
    "video with fewer faces": ("p2", ["v1"], [], "the portrait has 2 face(s) but the driving input has 1"),
    "more videos than faces": ("p1", ["v1", "v1b"], [], "--map 0:0,1:-"),
    "mapping names a missing driver": (
        "p2",
        ["v2"],
        ["--map", "0:0,1:1,2:-"],
        "driving face 2, but the driving",
    ),
    "mapping leaves a driver out": ("p2", ["v2"], ["--map", "0:1"], "1:-"),
    "every driver unused": ("p2", ["v2"], ["--map", "0:-,1:-"], "every driving face unused"),
    "a long gap": ("p1", ["vgap"], [], "missing in frames"),
}


@pytest.mark.parametrize("case", sorted(FACES))
def test_face_problems(case, media, tmp_path, capsys, shared_pipe, tiny_weights):
    portrait, videos, extra, needle = FACES[case]
    files = dict(media)
    files["p0"] = make_portrait(tmp_path / "none.png", 0)
    files["v0"] = make_driver(tmp_path / "none.mp4", 0, frames=5)
    files["v1b"] = shutil.copy(media["v1"], tmp_path / "one_b.mp4")
    files["vgap"] = make_driver(tmp_path / "gap.mp4", 1, frames=40, hidden={0: range(10, 25)})
    args = [files[v] for v in videos]
    extra = [*extra, "--max-frames", "40"] if case == "a long gap" else extra
    line = assert_error(animate(capsys, files[portrait], args, media["out"], tiny_weights, *extra), needle)
    assert any(p.name in line for p in [files[portrait], *args]) or "--map" in line
    assert_clean(tmp_path, media["out"])


def test_more_faces_with_a_mapping_and_16_bit_grey_portrait_run(
    media, tmp_path, capsys, shared_pipe, tiny_weights
):
    """The working counterparts: a 3-face driver with a mapping leaving one unused, and a 16-bit grey
    portrait (scaled to 8 bits on loading, so its faces are found; saturated it would be all white)."""
    result = animate(
        capsys,
        media["p2"],
        [media["v3"]],
        media["out"],
        tiny_weights,
        "--map",
        "0:1,1:-,2:0",
        "--json",
    )
    assert result.code == 0, result.err
    import json

    summary = json.loads(result.out)
    assert summary["mapping"] == [1, 0] and [f["driver"] for f in summary["faces"]][0].endswith("#2")
    grey = make_portrait(tmp_path / "grey16.png", 1, mode="I;16")
    result = animate(capsys, grey, [media["v1"]], tmp_path / "grey.mp4", tiny_weights)
    assert result.code == 0, result.err
    assert (tmp_path / "grey.mp4").is_file() and not leftovers(tmp_path)


# ----------------------------------------------------------------------------------------- weights


def _weights(tiny_weights, tmp_path, broken: str, how: str):
    folder = tmp_path / "weights"
    folder.mkdir()
    for f in tiny_weights.iterdir():
        if f.name != broken:
            os.symlink(f, folder / f.name)
    target = folder / broken
    marker = tmp_path / "pwned"
    if how == "missing":
        pass
    elif how == "truncated":
        target.write_bytes((tiny_weights / broken).read_bytes()[:5000])
    elif how == "pickle that runs code":
        code_running_pickle(target, marker)
    elif how == "wrong shapes":
        import torch

        state = torch.load(tiny_weights / broken, weights_only=True)
        key = next(k for k, v in state.items() if getattr(v, "ndim", 0) >= 2)
        state[key] = torch.zeros(3, 3)
        torch.save(state, target)
    return folder, marker


WEIGHTS = [
    ("pd_fpg.pth", "missing"),
    ("pd_fpg.pth", "truncated"),
    ("pd_fpg.pth", "pickle that runs code"),
    ("pd_fpg.pth", "wrong shapes"),
    ("Wan2.1_VAE.pth", "pickle that runs code"),
    ("diffusion_pytorch_model.safetensors", "truncated"),
]


@pytest.mark.parametrize("broken,how", WEIGHTS, ids=[f"{b}-{h}" for b, h in WEIGHTS])
def test_bad_weights(broken, how, media, tiny_weights, tmp_path, capsys):
    folder, marker = _weights(tiny_weights, tmp_path, broken, how)
    line = assert_error(animate(capsys, media["p1"], [media["v1"]], media["out"], folder), broken)
    assert not marker.exists()
    if how == "pickle that runs code":
        assert "refused" in line and "weights_only" not in line
    assert_clean(tmp_path, media["out"])


# ----------------------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("case", ["folder missing", "a folder", "parent is a file"])
def test_unusable_output_paths(case, media, tiny_weights, tmp_path, capsys, nothing_loads):
    out = {
        "folder missing": tmp_path / "nowhere" / "out.mp4",
        "a folder": tmp_path / "adir.mp4",
        "parent is a file": tmp_path / "afile" / "out.mp4",
    }[case]
    if case == "a folder":
        out.mkdir()
    if case == "parent is a file":
        (tmp_path / "afile").write_text("x")
    line = assert_error(animate(capsys, media["p1"], [media["v1"]], out, tiny_weights))
    assert out.name in line
    assert not leftovers(tmp_path)


def _write_fails(monkeypatch, how):
    """Make the output's file system refuse the write (while muxing, or at the final rename)."""
    import av

    from fantasy_portrait.io import video

    if how == "rename":

        def refuse(src, dst):
            raise PermissionError(13, "Permission denied", str(dst))

        monkeypatch.setattr(video.os, "replace", refuse)
        return
    real_open = av.open

    class Refusing:
        def __init__(self, container):
            self._c = container

        def __getattr__(self, name):
            return getattr(self._c, name)

        def mux(self, packet):
            raise PermissionError(13, "Permission denied")

    def opened(path, mode="r", **kwargs):
        c = real_open(path, mode, **kwargs)
        return Refusing(c) if mode == "w" else c

    monkeypatch.setattr(av, "open", opened)


@pytest.mark.parametrize("how", ["mux", "rename"])
def test_write_failure_after_the_run(how, media, tmp_path, capsys, shared_pipe, tiny_weights, monkeypatch):
    media["out"].write_bytes(b"previous video")
    _write_fails(monkeypatch, how)
    line = assert_error(animate(capsys, media["p1"], [media["v1"]], media["out"], tiny_weights))
    assert "out.mp4: cannot write the video (Permission denied)" in line
    assert_clean(tmp_path, media["out"], existed=b"previous video")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_while_writing(sig, media, tmp_path, capsys, shared_pipe, tiny_weights, monkeypatch):
    from fantasy_portrait.pipeline import pipeline

    frames = pipeline._frames_from_latents

    def interrupted(chunks, num_frames):
        for i, frame in enumerate(frames(chunks, num_frames)):
            if i == 2:
                os.kill(os.getpid(), sig)
            yield frame

    monkeypatch.setattr(pipeline, "_frames_from_latents", interrupted)
    media["out"].write_bytes(b"previous video")
    before = signal.getsignal(signal.SIGTERM)
    # Ctrl-C as in a terminal: a shell starts background jobs (e.g. `nohup ... &`) with SIGINT ignored,
    # and then Python, rightly, raises nothing on it; the test must not depend on how it was launched.
    sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = animate(capsys, media["p1"], [media["v1"]], media["out"], tiny_weights, "--max-frames", "5")
    finally:
        signal.signal(signal.SIGINT, sigint)
    assert_error(result, f"interrupted ({sig.name})", code=128 + sig)
    assert_clean(tmp_path, media["out"], existed=b"previous video")
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the CLI's only while it runs
