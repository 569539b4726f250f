"""diffusers' extension points work on our blocks: the block registry, FirstBlockCache, MagCache."""

from __future__ import annotations

import pytest
import torch
from diffusers import FirstBlockCacheConfig, MagCacheConfig
from diffusers.hooks._helpers import TransformerBlockRegistry

from fantasy_portrait.models.loading import build_from_preset
from fantasy_portrait.models.motion_attention import MotionCondition
from fantasy_portrait.models.transformer import MotionWanBlock


@pytest.fixture(scope="module")
def tiny():
    transformer, _ = build_from_preset("tiny", device="cpu")
    torch.manual_seed(1)
    for m in transformer.motion_modules():  # non-zero motion projections: the motion branch matters
        torch.nn.init.normal_(m.weight, std=0.2)
    return transformer.eval()


def _inputs(seed: int, timestep: float):
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(2, 36, 2, 8, 8, generator=g),
        timestep=torch.tensor([timestep, timestep]),
        encoder_hidden_states=torch.randn(2, 512, 32, generator=g),
        encoder_hidden_states_image=torch.randn(2, 257, 1280, generator=g),
    )


def _motion():
    g = torch.Generator().manual_seed(5)
    return MotionCondition([torch.randn(1, 2, 97, 32, generator=g)])


def test_blocks_are_registered_motion_blocks(tiny):
    assert all(type(b) is MotionWanBlock for b in tiny.blocks)
    assert type(tiny.blocks) is torch.nn.ModuleList
    assert TransformerBlockRegistry.get(MotionWanBlock).return_hidden_states_index == 0
    # The swap to MotionWanBlock kept the module objects: same parameter names as the Wan model.
    assert "blocks.0.attn2.motion_k_proj.weight" in dict(tiny.named_parameters())


def test_first_block_cache_threshold_zero_reproduces_the_uncached_output(tiny):
    motion = _motion()
    calls = [(_inputs(s, t), scale) for s, t, scale in ((0, 900.0, 1.0), (1, 600.0, 0.5), (2, 300.0, 1.0))]
    with torch.no_grad():
        ref = [tiny(**x, motion=motion, motion_scale=scale) for x, scale in calls]
        tiny.enable_cache(FirstBlockCacheConfig(threshold=0.0))
        try:
            with tiny.cache_context("cond"):
                cached = [tiny(**x, motion=motion, motion_scale=scale) for x, scale in calls]
        finally:
            tiny.disable_cache()
    for a, b in zip(cached, ref):
        assert torch.equal(a, b)
    assert not torch.equal(ref[0], tiny(**calls[0][0]).detach())  # the motion input reached the blocks


def test_first_block_cache_skips_the_tail_when_the_threshold_allows(tiny):
    """With a large threshold the second call reuses the cached tail: the hooks really act on our blocks."""
    motion = _motion()
    x = _inputs(0, 900.0)
    with torch.no_grad():
        tiny.enable_cache(FirstBlockCacheConfig(threshold=1e9))
        try:
            with tiny.cache_context("cond"):
                tiny(**x, motion=motion)
                tail_runs = []
                hook = tiny.blocks[-1].attn1.register_forward_hook(lambda *a: tail_runs.append(1))
                tiny(**_inputs(1, 500.0), motion=motion)
                hook.remove()
        finally:
            tiny.disable_cache()
    assert tail_runs == []


def test_mag_cache_calibration_runs_on_our_blocks(tiny):
    """MagCache's hooks (calibration: every block computed) run and leave the output unchanged."""
    motion = _motion()
    x = _inputs(0, 900.0)
    with torch.no_grad():
        ref = tiny(**x, motion=motion)
        tiny.enable_cache(MagCacheConfig(calibrate=True, num_inference_steps=2))
        try:
            with tiny.cache_context("cond"):
                out = tiny(**x, motion=motion)
        finally:
            tiny.disable_cache()
    assert torch.equal(out, ref)
