"""FantasyPortrait: multi-character portrait animation with expression-augmented diffusion transformers."""

__version__ = "0.1.0"
