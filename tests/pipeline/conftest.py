"""Fixtures of the pipeline tests: one tiny random weight folder in the released layout per session,
and synthetic media with a stub face backend for the tests that are not about face detection.

The stub backend (:class:`BlobFaces`) finds the bright squares that stand for faces in the synthetic
media (connected components), with five points placed inside each square: it is exact, fast and
robust to video compression, so end-to-end tests spend their time in the pipeline, not in MediaPipe.
Tests about detection, tracking and real media use ``assets`` (../shared) and the real backend.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from fantasy_portrait.faces.backend import FaceBackend
from fantasy_portrait.faces.types import FaceObservation


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
def assets(shared_dir) -> Path:
    return shared_dir / "assets"


class BlobFaces(FaceBackend):
    """Stub face backend for the synthetic media: every bright square is a face."""

    name = "test-blobs"
    landmark_layout = ""
    num_landmarks = 0

    def detect(self, image_rgb: np.ndarray) -> list[FaceObservation]:
        import cv2

        bright = (np.asarray(image_rgb).min(axis=2) > 160).astype(np.uint8)
        count, _, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=4)
        faces = []
        for x, y, w, h, area in stats[1:count]:
            if area < 64:
                continue
            box = np.array([x, y, x + w, y + h], np.float32)
            rel = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]], np.float32)
            points = box[:2] + rel * np.array([w, h], np.float32)
            faces.append(FaceObservation(box=box, score=0.99, five_points=points))
        return faces


def _scene(width: int, height: int, squares, rng) -> np.ndarray:
    frame = np.full((height, width, 3), 40, np.uint8) + rng.integers(
        0, 20, (height, width, 3), dtype=np.uint8
    )
    for x, y, size in squares:
        patch = 200 + rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
        patch[size // 3 : size // 3 + 3, size // 4 : size // 4 + 4] = 230  # an 'eye' for some texture
        frame[y : y + size, x : x + size] = patch
    return frame


@pytest.fixture(scope="session")
def synthetic_media(tmp_path_factory) -> dict:
    """Synthetic portraits and driving videos (bright squares = faces, see :class:`BlobFaces`).

    portrait: 96x96, one face; portrait2: 128x96, two faces; driver: 9 frames at 15 fps, one face
    moving; driver2: 9 frames, two faces. Sizes chosen so --max-size 64 gives 64x64 (one face)."""
    from fantasy_portrait.io import save_image, write_video

    folder = tmp_path_factory.mktemp("synthetic_media")
    rng = np.random.default_rng(0)
    save_image(folder / "portrait.png", _scene(96, 96, [(30, 24, 36)], rng))
    save_image(folder / "portrait2.png", _scene(128, 96, [(12, 30, 32), (80, 26, 34)], rng))
    one = [_scene(96, 96, [(28 + t, 24 + t % 3, 36 + t % 2)], rng) for t in range(9)]
    two = [_scene(128, 96, [(12 + t % 4, 30, 32), (80 - t % 3, 26, 34)], rng) for t in range(9)]
    write_video(folder / "driver.mp4", iter(one), fps=15.0)
    write_video(folder / "driver2.mp4", iter(two), fps=15.0)
    return {
        name: folder / f"{name}{ext}"
        for name, ext in (
            ("portrait", ".png"),
            ("portrait2", ".png"),
            ("driver", ".mp4"),
            ("driver2", ".mp4"),
        )
    }


@pytest.fixture(scope="session")
def stub_backend() -> BlobFaces:
    return BlobFaces()


@pytest.fixture(scope="session")
def make_stub_pipe(tiny_weights, stub_backend):
    """Build tiny pipelines for :func:`synthetic_media`: the stub face backend and a small synthetic
    motion encoder (through the pipeline's MotionFeatureEncoder interface) instead of the 36 MB PD-FGC,
    whose cost would dominate these tests. Every pipeline built gets the same (seeded) encoder."""
    import torch

    from fantasy_portrait.pipeline.pipeline import FantasyPortraitPipeline
    from fantasy_portrait.synthetic.motion_encoder import TinyMotionEncoder, TinyMotionEncoderConfig
    from fantasy_portrait.synthetic.tiny_model import SyntheticMotionEncoder

    torch.manual_seed(0)
    net = TinyMotionEncoder(
        TinyMotionEncoderConfig(crop_size=32, channels=(4, 8, 8, 16), trunk_dim=32, head_hidden=32)
    )
    motion = SyntheticMotionEncoder(net.eval())

    def make():
        pipe = FantasyPortraitPipeline.from_pretrained(tiny_weights, face_backend=stub_backend)
        pipe.motion_encoder = motion
        return pipe

    return make


@pytest.fixture(scope="session")
def stub_pipe(make_stub_pipe):
    """A tiny pipeline for :func:`synthetic_media` (see :func:`make_stub_pipe`)."""
    return make_stub_pipe()


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
