"""The tiny synthetic FantasyPortrait: linear latent, weight file, demo end to end, smoke training."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fantasy_portrait.errors import CheckpointError
from fantasy_portrait.synthetic.cases import NUM_FRAMES, make_case, to_video_tensor
from fantasy_portrait.synthetic.demo import GROUPS
from fantasy_portrait.synthetic.latent import LinearLatent, PatchImageEncoder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cases():
    return [make_case(100_000 + i) for i in range(3)]


@pytest.fixture(scope="module")
def latent(cases):
    return LinearLatent.fit([c.truth.frames for c in cases])


def test_cases_start_from_the_portrait_and_drivers_follow_the_same_motion(cases):
    case = cases[0]
    assert np.array_equal(case.truth.frames[0], case.portrait)
    assert case.truth.frames.shape == (NUM_FRAMES, 64, 128, 3)
    for i, drv in enumerate(case.drivers):
        assert np.array_equal(drv.motion[:, 0], case.motion[:, i])
    # faces stay inside their own column (masked attention needs separate regions)
    assert case.truth.boxes[:, 0, 2].max() < 64 < case.truth.boxes[:, 1, 0].min()
    again = make_case(100_000)
    assert np.array_equal(again.truth.frames, case.truth.frames)


def test_latent_has_the_wan_vae_shapes_and_stream_equals_whole(latent, cases):
    video = to_video_tensor(cases[1].truth.frames)
    z = latent.encode(video)
    assert z.shape == (1, 16, 5, 8, 16)  # the Wan VAE's shapes: 8x8 cells, 4x time, causal frame 0
    chunks = [video[:, :, :1]] + [video[:, :, 1 + 4 * k : 5 + 4 * k] for k in range(4)]
    torch.testing.assert_close(latent.encode_stream(iter(chunks)), z)
    whole = latent.decode(z)
    assert whole.shape == video.shape
    streamed = torch.cat(list(latent.decode_stream(z)), dim=2)
    torch.testing.assert_close(streamed, whole)
    # A still clip has the same latent in every latent frame (frame 0 is coded as a group of 4 copies).
    still = video[:, :, :1].expand(-1, -1, 9, -1, -1)
    zs = latent.encode(still)
    torch.testing.assert_close(zs[:, :, 0], zs[:, :, 1], atol=1e-5, rtol=0)
    # It keeps most of the variance of a clip it was not fitted on, far more than the mean alone.
    other = make_case(100_010).truth.frames
    assert latent.explained_variance([other]) > 0.8
    # More channels keep more (the 48-channel experiment in docs/demo.md); the state keeps the count.
    more = LinearLatent.fit([c.truth.frames for c in cases], z_dim=48)
    assert more.z_dim == 48 and more.explained_variance([other]) > latent.explained_variance([other]) + 0.02
    assert LinearLatent.from_state(more.state_dict()).z_dim == 48


def test_patch_image_encoder_shape_and_locality():
    enc = PatchImageEncoder()
    x = torch.zeros(2, 3, 64, 128)
    x[1, :, :16, :32] = 1.0  # top-left corner only
    out = enc(x)
    assert out.shape == (2, 16, 48)
    assert torch.all(out[0] == 0)
    assert out[1, 0].abs().sum() > 0 and torch.all(out[1, 1:] == 0)


def test_weight_file_round_trip_and_errors(tmp_path, latent):
    from fantasy_portrait.synthetic.tiny_model import build_models, load_tiny_model, save_tiny_model

    transformer, encoder = build_models(seed=3)
    path = save_tiny_model(tmp_path / "m.safetensors", transformer, encoder, latent, extra={"note": "x"})
    t2, e2, l2, extra = load_tiny_model(path)
    assert extra == {"note": "x"}
    motion = torch.randn(1, 5, 554)
    torch.testing.assert_close(e2(motion), encoder.eval()(motion))
    for (k, a), b in zip(transformer.state_dict().items(), t2.state_dict().values()):
        assert torch.equal(a, b), k
    torch.testing.assert_close(l2.basis, latent.basis)
    with pytest.raises(CheckpointError, match="not found"):
        load_tiny_model(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_tiny_model(tmp_path / "bad.safetensors")


def test_demo_runs_end_to_end_with_random_weights(tmp_path, latent):
    from fantasy_portrait.io.video import read_video
    from fantasy_portrait.synthetic.demo import run_demo
    from fantasy_portrait.synthetic.tiny_model import build_models

    transformer, encoder = build_models(seed=1)
    result = run_demo(
        tmp_path / "demo", models=(transformer.eval(), encoder.eval(), latent), num_steps=2, progress=False
    )
    for name in (
        "portrait",
        "driver_1",
        "driver_2",
        "ground_truth",
        "result",
        "side_by_side",
        "metrics",
        "table",
    ):
        assert result.files[name].is_file(), name
    video = read_video(result.files["result"]).frames
    assert video.shape == (NUM_FRAMES, 64, 128, 3)
    assert len(read_video(result.files["side_by_side"]).frames) == NUM_FRAMES
    summary = json.loads(result.files["metrics"].read_text())
    assert summary["faces"].startswith("detected by the face stack")
    m = summary["metrics"]
    assert set(m) == {"model", "repeat portrait", "paste driver", "ground truth via latent", "ground truth"}
    for row in m.values():
        assert len(row["faces"]) == 2
        assert all(np.isfinite(v) for v in row["mean"].values())
    # The metric itself is sane: the ground truth scores better than repeating the portrait.
    assert m["ground truth"]["mean"]["all"] < m["repeat portrait"]["mean"]["all"]
    assert m["ground truth"]["mean"]["psnr"] > 100
    assert m["ground truth"]["mean"]["ssim"] > 0.999 > m["repeat portrait"]["mean"]["ssim"]
    # The ground truth follows each face's own driver and not the other one; the still portrait neither.
    follow = summary["follow"]
    gt = follow["ground truth"]  # one short case: the slopes are rough (the benchmark pools 20)
    assert gt["follow"] > 0.3 and abs(gt["leak"]) < gt["follow"] / 2
    # (The still portrait is read in the moving ground-truth boxes, so its slopes are small, not zero.)
    assert abs(follow["repeat portrait"]["follow"]) < 0.1 and abs(follow["repeat portrait"]["leak"]) < 0.1
    assert set(follow["model"]["per_parameter"]) == {n for names in GROUPS.values() for n in names}
    assert "| model |" in result.files["table"].read_text()


def test_pipeline_runs_a_tiny_model_with_more_latent_channels(tmp_path, cases):
    """The pipeline takes the noise's channel count from the transformer (48-channel experiment)."""
    import dataclasses

    from fantasy_portrait.synthetic.demo import run_demo
    from fantasy_portrait.synthetic.tiny_model import TINY_WAN, build_models

    wan = dataclasses.replace(TINY_WAN, in_dim=2 * 48 + 4, out_dim=48)
    transformer, encoder = build_models(wan=wan, seed=2)
    latent = LinearLatent.fit([c.truth.frames for c in cases], z_dim=48)
    result = run_demo(
        tmp_path / "z48",
        models=(transformer.eval(), encoder.eval(), latent),
        num_steps=1,
        exact_boxes=True,
        progress=False,
    )
    assert result.metrics["model"]["mean"]["psnr"] > 0
    assert len(result.estimates["model"][0]) == NUM_FRAMES - 1


def test_shipped_model_reproduces_its_recorded_demo_metrics(tmp_path):
    from fantasy_portrait.synthetic.demo import run_demo
    from fantasy_portrait.synthetic.tiny_model import RECORD_PATH, WEIGHTS_PATH, motion_encoder_digest

    assert WEIGHTS_PATH.is_file() and RECORD_PATH.is_file()
    from fantasy_portrait.synthetic.tiny_model import shipped_weight_files

    files = shipped_weight_files()
    assert WEIGHTS_PATH in files and len(files) >= 3  # the tiny model(s), the motion encoder, the judge
    assert sum(f.stat().st_size for f in files) < 25e6  # the budget for all shipped weights
    record = json.loads(RECORD_PATH.read_text())
    trained_on = record.get("training", {}).get("motion_encoder")  # None: the shipped default encoder
    assert motion_encoder_digest(trained_on) == record["motion_encoder_sha256"], (
        "the synthetic motion encoder changed since the tiny model was trained on its features: "
        "retrain with scripts/train_synthetic_portrait.py"
    )
    result = run_demo(
        tmp_path / "demo",
        seed=record["seed"],
        num_steps=record["num_steps"],
        motion_guidance=record["motion_guidance"],
        progress=False,
    )
    for row in ("model", "repeat portrait", "paste driver", "ground truth via latent"):
        got, want = result.metrics[row]["mean"], record["metrics"][row]["mean"]
        for key, value in want.items():
            tol = 0.5 if key == "psnr" else 0.03  # detection and threads move the result a little
            assert abs(got[key] - value) <= tol, (row, key, got[key], value)


def _script():
    spec = importlib.util.spec_from_file_location(
        "train_synthetic_portrait", REPO / "scripts" / "train_synthetic_portrait.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_smoke_training_lowers_the_loss(tmp_path):
    """The training script's set + the project trainer, everything trainable, about a minute on CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster than two on a shared machine
    try:
        _smoke_training(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _smoke_training(tmp_path):
    from safetensors.torch import load_file

    from fantasy_portrait.synthetic.tiny_model import build_models
    from fantasy_portrait.training.dataset import PrecomputedDataset
    from fantasy_portrait.training.trainer import MotionTrainingModel, fixed_set_loss

    script = _script()
    script.build_set(tmp_path, samples=8, seed=0, fit_cases=8)
    config = tmp_path / "config.yaml"
    config.write_text((REPO / "configs" / "synthetic_portrait.yaml").read_text())
    overrides = [
        "train.max_steps=60",
        "train.save_every=60",
        "data.micro_batch=2",
        "optim.lr=0.002",
        "optim.warmup_steps=5",
    ]
    cfg, result = script.train(config, tmp_path, tmp_path / "set", overrides)
    assert result.final_step == 60
    dataset = PrecomputedDataset(tmp_path / "set")
    before = fixed_set_loss(MotionTrainingModel(*build_models(seed=cfg.model.init_seed)), dataset, cfg)
    weights = load_file(str(result.checkpoint / "trainable.safetensors"))
    assert any(k.startswith("transformer.blocks.0.attn1") for k in weights)  # the base is trained too
    model = MotionTrainingModel(*build_models(seed=cfg.model.init_seed))
    missing = model.load_state_dict(weights, strict=False).missing_keys
    assert not [k for k in missing if "rope" not in k]
    after = fixed_set_loss(model, dataset, cfg)
    assert after < 0.8 * before, (before, after)
