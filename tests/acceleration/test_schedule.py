"""The step-distilled schedule and the sampling presets."""

from __future__ import annotations

import pytest
import torch

from fantasy_portrait.pipeline.schedule import (
    SAMPLING_PRESETS,
    check_sigmas,
    flow_match_sigmas,
    sampling_sigmas,
    step_distill_sigmas,
)


def test_distilled_sigmas_at_shift_5():
    sigmas = step_distill_sigmas()
    torch.testing.assert_close(sigmas, torch.tensor([1.0, 0.9375, 0.833333, 0.625]), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        sigmas * 1000, torch.tensor([1000.0, 937.5, 833.3333, 625.0]), atol=1e-3, rtol=0
    )


def test_distilled_sigmas_equal_diffusers_flow_match_euler_with_a_sigma_list():
    """diffusers' FlowMatchEulerDiscreteScheduler(shift=5) given the unshifted [1, .75, .5, .25] makes the
    same levels and appends the final 0."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0)
    scheduler.set_timesteps(sigmas=[1.0, 0.75, 0.5, 0.25])
    torch.testing.assert_close(scheduler.sigmas[:-1].float(), step_distill_sigmas(), atol=1e-6, rtol=0)
    assert float(scheduler.sigmas[-1]) == 0.0


def test_other_step_lists_and_shifts():
    # 8 distilled steps at shift 1: unshifted levels 1 - (1000 - t) / 1000.
    t = [1000, 875, 750, 625, 500, 375, 250, 125]
    torch.testing.assert_close(step_distill_sigmas(t, shift=1.0), torch.tensor(t, dtype=torch.float32) / 1000)
    with pytest.raises(ValueError):
        step_distill_sigmas([1200])


def test_sigma_lists_are_checked():
    assert sampling_sigmas(30).shape == (30,)
    torch.testing.assert_close(sampling_sigmas(7, 3.0), flow_match_sigmas(7, 3.0))
    assert sampling_sigmas(99, sigmas=[0.9, 0.5]).tolist() == pytest.approx([0.9, 0.5])
    for bad in ([], [0.5, 0.7], [1.2, 0.5], [0.5, 0.0]):
        with pytest.raises(ValueError):
            check_sigmas(bad)


def test_presets():
    fast, quality = SAMPLING_PRESETS["fast"], SAMPLING_PRESETS["quality"]
    torch.testing.assert_close(fast.schedule(), step_distill_sigmas(), atol=1e-6, rtol=0)
    assert quality.schedule().shape == (30,) and quality.motion_guidance == 4.0
    assert quality.calls_per_step() == 2
    assert fast.num_steps == 4 and fast.calls_per_step() == (2 if fast.motion_guidance != 1.0 else 1)
