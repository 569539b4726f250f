"""The animation pipeline: conditions -> guided flow-matching sampler -> frames (SPEC §8).

- :class:`~.pipeline.FantasyPortraitPipeline` (``from_pretrained(weights_dir, ...)``, then call it).
- ``schedule``: sigmas and guidance; ``sampler``: the denoising loop and temporal windows;
  ``encoders``: Wan CLIP / VAE / umT5 from the original files; ``layout``: the weight folder;
  ``drivers``: driving faces -> motion per portrait face; ``memory``: memory modes and estimates;
  ``tiny``: a tiny random weight folder in the released layout.

Submodules are imported on use so ``import fantasy_portrait.pipeline`` stays light.
"""

from __future__ import annotations

__all__ = ["AnimationResult", "FantasyPortraitPipeline"]


def __getattr__(name: str):
    if name in __all__:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
