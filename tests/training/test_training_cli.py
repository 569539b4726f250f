"""`fantasy-portrait train` and `precompute` on the command line: configs, overrides, user errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from training_fixtures import tiny_config_dict, write_tiny_set

from fantasy_portrait.cli import main
from fantasy_portrait.errors import InputError
from fantasy_portrait.training.config import load_config
from fantasy_portrait.training.trainer import read_loss_log


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_command_runs_a_config_with_overrides(tmp_path, capsys):
    data = write_tiny_set(tmp_path / "set", num_samples=4)
    raw = tiny_config_dict("set", "run")  # relative paths: resolved against the config's folder
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw))
    code = main(
        ["train", str(tmp_path / "cfg.yaml"), "--set", "train.max_steps=2", "--set", "train.eval_every=1"]
    )
    assert code == 0
    assert sorted(read_loss_log(tmp_path / "run")) == [1, 2]
    val = [json.loads(line) for line in (tmp_path / "run" / "val_losses.jsonl").read_text().splitlines()]
    assert [v["step"] for v in val] == [1, 2] and all(math.isfinite(v["val_loss"]) for v in val)
    assert val[0]["val_loss"] != val[1]["val_loss"]  # fixed draws: only the weights changed
    assert "step-00000002" in capsys.readouterr().out
    assert (tmp_path / "run" / "logs").is_dir()  # TensorBoard events
    cfg = load_config(tmp_path / "cfg.yaml", ["optim.lr=0.5"])
    assert cfg.data.root == str(data.resolve()) and cfg.optim.lr == 0.5


def test_config_errors_are_user_errors(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {"root": "x"}, "optim": {"learning_rate": 1}}))
    with pytest.raises(InputError, match="learning_rate"):
        load_config(bad)
    bad.write_text(yaml.safe_dump({"data": {"root": "x"}, "objective": {"drop_image": 1.5}}))
    with pytest.raises(InputError, match="drop_image"):
        load_config(bad)
    no_set = tmp_path / "noset.yaml"
    no_set.write_text(yaml.safe_dump({"data": {"root": "nowhere"}, "train": {"output_dir": "run"}}))
    assert main(["train", str(no_set)]) == 2
    assert "precompute" in capsys.readouterr().err


def test_precompute_command_reports_a_missing_weight_folder(tmp_path, capsys):
    (tmp_path / "m.jsonl").write_text('{"video": "a.mp4", "tracks": "a.safetensors"}\n')
    assert (
        main(
            [
                "precompute",
                str(tmp_path / "m.jsonl"),
                str(tmp_path / "out"),
                "--weights",
                str(tmp_path / "nope"),
            ]
        )
        == 2
    )
    assert "not found" in capsys.readouterr().err


def test_numbers_written_without_a_dot_are_numbers(tmp_path):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"data": {"root": "set"}}))
    cfg = load_config(tmp_path / "cfg.yaml", ["optim.lr=2e-3", "train.max_steps=10"])
    assert cfg.optim.lr == pytest.approx(2e-3) and isinstance(cfg.optim.lr, float)
    with pytest.raises(InputError, match="optim.lr: expected a number"):
        load_config(tmp_path / "cfg.yaml", ["optim.lr=fast"])


def test_train_base_makes_the_whole_model_trainable(tmp_path):
    from fantasy_portrait.models.loading import build_from_preset
    from fantasy_portrait.training.config import ModelSection
    from fantasy_portrait.training.trainer import MotionTrainingModel, mark_trainable

    transformer, encoder = build_from_preset("tiny", device="cpu")
    motion_only = {n for n, _ in mark_trainable(MotionTrainingModel(transformer, encoder), ModelSection())}
    transformer, encoder = build_from_preset("tiny", device="cpu")
    model = MotionTrainingModel(transformer, encoder)
    everything = {n for n, _ in mark_trainable(model, ModelSection(train_base=True))}
    assert "transformer.blocks.0.attn1.to_q.weight" in everything
    assert "transformer.blocks.0.attn1.to_q.weight" not in motion_only
    assert motion_only < everything and everything == {n for n, _ in model.named_parameters()}
