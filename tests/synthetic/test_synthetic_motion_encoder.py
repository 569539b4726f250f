"""Tiny motion encoder with the PD-FGC interface: shapes, weights file, identity-agnostic features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fantasy_portrait.errors import CheckpointError
from fantasy_portrait.synthetic.motion_encoder import (
    DISENTANGLED_WEIGHTS_PATH,
    GROUP_SLOTS,
    PART_MOTION_NAMES,
    PART_NAMES,
    TARGET_NAMES,
    WEIGHTS_PATH,
    DisentangleOptions,
    TinyMotionEncoder,
    TinyMotionEncoderConfig,
    TrainOptions,
    aligned_crops,
    identity_agnostic_ratio,
    load_motion_encoder,
    motion_features,
    part_invariance,
    part_r2_table,
    predict_motion,
    render_pairs,
    render_part_groups,
    resolve_weights,
    same_part_slots,
    save_motion_encoder,
    train_disentangled_motion_encoder,
    train_motion_encoder,
)
from fantasy_portrait.synthetic.params import MOTION_NAMES, MOTION_PARTS, neutral_motion, random_identity
from fantasy_portrait.synthetic.render import Character, Scene, render_frame

# Stated bound for the shipped weights: mean feature distance between identities performing the
# same motion is below half the distance between different motions.
SHIPPED_RATIO_BOUND = 0.5
TARGET_NAMES_FLAT = [n for p in PART_NAMES for n in TARGET_NAMES[p]]


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


# ------------------------------------------------------------------------------- part disentanglement
def test_parts_partition_the_renderer_parameters():
    names = [n for p in PART_NAMES for n in PART_MOTION_NAMES[p]]
    assert sorted(names) == sorted(MOTION_NAMES) and len(names) == len(set(names))
    for p in PART_NAMES:  # every read-out target of a part is one of its parameters
        assert set(TARGET_NAMES[p]) <= set(PART_MOTION_NAMES[p])
    assert same_part_slots(PART_NAMES.index("mouth")) == [0, 2, 3, 4]


def test_render_part_groups_change_one_part_per_slot():
    groups = render_part_groups(3, seed=11, crop_size=48)
    assert groups.crops.shape == (3, len(GROUP_SLOTS), 48, 48, 3)
    assert groups.targets.shape == (3, len(GROUP_SLOTS), len(TARGET_NAMES_FLAT))
    m = groups.motion
    np.testing.assert_array_equal(m[:, 1], m[:, 0])  # the other identity performs the base motion
    for k, part in enumerate(PART_NAMES):
        changed = m[:, 2 + k] != m[:, 0]
        idx = np.arange(len(MOTION_NAMES))
        inside = (idx >= MOTION_PARTS[part].start) & (idx < MOTION_PARTS[part].stop)
        assert not changed[:, ~inside].any(), part
        assert changed[:, inside].any(), part
    # The renders differ where the motion differs (slot 2 + head: another pose of the same face).
    assert np.abs(groups.crops[:, 2].astype(int) - groups.crops[:, 0]).mean() > 1


def test_part_r2_table_separates_own_and_other_parameters():
    rng = np.random.default_rng(0)
    n, dims = 600, (3, 4, 5, 6)
    targets = rng.uniform(-1, 1, (n, 4)).astype(np.float32)
    clean = np.concatenate([np.outer(targets[:, k], rng.normal(size=d)) for k, d in enumerate(dims)], 1)
    clean += 0.05 * rng.normal(size=clean.shape)
    r2 = part_r2_table(clean, targets, dims)
    assert r2.shape == (4, 4)
    assert np.diag(r2).min() > 0.95
    assert r2[~np.eye(4, dtype=bool)].max() < 0.1  # nothing to read (below 0: worse than the mean)
    leaky = clean.copy()
    leaky[:, 3:7] += np.outer(targets[:, 0], np.ones(4))  # the second part also carries the first's
    assert part_r2_table(leaky, targets, dims)[1, 0] > 0.9


def test_disentangled_weights_are_selectable_small_and_default_unchanged():
    from fantasy_portrait.synthetic.tiny_model import SyntheticMotionEncoder

    assert resolve_weights(None) == WEIGHTS_PATH == resolve_weights("default")
    assert resolve_weights("disentangled") == DISENTANGLED_WEIGHTS_PATH
    assert DISENTANGLED_WEIGHTS_PATH.stat().st_size < 2_000_000
    new = load_motion_encoder("disentangled")
    assert new.config == load_motion_encoder().config  # same PD-FGC widths: a drop-in replacement
    x = torch.randn(2, 3, 64, 64)
    assert not torch.allclose(new.features(x), load_motion_encoder().features(x))
    torch.testing.assert_close(
        SyntheticMotionEncoder(path=DISENTANGLED_WEIGHTS_PATH).network.features(x), new.features(x)
    )
    torch.testing.assert_close(
        SyntheticMotionEncoder().network.features(x), load_motion_encoder().features(x)
    )


def test_disentangled_encoder_keeps_other_parts_out_and_reads_its_own():
    # Ratios are means over the groups: a single odd group moves them, so use a few dozen.
    held_out = render_part_groups(32, seed=31337)
    shipped = part_invariance(load_motion_encoder(), held_out)
    new_model = load_motion_encoder(DISENTANGLED_WEIGHTS_PATH)
    new = part_invariance(new_model, held_out)
    assert new["loss"] < shipped["loss"] - 1.0
    for part in PART_NAMES:  # eye and emotion were the most entangled of the shipped encoder (issue 15)
        assert new[part] < 0.5 * shipped[part], part
    # Still identity-agnostic, and the read-outs follow their own parameters on held-out renders.
    assert identity_agnostic_ratio(new_model, num_motions=12, num_identities=5, seed=777)["all"] < 0.5
    val = render_pairs(60, seed=4242)
    pred = predict_motion(new_model, val.crops_a)
    for name in ("yaw", "pitch", "mouth_open", "smile"):
        k = TARGET_NAMES_FLAT.index(name)
        assert np.corrcoef(pred[:, k], val.targets[:, k])[0, 1] > 0.8, name


@pytest.mark.slow
def test_part_invariance_term_keeps_other_parts_out_when_training():
    config = TinyMotionEncoderConfig(
        channels=(8, 16, 16, 32), trunk_dim=64, head_hidden=64, part_dims=(6, 6, 8, 16)
    )
    data = render_part_groups(120, seed=5)
    held_out = render_part_groups(16, seed=6)
    scores = {}
    for weight in (0.0, 0.3):
        options = DisentangleOptions(
            steps=150, batch_size=16, lr=3e-3, part_invariance_weight=weight, config=config
        )
        model, log = train_disentangled_motion_encoder(options, data)
        assert log["history"][-1]["regression"] < 0.7 * log["history"][0]["regression"]
        scores[weight] = part_invariance(model, held_out)["loss"]
    assert scores[0.3] < scores[0.0] - 0.3
