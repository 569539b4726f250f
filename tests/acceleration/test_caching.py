"""Feature caches on the tiny DiT: threshold 0 is exact, skips follow the rule, contexts are separate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fantasy_portrait.models.loading import build_from_preset
from fantasy_portrait.models.motion_attention import MotionCondition
from fantasy_portrait.pipeline import caching
from fantasy_portrait.pipeline.schedule import flow_match_sigmas

STEPS = 10


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    transformer, _ = build_from_preset("tiny", device="cpu")
    for m in transformer.motion_modules():
        torch.nn.init.normal_(m.weight, std=0.2)
    return transformer.eval()


def _inputs(seed=0, batch=1):
    g = torch.Generator().manual_seed(seed)
    return dict(
        encoder_hidden_states=torch.randn(batch, 512, 32, generator=g),
        encoder_hidden_states_image=torch.randn(batch, 257, 1280, generator=g),
        motion=MotionCondition([torch.randn(1, 2, 97, 32, generator=g)]),
    )


def _run(model, contexts=("cond",), steps=STEPS, seed=0):
    """A small Euler loop per context (each context its own latents), contexts interleaved per step.
    Returns {context: [outputs per step]}."""
    cond = _inputs(seed)
    sigmas = flow_match_sigmas(steps).tolist() + [0.0]
    g = torch.Generator().manual_seed(seed + 10)
    y = torch.randn(1, 20, 2, 8, 8, generator=g)
    x = {name: torch.randn(1, 16, 2, 8, 8, generator=g) for name in contexts}
    outs = {name: [] for name in contexts}
    with torch.no_grad():
        for i in range(steps):
            for k, name in enumerate(contexts):
                with caching.cache_context(model, name):
                    v = model(
                        torch.cat([x[name], y], 1),
                        timestep=torch.tensor([1000 * sigmas[i]]),
                        motion_scale=1.0 - k,  # second context: motion off (the unconditional branch)
                        **cond,
                    )
                outs[name].append(v)
                x[name] = x[name] + v * (sigmas[i + 1] - sigmas[i])
    return outs


@pytest.fixture(scope="module")
def reference(tiny):
    return _run(tiny, ("cond", "uncond"))


def _with_cache(model, kind, threshold, **kwargs):
    handle = caching.enable_cache(model, kind, threshold, num_steps=STEPS, **kwargs)
    caching.reset_cache(model)
    try:
        outs = _run(model, ("cond", "uncond"))
        return outs, handle.stats()
    finally:
        caching.disable_cache(model)


@pytest.mark.parametrize(
    "kind, kwargs",
    [
        ("teacache", {}),
        ("teacache", {"teacache_mode": "e"}),
        ("fbc", {}),
        ("magcache", {"mag_ratios": [1.0] + [0.99] * (STEPS - 1)}),
        ("taylorseer", {}),
    ],
)
def test_threshold_zero_reproduces_the_uncached_output_exactly(tiny, reference, kind, kwargs):
    outs, stats = _with_cache(tiny, kind, 0.0, **kwargs)
    for name in reference:
        for a, b in zip(outs[name], reference[name]):
            assert torch.equal(a, b)
    per_call = 3 * len(tiny.blocks) if kind == "taylorseer" else 1
    assert stats["computed"] == 2 * STEPS * per_call  # nothing was skipped
    assert caching.active_cache(tiny) is None and not hasattr(tiny.blocks[0], "_fp_cache")


def _teacache_expected_skips(model, threshold, coefficients, first=5):
    """TeaCache's rule written out from the timestep embeddings alone (independent of the hooks)."""
    sigmas = flow_match_sigmas(STEPS)
    embed = model.condition_embedder
    from fantasy_portrait.models.transformer import timestep_sinusoid

    with torch.no_grad():
        temb = embed.time_embedder(timestep_sinusoid(1000 * sigmas, model.config.freq_dim).float())
        e0 = embed.time_proj(embed.act_fn(temb))
    poly = np.poly1d(coefficients)
    skips, acc = 0, 0.0
    for i in range(STEPS):
        if i < first:
            acc = 0.0
            continue
        rel = ((e0[i] - e0[i - 1]).abs().mean() / e0[i - 1].abs().mean()).item()
        acc += poly(rel)
        if acc < threshold:
            skips += 1
        else:
            acc = 0.0
    return skips


@pytest.mark.parametrize("threshold", [0.5, 1.0, 2.0])
def test_teacache_skips_the_counted_number_of_block_stacks(tiny, reference, threshold):
    expected = _teacache_expected_skips(tiny, threshold, caching._RAW)
    outs, stats = _with_cache(tiny, "teacache", threshold, teacache_coefficients="raw")
    calls = 2 * STEPS
    assert calls - stats["computed"] == 2 * expected  # both branches decide alike (timestep only)
    assert 1 <= expected < STEPS - 5  # the thresholds are chosen so that some, not all, steps are skipped
    assert not all(torch.equal(a, b) for a, b in zip(outs["cond"], reference["cond"]))
    # a skipped step equals the last computed residual added to the block-stack input: outputs stay close
    err = max((a - b).abs().max().item() for a, b in zip(outs["cond"], reference["cond"]))
    assert err < 5.0


def test_teacache_at_a_large_threshold_computes_only_the_retained_steps(tiny):
    _, stats = _with_cache(tiny, "teacache", 1e9, teacache_coefficients="raw")
    assert stats["computed"] == 2 * 5  # e0 mode: the first 5 steps, then every step reuses the residual


def test_magcache_skips_follow_the_accumulated_error_rule(tiny):
    ratios = [1.0, 0.99, 0.98, 0.97, 0.99, 0.95, 0.99, 0.99, 0.9, 0.99]
    threshold = 0.06
    # MagCache's rule by hand: steps before int(0.2 * 10 + 0.5) = 2 always computed.
    skips, acc_r, acc_e, acc_s = 0, 1.0, 0.0, 0
    for i in range(STEPS):
        if i < 2:
            continue
        acc_r *= ratios[i]
        acc_s += 1
        acc_e += abs(1 - acc_r)
        if acc_e <= threshold and acc_s <= caching.MAG_MAX_SKIP:
            skips += 1
        else:
            acc_r, acc_e, acc_s = 1.0, 0.0, 0
    assert skips >= 2
    _, stats = _with_cache(tiny, "magcache", threshold, mag_ratios=ratios)
    assert 2 * STEPS - stats["computed"] == 2 * skips


def test_taylorseer_predicts_between_full_steps(tiny):
    _, stats = _with_cache(tiny, "taylorseer", 3)
    per_call = 3 * len(tiny.blocks)
    # computed at steps 0-2 (warm-up) and every 3rd step after: steps 3, 6, 9 -> 6 of 10 steps
    full_steps = [i for i in range(STEPS) if i < 3 or (i - 3 - 1) % 3 == 0]
    assert stats["computed"] == 2 * len(full_steps) * per_call


def test_contexts_keep_separate_state(tiny):
    """Interleaving two contexts gives each the outputs it gets when run alone."""
    caching.enable_cache(tiny, "teacache", 0.5, num_steps=STEPS, teacache_coefficients="raw")
    try:
        caching.reset_cache(tiny)
        both = _run(tiny, ("cond", "uncond"))
        caching.reset_cache(tiny)
        alone = _run(tiny, ("cond",))
    finally:
        caching.disable_cache(tiny)
    for a, b in zip(both["cond"], alone["cond"]):
        assert torch.equal(a, b)


def test_mag_ratio_calibration_records_one_ratio_per_step_per_context(tiny):
    with caching.record_mag_ratios(tiny) as recorded:
        _run(tiny, ("cond", "uncond"))
    assert set(recorded) == {"cond", "uncond"}
    assert all(len(v) == STEPS and v[0] == 1.0 for v in recorded.values())
    ratios = caching.mean_mag_ratios(recorded)
    assert len(ratios) == STEPS and all(0 < r < 10 for r in ratios)
    assert not hasattr(tiny.blocks[-1], "_diffusers_hook") or not tiny.blocks[-1]._diffusers_hook.hooks


def test_unknown_kind_and_missing_ratios_are_clear_errors(tiny):
    from fantasy_portrait.errors import InputError

    with pytest.raises(InputError, match="unknown cache"):
        caching.enable_cache(tiny, "deepcache", 0.1, num_steps=4)
    with pytest.raises(InputError, match="MagCache needs magnitude ratios"):
        caching.enable_cache(tiny, "magcache", 0.1, num_steps=4)
    caching.disable_cache(tiny)
    assert caching.enable_cache(tiny, "none", 0.1, num_steps=4) is None
