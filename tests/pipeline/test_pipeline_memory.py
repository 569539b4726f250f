"""Memory modes: automatic choice from free memory, and block-by-block placement keeps results exact."""

from __future__ import annotations

import pytest
import torch

from fantasy_portrait.models.config import PRESETS
from fantasy_portrait.pipeline import memory

TINY = PRESETS["tiny"]  # the golden tiny sizes: one definition (models.config)

GIB = memory.GIB


@pytest.fixture(scope="module")
def estimate_14b():
    from fantasy_portrait.models.loading import build_from_preset

    transformer, _ = build_from_preset("wan2.1-i2v-14b-720p")
    return memory.estimate_for_transformer(
        transformer,
        width=1280,
        height=720,
        num_frames=81,
        window_frames=81,
        batch_branches=True,
        dtype_bytes=2,
    )


@pytest.mark.parametrize("case", ["plenty", "between", "tight", "tiny"])
def test_auto_mode_follows_free_memory(estimate_14b, monkeypatch, case):
    est = estimate_14b
    free = {
        "plenty": 80 * GIB,
        "between": (est.peak("model-offload") + 0.5 * GIB) / 0.9,  # offload fits, all-on-GPU does not
        "tight": 24 * GIB,
        "tiny": 4 * GIB,
    }[case]
    expected = {
        "plenty": "gpu",
        "between": "model-offload",
        "tight": "group-offload",
        "tiny": "group-offload",
    }[case]
    assert est.peak("gpu") > est.peak("model-offload") + 0.5 * GIB  # so "between" is a real case
    monkeypatch.setattr(memory, "free_accelerator_memory", lambda device: int(free))
    mode, tiling, reason = memory.pick_mode("auto", torch.device("cuda"), est)
    assert mode == expected and expected in reason
    if case != "tiny":
        assert est.peak(mode, tiling) <= 0.9 * free
    else:
        assert tiling and "may not fit" in reason


def test_cpu_and_explicit_modes(estimate_14b):
    assert memory.pick_mode("auto", torch.device("cpu"), estimate_14b)[0] == "cpu"
    assert memory.pick_mode("sequential", torch.device("cuda"), estimate_14b)[0] == "sequential"


def test_estimate_grows_with_frames_and_size(estimate_14b):
    from fantasy_portrait.models.loading import build_from_preset

    transformer, _ = build_from_preset("wan2.1-i2v-14b-720p")
    small = memory.estimate_for_transformer(
        transformer, width=640, height=360, num_frames=81, window_frames=None
    )
    long = memory.estimate_for_transformer(
        transformer, width=1280, height=720, num_frames=401, window_frames=None
    )
    windowed = memory.estimate_for_transformer(
        transformer, width=1280, height=720, num_frames=401, window_frames=81
    )
    assert small.dit_activations < estimate_14b.dit_activations < long.dit_activations
    assert windowed.dit_activations == estimate_14b.dit_activations  # windows bound the activations


def _group_hooked(block) -> bool:
    registry = getattr(block, "_diffusers_hook", None)
    return registry is not None and registry.get_hook("group_offloading") is not None


def test_sequential_placement_gives_the_same_output(tiny_weights):
    from fantasy_portrait.models.loading import load_wan_transformer

    model = load_wan_transformer(tiny_weights, motion_dim=TINY.encoder.token_dim)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 36, 2, 8, 8, generator=g)
    args = dict(
        timestep=torch.tensor([500.0]),
        encoder_hidden_states=torch.randn(1, 512, 32, generator=g),
        encoder_hidden_states_image=torch.randn(1, 257, 1280, generator=g),
    )
    with torch.no_grad():
        ref = model(x, **args)
        visits = []
        for block in model.blocks:  # sees each block moved in before it runs
            block.attn1.register_forward_pre_hook(lambda m, a: visits.append(m))
        with memory.Placement("sequential", torch.device("cpu"), model, []) as placement:
            assert placement.mode == "sequential"  # an alias of group-offload: diffusers' group offloading
            assert all(_group_hooked(b) for b in model.blocks)
            out = model(x, **args)
    assert len(visits) == len(model.blocks)
    torch.testing.assert_close(out, ref)
    # leaving the placement removes its hooks; the block list was never replaced
    assert type(model.blocks) is torch.nn.ModuleList
    assert not any(_group_hooked(b) for b in model.blocks)


@pytest.mark.parametrize("mode", ["model-offload", "sequential"])
def test_offload_modes_give_the_cpu_result(make_stub_pipe, synthetic_media, monkeypatch, mode):
    """The offload code paths (placement, per-stage moves, streamed blocks) leave the result unchanged.
    On this CPU-only machine the 'accelerator' is the CPU itself, so only the logic is exercised."""
    import numpy as np

    from fantasy_portrait.pipeline import pipeline as pl

    args = dict(max_frames=5, max_size=64, num_steps=1, progress=False, seed=3)
    media = synthetic_media["portrait2"], synthetic_media["driver2"]
    ref = make_stub_pipe()(*media, **args)
    monkeypatch.setattr(
        pl, "pick_mode", lambda requested, device, estimate: (mode, mode == "sequential", mode)
    )
    pipe = make_stub_pipe()
    out = pipe(*media, **args)
    assert out.memory_mode == mode
    assert np.array_equal(out.frames, ref.frames)


def test_placement_restores_devices_hooks_and_tiling(tiny_pipe):
    """Leaving a placement undoes what it did: hooks removed, modules back where they were, tiling off."""
    pipe = tiny_pipe
    modules = [pipe.transformer, pipe.clip, pipe.vae, pipe.expression_encoder]
    before = [{p.device for p in m.parameters()} for m in modules]
    assert not pipe.vae.use_tiling
    for mode in ("sequential", "model-offload", "gpu"):
        with memory.Placement(
            mode, torch.device("cpu"), pipe.transformer, modules[1:], vae=pipe.vae, vae_tiling=True
        ) as place:
            assert pipe.vae.use_tiling
            with place.use(pipe.clip):
                pass
            hooked = any(_group_hooked(b) for b in pipe.transformer.blocks)
            assert hooked == (mode == "sequential")
        assert not pipe.vae.use_tiling
        assert type(pipe.transformer.blocks) is torch.nn.ModuleList
        assert not any(_group_hooked(b) for b in pipe.transformer.blocks)
        assert [{p.device for p in m.parameters()} for m in modules] == before


def test_second_call_with_another_mode_behaves_as_a_fresh_pipeline(
    make_stub_pipe, synthetic_media, monkeypatch
):
    """A long-lived pipeline keeps no placement or tiling from an earlier run in another mode."""
    import numpy as np

    from fantasy_portrait.pipeline import pipeline as pl

    args = dict(max_frames=5, max_size=64, num_steps=1, progress=False, seed=2)
    media = synthetic_media["portrait2"], synthetic_media["driver2"]
    real_pick = pl.pick_mode
    pipe = make_stub_pipe()
    monkeypatch.setattr(pl, "pick_mode", lambda requested, device, est: ("sequential", True, "sequential"))
    first = pipe(*media, **args)
    assert first.memory_mode == "sequential"
    monkeypatch.setattr(pl, "pick_mode", real_pick)
    second = pipe(*media, **args)
    fresh = make_stub_pipe()(*media, **args)
    assert second.memory_mode == fresh.memory_mode == "running on the CPU"
    assert np.array_equal(second.frames, fresh.frames)
    assert not pipe.vae.use_tiling and type(pipe.transformer.blocks) is torch.nn.ModuleList
    assert all(not b._forward_pre_hooks and not b._forward_hooks for b in pipe.transformer.blocks)
