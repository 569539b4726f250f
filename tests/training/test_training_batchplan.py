"""The global batch plan: same-shaped batches, reproducible order, a split that ignores the world size."""

from __future__ import annotations

import pytest

from fantasy_portrait.errors import InputError
from fantasy_portrait.training.dataset import GlobalBatchPlan, MicroBatchSampler


def test_batches_are_homogeneous_reproducible_and_cover_each_epoch():
    buckets = [("a",)] * 9 + [("b",)] * 6 + [("c",)] * 1
    plan = GlobalBatchPlan(buckets, 3, seed=5)
    assert plan.steps_per_epoch == 5 and plan.left_out_per_epoch == 1
    epoch0 = [plan.global_batch_at(s) for s in range(5)]
    for batch in epoch0:
        assert len({buckets[i] for i in batch}) == 1
    assert sorted(i for b in epoch0 for i in b) == list(range(15))  # the lone "c" never fits
    assert epoch0 == [GlobalBatchPlan(buckets, 3, seed=5).global_batch_at(s) for s in range(5)]
    epoch1 = [plan.global_batch_at(s) for s in range(5, 10)]
    assert epoch1 != epoch0 and sorted(i for b in epoch1 for i in b) == list(range(15))


def test_slots_split_a_global_batch_the_same_way_for_any_world_size():
    plan = GlobalBatchPlan([("a",)] * 16, 8, seed=0)
    one = list(MicroBatchSampler(plan, micro=4, world=1, rank=0, accum=2, start_step=1, max_steps=2))
    ranks = [
        list(MicroBatchSampler(plan, micro=2, world=2, rank=r, accum=2, start_step=1, max_steps=2))
        for r in (0, 1)
    ]
    flat_one = [i for mb in one for i in mb]
    # accumulation step a, rank r holds slots (a*world + r)*micro ...: interleave to recover the order
    flat_two = ranks[0][0] + ranks[1][0] + ranks[0][1] + ranks[1][1]
    assert flat_one == flat_two == plan.global_batch_at(1)


def test_a_set_too_small_for_one_global_batch_is_an_input_error():
    with pytest.raises(InputError, match="global batch"):
        GlobalBatchPlan([("a",)] * 3, 4, seed=0)
