"""The judge of the synthetic world: reads a face's motion parameters from pixels, for the metrics.

The demo and the ablation score generated faces against the exact parameters that were rendered
into the ground truth. Reading them back with the motion encoder would let the model be judged by
the network whose features it was trained on, so the judge is a separate network: other
architecture (a plain CNN with GroupNorm that keeps the spatial layout), other crops (a square
around the face's exact ground-truth box, not the PD-FGC alignment), other data (its own seeds) and
its own training. It reads the 13 normalised parameters of ``motion_encoder.TARGET_NAMES``.

It is trained on clean renders and on the same renders passed through the tiny model's latent
(``latent.py``), so blur from the latent is not read as motion (closed eyes, say); every method is
scored on the same crops, so this only removes a bias, it does not favour one method.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from .motion_encoder import PART_NAMES, TARGET_NAMES, targets_of

logger = logging.getLogger(__name__)

WEIGHTS_PATH = Path(__file__).parent / "weights" / "judge.safetensors"
TARGET_ORDER = tuple(n for part in PART_NAMES for n in TARGET_NAMES[part])
SEED_BASE = 200_000  # judge data seeds; the model trains on 100000+, the demo uses 0+
BOX_MARGIN = 1.25  # crop side = this x the larger side of the face box


@dataclass(frozen=True)
class JudgeConfig:
    crop_size: int = 48
    channels: tuple[int, ...] = (16, 32, 64, 64)
    hidden: int = 192

    @classmethod
    def from_dict(cls, data: dict) -> JudgeConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


class Judge(nn.Module):
    """(B, 3, S, S) RGB in [-1, 1] -> (B, 13) normalised parameters (``TARGET_ORDER``)."""

    def __init__(self, config: JudgeConfig | None = None):
        super().__init__()
        self.config = config = config or JudgeConfig()
        layers: list[nn.Module] = []
        cin, size = 3, config.crop_size
        for i, cout in enumerate(config.channels):
            stride = 1 if i == 0 else 2  # full resolution once (thin lids), then halve each stage
            layers += [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(8, cout), nn.SiLU()]
            if i:
                layers += [nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU()]
            cin, size = cout, (size + stride - 1) // stride
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin * size * size, config.hidden),
            nn.SiLU(),
            nn.Linear(config.hidden, len(TARGET_ORDER)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# -------------------------------------------------------------------------------------------- crops
def box_crops(frames: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """(F, H, W, 3) uint8 frames, (F, 4) boxes -> (F, size, size, 3): a square of BOX_MARGIN x the
    box's larger side around its centre, resampled (bilinear, edges replicated)."""
    import cv2

    out = np.empty((len(frames), size, size, 3), np.uint8)
    for t, (frame, (x1, y1, x2, y2)) in enumerate(zip(frames, np.asarray(boxes, np.float64))):
        side = BOX_MARGIN * max(x2 - x1, y2 - y1)
        s = size / side
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        m = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]])
        out[t] = cv2.warpAffine(
            frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
    return out


def _tensor(crops: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@torch.no_grad()
def judge_face(judge: Judge, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(F, 13) parameter estimates of the face inside ``boxes`` (F, 4) in every frame."""
    judge.eval()
    crops = box_crops(frames, boxes, judge.config.crop_size)
    return torch.cat([judge(_tensor(crops[i : i + 256])) for i in range(0, len(crops), 256)]).numpy()


# --------------------------------------------------------------------------------------------- data
@dataclass
class JudgeSet:
    crops: np.ndarray  # (M, S, S, 3) uint8
    targets: np.ndarray  # (M, 13) float32
    through_latent: np.ndarray  # (M,) bool: crop of a latent round trip
    # (M,) 13 read-outs of the motion encoder on the same faces (clean rows only; NaN elsewhere),
    # when render_judge_set was given an encoder: the comparison in the judge's record.
    encoder_estimates: np.ndarray | None = None


def render_judge_set(
    num_clips: int,
    seed: int,
    crop_size: int,
    latents=(),
    jitter: float = 0.04,
    num_frames: int | None = None,
    encoder=None,
) -> JudgeSet:
    """Crops of cross-reenactment-style scenes (1 or 2 characters, the tiny model's 64-px cells, random
    identities and performances). Every clip is also added after a round trip through each of
    ``latents``. Boxes are jittered by ``jitter`` of their size (position and scale), as no crop is
    exact. num_frames: frames per clip (default: the demo's 17; fewer, more varied clips generalise
    better for the same rendering time). encoder: a tiny motion encoder whose read-outs of the same
    clean faces (its own aligned crops, exact five points) are kept for comparison."""
    from .cases import CELL, HEAD_SIZE, NUM_FRAMES, _scene
    from .latent import through_latent
    from .params import random_identity
    from .performance import random_performance
    from .scenes import render_clip

    rng = np.random.default_rng([seed, 4421])
    crops, targets, via, readouts = [], [], [], []
    for _ in range(num_clips):
        n = int(rng.integers(1, 3))
        scene = _scene([random_identity(rng) for _ in range(n)], rng, CELL, HEAD_SIZE)
        motion = np.stack([random_performance(num_frames or NUM_FRAMES, rng) for _ in range(n)], axis=1)
        clip = render_clip(scene, motion)
        versions = [(clip.frames, False)] + [(through_latent(lat, clip.frames), True) for lat in latents]
        for i in range(n):
            boxes = clip.boxes[:, i].astype(np.float64)
            for frames, is_latent in versions:
                size = (boxes[:, 2:] - boxes[:, :2]).max(1, keepdims=True)
                shift = rng.normal(0, jitter, (len(boxes), 2)) * size
                scale = 1 + rng.normal(0, jitter, (len(boxes), 1))
                centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + shift
                half = (boxes[:, 2:] - boxes[:, :2]) / 2 * scale
                crops.append(box_crops(frames, np.concatenate([centre - half, centre + half], 1), crop_size))
                targets.append(targets_of(clip.motion[:, i]))
                via.append(np.full(len(boxes), is_latent))
                if encoder is not None:
                    readouts.append(
                        np.full((len(boxes), len(TARGET_ORDER)), np.nan, np.float32)
                        if is_latent
                        else _encoder_readouts(encoder, frames, clip.five_points[:, i])
                    )
    return JudgeSet(
        np.concatenate(crops),
        np.concatenate(targets).astype(np.float32),
        np.concatenate(via),
        np.concatenate(readouts) if readouts else None,
    )


def _encoder_readouts(encoder, frames: np.ndarray, five_points: np.ndarray) -> np.ndarray:
    from .motion_encoder import aligned_crops, predict_motion

    crops = aligned_crops(frames, five_points.astype(np.float64), encoder.config.crop_size)
    return predict_motion(encoder, crops).astype(np.float32)


@dataclass
class JudgeOptions:
    num_clips: int = 1600
    num_frames: int = 5
    steps: int = 4000
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    config: JudgeConfig = JudgeConfig()


def train_judge(options: JudgeOptions, data: JudgeSet) -> tuple[Judge, dict]:
    """Supervised L1 regression with noise and brightness augmentation; deterministic per seed."""
    torch.manual_seed(options.seed)
    t0 = time.perf_counter()
    model = Judge(options.config)
    opt = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=options.lr, total_steps=options.steps, pct_start=0.1
    )
    x_all, y_all = _tensor(data.crops), torch.from_numpy(data.targets)
    gen = torch.Generator().manual_seed(options.seed)
    history = []
    model.train()
    for step in range(options.steps):
        idx = torch.randint(0, len(y_all), (options.batch_size,), generator=gen)
        x, y = x_all[idx], y_all[idx]
        noise = torch.rand(len(idx), 1, 1, 1, generator=gen) * 0.08
        x = x + noise * torch.randn(x.shape, generator=gen)
        x = x * (1 + 0.1 * (torch.rand(len(idx), 1, 1, 1, generator=gen) - 0.5))
        loss = (model(x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == options.steps - 1:
            history.append({"step": step, "loss": float(loss.detach())})
            logger.info("judge step %d loss %.4f", step, float(loss.detach()))
    model.eval()
    return model, {"train_seconds": time.perf_counter() - t0, "history": history}


@torch.no_grad()
def evaluate(judge: Judge, data: JudgeSet) -> dict:
    """Per-parameter MAE on ``data`` (clean and latent crops apart) next to the best constant's (the
    median: under absolute error it beats the mean, which matters for skewed parameters like blinks)."""
    pred = torch.cat(
        [judge(_tensor(data.crops[i : i + 512])) for i in range(0, len(data.crops), 512)]
    ).numpy()
    err = np.abs(pred - data.targets)
    base = np.abs(data.targets - np.median(data.targets, axis=0))
    out = {}
    for name, mask in (("clean", ~data.through_latent), ("latent", data.through_latent)):
        if mask.any():
            out[name] = {n: float(err[mask, j].mean()) for j, n in enumerate(TARGET_ORDER)}
    out["constant_predictor"] = {n: float(base[:, j].mean()) for j, n in enumerate(TARGET_ORDER)}
    if data.encoder_estimates is not None:
        clean = ~data.through_latent
        enc = np.abs(data.encoder_estimates[clean] - data.targets[clean])
        out["motion_encoder_readouts_clean"] = {
            n: float(enc[:, j].mean()) for j, n in enumerate(TARGET_ORDER)
        }
    return out


# -------------------------------------------------------------------------------------------- files
def save_judge(path: str | os.PathLike, model: Judge, extra: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(asdict(model.config)), "extra": json.dumps(extra or {})}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


READABLE_RATIO = 0.75


def readable_parameters(held_out_mae: dict | None) -> tuple[str, ...]:
    """Parameters the judge reads: held-out error on clean renders below READABLE_RATIO x the error
    of the best constant prediction (all of them when the record lacks it)."""
    if not held_out_mae or "constant_predictor" not in held_out_mae:
        return TARGET_ORDER
    clean, base = held_out_mae["clean"], held_out_mae["constant_predictor"]
    return tuple(n for n in TARGET_ORDER if clean[n] < READABLE_RATIO * base[n])


def load_judge(path: str | os.PathLike | None = None) -> Judge:
    """Load :func:`save_judge`'s file (default: the judge shipped with the package). The model's
    ``readable`` attribute lists the parameters it reads (:func:`readable_parameters`)."""
    from safetensors import safe_open

    path = Path(path) if path is not None else WEIGHTS_PATH
    if not path.is_file():
        raise CheckpointError(
            f"{path}: judge weights not found (train them with scripts/train_synthetic_judge.py)"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            config = JudgeConfig.from_dict(json.loads(meta["config"]))
            state = {k: f.get_tensor(k).float() for k in f.keys()}
        model = Judge(config)
        model.load_state_dict(state)
        model.readable = readable_parameters(json.loads(meta.get("extra", "{}")).get("held_out_mae"))
    except Exception as exc:
        raise CheckpointError(f"{path}: not a judge weight file ({exc})") from exc
    return model.eval()
