"""The synthetic world's judge network and the follow / leak scores of the demo and the ablation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fantasy_portrait.errors import CheckpointError
from fantasy_portrait.synthetic.demo import follow_leak
from fantasy_portrait.synthetic.judge import (
    SEED_BASE,
    TARGET_ORDER,
    WEIGHTS_PATH,
    box_crops,
    evaluate,
    load_judge,
    render_judge_set,
)
from fantasy_portrait.synthetic.motion_encoder import targets_of


def _motions(clips, frames=17, faces=2, seed=0):
    from fantasy_portrait.synthetic.performance import random_performance

    rng = np.random.default_rng(seed)
    return [np.stack([random_performance(frames, rng) for _ in range(faces)], axis=1) for _ in range(clips)]


def test_follow_and_leak_slopes_recover_a_known_mixture():
    motions = _motions(12)
    rng = np.random.default_rng(1)

    def estimates(own_weight, other_weight):
        out = []
        for m in motions:
            t = targets_of(m[1:])  # (F-1, 2, 13)
            est = own_weight * t + other_weight * t[:, ::-1] + rng.normal(0, 0.01, t.shape)
            out.append(est.transpose(1, 0, 2) + rng.normal(0, 1, (2, 1, 13)))  # per-face offsets drop out
        return out

    exact = follow_leak(estimates(1.0, 0.0), motions)
    assert exact["follow"] == pytest.approx(1.0, abs=0.02) and exact["leak"] == pytest.approx(0.0, abs=0.02)
    swapped = follow_leak(estimates(0.0, 1.0), motions)
    assert swapped["follow"] == pytest.approx(0.0, abs=0.02) and swapped["leak"] == pytest.approx(
        1.0, abs=0.02
    )
    mixed = follow_leak(estimates(0.6, 0.3), motions)
    assert mixed["follow"] == pytest.approx(0.6, abs=0.03) and mixed["leak"] == pytest.approx(0.3, abs=0.03)
    assert set(mixed["per_parameter"]) == set(TARGET_ORDER)
    # Averaged over chosen parameters only: the others may do anything.
    t0 = [targets_of(m[1:]).transpose(1, 0, 2) for m in motions]
    noisy = [t.copy() for t in t0]
    for t in noisy:
        t[:, :, 1:] = t[:, ::-1, 1:]  # every parameter but yaw copies the other face
    chosen = follow_leak(noisy, motions, ("yaw",))
    assert chosen["parameters"] == ["yaw"] and chosen["follow"] == pytest.approx(1.0, abs=0.02)
    assert chosen["leak"] == pytest.approx(0.0, abs=0.02)
    with pytest.raises(ValueError, match="two or more faces"):
        follow_leak([np.zeros((1, 16, 13))], [m[:, :1] for m in motions[:1]])


def test_box_crops_centre_the_box_with_the_margin():
    frame = np.zeros((64, 96, 3), np.uint8)
    frame[20:40, 50:70] = 255  # a 20x20 white box centred at (60, 30)
    crop = box_crops(frame[None], np.array([[50, 20, 70, 40]], np.float64), 50)[0]
    # side = 1.25 * 20 = 25 px -> 2x scale: the white square covers the central 40x40 of 50x50
    assert crop[25, 25].min() == 255 and crop[2, 2].max() == 0
    white = (crop[..., 0] > 127).sum()
    assert abs(white - 40 * 40) <= 2 * 40 * 2


def test_shipped_judge_reads_held_out_renders_far_better_than_the_mean():
    judge = load_judge()
    data = render_judge_set(10, SEED_BASE + 50_000, judge.config.crop_size, jitter=0.0)
    scores = evaluate(judge, data)
    clean, base = scores["clean"], scores["constant_predictor"]
    # Held-out record: yaw 0.14, pitch 0.29, mouth_open 0.35 of the best constant's error; gaze_x,
    # brows, smile 0.55-0.75; blinks, pucker, gaze_y, squint, mouth width not read (0.9-1.07).
    for name in ("yaw", "pitch", "mouth_open"):
        assert clean[name] < 0.5 * base[name], (name, clean[name], base[name])
    for name in ("gaze_x", "brow_raise", "smile"):
        assert clean[name] < 0.85 * base[name], (name, clean[name], base[name])
    assert {"yaw", "pitch", "mouth_open", "gaze_x", "brow_raise"} <= set(judge.readable)
    assert not {"blink_left", "gaze_y", "mouth_width"} & set(judge.readable)
    record = json.loads(WEIGHTS_PATH.with_suffix(".json").read_text())
    assert record["held_out_mae"]["clean"]["yaw"] < 0.1


def test_judge_file_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="missing.safetensors"):
        load_judge(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nope")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_judge(bad)


def test_judge_script_augments_with_latent_files_and_model_files(tmp_path):
    """--latent takes a latent state file (either kind) or a tiny model file (its latent)."""
    import importlib.util
    from pathlib import Path

    from safetensors.torch import save_file

    from fantasy_portrait.synthetic.latent import ConvLatent, LinearLatent
    from fantasy_portrait.synthetic.tiny_model import SHIPPED_MODELS, WEIGHTS_PATH, load_tiny_model

    script = Path(__file__).resolve().parents[2] / "scripts" / "train_synthetic_judge.py"
    spec = importlib.util.spec_from_file_location("train_synthetic_judge", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    linear = load_tiny_model(SHIPPED_MODELS["linear"])[2]
    state_file = tmp_path / "latent.safetensors"
    save_file({k: v.contiguous() for k, v in linear.state_dict().items()}, str(state_file))
    got = module.extra_latents([state_file, WEIGHTS_PATH])  # the default model has the conv latent
    assert isinstance(got[0], LinearLatent) and isinstance(got[1], ConvLatent)
    for a, b in zip(got[0].state_dict().values(), linear.state_dict().values()):
        assert (a == b).all()
