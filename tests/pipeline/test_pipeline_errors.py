"""Bad inputs: one clean `error:` line, exit code 2, no output file left behind."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from fantasy_portrait.cli import main

FAST = ["--max-size", "64", "--steps", "1", "--max-frames", "5", "--no-progress"]


def _fails(capsys, args, out_path, *needles):
    code = main(["animate", *args, *FAST, "-o", str(out_path)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert not out_path.exists()
    assert not [p for p in out_path.parent.glob("*.tmp*")]
    return errors[0]


def test_missing_weight_files_are_listed(tiny_weights, assets, tmp_path, capsys):
    partial = tmp_path / "weights"
    partial.mkdir()
    for f in tiny_weights.iterdir():
        if f.name not in ("Wan2.1_VAE.pth", "pd_fpg.pth"):
            os.symlink(f, partial / f.name)
    line = _fails(
        capsys,
        [str(assets / "fp_man.jpeg"), str(assets / "fp_jgz.mp4"), "--weights", str(partial)],
        tmp_path / "o.mp4",
        str(partial / "Wan2.1_VAE.pth"),
        str(partial / "pd_fpg.pth"),
    )
    assert "diffusion_pytorch_model" not in line  # only what is really missing


def test_weights_from_environment_and_none_given(assets, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FANTASY_PORTRAIT_WEIGHTS", raising=False)
    _fails(
        capsys,
        [str(assets / "fp_man.jpeg"), str(assets / "fp_jgz.mp4")],
        tmp_path / "o.mp4",
        "FANTASY_PORTRAIT_WEIGHTS",
    )
    monkeypatch.setenv("FANTASY_PORTRAIT_WEIGHTS", str(tmp_path / "nowhere"))
    _fails(capsys, [str(assets / "fp_man.jpeg"), str(assets / "fp_jgz.mp4")], tmp_path / "o.mp4", "nowhere")


def test_image_without_a_face(tiny_weights, assets, tmp_path, capsys):
    yy, xx = np.mgrid[0:256, 0:256]
    img = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    path = tmp_path / "gradient.png"
    Image.fromarray(img).save(path)
    _fails(
        capsys,
        [str(path), str(assets / "fp_jgz.mp4"), "--weights", str(tiny_weights)],
        tmp_path / "o.mp4",
        "no face",
        "--face-boxes",
    )


def test_wrong_face_counts_list_what_was_found(tiny_weights, assets, tmp_path, capsys):
    _fails(
        capsys,
        [str(assets / "fp_two_person.png"), str(assets / "fp_jgz.mp4"), "--weights", str(tiny_weights)],
        tmp_path / "o.mp4",
        "2 face(s)",
        "fp_jgz.mp4: 1 face",
        "--map",
    )


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 500])
def test_empty_or_corrupt_video(tiny_weights, assets, tmp_path, capsys, content):
    video = tmp_path / "broken.mp4"
    video.write_bytes(content)
    _fails(
        capsys,
        [str(assets / "fp_man.jpeg"), str(video), "--weights", str(tiny_weights)],
        tmp_path / "o.mp4",
        "broken.mp4",
    )


def test_image_larger_than_the_limit(tiny_weights, assets, tmp_path, capsys):
    _fails(
        capsys,
        [
            str(assets / "fp_man.jpeg"),
            str(assets / "fp_jgz.mp4"),
            "--weights",
            str(tiny_weights),
            "--max-image-pixels",
            "100000",
        ],
        tmp_path / "o.mp4",
        "fp_man.jpeg",
        "100000",
    )


def test_unwritable_output(tiny_weights, assets, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    _fails(
        capsys,
        [str(assets / "fp_man.jpeg"), str(assets / "fp_jgz.mp4"), "--weights", str(tiny_weights)],
        blocker / "out.mp4",
        "does not exist",
    )


def test_failure_during_writing_leaves_nothing(stub_pipe, synthetic_media, tmp_path, monkeypatch):
    """A crash in the middle of decoding must not leave a partial video (atomic write)."""
    from fantasy_portrait.pipeline import pipeline as pl

    def broken(chunks, num_frames):
        for i, frame in enumerate(pl_frames(chunks, num_frames)):
            if i == 3:
                raise RuntimeError("simulated failure while decoding")
            yield frame

    pl_frames = pl._frames_from_latents
    monkeypatch.setattr(pl, "_frames_from_latents", broken)
    out = tmp_path / "partial.mp4"
    with pytest.raises(RuntimeError, match="simulated"):
        stub_pipe(
            synthetic_media["portrait"],
            synthetic_media["driver"],
            output=out,
            max_frames=5,
            max_size=64,
            num_steps=1,
            progress=False,
        )
    assert not out.exists() and not list(tmp_path.iterdir())
