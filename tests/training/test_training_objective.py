"""The flow-matching objective: conventions shared with the sampler, timestep law, condition dropout."""

from __future__ import annotations

import math

import torch

from fantasy_portrait.pipeline.schedule import NUM_TRAIN_TIMESTEPS, euler_step, flow_match_sigmas
from fantasy_portrait.training.objective import (
    ObjectiveConfig,
    draw_batch,
    model_timestep,
    noisy_latents,
    velocity_target,
)


def test_velocity_target_integrates_back_to_the_data_with_the_sampler():
    # If the model returned the exact target at every noise level, the sampler's Euler steps from
    # pure noise must land on the clean latents: this pins the sign and the time direction.
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 16, 2, 4, 4, generator=g)
    eps = torch.randn(z.shape, generator=g)
    sigmas = flow_match_sigmas(7).tolist() + [0.0]
    x = noisy_latents(z, eps, torch.tensor([sigmas[0]]))
    assert torch.allclose(x, eps)  # sigma 1 is pure noise
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        x_expected = noisy_latents(z, eps, torch.tensor([s]))
        assert torch.allclose(x, x_expected, atol=1e-5)
        x = euler_step(x, velocity_target(z, eps), s, s_next)
    assert torch.allclose(x, z, atol=1e-5)
    assert torch.allclose(model_timestep(torch.tensor([0.25])), torch.tensor([0.25 * NUM_TRAIN_TIMESTEPS]))


def test_timesteps_are_logit_normal_with_the_configured_parameters():
    cfg = ObjectiveConfig(logit_mean=0.5, logit_std=0.8)
    draws = draw_batch(3, 0, list(range(4000)), (1,), cfg)
    logits = torch.logit(draws.t.double())
    assert 0.0 < float(draws.t.min()) and float(draws.t.max()) < 1.0
    # Standard errors: 0.8/sqrt(4000) = 0.013 for the mean; about 0.009 for the std.
    assert abs(float(logits.mean()) - 0.5) < 0.05
    assert abs(float(logits.std()) - 0.8) < 0.04


def test_condition_dropout_rates_are_point_two_and_independent():
    n = 20000
    draws = draw_batch(11, 5, list(range(n)), (1,), ObjectiveConfig())
    drops = torch.stack([~draws.keep_image, ~draws.keep_motion, ~draws.keep_prompt]).double()
    tol = 4 * math.sqrt(0.2 * 0.8 / n)  # four standard errors: 0.0113
    for rate in drops.mean(dim=1):
        assert abs(float(rate) - 0.2) < tol
    # Independence: every pair is dropped together at 0.04 and all three at 0.008.
    for i in range(3):
        for j in range(i + 1, 3):
            assert abs(float((drops[i] * drops[j]).mean()) - 0.04) < 4 * math.sqrt(0.04 * 0.96 / n)
    assert abs(float(drops.prod(dim=0).mean()) - 0.008) < 4 * math.sqrt(0.008 * 0.992 / n)


def test_draws_depend_on_the_slot_not_on_how_the_batch_is_split():
    cfg = ObjectiveConfig()
    whole = draw_batch(1, 9, [0, 1, 2, 3], (16, 2, 4, 4), cfg)
    halves = [draw_batch(1, 9, [0, 1], (16, 2, 4, 4), cfg), draw_batch(1, 9, [2, 3], (16, 2, 4, 4), cfg)]
    assert torch.equal(whole.noise, torch.cat([h.noise for h in halves]))
    assert torch.equal(whole.t, torch.cat([h.t for h in halves]))
    other_step = draw_batch(1, 10, [0, 1, 2, 3], (16, 2, 4, 4), cfg)
    assert not torch.equal(whole.noise, other_step.noise)
