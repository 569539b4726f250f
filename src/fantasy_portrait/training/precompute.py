"""Precompute step: run the frozen encoders once per clip and cache the results in shards.

Input is a clip manifest (JSON Lines, one clip per line; format in docs/training.md). For each clip
it reads the video, cuts it to the largest 4k+1 frame count, resizes and centre-crops it to the
training size, orders the faces left to right, and stores: the VAE latents of the clip, the VAE
latents of [first frame, black frames] (Wan's image condition), the CLIP features of the first
frame, the caption's text embedding, the motion features of every face, the face regions and the
token label map. A clip that cannot be read or encoded is skipped, counted and listed in the index;
it never stops the run.

The encoders are plain callables (:class:`FrozenEncoders`) so any implementation fits: the
pipeline's loaders for the released Wan weights, or tiny random diffusers models in tests.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .dataset import ShardWriter

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class FrozenEncoders:
    """The frozen parts, as callables.

    encode_video: (3, F, H, W) float32 in [-1, 1] -> (16, T, H/8, W/8) normalised VAE latents.
    encode_image: (H, W, 3) uint8 RGB -> (K, 1280) CLIP features (K = 257 for ViT-H/14).
    encode_text: prompt -> (L, D) text embeddings of the real tokens (padding is added at load time).
    encode_video_stream: optional, causal chunks (1 frame, then 4 each, as (1, 3, f, H, W)) -> (C, T,
        H/8, W/8); the image condition is encoded through it as at inference (else ``encode_video``).
    motion_features: optional (frames (F, H, W, 3) uint8, boxes (N, F, 4), five_points (N, F, 5, 2)
        or None) -> (N, F, 554); used only for clips whose track file has no ``motion`` tensor
        (see :func:`pdfgc_motion_features`).
    """

    encode_video: Callable[[torch.Tensor], torch.Tensor]
    encode_image: Callable[[np.ndarray], torch.Tensor]
    encode_text: Callable[[str], torch.Tensor]
    motion_features: Callable[..., torch.Tensor] | None = None
    encode_video_stream: Callable[..., torch.Tensor] | None = None


@dataclass
class PrecomputeOptions:
    height: int = 480
    width: int = 832
    max_frames: int = 81
    fps: float | None = None  # resample clips to this rate (None: keep the source rate)
    dtype: str = "float32"  # storage type of latents, CLIP and text tensors
    shard_size: int = 64  # samples per shard file
    text_len: int = 512

    def validate(self) -> None:
        from ..models.config import WAN_GEOMETRY as geo

        if self.height % geo.token_pixels or self.width % geo.token_pixels:
            raise InputError(
                f"training size {self.height}x{self.width} must be multiples of {geo.token_pixels}"
            )
        if not geo.is_valid_frames(self.max_frames):
            raise InputError(f"max_frames {self.max_frames} must be of the form 4k+1")
        if self.dtype not in _DTYPES:
            raise InputError(f"dtype {self.dtype!r} must be one of {sorted(_DTYPES)}")
        if self.shard_size < 1:
            raise InputError("shard_size must be at least 1")


@dataclass
class ClipEntry:
    """One manifest line. Paths are relative to the manifest's folder."""

    id: str
    video: Path
    tracks: Path
    caption: str = ""


@dataclass
class PrecomputeReport:
    written: int
    skipped: list[dict]
    shards: int
    seconds: float

    def summary(self) -> str:
        return f"{self.written} clips written in {self.shards} shards, {len(self.skipped)} skipped ({self.seconds:.1f} s)"


def read_manifest(path: str | os.PathLike) -> list[ClipEntry]:
    """Parse a clip manifest (JSON Lines). Raises InputError naming the line of a bad entry."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    entries = []
    seen: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 text file (byte at position {exc.start})") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise TypeError(f"expected a JSON object {{...}}, got {type(data).__name__}")
            if not isinstance(data.get("video"), str) or not isinstance(data.get("tracks"), str):
                raise KeyError("'video' and 'tracks' must be file names (text)")
            entry = ClipEntry(
                id=str(data.get("id") or Path(data["video"]).stem),
                video=path.parent / data["video"],
                tracks=path.parent / data["tracks"],
                caption=str(data.get("caption") or ""),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{path}:{n}: bad manifest line ({exc.__class__.__name__}: {exc})") from None
        if entry.id in seen:
            raise InputError(f"{path}:{n}: duplicate clip id {entry.id!r}")
        seen.add(entry.id)
        entries.append(entry)
    if not entries:
        raise InputError(f"{path}: manifest lists no clips")
    return entries


def _read_tracks(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise InputError(f"{path}: track file not found")
    try:
        tracks = load_file(str(path))
    except Exception as exc:
        raise InputError(f"{path}: unreadable track file ({exc})") from exc
    boxes = tracks.get("boxes")
    if boxes is None or boxes.dim() != 3 or boxes.shape[-1] != 4 or boxes.shape[0] < 1:
        raise InputError(f"{path}: track file needs 'boxes' of shape (faces, frames, 4)")
    return tracks


def resize_crop(frames: np.ndarray, height: int, width: int) -> tuple[np.ndarray, float, float, float]:
    """Scale (F, H0, W0, 3) uint8 frames to cover (height, width), then centre-crop.

    Returns (frames (F, height, width, 3), scale, x offset, y offset): a point p maps to p*scale - offset.
    """
    import cv2

    h0, w0 = frames.shape[1:3]
    scale = max(height / h0, width / w0)
    nh, nw = max(height, round(h0 * scale)), max(width, round(w0 * scale))
    ox, oy = (nw - width) // 2, (nh - height) // 2
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LANCZOS4
    out = np.empty((frames.shape[0], height, width, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(frame, (nw, nh), interpolation=interp)[oy : oy + height, ox : ox + width]
    return out, scale, float(ox), float(oy)


def encode_clip(
    entry: ClipEntry, encoders: FrozenEncoders, options: PrecomputeOptions
) -> dict[str, torch.Tensor]:
    """All cached tensors of one clip (see :class:`~fantasy_portrait.training.dataset.PrecomputedDataset`)."""
    from ..io.video import frame_count_4k1, read_video
    from ..models.config import WAN_GEOMETRY as geo
    from ..pipeline import conditioning

    tracks = _read_tracks(entry.tracks)
    video = read_video(entry.video, fps=options.fps)
    frames_src = video.frames
    boxes = tracks["boxes"].float()
    num = frame_count_4k1(min(len(frames_src), boxes.shape[1]), options.max_frames)
    frames_src = frames_src[:num]
    boxes = boxes[:, :num]
    points = tracks.get("five_points")
    points = points[:, :num].float() if points is not None else None

    if "motion" in tracks:
        motion = tracks["motion"][:, :num].float()
    elif encoders.motion_features is not None:
        motion = encoders.motion_features(
            frames_src, boxes.numpy(), None if points is None else points.numpy()
        )
        motion = torch.as_tensor(motion).float()
    else:
        raise InputError(f"{entry.tracks}: no 'motion' tensor and no motion encoder given")
    if motion.shape != (boxes.shape[0], num, 554):
        raise InputError(
            f"{entry.tracks}: motion has shape {tuple(motion.shape)}, expected ({boxes.shape[0]}, {num}, 554)"
        )
    if not torch.isfinite(motion).all() or not torch.isfinite(boxes).all():
        raise InputError(f"{entry.tracks}: motion or boxes contain NaN/inf")

    frames, scale, ox, oy = resize_crop(frames_src, options.height, options.width)
    boxes = boxes * scale - torch.tensor([ox, oy, ox, oy])
    boxes[..., 0::2] = boxes[..., 0::2].clamp(0, options.width)
    boxes[..., 1::2] = boxes[..., 1::2].clamp(0, options.height)

    # Faces in portrait order (left to right by the first-frame box centre, SPEC §7). The clip is its
    # own driver: each face's region is its first-frame box enlarged by its own motion range.
    order = torch.as_tensor(conditioning.portrait_order(boxes[:, 0].numpy()))
    boxes, motion = boxes[order], motion[order]

    hw = (options.height, options.width)
    regions = conditioning.face_regions(boxes[:, 0].numpy(), boxes.numpy(), hw)
    labels = conditioning.label_map(regions, hw, geo).to(torch.int32)

    video_in = conditioning.video_tensor(frames)[0]  # (3, F, H, W)
    with torch.no_grad():
        latents = encoders.encode_video(video_in)
        # [first frame, F-1 zero frames] in the inference pipeline's causal chunks (conditioning.py).
        ref = conditioning.image_tensor(frames[0])
        chunks = conditioning.image_condition_chunks(ref, num, geo)
        if encoders.encode_video_stream is not None:
            image_latents = encoders.encode_video_stream(chunks)
        else:
            image_latents = encoders.encode_video(torch.cat(list(chunks), dim=2)[0])
        clip = encoders.encode_image(frames[0])
        text = encoders.encode_text(entry.caption)
    expected = (geo.latent_frames(num), *geo.latent_size(options.height, options.width))
    if tuple(latents.shape[1:]) != expected or latents.shape != image_latents.shape:
        raise InputError(f"{entry.video}: VAE gave latents {tuple(latents.shape)}, expected (C, {expected})")
    store = _DTYPES[options.dtype]
    return {
        "latents": latents.to(store).contiguous(),
        "image_latents": image_latents.to(store).contiguous(),
        "clip": clip.to(store).contiguous(),
        "text": text.to(store).contiguous(),
        "motion": motion.contiguous(),
        "labels": labels.contiguous(),
        "regions": torch.as_tensor(regions, dtype=torch.int32).contiguous(),
    }


def precompute_dataset(
    manifest: str | os.PathLike,
    output: str | os.PathLike,
    encoders: FrozenEncoders,
    options: PrecomputeOptions | None = None,
    progress: bool = True,
) -> PrecomputeReport:
    """Encode every clip of ``manifest`` into ``output`` (shards + index.json + empty prompt)."""
    from tqdm import tqdm

    options = options or PrecomputeOptions()
    options.validate()
    entries = read_manifest(manifest)
    start = time.perf_counter()
    writer = ShardWriter(output, options.shard_size, asdict(options))
    with torch.no_grad():
        writer.write_empty_prompt(encoders.encode_text("").to(_DTYPES[options.dtype]))
    for entry in tqdm(entries, desc="precompute", unit="clip", disable=not progress):
        try:
            tensors = encode_clip(entry, encoders, options)
        except Exception as exc:  # a broken clip is reported, never fatal
            reason = f"{exc.__class__.__name__}: {exc}"
            logger.warning("skipping clip %s: %s", entry.id, reason)
            writer.skip(entry.id, reason, video=str(entry.video))
            continue
        writer.add(entry.id, tensors, caption=entry.caption, source=str(entry.video))
    writer.close(options.text_len)
    report = PrecomputeReport(
        len(writer.samples), writer.skipped, len(writer.shards), time.perf_counter() - start
    )
    logger.info("%s: %s", output, report.summary())
    if not writer.samples:
        raise InputError(
            f"{manifest}: no clip could be precomputed ({len(writer.skipped)} skipped; see the log)"
        )
    return report


def pipeline_encoders(
    vae,
    clip,
    text_encoder=None,
    empty_prompt: torch.Tensor | None = None,
    *,
    device: str | torch.device = "cpu",
    motion_features: Callable[..., torch.Tensor] | None = None,
) -> FrozenEncoders:
    """FrozenEncoders from the pipeline's loaded encoders (``fantasy_portrait.pipeline.encoders``).

    vae: ``WanVAE``; clip: ``ClipImageEncoder``; text_encoder: ``TextEncoder`` or None. Without a
    text encoder every clip gets ``empty_prompt`` ((1, L, D) or (L, D), e.g. the cached empty-prompt
    embedding of the weight folder) and captions are ignored with one warning.
    """
    if text_encoder is None and empty_prompt is None:
        raise InputError("precompute needs a text encoder or an empty-prompt embedding")
    warned = []

    from ..pipeline import conditioning

    def encode_video(video: torch.Tensor) -> torch.Tensor:
        return vae.encode(video.unsqueeze(0).to(device))[0].float().cpu()

    def encode_video_stream(chunks) -> torch.Tensor:
        return vae.encode_stream(chunk.to(device) for chunk in chunks)[0].float().cpu()

    def encode_image(image: np.ndarray) -> torch.Tensor:
        return conditioning.clip_features(clip, conditioning.image_tensor(image).to(device))[0].float().cpu()

    def encode_text(prompt: str) -> torch.Tensor:
        if text_encoder is None:
            if prompt and not warned:
                logger.warning(
                    "no text encoder loaded: captions are ignored, every clip gets the empty prompt"
                )
                warned.append(True)
            return _trim_text(empty_prompt.reshape(-1, empty_prompt.shape[-1]).float())
        return _trim_text(text_encoder([prompt])[0].float().cpu())

    return FrozenEncoders(encode_video, encode_image, encode_text, motion_features, encode_video_stream)


def pdfgc_motion_features(encoder) -> Callable[..., torch.Tensor]:
    """A ``motion_features`` callable running the PD-FGC ``MotionEncoder`` on each face's five points."""
    from ..motion.encoder import extract_motion

    def features(frames: np.ndarray, boxes: np.ndarray, five_points: np.ndarray | None) -> torch.Tensor:
        if five_points is None:
            raise InputError("track file has neither 'motion' nor 'five_points' to compute it from")
        return torch.stack(
            [
                extract_motion(frames, five_points[i], encoder).as_tensor().float().cpu()
                for i in range(len(boxes))
            ]
        )

    return features


def _trim_text(text: torch.Tensor) -> torch.Tensor:
    """Drop the trailing all-zero (padding) rows of an (L, D) embedding; keep at least one row."""
    nonzero = torch.nonzero(text.abs().sum(dim=1) > 0).flatten()
    length = int(nonzero[-1]) + 1 if len(nonzero) else 1
    return text[:length].contiguous()
