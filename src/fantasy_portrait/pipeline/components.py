"""The interfaces the pipeline needs from its frozen components (typing Protocols).

``FantasyPortraitPipeline`` takes any objects that satisfy these: the released Wan VAE and CLIP
(``encoders.WanVAE``, ``encoders.ClipImageEncoder``) and PD-FGC (``motion.MotionEncoder``), or the
synthetic world's stand-ins (``synthetic.latent.LinearLatent``, ``synthetic.latent.PatchImageEncoder``,
``synthetic.tiny_model.SyntheticMotionEncoder``). This is the only way the synthetic world reaches the
pipeline; ``tests/pipeline/test_pipeline_components.py`` checks that every implementation conforms.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class VideoAutoencoder(Protocol):
    """Pixels (B, 3, 4k+1, H, W) in [-1, 1] <-> normalised latents (B, z_dim, k+1, H/8, W/8).

    Optional: ``use_tiling`` (bool) and ``disable_tiling()``, which placements use to restore tiling.
    """

    @property
    def z_dim(self) -> int: ...

    def encode(self, video: torch.Tensor) -> torch.Tensor: ...

    def encode_stream(self, chunks: Iterable[torch.Tensor]) -> torch.Tensor:
        """Causal chunks (1 frame, then 4 each) -> latents, as ``encode`` of their concatenation."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...

    def decode_stream(self, latents: torch.Tensor) -> Iterator[torch.Tensor]:
        """Pixels per latent frame: (B, 3, 1, H, W) first, then (B, 3, 4, H, W)."""
        ...

    def enable_tiling(self) -> None: ...

    def to(self, *args, **kwargs): ...


@runtime_checkable
class ImageEncoder(Protocol):
    """(B, 3, H, W) in [-1, 1] -> (B, K, D) image features (Wan: CLIP ViT-H/14, K = 257, D = 1280)."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor: ...

    def to(self, *args, **kwargs): ...


@runtime_checkable
class MotionFeatureEncoder(Protocol):
    """Aligned face crops -> per-frame motion features (``motion.MotionFeatures``, 554 per frame)."""

    device: torch.device
    dtype: torch.dtype

    def encode(self, crops_rgb: np.ndarray):
        """(B, S, S, 3) uint8 aligned crops (S = 224 for PD-FGC's alignment) -> MotionFeatures."""
        ...

    def encode_tensor(self, x: torch.Tensor):
        """(B, 3, S, S) float in [-1, 1] -> MotionFeatures."""
        ...

    def encode_blank(self):
        """The features of a blank crop (a neutral face stand-in)."""
        ...


def check_components(vae, clip, motion_encoder) -> None:
    """Raise TypeError naming the component that lacks part of its interface."""
    for name, obj, proto in (
        ("vae", vae, VideoAutoencoder),
        ("image encoder", clip, ImageEncoder),
        ("motion encoder", motion_encoder, MotionFeatureEncoder),
    ):
        if not isinstance(obj, proto):
            members = [m for m in dir(proto) if not m.startswith("_") and not hasattr(obj, m)]
            raise TypeError(
                f"{name} {type(obj).__name__} does not implement {proto.__name__} (lacks {members})"
            )
