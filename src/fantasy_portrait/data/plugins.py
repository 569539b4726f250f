"""Pluggable scorers: aesthetic score and captions.

Aesthetic score, one of:
- a LAION-style predictor: a local CLIP vision model folder (``--aesthetic-clip``, loadable by
  transformers) plus the predictor head (``--aesthetic-weights``, .pth or .safetensors with
  ``layers.N.weight/bias`` linear layers applied in order to the L2-normalised image embedding, as
  in the improved-aesthetic-predictor); the clip's score is the mean over a few frames;
- a Python callable ``module:function`` taking a list of (H, W, 3) uint8 RGB frames, returning a float;
- nothing (default): the stage is skipped and the manifest says so.

People count (optional, beside the face count): a Python callable ``module:function`` taking one
(H, W, 3) uint8 RGB analysis frame and returning the people in it (a count, or a sequence of boxes);
the clip's count is the median over the sampled frames, checked against the face-count range.

Captions, one of:
- a command template run once per kept clip, e.g. ``"my-vlm --video {clip}"``; placeholders
  {clip} (the cut clip, or the source when clips are not cut), {source}, {start}, {end} (seconds);
  its standard output, stripped, is the caption;
- a Python callable ``module:function(clip_path, frames) -> str``;
- nothing (default).
"""

from __future__ import annotations

import importlib
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, InputError
from .config import CurationConfig

AESTHETIC_FRAMES = 3
CAPTION_TIMEOUT_S = 600


def load_callable(spec: str) -> Callable:
    """``"package.module:function"`` -> the function."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InputError(f"callable {spec!r} must look like 'package.module:function'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"cannot import {spec!r} ({exc})") from exc


class LaionAestheticScorer:
    """CLIP image embedding -> linear predictor head (LAION aesthetic scale, about 1-10)."""

    def __init__(self, clip_dir: str, head_path: str, device: str = "cpu"):
        import torch
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        if not Path(clip_dir).is_dir():
            raise CheckpointError(f"{clip_dir}: CLIP model folder not found")
        try:
            self.processor = CLIPImageProcessor.from_pretrained(clip_dir)
            self.model = CLIPVisionModelWithProjection.from_pretrained(clip_dir).to(device).eval()
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{clip_dir}: cannot load a CLIP vision model ({exc})") from exc
        self.device = device
        self.layers = self._load_head(head_path, torch)

    @staticmethod
    def _load_head(path: str, torch) -> list[tuple]:
        if not Path(path).is_file():
            raise CheckpointError(f"{path}: aesthetic predictor weights not found")
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            from ..io.weights import load_torch_file

            state = load_torch_file(path, what="aesthetic predictor weights", mmap=False)
        state = {k.removeprefix("model."): v for k, v in state.items()}
        indices = sorted(
            {int(k.split(".")[1]) for k in state if k.startswith("layers.") and k.endswith(".weight")}
        )
        if not indices:
            raise CheckpointError(f"{path}: no 'layers.N.weight' tensors (not an aesthetic predictor head)")
        return [(state[f"layers.{i}.weight"].float(), state.get(f"layers.{i}.bias")) for i in indices]

    def __call__(self, frames: list[np.ndarray]) -> float:
        import torch

        with torch.no_grad():
            pixels = self.processor(images=list(frames), return_tensors="pt")["pixel_values"].to(self.device)
            embeds = self.model(pixel_values=pixels).image_embeds.float().cpu()
            x = embeds / embeds.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            for weight, bias in self.layers:
                if x.shape[-1] != weight.shape[1]:
                    raise CheckpointError(
                        f"aesthetic head expects {weight.shape[1]}-dim input, CLIP gives {x.shape[-1]}"
                    )
                x = x @ weight.T + (bias.float() if bias is not None else 0)
        return float(x.mean())


def build_aesthetic_scorer(config: CurationConfig) -> tuple[Callable | None, str]:
    """(scorer or None, status). Status is what the manifest records when nothing is scored."""
    if config.aesthetic_callable:
        return load_callable(config.aesthetic_callable), "scored"
    if config.aesthetic_weights:
        return LaionAestheticScorer(config.aesthetic_clip, config.aesthetic_weights), "scored"
    return None, "skipped: no aesthetic predictor given"


def build_captioner(config: CurationConfig) -> Callable | None:
    """A function (clip_path, source, start_s, end_s, frames) -> caption, or None."""
    if config.caption_callable:
        function = load_callable(config.caption_callable)

        def by_callable(clip, source, start, end, frames):
            return str(function(clip, frames)).strip()

        return by_callable
    if config.caption_command:
        template = config.caption_command

        def by_command(clip, source, start, end, frames):
            command = [
                part.format(clip=clip, source=source, start=f"{start:.3f}", end=f"{end:.3f}")
                for part in shlex.split(template)
            ]
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=CAPTION_TIMEOUT_S, check=False
            )
            if result.returncode != 0:
                raise RuntimeError(
                    f"caption command exited {result.returncode}: {result.stderr.strip()[:200]}"
                )
            return result.stdout.strip()

        return by_command
    return None
