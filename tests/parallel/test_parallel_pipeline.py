"""The whole pipeline with ``parallel="ulysses=2"`` over 2 gloo processes (tiny weights): rank 0's video
equals the one-process video exactly (uint8 frames before encoding), for two faces with temporal
windows and for one face; through ``animate --parallel`` only rank 0 writes."""

from __future__ import annotations

from pathlib import Path

import cp_harness
import pytest
import torch
import torch.multiprocessing as mp

ASSETS = Path(__file__).resolve().parents[2].parent / "shared" / "assets"


@pytest.fixture(scope="module")
def pipeline_ranks(tmp_path_factory):
    from fantasy_portrait.pipeline.tiny import write_tiny_weights

    if not ASSETS.is_dir():
        pytest.fail(f"{ASSETS} is missing: tests need ../shared beside the checkout")
    folder = tmp_path_factory.mktemp("cp_pipeline")
    weights = str(folder / "weights")
    write_tiny_weights(weights, seed=0)
    two = dict(image=str(ASSETS / "fp_two_person.png"), driving=[str(ASSETS / "fp_two_person.mp4")])
    one = dict(image=str(ASSETS / "fp_man.jpeg"), driving=[str(ASSETS / "fp_jgz.mp4")])
    cases = [
        (
            "two-faces-windows",
            dict(
                case="pipeline", spec_text="ulysses=2", weights=weights, max_frames=13, window_frames=9, **two
            ),
        ),
        ("one-face", dict(case="pipeline", spec_text="ulysses=2", weights=weights, max_frames=5, **one)),
        (
            "cli",
            dict(
                case="cli",
                spec_text="ulysses=2",
                weights=weights,
                output=str(folder / "out.mp4"),
                extra=["--max-size", "64", "--steps", "2", "--max-frames", "5", "--no-progress"],
                **one,
            ),
        ),
    ]
    out = folder / "results.pt"
    mp.spawn(cp_harness.run_cases, args=(2, str(folder / "rendezvous"), str(out), cases), nprocs=2)
    results = torch.load(out, weights_only=True)  # plain tensors, numbers and strings
    errors = {k: v["error"] for k, v in results.items() if "error" in v}
    assert not errors, "\n".join(f"{k}:\n{v}" for k, v in errors.items())
    return results, folder


@pytest.mark.slow
def test_two_faces_with_windows_equal_one_process(pipeline_ranks):
    results, _ = pipeline_ranks
    r = results["two-faces-windows"]
    assert r["faces"] == 2 and r["windows"] == 2 and r["frames"][0] == 13
    assert r["frames_on_rank"] == [True, False]  # only rank 0 decodes
    assert r["calls"] and all(t is not None and t[1] - t[0] == t[2] // 2 for _, t in r["calls"])
    assert r["diff"] == 0


@pytest.mark.slow
def test_one_face_equals_one_process(pipeline_ranks):
    results, _ = pipeline_ranks
    r = results["one-face"]
    assert r["faces"] == 1 and r["frames"][0] == 5
    assert r["calls"] and all(t is not None for _, t in r["calls"])
    assert r["diff"] == 0


@pytest.mark.slow
def test_cli_only_rank_0_writes(pipeline_ranks):
    results, folder = pipeline_ranks
    r = results["cli"]
    assert r["codes"] == [0, 0]
    assert r["writes"][0] == [str(folder / "out.mp4")] and r["writes"][1] == []
    assert (folder / "out.mp4").stat().st_size > 0
