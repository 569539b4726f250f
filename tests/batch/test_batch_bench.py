"""The ExprBench runner's ``ours`` goes through the batch machinery: one pipeline for all cases, every
case tried, failures listed together, finished outputs kept and reused (a stand-in pipeline here)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from fantasy_portrait.bench import methods, runner
from fantasy_portrait.bench.manifest import manifest_from_dict
from fantasy_portrait.errors import FaceError, FantasyPortraitError

ASSETS = (Path(__file__).parents[2] / ".." / "shared" / "assets").resolve()
CASES = [
    {"id": "cross-man", "mode": "cross", "portrait": "fp_man.jpeg", "drivers": ["lp_d12.mp4"]},
    {
        "id": "cross-two",
        "mode": "cross",
        "portrait": "fp_two_person.png",
        "drivers": ["lp_d0.mp4", "lp_d12.mp4"],
    },
    {"id": "cross-s0", "mode": "cross", "portrait": "lp_s0.jpg", "drivers": ["lp_d0.mp4"]},
]


@pytest.fixture
def fake_pipeline(monkeypatch):
    """A stand-in FantasyPortraitPipeline module: counts loads, records calls, fails on one portrait."""
    seen = {"loads": 0, "calls": []}

    class FakePipeline:
        @classmethod
        def from_pretrained(cls, weights, **kwargs):
            seen["loads"] += 1
            seen["load"] = (weights, kwargs)
            return cls()

        def __call__(self, image, driving, settings=None, *, output=None, **kwargs):
            seen["calls"].append((Path(image).parent.name, settings))
            if Path(image).parent.name == seen.get("fail"):
                raise FaceError(f"{image}: no face found")
            Path(output).write_bytes(b"video")
            return types.SimpleNamespace(summary=lambda: {"num_frames": settings.max_frames, "faces": []})

    fake = types.ModuleType("fantasy_portrait.pipeline.pipeline")
    fake.FantasyPortraitPipeline = FakePipeline
    monkeypatch.setitem(sys.modules, "fantasy_portrait.pipeline.pipeline", fake)
    return seen


def test_ours_runs_every_case_on_one_pipeline_and_lists_failures(tmp_path, fake_pipeline):
    manifest = manifest_from_dict({"name": "b", "frames": 5, "max_side": 96, "cases": CASES}, ASSETS)
    options = tmp_path / "ours.json"
    options.write_text(json.dumps({"weights": "/w", "num_steps": 3, "seed": 7, "dtype": "float32"}))
    method = methods.make_method(f"ours:{options}")
    fake_pipeline["fail"] = "cross-two"
    with pytest.raises(
        FantasyPortraitError, match=r"failed on 1 case\(s\).*cross-two: FaceError: .* no face found"
    ):
        runner.run_method(manifest, method, tmp_path / "run")
    assert fake_pipeline["loads"] == 1  # one pipeline, loaded once for all cases
    assert fake_pipeline["load"][0] == "/w" and fake_pipeline["load"][1]["torch_dtype"].is_floating_point
    assert sorted(c for c, _ in fake_pipeline["calls"]) == ["cross-man", "cross-s0", "cross-two"]
    settings = dict(fake_pipeline["calls"])["cross-man"]
    assert (settings.num_steps, settings.seed, settings.max_frames, settings.progress) == (3, 7, 5, False)
    out = tmp_path / "run" / "outputs" / "ours"
    assert (out / "cross-man.mp4").is_file() and (out / "cross-s0.mp4").is_file()
    assert not (out / "cross-two.mp4").exists() and not list(out.glob(".*partial*"))

    fake_pipeline["fail"] = None
    fake_pipeline["calls"].clear()
    results = runner.run_method(manifest, methods.make_method(f"ours:{options}"), tmp_path / "run")
    assert [c for c, _ in fake_pipeline["calls"]] == ["cross-two"]  # the finished cases are reused
    assert sorted(results) == ["cross-man", "cross-s0", "cross-two"]


def test_executor_options_are_not_pipeline_settings(tmp_path, fake_pipeline):
    manifest = manifest_from_dict({"name": "b", "frames": 5, "max_side": 96, "cases": CASES[:1]}, ASSETS)
    options = tmp_path / "ours.json"
    options.write_text(json.dumps({"weights": "/w", "workers": 1, "num_steps": 2}))
    results = runner.run_method(manifest, methods.make_method(f"ours:{options}"), tmp_path / "run")
    assert list(results) == ["cross-man"]
    options.write_text(json.dumps({"weights": "/w", "num_step": 2}))
    with pytest.raises(FantasyPortraitError, match="unknown setting"):
        runner.run_method(manifest, methods.make_method(f"ours:{options}"), tmp_path / "run2")
