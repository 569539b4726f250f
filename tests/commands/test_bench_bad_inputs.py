"""`fantasy-portrait bench` with bad inputs: one `error:` line (the last), exit 2, no run folder left."""

from __future__ import annotations

import json

import pytest
from command_helpers import assert_error, code_running_pickle, make_driver, run

MANIFESTS = {
    "missing": (None, "manifest not found"),
    "not json": ("{cases: [", "not valid json"),
    "not toml": ("cases = [", "not valid toml"),
    "top level list": ("[1, 2]", "top level must be an object"),
    "no cases": ('{"cases": []}', "non-empty list 'cases'"),
    "case not an object": ('{"cases": [3]}', "case 0 must be an object"),
    "bad id": ('{"cases": [{"id": "a b", "mode": "self", "video": "v.mp4"}]}', "needs an 'id'"),
    "bad mode": ('{"cases": [{"id": "a", "mode": "other"}]}', "mode must be 'self' or 'cross'"),
    "missing video": ('{"cases": [{"id": "a", "mode": "self", "video": "none.mp4"}]}', "none.mp4 not found"),
    "faces not a number": (
        '{"cases": [{"id": "a", "mode": "cross", "portrait": "v.mp4", "drivers": ["v.mp4"], "faces": "two"}]}',
        "faces must be a positive number",
    ),
    "root not a path": ('{"root": 3, "cases": [{"id": "a", "mode": "self", "video": "v.mp4"}]}', "'root'"),
    "not utf-8": (b'{"name": "caf\xe9"}', "not a UTF-8 text file"),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_malformed_manifests(case, tmp_path, capsys):
    text, needle = MANIFESTS[case]
    make_driver(tmp_path / "v.mp4", frames=3)
    path = tmp_path / ("m.toml" if case == "not toml" else "m.json")
    if text is not None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    line = assert_error(
        run(capsys, "bench", "run", path, "-o", tmp_path / "run", "-m", "repeat-portrait"), needle
    )
    assert path.name in line
    assert not (tmp_path / "run").exists()


def _manifest(tmp_path):
    make_driver(tmp_path / "v.mp4", frames=5)
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"frames": 5, "cases": [{"id": "a", "mode": "self", "video": "v.mp4"}]}))
    return path


@pytest.mark.parametrize(
    "args,needle",
    [
        (["-m", "nosuch"], "unknown method 'nosuch'"),
        (["-m", "ours:missing.json"], "missing.json"),
        (["-m", "repeat-portrait", "--score", "--coeff-extractor", "no_module_xyz:f"], "no_module_xyz"),
    ],
)
def test_bad_methods(args, needle, tmp_path, capsys):
    manifest = _manifest(tmp_path)
    assert_error(run(capsys, "bench", "run", manifest, "-o", tmp_path / "run", *args), needle)
    assert not (tmp_path / "run").exists()


def test_run_folder_that_is_a_file_and_report_without_scores(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    (tmp_path / "run").write_text("a file")
    assert_error(
        run(capsys, "bench", "run", manifest, "-o", tmp_path / "run", "-m", "repeat-portrait"), "run"
    )
    assert (tmp_path / "run").read_text() == "a file"
    assert_error(run(capsys, "bench", "report", tmp_path / "nowhere"), "nowhere", "no scores")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("kind", ["truncated", "pickle that runs code"])
def test_bad_fid_weights(kind, tmp_path, capsys):
    from fantasy_portrait.bench.extractors import InceptionFeatures

    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    marker = tmp_path / "pwned"
    if kind == "truncated":
        import torch

        torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 3, 3)}, weights)
        weights.write_bytes(weights.read_bytes()[:300])
    else:
        code_running_pickle(weights, marker)
    from fantasy_portrait.errors import CheckpointError, error_line

    with pytest.raises(CheckpointError) as info:
        InceptionFeatures(weights)
    line = error_line(info.value)
    assert weights.name in line and not marker.exists()
    assert ("refused" in line) == (kind != "truncated") and "weights_only=False" not in line
