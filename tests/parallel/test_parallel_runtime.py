"""Errors of a parallel run before any work (one process, no process group)."""

from __future__ import annotations

import pytest

from fantasy_portrait.errors import InputError
from fantasy_portrait.parallel.context import init_runtime
from fantasy_portrait.parallel.spec import ParallelSpec
from fantasy_portrait.pipeline.settings import AnimationSettings


def test_without_torchrun_says_how_to_start(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InputError, match="torchrun --nproc-per-node 4 -m fantasy_portrait"):
        init_runtime(ParallelSpec(ulysses=2, cfg=2), device="cpu")


def test_settings_check_the_parallel_text():
    assert AnimationSettings(parallel="ulysses=2,ring=2").validate().parallel == "ulysses=2,ring=2"
    with pytest.raises(InputError, match="--parallel"):
        AnimationSettings(parallel="ulysses=x").validate()
