"""Scenes with 1 to 4 characters and whole rendered clips with their ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import Identity, random_identity
from .performance import random_performance
from .render import Character, Scene, render_frame

MAX_CHARACTERS = 4


@dataclass
class Clip:
    """A rendered clip, characters in scene order.

    frames: (F, H, W, 3) uint8 RGB. motion: (F, N, 17) float32 parameters that were rendered.
    boxes: (F, N, 4), five_points: (F, N, 5, 2), landmarks: (F, N, 35, 2) float32 pixels;
    landmark_visible: (F, N, 35) bool.
    """

    frames: np.ndarray
    motion: np.ndarray
    boxes: np.ndarray
    five_points: np.ndarray
    landmarks: np.ndarray
    landmark_visible: np.ndarray


def layout(
    num_characters: int, height: int, width: int, rng: np.random.Generator | None = None
) -> list[tuple]:
    """Head centres (fractions) and sizes for side-by-side characters, left to right.

    Heads (with hair and head motion) stay inside their own column, so the boxes of different
    characters never overlap and the image-left-to-right order is the scene order.
    """
    if not 1 <= num_characters <= MAX_CHARACTERS:
        raise ValueError(f"scenes hold 1 to {MAX_CHARACTERS} characters, got {num_characters}")
    col = width / num_characters
    # A head with volume hair, turned and shifted, spans about 3.3 half-heights across.
    size = min(0.27 * height, 0.9 * col / 3.3) / height
    out = []
    for i in range(num_characters):
        jx = 0.0 if rng is None else rng.uniform(-0.04, 0.04) * col
        jy = 0.0 if rng is None else rng.uniform(-0.03, 0.03)
        sz = size * (1.0 if rng is None else rng.uniform(0.9, 1.0))
        out.append((((i + 0.5) * col + jx) / width, 0.42 + jy, sz))
    return out


def random_scene(
    rng: np.random.Generator | int,
    num_characters: int = 1,
    height: int = 256,
    width: int = 256,
    identities: list[Identity] | None = None,
) -> Scene:
    """Random identities (unless given) placed side by side; background from the first identity."""
    rng = np.random.default_rng(rng)
    if identities is None:
        identities = [random_identity(rng) for _ in range(num_characters)]
    if len(identities) != num_characters:
        raise ValueError(f"{len(identities)} identities for {num_characters} characters")
    chars = tuple(
        Character(idt, (cx, cy), size)
        for idt, (cx, cy, size) in zip(identities, layout(num_characters, height, width, rng))
    )
    return Scene(chars, height, width, identities[0].background_top, identities[0].background_bottom)


def with_identities(scene: Scene, identities: list[Identity]) -> Scene:
    """The same layout and background with other characters in the same places."""
    if len(identities) != scene.num_characters:
        raise ValueError(f"{len(identities)} identities for {scene.num_characters} characters")
    chars = tuple(Character(idt, c.center, c.size) for idt, c in zip(identities, scene.characters))
    return Scene(
        chars, scene.height, scene.width, identities[0].background_top, identities[0].background_bottom
    )


def random_performances(num_frames: int, num_characters: int, seed: int, fps: float = 25.0) -> np.ndarray:
    """(F, N, 17) float32 independent performances, one per character, from one seed."""
    seeds = np.random.SeedSequence(seed).spawn(num_characters)
    return np.stack([random_performance(num_frames, np.random.default_rng(s), fps) for s in seeds], 1)


def render_clip(scene: Scene, motion: np.ndarray) -> Clip:
    """Render (F, N, 17) motion for the scene's N characters into a :class:`Clip`."""
    motion = np.asarray(motion, np.float32)
    if motion.ndim != 3 or motion.shape[1] != scene.num_characters:
        raise ValueError(f"motion must be (F, {scene.num_characters}, 17), got {motion.shape}")
    frames = [render_frame(scene, m) for m in motion]
    return Clip(
        frames=np.stack([f.image for f in frames]),
        motion=motion.copy(),
        boxes=np.stack([f.boxes for f in frames]),
        five_points=np.stack([f.five_points for f in frames]),
        landmarks=np.stack([f.landmarks for f in frames]),
        landmark_visible=np.stack([f.landmark_visible for f in frames]),
    )
