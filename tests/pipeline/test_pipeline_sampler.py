"""The pipeline's own sampling loop and guidance against the reference 3-step loop (golden case e)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from fantasy_portrait.models.config import PRESETS
from fantasy_portrait.models.loading import load_portrait_checkpoint, load_wan_transformer
from fantasy_portrait.models.motion_attention import MotionCondition
from fantasy_portrait.pipeline.sampler import (
    Conditions,
    GuidedDenoiser,
    blend_weights,
    latent_windows,
    sample,
)

TINY = PRESETS["tiny"]  # the golden tiny sizes: one definition (models.config)


@pytest.fixture(scope="module")
def tiny_model(golden_dir):
    transformer = load_wan_transformer(golden_dir / "wan_tiny", motion_dim=TINY.encoder.token_dim)
    load_portrait_checkpoint(golden_dir / "portrait_tiny.safetensors", transformer)
    return transformer


@pytest.fixture(scope="module")
def case(golden_dir):
    return load_file(str(golden_dir / "sampler.safetensors"))


def _conditions(case):
    motion = MotionCondition([case["adapter_proj"]])
    return Conditions(case["y"][None], case["clip_fea"], case["context"], motion)


@pytest.mark.parametrize("batch_branches", [True, False])
def test_three_step_loop_matches_reference(tiny_model, case, batch_branches):
    denoiser = GuidedDenoiser(
        tiny_model, _conditions(case), motion_guidance=4.0, batch_branches=batch_branches
    )
    seen = []
    out = sample(denoiser, case["noise"], 3, callback=lambda i, x: seen.append(x.clone()))
    for i in range(2):
        torch.testing.assert_close(seen[i], case[f"step{i + 1}_latents_in"], atol=5e-4, rtol=0)
    torch.testing.assert_close(out, case["final_latents"], atol=5e-4, rtol=0)
    assert denoiser.calls == (3 if batch_branches else 6)


def test_noise_from_seed_matches_reference(case):
    noise = torch.randn(
        (1, 16, 5, 8, 8), generator=torch.Generator("cpu").manual_seed(42), dtype=torch.float32
    )
    assert torch.equal(noise, case["noise"])


def test_windowed_velocity_equals_single_pass_when_window_covers_clip(tiny_model, case):
    one = GuidedDenoiser(tiny_model, _conditions(case), window=None)
    same = GuidedDenoiser(tiny_model, _conditions(case), window=5)
    t = torch.tensor([900.0])
    torch.testing.assert_close(one(case["noise"], t), same(case["noise"], t))


def test_windowed_velocity_blends_every_frame(tiny_model, case):
    den = GuidedDenoiser(tiny_model, _conditions(case), window=3, overlap=1)
    assert den.windows == [[0, 1, 2], [0, 2, 3], [0, 3, 4]]
    v = den(case["noise"], torch.tensor([900.0]))
    assert v.shape == case["noise"].shape and torch.isfinite(v).all()
    # frame 0 comes from window 0 only: equal to a single window-0 pass there
    full = GuidedDenoiser(tiny_model, _conditions(case), window=None)
    sub = case["noise"][:, :, :3]
    cond = _conditions(case)
    cond0 = Conditions(
        cond.y[:, :, :3], cond.image, cond.text, MotionCondition([case["adapter_proj"][:, :3]])
    )
    v0 = GuidedDenoiser(tiny_model, cond0)(sub, torch.tensor([900.0]))
    torch.testing.assert_close(v[:, :, 0], v0[:, :, 0])
    assert not torch.allclose(v, full(case["noise"], torch.tensor([900.0])))


@pytest.mark.parametrize("num_latent,window,overlap", [(5, 3, 1), (20, 6, 2), (76, 21, 5), (9, 4, 3)])
def test_windows_cover_all_frames_with_weights_summing_positive(num_latent, window, overlap):
    windows = latent_windows(num_latent, window, overlap)
    weights = blend_weights(windows, num_latent)
    total = torch.zeros(num_latent)
    for idx, w in zip(windows, weights):
        assert len(idx) == window and idx == sorted(idx) and len(set(idx)) == len(idx)
        total.index_add_(0, torch.tensor(idx), w)
    assert (total > 0).all()
    for k in range(1, len(windows)):
        assert windows[k][0] == 0 and weights[k][0] == 0  # anchor is never blended from later windows
        assert len(set(windows[k - 1][1:]) & set(windows[k][1:])) >= 1


def test_windows_slice_the_clip_cache_or_recompute_alike(tiny_model, case):
    t = torch.tensor([900.0])
    velocities = {}
    for cache in (True, False):
        cond = _conditions(case)
        cond.motion.cache_kv = cache
        den = GuidedDenoiser(tiny_model, cond, window=3, overlap=1)
        with torch.no_grad():
            velocities[cache] = den(case["noise"], t)
        if cache:  # keys/values computed once for all 5 latent frames, shared by the 3 windows
            assert len(cond.motion._kv) == 2 and all(k.shape[1] == 5 for k, _ in cond.motion._kv.values())
        else:
            assert not cond.motion._kv
    torch.testing.assert_close(velocities[True], velocities[False])
