"""`fantasy-portrait precompute` with bad inputs: one `error:` line (the last), exit 2, no set left."""

from __future__ import annotations

import os
import shutil

import pytest
from command_helpers import assert_error, code_running_pickle, leftovers, make_driver, run

GOOD_LINE = '{"id": "a", "video": "a.mp4", "tracks": "a.safetensors"}'
MANIFESTS = {
    "missing": (None, "manifest not found"),
    "empty": ("", "lists no clips"),
    "not JSON": ("{id: a}\n", "m.jsonl:1: bad manifest line"),
    "JSON list": ('["a.mp4", "a.safetensors"]\n', "m.jsonl:1: bad manifest line"),
    "JSON text": ('"a.mp4"\n', "expected a JSON object"),
    "missing keys": ('{"id": "a"}\n', "m.jsonl:1"),
    "path not text": ('{"video": 3, "tracks": null}\n', "must be file names"),
    "second line bad": (GOOD_LINE + "\n[1, 2]\n", "m.jsonl:2"),
    "duplicate ids": (GOOD_LINE + "\n" + GOOD_LINE + "\n", "duplicate clip id"),
    "not utf-8": (b'{"id": "caf\xe9"}\n', "not a UTF-8 text file"),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_malformed_manifests_are_refused_before_loading(case, tmp_path, capsys):
    text, needle = MANIFESTS[case]
    manifest = tmp_path / "m.jsonl"
    if text is not None:
        manifest.write_bytes(text if isinstance(text, bytes) else text.encode())
    # No weights given at all: the manifest is checked first, so its error is the one reported.
    line = assert_error(
        run(capsys, "precompute", manifest, tmp_path / "set", "--weights", tmp_path / "nope"), needle
    )
    assert "m.jsonl" in line
    assert not (tmp_path / "set").exists()


@pytest.mark.parametrize(
    "option,needle",
    [
        (["--height", "100"], "multiples of 16"),
        (["--max-frames", "10"], "4k+1"),
        (["--shard-size", "0"], "shard_size"),
        (["--fps", "0"], "--fps must be > 0"),
        (["--fps", "-25"], "--fps must be > 0"),
        (["--height", "abc"], "--height"),
    ],
)
def test_options_out_of_range(option, needle, tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(GOOD_LINE + "\n")
    assert_error(
        run(capsys, "precompute", manifest, tmp_path / "set", "--weights", tmp_path / "nope", *option), needle
    )
    assert not (tmp_path / "set").exists()


def test_output_that_is_a_file(tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(GOOD_LINE + "\n")
    (tmp_path / "set").write_text("a file")
    assert_error(run(capsys, "precompute", manifest, tmp_path / "set"), "set: exists and is not a folder")


def _weights_copy(tiny_weights, tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    for f in tiny_weights.iterdir():
        os.symlink(f, folder / f.name)
    return folder


@pytest.mark.parametrize(
    "kind", ["missing folder", "truncated VAE", "VAE pickle that runs code", "not a VAE"]
)
def test_bad_weights(kind, tiny_weights, tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(GOOD_LINE + "\n")
    weights = tmp_path / "nope" if kind == "missing folder" else _weights_copy(tiny_weights, tmp_path)
    marker = tmp_path / "pwned"
    vae = weights / "Wan2.1_VAE.pth"
    if kind != "missing folder":
        vae.unlink()
    if kind == "truncated VAE":
        vae.write_bytes((tiny_weights / "Wan2.1_VAE.pth").read_bytes()[:4096])
    elif kind == "VAE pickle that runs code":
        code_running_pickle(vae, marker)
    elif kind == "not a VAE":
        shutil.copy(tiny_weights / "pd_fpg.pth", vae)
    line = assert_error(run(capsys, "precompute", manifest, tmp_path / "set", "--weights", weights))
    assert ("nope" if kind == "missing folder" else "Wan2.1_VAE.pth") in line
    assert not marker.exists()
    if kind == "VAE pickle that runs code":
        assert "refused" in line and "weights_only=False" not in line
    assert not (tmp_path / "set").exists()


def test_no_readable_clip_leaves_no_set(tiny_weights, tmp_path, capsys):
    make_driver(tmp_path / "a.mp4", frames=5)
    (tmp_path / "a.safetensors").write_bytes(b"not tracks")  # every clip fails -> nothing precomputed
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(GOOD_LINE + "\n")
    out = tmp_path / "set"
    args = ["precompute", manifest, out, "--weights", tiny_weights, "--height", "32", "--width", "32"]
    assert_error(
        run(capsys, *args, "--max-frames", "5", "--dtype", "float32"), "no clip could be precomputed"
    )
    assert not out.exists() and not leftovers(tmp_path)
