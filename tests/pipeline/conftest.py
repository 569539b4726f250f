"""Fixtures of the pipeline tests: one tiny random weight folder in the released layout per session."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

ASSETS = Path(__file__).resolve().parents[2].parent / "shared" / "assets"


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny models' small convolutions run several times faster on one thread than on two busy
    cores (thread start-up dominates); restore the setting after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def assets() -> Path:
    if not ASSETS.is_dir():
        pytest.fail(f"{ASSETS} is missing: tests need ../shared beside the checkout")
    return ASSETS


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    from fantasy_portrait.pipeline.tiny import write_tiny_weights

    folder = tmp_path_factory.mktemp("tiny_weights")
    write_tiny_weights(folder, seed=0)
    return folder


@pytest.fixture(scope="session")
def tiny_pipe(tiny_weights):
    from fantasy_portrait.pipeline.pipeline import FantasyPortraitPipeline

    return FantasyPortraitPipeline.from_pretrained(tiny_weights)


@pytest.fixture(scope="session")
def video_facts():
    return _video_facts


def _video_facts(path: Path) -> dict:
    """Decoded frame count, size, frame rate and whether there is an audio stream."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        return {
            "frames": len(frames),
            "width": v.codec_context.width,
            "height": v.codec_context.height,
            "fps": float(v.average_rate),
            "audio": bool(c.streams.audio),
            "pixels": np.stack(frames),
        }
