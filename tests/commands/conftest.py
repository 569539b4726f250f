"""Fixtures of the bad-input tests: the stub face backend registered as "stub", one torch thread,
a tiny random weight folder per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from command_helpers import StubFaceBackend

from fantasy_portrait.faces.backend import _CACHE, _FACTORIES


@pytest.fixture(autouse=True)
def stub_backend():
    """Register the stub backend as "stub" for the test (and undo it)."""
    before = dict(_FACTORIES)
    from fantasy_portrait.faces.backend import _register_builtin

    _register_builtin()
    _FACTORIES["stub"] = StubFaceBackend
    yield "stub"
    _FACTORIES.clear()
    _FACTORIES.update(before)
    for key in [k for k in _CACHE if k[0] == "stub"]:
        del _CACHE[key]


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    from fantasy_portrait.pipeline.tiny import write_tiny_weights

    folder = tmp_path_factory.mktemp("tiny_weights")
    write_tiny_weights(folder, seed=0)
    return folder
