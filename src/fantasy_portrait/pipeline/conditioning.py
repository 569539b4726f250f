"""The conditioning tensors of FantasyPortrait, built in one place (SPEC §5, §7, §8).

Inference (``FantasyPortraitPipeline.__call__``), training precompute (``training.precompute``),
the trainer, the synthetic cases and ``inspect`` all build the model's conditions with these
functions, so training and inference see identical inputs for identical clips:

- image condition ``y`` (B, 4 + C, T, h, w): the first-frame mask channels plus the VAE latents of
  [reference image, F-1 zero frames] (:func:`first_frame_mask`, :func:`image_condition_chunks`,
  :func:`image_latents`, :func:`condition_y`);
- CLIP features of the reference image (:func:`image_tensor`, :func:`clip_features`);
- faces in portrait order (:func:`portrait_order`), their regions (:func:`face_regions`) and the
  token label map (:func:`label_map`);
- motion windows per face (:func:`face_windows`, with the motion controls of
  ``fantasy_portrait.motion.controls`` applied to the features first) and the :class:`MotionCondition`
  (:func:`motion_condition`).

Sizes come from :class:`~fantasy_portrait.models.config.LatentGeometry` (one definition of the
4x temporal / 8x spatial VAE strides and the DiT's 2x2 patch).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..models.config import WAN_GEOMETRY, LatentGeometry

MASK_CHANNELS = 4  # Wan I2V: the first-frame mask is repeated over the 4 frames of a latent frame


# ------------------------------------------------------------------------------------ image sizes


def target_size(width: int, height: int, max_size: int, geometry: LatentGeometry = WAN_GEOMETRY):
    """Longer side -> max_size, then each side rounded UP to a whole token (16 px) (SPEC §8)."""
    cell = geometry.token_pixels
    scale = max_size / max(width, height)
    return cell * math.ceil(width * scale / cell), cell * math.ceil(height * scale / cell)


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H0, W0, 3) uint8 -> (height, width, 3) uint8, Lanczos (SPEC §8); unchanged size is a copy."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(im)


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [-1, 1], the models' pixel input."""
    x = torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1.0)
    return x.permute(2, 0, 1)[None].contiguous()


def video_tensor(frames: np.ndarray) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (1, 3, F, H, W) float32 in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[None]
    return x.float() / 127.5 - 1.0


# ----------------------------------------------------------------------------- image condition y


def first_frame_mask(latent_frames: int, h: int, w: int, batch: int = 1) -> torch.Tensor:
    """(B, 4, T, h, w): ones on latent frame 0 (the known reference frame), zeros elsewhere."""
    mask = torch.zeros(batch, MASK_CHANNELS, latent_frames, h, w)
    mask[:, :, 0] = 1.0
    return mask


def image_condition_chunks(
    ref: torch.Tensor, num_frames: int, geometry: LatentGeometry = WAN_GEOMETRY
) -> Iterator[torch.Tensor]:
    """[reference image, then F-1 zero ('black' in the model's [-1, 1] input, as the reference) frames]
    as the VAE's causal chunks: 1 frame, then 4 (``geometry.temporal``) at a time. ref (B, 3, H, W)."""
    yield ref[:, :, None]
    zeros = torch.zeros(
        ref.shape[0], 3, geometry.temporal, *ref.shape[2:], device=ref.device, dtype=ref.dtype
    )
    for _ in range(geometry.latent_frames(num_frames) - 1):
        yield zeros


def image_latents(
    vae, ref: torch.Tensor, num_frames: int, geometry: LatentGeometry = WAN_GEOMETRY, wrap=None
) -> torch.Tensor:
    """VAE latents (B, C, T, h, w) of [ref, zero frames] through the streaming encoder (``encode_stream``).

    wrap: optional iterator wrapper for the chunks (a progress bar)."""
    chunks = image_condition_chunks(ref, num_frames, geometry)
    return vae.encode_stream(wrap(chunks) if wrap is not None else chunks)


def condition_y(latents: torch.Tensor) -> torch.Tensor:
    """(B, 4 + C, T, h, w): the first-frame mask channels, then the image latents (B, C, T, h, w)."""
    b, _, t, h, w = latents.shape
    return torch.cat([first_frame_mask(t, h, w, b).to(latents.device, latents.dtype), latents], dim=1)


def clip_features(clip, ref: torch.Tensor) -> torch.Tensor:
    """Image-encoder features (B, K, D) of ref (B, 3, H, W) in [-1, 1]."""
    return clip(ref)


# ----------------------------------------------------------------------------- faces and labels


def portrait_order(first_boxes) -> np.ndarray:
    """Indices of faces left to right by the centre x of their (first-frame) box, ties kept (SPEC §7)."""
    boxes = np.asarray(first_boxes, dtype=np.float64).reshape(-1, 4)
    return np.argsort((boxes[:, 0] + boxes[:, 2]) / 2, kind="stable")


def face_regions(portrait_boxes, drive_boxes: Sequence, image_hw: tuple[int, int]) -> np.ndarray:
    """(N, 4) int64 regions: portrait face i's box (in output pixels) enlarged by its driver's motion
    range (``drive_boxes[i]`` (F, 4), in the driving video's pixels). Faces in portrait order."""
    from ..faces.regions import face_region

    boxes = np.asarray(portrait_boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([face_region(boxes[i], drive_boxes[i], image_hw) for i in range(len(boxes))]).astype(
        np.int64
    )


def label_map(regions, image_hw: tuple[int, int], geometry: LatentGeometry = WAN_GEOMETRY) -> torch.Tensor:
    """Token-grid label map (rows, cols) int64 of the regions (0 background, i + 1 face i)."""
    from ..models.masks import token_label_map

    return token_label_map(regions, image_hw, cell=geometry.token_pixels)


# ---------------------------------------------------------------------------------------- motion


def face_windows(
    expression_encoder, motion, num_frames: int | None = None, *, controls=None, portrait_motion=None
) -> list[torch.Tensor]:
    """Motion windows per face: motion (B, N, F, 554) (or a list of N (F, 554) tensors, batch 1) ->
    N tensors (B, T, W, C), faces in the given (portrait) order.

    controls: :class:`~fantasy_portrait.motion.controls.MotionControls` applied to each face's
    features before the encoder (None, as in training, or neutral controls: the features unchanged);
    portrait_motion: per face its own features (554,) or None, (N, 554) or (B, N, 554) for a batch.
    """
    from ..models.motion_attention import motion_windows

    if isinstance(motion, (list, tuple)):
        motion = torch.stack(list(motion))[None]
    if controls is not None:
        motion = _controlled(motion, controls, portrait_motion)
    num_frames = motion.shape[2] if num_frames is None else num_frames
    return [motion_windows(expression_encoder(motion[:, i]), num_frames)[0] for i in range(motion.shape[1])]


def _controlled(motion: torch.Tensor, controls, portrait_motion) -> torch.Tensor:
    """(B, N, F, 554) features under the motion controls (faces with neutral controls untouched)."""
    from ..motion.controls import apply_controls

    batch, faces = motion.shape[:2]
    if controls.is_identity(faces):
        return motion
    if portrait_motion is None:
        portrait_motion = [[None] * faces] * batch
    elif isinstance(portrait_motion, torch.Tensor) and portrait_motion.ndim == 2:
        portrait_motion = portrait_motion[None].expand(batch, -1, -1)
    elif not isinstance(portrait_motion, torch.Tensor):
        portrait_motion = [list(portrait_motion)] * batch
    # the arithmetic in float32 whatever the model dtype; faces left untouched round-trip exactly
    samples = []
    for b in range(batch):
        own = [None if p is None else p.float() for p in portrait_motion[b]]
        samples.append(torch.stack(apply_controls(list(motion[b].float()), controls, own)))
    return torch.stack(samples).to(motion.dtype)


def motion_condition(windows, labels=None, *, masked: bool = True, cache_kv: bool = True):
    """The transformer's :class:`MotionCondition`; the label map is used only for 2+ faces."""
    from ..models.motion_attention import MotionCondition

    return MotionCondition(
        list(windows), labels if len(windows) > 1 else None, cache_kv=cache_kv, masked=masked
    )
