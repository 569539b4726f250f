"""io.load_torch_file: the one torch.load (weights_only), refusals in one line that say why."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from fantasy_portrait.errors import CheckpointError
from fantasy_portrait.io import load_torch_file


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_plain_state_dicts_load_memory_mapped_or_not(tmp_path):
    state = {"a": torch.arange(6.0).reshape(2, 3), "nested": {"b": torch.ones(2)}}
    torch.save(state, tmp_path / "w.pth")
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)  # cannot be mmapped
    for name in ("w.pth", "legacy.pth"):
        got = load_torch_file(tmp_path / name)
        assert torch.equal(got["a"], state["a"]) and torch.equal(got["nested"]["b"], state["nested"]["b"])


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_pickle_that_would_run_code_is_refused_and_says_why(tmp_path, legacy):
    path, marker = tmp_path / "evil.pth", tmp_path / "pwned"
    torch.save({"w": torch.zeros(1), "x": _Payload(marker)}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError) as info:
        load_torch_file(path, what="PD-FGC weights")
    message = str(info.value)
    assert message.startswith(f"{path}: refused to load: it would call ") and "system" in message
    assert "\n" not in message and "weights_only" not in message and "trust" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # torch's advice is not chained
    assert not marker.exists()


def test_other_pickles_are_refused_too(tmp_path):
    path = tmp_path / "plain.pkl"
    with open(path, "wb") as f:
        pickle.dump({"x": {1, 2}}, f, protocol=4)  # a set: not something weights_only allows
    with pytest.raises(CheckpointError, match="plain.pkl: (refused to load|cannot read)"):
        load_torch_file(path)


@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "text", "folder"])
def test_unreadable_files(case, tmp_path):
    path = tmp_path / "w.pth"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        torch.save({"a": torch.zeros(100)}, path)
        path.write_bytes(path.read_bytes()[:150])
    elif case == "text":
        path.write_text("not weights at all")
    elif case == "folder":
        path.mkdir()
    needle = {
        "missing": "not found",
        "empty": "is empty",
        "folder": "is a folder",
        "text": "not a torch checkpoint",
    }
    needle = needle.get(case, "cannot read")
    with pytest.raises(CheckpointError, match=needle) as info:
        load_torch_file(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
