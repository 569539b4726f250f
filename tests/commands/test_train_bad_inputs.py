"""`fantasy-portrait train` with bad inputs: one `error:` line (the last), exit 2, no run folder left."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from command_helpers import assert_error, code_running_pickle, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from training_fixtures import tiny_config_dict, write_tiny_set  # noqa: E402


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    return write_tiny_set(tmp_path_factory.mktemp("set") / "set", num_samples=2)


def _config(tmp_path, text: str | bytes, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


CONFIGS = {
    "missing": (None, "not found"),
    "empty": ("", "data.root"),
    "not a mapping": ("- model\n- data\n", "expected a mapping of sections"),
    "section as a list": ("data: [root, set]\n", "section 'data' must be a mapping"),
    "value of the wrong type": (
        "data: {root: set}\ntrain: {max_steps: [3]}\n",
        "train.max_steps: expected a whole number",
    ),
    "boolean as a number": ("data: {root: set}\ntrain: {cpu: 2}\n", "train.cpu: expected true or false"),
    "unknown section": ("data: {root: set}\nmodle: {}\n", "unknown section"),
    "unknown key": ("data: {root: set, rot: 1}\n", "unknown key(s) ['rot']"),
    "out of range": ("data: {root: set}\nobjective: {drop_image: 1.5}\n", "drop_image must be in [0, 1]"),
    "yaml syntax": ("data: {root: set\ntrain: [\n", "not valid YAML"),
    "yaml tab": ("data:\n\troot: set\n", "line 2, column 1"),
    "not utf-8": ("data: {root: caf\xe9}\n".encode("latin-1"), "not a UTF-8 text file"),
    "binary": (bytes(range(256)) * 4, "cfg.yaml"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_malformed_configs(case, tmp_path, capsys):
    text, needle = CONFIGS[case]
    path = tmp_path / "cfg.yaml" if text is None else _config(tmp_path, text)
    line = assert_error(run(capsys, "train", path), needle)
    assert "cfg.yaml" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if text is None else ["cfg.yaml"])


@pytest.mark.parametrize(
    "override,needle",
    [
        ("train.max_steps", "section.key=value"),
        ("max_steps=3", "section.key=value"),
        ("train.max_steps=[1", "not a valid YAML value"),
        ("train.max_steps=many", "train.max_steps: expected a whole number"),
        ("optim.lr=-", "optim.lr: expected a number"),
    ],
)
def test_malformed_overrides(override, needle, tiny_set, tmp_path, capsys):
    path = _config(tmp_path, yaml.safe_dump(tiny_config_dict(tiny_set, tmp_path / "run")))
    assert_error(run(capsys, "train", path, "--set", override), needle)
    assert not (tmp_path / "run").exists()


def test_missing_or_broken_precomputed_set(tiny_set, tmp_path, capsys):
    path = _config(tmp_path, yaml.safe_dump(tiny_config_dict(tmp_path / "nowhere", tmp_path / "run")))
    assert_error(run(capsys, "train", path), "nowhere", "precompute")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "index.json").write_text("{not json")
    path = _config(tmp_path, yaml.safe_dump(tiny_config_dict(broken, tmp_path / "run")), "cfg2.yaml")
    assert_error(run(capsys, "train", path), "index.json")
    assert not (tmp_path / "run").exists()


def test_truncated_shard(tiny_set, tmp_path, capsys):
    import shutil

    copy = tmp_path / "set"
    shutil.copytree(tiny_set, copy)
    import json

    shard = copy / json.loads((copy / "index.json").read_text())["shards"][0]
    shard.write_bytes(shard.read_bytes()[:200])
    path = _config(
        tmp_path, yaml.safe_dump(tiny_config_dict(copy, tmp_path / "run", **{"train.max_steps": 1}))
    )
    assert_error(run(capsys, "train", path), "no readable samples")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["truncated", "pickle that runs code", "wrong model"])
def test_bad_initial_weights(kind, tiny_set, tmp_path, capsys):
    init = tmp_path / "init.ckpt"
    marker = tmp_path / "pwned"
    if kind == "truncated":
        import torch

        torch.save({"proj_model.norm.weight": torch.ones(8)}, init)
        init.write_bytes(init.read_bytes()[:100])
    elif kind == "pickle that runs code":
        code_running_pickle(init, marker)
    else:
        import torch

        torch.save({"something.else": torch.ones(3)}, init)
    cfg = tiny_config_dict(tiny_set, tmp_path / "run")
    cfg["model"]["portrait_init"] = str(init)
    path = _config(tmp_path, yaml.safe_dump(cfg))
    line = assert_error(run(capsys, "train", path), "init.ckpt")
    assert not marker.exists()
    if kind == "pickle that runs code":
        assert "refused" in line and "weights_only=False" not in line
