"""The VRAM budget planner: what it picks for the released 14B model (meta device, no memory)."""

from __future__ import annotations

import pytest

from fantasy_portrait.pipeline.memory import GIB
from fantasy_portrait.pipeline.planner import ModelSize, RunShape, candidates, plan_memory, preset_table


@pytest.fixture(scope="module")
def size14b():
    return ModelSize.from_preset("wan2.1-i2v-14b-720p")


def test_model_size_of_the_14b(size14b):
    assert size14b.num_blocks == 40 and size14b.dim == 5120
    # the blocks' Linears (fp8 candidates) are ~94% of the DiT; the motion projections are not among them
    assert 0.9 < size14b.fp8_params / size14b.dit_params < 0.97
    assert size14b.nonblock_params > 0


def test_everything_resident_when_the_budget_is_large(size14b):
    shape = RunShape(1280, 720, 81, branches=2)
    plan = plan_memory(size14b, shape, 80 * GIB)
    assert (plan.precision, plan.placement, plan.batch_branches) == ("bf16", "gpu", True)
    assert 40 * GIB < plan.peak < 55 * GIB  # README of the reference: 40 GB all resident at 720p


@pytest.mark.parametrize(
    "res, budget, preset_branches",
    [((1280, 720), 24, 2), ((1280, 720), 24, 1), ((832, 480), 12, 2), ((832, 480), 12, 1)],
)
def test_targets_720p_in_24gb_and_480p_in_12gb(size14b, res, budget, preset_branches):
    plan = plan_memory(size14b, RunShape(*res, 81, branches=preset_branches), budget * GIB)
    assert plan.fits and plan.peak <= budget * GIB
    assert plan.placement == "group-offload"  # 33 GB of bf16 weights cannot be resident
    assert plan.precision == "bf16"  # with enough host memory the exact weights are kept


def test_short_host_memory_picks_fp8(size14b):
    shape = RunShape(832, 480, 81, branches=2)
    roomy = plan_memory(size14b, shape, 24 * GIB, ram_bytes=128 * GIB)
    tight = plan_memory(size14b, shape, 24 * GIB, ram_bytes=24 * GIB)
    assert roomy.precision == "bf16"
    assert tight.precision == "fp8" and tight.cpu_bytes <= 24 * GIB < roomy.cpu_bytes


def test_small_budget_splits_the_branches_then_reports_no_fit(size14b):
    shape = RunShape(1280, 720, 81, branches=2)
    plan = plan_memory(size14b, shape, 11 * GIB)
    assert plan.fits and not plan.batch_branches
    hopeless = plan_memory(size14b, shape, 2 * GIB)
    assert not hopeless.fits and "does NOT fit" in hopeless.describe()
    assert hopeless.peak == min(p.peak for p in candidates(size14b, shape))


def test_candidates_are_ordered_and_streams_only_on_cuda(size14b):
    shape = RunShape(832, 480, 81, branches=2)
    cuda = candidates(size14b, shape, device_type="cuda")
    other = candidates(size14b, shape, device_type="mps")
    assert cuda[0].placement == "gpu" and cuda[0].precision == "bf16"
    assert any(p.use_stream for p in cuda) and not any(p.use_stream for p in other)
    order = [(p.precision, p.placement) for p in cuda if not p.vae_tiling and p.batch_branches]
    assert order.index(("bf16", "group-offload")) < order.index(("fp8", "model-offload"))
    order = [(p.precision, p.placement) for p in other if not p.vae_tiling and p.batch_branches]
    assert order.index(("fp8", "model-offload")) < order.index(("bf16", "group-offload"))
    # fp8 storage halves the resident DiT
    gpu_fp8 = next(p for p in cuda if p.precision == "fp8" and p.placement == "model-offload")
    gpu_bf16 = next(p for p in cuda if p.precision == "bf16" and p.placement == "model-offload")
    assert gpu_bf16.peak - gpu_fp8.peak > 14 * GIB


def test_gguf_uses_the_file_size(size14b):
    from dataclasses import replace

    gguf = replace(size14b, gguf_bytes=int(11.3e9))  # Q4_K_M
    plan = plan_memory(gguf, RunShape(832, 480, 81, branches=1), 24 * GIB)
    assert plan.precision == "gguf" and plan.placement == "gpu"  # 11.3 GB of weights fit beside the rest
    assert plan_memory(gguf, RunShape(832, 480, 81, branches=1), 12 * GIB).placement == "group-offload"


def test_preset_table_meets_the_targets():
    rows = {(r["resolution"], r["preset"]): r for r in preset_table()}
    for preset in ("quality", "fast"):
        assert "does NOT fit" not in rows[("720p", preset)]["24GB"]
        assert "does NOT fit" not in rows[("480p", preset)]["12GB"]


def test_host_memory_too_small_for_any_plan_is_said(size14b):
    plan = plan_memory(size14b, RunShape(832, 480, 81, branches=1), 24 * GIB, ram_bytes=8 * GIB)
    assert plan.fits and plan.precision == "fp8"  # the least host memory among plans that fit the GPU
    assert "host memory short" in plan.describe()


def test_dry_run_report_of_the_fast_preset(size14b):
    import torch

    from fantasy_portrait.models.loading import build_from_preset
    from fantasy_portrait.pipeline.acceleration import dry_run_report
    from fantasy_portrait.pipeline.settings import AnimationSettings

    transformer, _ = build_from_preset("wan2.1-i2v-14b-720p")
    report = dry_run_report(
        AnimationSettings(preset="fast", vram=24),
        transformer,
        width=1280,
        height=720,
        frames=81,
        device=torch.device("cuda"),
    )
    assert report["steps"] == 4 and report["passes"] == 4
    assert report["sigmas"] == pytest.approx([1.0, 0.9375, 0.833333, 0.625], abs=1e-6)
    assert report["plan"]["fits"] and report["plan"]["budget_gib"] == 24
    assert (
        report["lines"][0].startswith("sampling: 4 steps")
        and "0.067 of the reference's 60" in report["lines"][0]
    )


def test_pass_flops_linear_part_equals_torch_flop_counter():
    """The FLOP formula's linear part equals what torch's counter finds in the blocks of the tiny DiT
    (attention kernels are not counted by torch on the CPU, so that part is checked by hand)."""
    import re

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fantasy_portrait.models.loading import build_from_preset
    from fantasy_portrait.models.motion_attention import MotionCondition
    from fantasy_portrait.pipeline.planner import pass_flops

    torch.manual_seed(0)
    tr, _ = build_from_preset("tiny", device="cpu")
    size = ModelSize.from_transformer(tr)
    shape = RunShape(128, 96, 9, None)  # 3 latent frames of 6 x 8 tokens
    g = torch.Generator().manual_seed(0)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        tr(
            torch.randn(1, 36, 3, 12, 16, generator=g),
            timestep=torch.tensor([500.0]),
            encoder_hidden_states=torch.randn(1, 512, 32, generator=g),
            encoder_hidden_states_image=torch.randn(1, 257, 1280, generator=g),
            motion=MotionCondition([torch.randn(1, 3, 97, 32, generator=g)], cache_kv=False),
        )
    counts = counter.get_flop_counts()
    blocks = sum(sum(v.values()) for k, v in counts.items() if re.search(r"\.blocks\.\d+$", k))
    formula = pass_flops(size, shape, motion_kv=True, parts=True)
    assert blocks == formula["linear"]
    t, d = 3 * 6 * 8, 64
    assert formula["attention"] == 2 * (4 * t * t * d + 4 * t * 769 * d + 4 * t * 97 * d)
