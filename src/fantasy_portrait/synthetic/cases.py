"""Cross-reenactment cases of the synthetic world at the tiny model's size, for training and the demo.

A case: a portrait of N characters (identities T_i, each in its own 64-pixel column, neutral pose),
N single-character 96x96 driving clips of other identities D_i, and the ground truth: the portrait's
characters performing exactly the drivers' motion parameters. Performances start from the neutral
pose and blend into a random performance over the first frames, so ground-truth frame 0 is the
portrait itself (what an image-to-video model reproduces as its first frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .params import neutral_motion, random_identity
from .performance import random_performance
from .render import Character, Scene
from .scenes import Clip, layout, render_clip

CELL = 64  # pixels per character column (and the portrait's height)
DRIVER_CELL = 96  # driving clips are square single-character videos of this size
NUM_FRAMES = 17
FPS = 25.0
RAMP_FRAMES = 4


@dataclass
class Case:
    """portrait: (H, W, 3) uint8; truth: Clip of the portrait's scene with the drivers' motion;
    drivers: one single-character Clip per portrait character (left to right); motion (F, N, 17)."""

    portrait: np.ndarray
    truth: Clip
    drivers: list[Clip]
    motion: np.ndarray
    scene: Scene
    driver_scenes: list[Scene]


def ramped_performance(num_frames: int, rng: np.random.Generator, fps: float = FPS) -> np.ndarray:
    """(F, 17): neutral at frame 0, blended (smoothstep) into a random performance by RAMP_FRAMES."""
    perf = random_performance(num_frames, rng, fps)
    t = np.clip(np.arange(num_frames) / RAMP_FRAMES, 0, 1)
    w = (t * t * (3 - 2 * t))[:, None]
    return ((1 - w) * neutral_motion()[None] + w * perf).astype(np.float32)


HEAD_SIZE = 0.34  # head half-height as a fraction of the portrait height (scenes.layout uses 0.27)


def _scene(identities, rng: np.random.Generator, cell: int, head_size: float | None = None) -> Scene:
    """Characters side by side in ``cell``-wide columns. head_size: larger heads than ``scenes.layout``
    (more latent cells per face); boxes still stay inside their columns."""
    n = len(identities)
    if head_size is None:
        places = layout(n, cell, cell * n, rng)
    else:
        places = [
            (
                (i + 0.5 + rng.uniform(-0.03, 0.03)) / n,
                0.48 + rng.uniform(-0.02, 0.02),
                head_size * rng.uniform(0.92, 1.0),
            )
            for i in range(n)
        ]
    chars = tuple(Character(idt, (cx, cy), size) for idt, (cx, cy, size) in zip(identities, places))
    return Scene(chars, cell, cell * n, identities[0].background_top, identities[0].background_bottom)


def make_case(
    seed: int,
    num_characters: int = 2,
    num_frames: int = NUM_FRAMES,
    cell: int = CELL,
    driver_cell: int = DRIVER_CELL,
) -> Case:
    """Render one case (deterministic in ``seed``)."""
    rng = np.random.default_rng([seed, 7151])
    targets = [random_identity(rng) for _ in range(num_characters)]
    drivers = [random_identity(rng) for _ in range(num_characters)]
    scene = _scene(targets, rng, cell, HEAD_SIZE)
    driver_scenes = [_scene([d], rng, driver_cell) for d in drivers]
    motion = np.stack([ramped_performance(num_frames, rng) for _ in range(num_characters)], axis=1)
    truth = render_clip(scene, motion)
    driver_clips = [render_clip(s, motion[:, i : i + 1]) for i, s in enumerate(driver_scenes)]
    return Case(truth.frames[0].copy(), truth, driver_clips, motion, scene, driver_scenes)


def to_video_tensor(frames: np.ndarray) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (1, 3, F, H, W) float32 in [-1, 1]."""
    from ..pipeline.conditioning import video_tensor

    return video_tensor(frames)


def driver_motion_features(encoder, clip: Clip, rng: np.random.Generator | None = None, jitter: float = 0.02):
    """(F, 554) motion features of a single-character clip through the pipeline's path (224 px PD-FGC
    alignment, then the synthetic encoder). rng: jitter the exact five points by ``jitter`` of the eye
    distance, as a landmark detector would."""
    from ..motion.encoder import extract_motion

    points = clip.five_points[:, 0].astype(np.float64)
    if rng is not None and jitter > 0:
        eye = np.linalg.norm(points[:, 1] - points[:, 0], axis=-1)[:, None, None]
        points = points + rng.normal(0, 1, points.shape) * jitter * eye
    return extract_motion(clip.frames, points, encoder).as_tensor().float()


def training_tensors(case: Case, latent, image_encoder, encoder, text: torch.Tensor, rng=None) -> dict:
    """The precomputed-set tensors (``fantasy_portrait.training.dataset.SAMPLE_TENSORS``) of a case,
    made exactly as the pipeline makes its inputs (image condition = [portrait, zero frames])."""
    from ..pipeline import conditioning

    frames = case.truth.frames
    hw = frames.shape[1:3]
    video = to_video_tensor(frames)
    ref = conditioning.image_tensor(frames[0])
    latents = latent.encode(video)[0]
    image_latents = conditioning.image_latents(latent, ref, len(frames))[0]
    clip = conditioning.clip_features(image_encoder, ref)[0]
    motion = torch.stack([driver_motion_features(encoder, d, rng) for d in case.drivers])
    regions = conditioning.face_regions(case.truth.boxes[0], [d.boxes[:, 0] for d in case.drivers], hw)
    labels = conditioning.label_map(regions, hw).to(torch.int32)
    return {
        "latents": latents.contiguous(),
        "image_latents": image_latents.contiguous(),
        "clip": clip.contiguous(),
        "text": text.reshape(-1, text.shape[-1])[:1].contiguous(),
        "motion": motion.contiguous(),
        "labels": labels.contiguous(),
        "regions": torch.as_tensor(regions, dtype=torch.int32).contiguous(),
    }
