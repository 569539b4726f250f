"""Tiny motion encoder with the PD-FGC interface: shapes, weights file, identity-agnostic features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fantasy_portrait.errors import CheckpointError
from fantasy_portrait.synthetic.motion_encoder import (
    PART_NAMES,
    TARGET_NAMES,
    WEIGHTS_PATH,
    TinyMotionEncoder,
    TinyMotionEncoderConfig,
    TrainOptions,
    aligned_crops,
    identity_agnostic_ratio,
    load_motion_encoder,
    motion_features,
    predict_motion,
    render_pairs,
    save_motion_encoder,
    train_motion_encoder,
)
from fantasy_portrait.synthetic.params import MOTION_NAMES, neutral_motion, random_identity
from fantasy_portrait.synthetic.render import Character, Scene, render_frame

# Stated bound for the shipped weights: mean feature distance between identities performing the
# same motion is below half the distance between different motions.
SHIPPED_RATIO_BOUND = 0.5


def test_interface_matches_pd_fgc_parts_and_widths():
    from fantasy_portrait.motion.encoder import MotionFeatures

    small = TinyMotionEncoder(TinyMotionEncoderConfig(crop_size=48, part_dims=(3, 4, 5, 7))).eval()
    out = small(torch.zeros(2, 3, 48, 48))
    assert [o.shape for o in out] == [(2, 3), (2, 4), (2, 5), (2, 7)]
    assert small.features(torch.zeros(2, 3, 48, 48)).shape == (2, 19)
    default = TinyMotionEncoder().eval()
    feats = default.features(torch.zeros(3, 3, 64, 64))
    parts = MotionFeatures.from_tensor(feats.detach())  # a valid 554-wide PD-FGC motion vector
    assert parts.mouth.shape == (3, 512)


def test_save_load_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    model = TinyMotionEncoder(TinyMotionEncoderConfig(part_dims=(6, 6, 8, 16))).eval()
    path = save_motion_encoder(tmp_path / "enc.safetensors", model)
    back = load_motion_encoder(path)
    assert back.config == model.config
    x = torch.randn(2, 3, 64, 64)
    # float16 storage: equal within half-precision rounding.
    torch.testing.assert_close(back.features(x), model.features(x), atol=2e-2, rtol=2e-2)
    with pytest.raises(CheckpointError):
        load_motion_encoder(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError):
        load_motion_encoder(tmp_path / "bad.safetensors")


def test_shipped_weights_are_small_identity_agnostic_and_read_the_motion():
    assert WEIGHTS_PATH.stat().st_size < 2_000_000
    model = load_motion_encoder()
    ratio = identity_agnostic_ratio(model, num_motions=12, num_identities=5, seed=777)
    assert ratio["all"] < SHIPPED_RATIO_BOUND
    assert set(ratio) == {"all", *PART_NAMES}
    # Read-outs follow the parameters on held-out renders.
    val = render_pairs(60, seed=4242)
    pred = predict_motion(model, val.crops_a)
    names = [n for p in PART_NAMES for n in TARGET_NAMES[p]]
    for name in ("yaw", "pitch", "mouth_open", "smile"):
        k = names.index(name)
        assert np.corrcoef(pred[:, k], val.targets[:, k])[0, 1] > 0.8, name


def test_motion_features_of_a_clip_follow_yaw():
    model = load_motion_encoder()
    idt = random_identity(5)
    scene = Scene((Character(idt, (0.5, 0.47), 0.3),), 80, 80)
    frames, points = [], []
    for yaw in (-25.0, 0.0, 25.0):
        m = neutral_motion()
        m[MOTION_NAMES.index("yaw")] = yaw
        f = render_frame(scene, m[None])
        frames.append(f.image)
        points.append(f.five_points[0])
    feats = motion_features(model, np.stack(frames), np.stack(points))
    assert feats.shape == (3, model.config.feature_dim)
    yaw_pred = predict_motion(model, aligned_crops(np.stack(frames), np.stack(points), 64))[:, 0]
    assert yaw_pred[0] < yaw_pred[1] < yaw_pred[2]


@pytest.mark.slow
def test_training_from_scratch_makes_features_identity_agnostic():
    options = TrainOptions(
        num_pairs=300,
        steps=150,
        batch_size=32,
        lr=3e-3,
        config=TinyMotionEncoderConfig(
            channels=(8, 16, 16, 32), trunk_dim=64, head_hidden=64, part_dims=(6, 6, 8, 16)
        ),
    )
    torch.manual_seed(0)
    untrained = TinyMotionEncoder(options.config).eval()
    before = identity_agnostic_ratio(untrained, num_motions=8, num_identities=4, seed=99)["all"]
    model, log = train_motion_encoder(options)
    after = identity_agnostic_ratio(model, num_motions=8, num_identities=4, seed=99)["all"]
    history = log["history"]
    assert history[-1]["regression"] < 0.6 * history[0]["regression"]
    assert before > 0.85
    assert after < before - 0.2
