"""Context parallelism on CPU: 2 gloo processes (torch.multiprocessing.spawn, file:// rendezvous) on the
tiny model give the single-process output, and the test notices when the split or the collectives
did not happen.

Tolerances: Ulysses on diffusers' native attention is bit-identical (the all-to-all only moves
data; every attention sees the same numbers) -> 0. Ring merges partial softmaxes through the
log-sum-exp -> float32 rounding, 1e-5. CFG parallel runs the guidance branches as batches of 1
instead of one batch of 2, which changes the GEMM blocking -> 1e-5.
"""

from __future__ import annotations

import cp_harness
import pytest
import torch
import torch.multiprocessing as mp

RING_TOL = 1e-5
CFG_TOL = 1e-5
BROKEN_MIN = 1e-3  # what a wrong all-to-all changes at least

CASES_2 = [
    ("ulysses-1face", dict(case="transformer", spec_text="ulysses=2", faces=1)),
    ("ulysses-2faces", dict(case="transformer", spec_text="ulysses=2", faces=2)),
    ("ulysses-3faces", dict(case="transformer", spec_text="ulysses=2", faces=3)),
    ("ulysses-broken", dict(case="transformer", spec_text="ulysses=2", faces=2, break_all_to_all=True)),
    ("ring-2faces", dict(case="transformer", spec_text="ring=2", faces=2, backend="_native_flash")),
    ("ulysses-windows", dict(case="sampler", spec_text="ulysses=2", faces=2, window=3)),
    ("cfg-windows", dict(case="sampler", spec_text="cfg=2", faces=2, window=3)),
]


def _spawn(tmp_path, world: int, cases) -> dict:
    out = tmp_path / "results.pt"
    mp.spawn(
        cp_harness.run_cases,
        args=(world, str(tmp_path / "rendezvous"), str(out), cases),
        nprocs=world,
        join=True,
    )
    results = torch.load(out, weights_only=True)  # plain tensors, numbers and strings
    errors = {k: v["error"] for k, v in results.items() if "error" in v}
    assert not errors, "\n".join(f"{k}:\n{v}" for k, v in errors.items())
    return results


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    return _spawn(tmp_path_factory.mktemp("cp2"), 2, [(n, dict(kw)) for n, kw in CASES_2])


def _assert_split(result, world=2):
    """Every motion-attention call saw exactly its rank's share of the tokens (the split happened)."""
    sequence = result["sequence"] if "sequence" in result else None
    assert result["calls"], "the motion attention never ran"
    for length, tokens in result["calls"]:
        assert tokens is not None, "the motion attention saw the whole sequence: no context-parallel split"
        start, stop, total = tokens
        assert stop - start == length == total // world
        assert sequence is None or total == sequence


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ulysses-1face", "ulysses-2faces", "ulysses-3faces"])
def test_ulysses_equals_one_process(two_ranks, name):
    result = two_ranks[name]
    _assert_split(result)
    assert result["diff"] == 0.0, result["diff"]


@pytest.mark.slow
def test_broken_all_to_all_changes_the_output(two_ranks):
    result = two_ranks["ulysses-broken"]
    _assert_split(result)
    assert result["diff"] > BROKEN_MIN * result["scale"]


@pytest.mark.slow
def test_ring_equals_one_process(two_ranks):
    result = two_ranks["ring-2faces"]
    _assert_split(result)
    assert result["diff"] <= RING_TOL, result["diff"]


@pytest.mark.slow
def test_ulysses_sampler_with_latent_windows(two_ranks):
    result = two_ranks["ulysses-windows"]
    assert result["windows"] == 3  # 5 latent frames in windows of 3 (anchor + 2, overlap 1)
    _assert_split(result)
    hw = result["tokens_per_frame"]
    assert all(batch == 2 and tokens == 3 * hw // 2 for batch, tokens in result["shapes"])
    assert result["diff"] == 0.0, result["diff"]


@pytest.mark.slow
def test_cfg_parallel_sampler(two_ranks):
    result = two_ranks["cfg-windows"]
    assert result["windows"] == 3
    # every call held one guidance branch (batch 1 instead of 2) and every token of its window
    hw = result["tokens_per_frame"]
    assert result["shapes"] and all(batch == 1 and tokens == 3 * hw for batch, tokens in result["shapes"])
    assert result["calls"] and all(tokens is None for _, tokens in result["calls"])
    assert result["diff"] <= CFG_TOL, result["diff"]


@pytest.mark.slow
def test_ulysses_times_ring_on_four_processes(tmp_path):
    """diffusers' unified attention (a 2 x 2 ring x Ulysses mesh), two faces: each rank holds a quarter."""
    cases = [
        ("unified", dict(case="transformer", spec_text="ulysses=2,ring=2", faces=2, backend="_native_flash"))
    ]
    result = _spawn(tmp_path, 4, cases)["unified"]
    _assert_split(result, world=4)
    assert result["diff"] <= RING_TOL, result["diff"]
