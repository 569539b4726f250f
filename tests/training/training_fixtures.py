"""Helpers of the training tests (a uniquely named module, imported by the test files): a tiny
precomputed set written by code, and a tiny config."""

from __future__ import annotations

import torch

from fantasy_portrait.training.dataset import ShardWriter


def write_tiny_set(
    root,
    num_samples: int = 8,
    seed: int = 0,
    latent_scale: float = 2.0,
    two_faces: int = 0,
    varied_layouts: bool = False,
):
    """A precomputed set for the tiny preset: 5 frames -> 2 latent frames of 4x4 (a 32x32 image).

    Latents are random with std ``latent_scale``; each sample has its own motion features. The last
    ``two_faces`` samples have two faces (left/right halves of the token grid; with
    ``varied_layouts`` every other two-face sample has a background row instead, so label maps differ).
    """
    g = torch.Generator().manual_seed(seed)
    writer = ShardWriter(root, shard_size=3)
    writer.write_empty_prompt(torch.randn(1, 32, generator=g))
    for i in range(num_samples):
        faces = 2 if i >= num_samples - two_faces else 1
        labels = torch.ones(2, 2, dtype=torch.int32)
        if faces == 2:
            labels[:, 1] = 2
            if varied_layouts and i % 2:
                labels[0] = 0
        writer.add(
            f"clip{i:03d}",
            {
                "latents": latent_scale * torch.randn(16, 2, 4, 4, generator=g),
                "image_latents": torch.randn(16, 2, 4, 4, generator=g),
                "clip": torch.randn(4, 1280, generator=g),
                "text": torch.randn(3, 32, generator=g),
                "motion": torch.randn(faces, 5, 554, generator=g),
                "labels": labels,
                "regions": torch.tensor([[0, 0, 16, 32], [16, 0, 32, 32]][:faces], dtype=torch.int32),
            },
            caption=f"sample {i}",
        )
    writer.close(text_len=512)
    return root


def tiny_config_dict(data_root, output_dir, **overrides) -> dict:
    cfg = {
        "model": {"preset": "tiny", "init_seed": 0},
        "data": {"root": str(data_root), "micro_batch": 2},
        "optim": {"lr": 1e-3, "warmup_steps": 2, "grad_accum": 1},
        "train": {
            "output_dir": str(output_dir),
            "max_steps": 6,
            "seed": 7,
            "save_every": 3,
            "progress": False,
        },
    }
    for key, value in overrides.items():
        section, name = key.split(".")
        cfg.setdefault(section, {})[name] = value
    return cfg
