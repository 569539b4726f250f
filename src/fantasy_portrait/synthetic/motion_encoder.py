"""A tiny motion encoder with the PD-FGC interface, trained on aligned synthetic crops.

Like PD-FGC's ``FanEncoder`` it maps an aligned face crop (RGB, [-1, 1], NCHW) to four features:
head, eye, emotion and mouth, with configurable widths (PD-FGC's 6, 6, 30, 512 by default, so its
concatenation is a valid 554-wide motion vector for the expression encoder and the training set).
It is trained by supervision from the renderer's exact parameters: a linear read-out per part must
recover that part's parameters, and the features of two different identities performing the same
motion are pulled together, which makes the features identity-agnostic.

Crops come from the project's PD-FGC alignment (:func:`fantasy_portrait.faces.align.align_faces`)
at ``crop_size`` (the template scaled to that size). Alignment removes image translation, scale
and roll, so the head part reads yaw and pitch; the other parts read every parameter of their group.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from .params import MOTION_NAMES, MOTION_PARTS, normalize_motion, random_identity
from .performance import random_motion
from .render import Character, Scene, render_frame

logger = logging.getLogger(__name__)

PART_NAMES = ("head", "eye", "emotion", "mouth")
# Renderer parameters each part is trained to carry (what an aligned crop can show).
TARGET_NAMES: dict[str, tuple[str, ...]] = {
    "head": ("yaw", "pitch"),
    "eye": ("blink_left", "blink_right", "gaze_x", "gaze_y"),
    "emotion": ("brow_raise", "brow_furrow", "smile", "squint"),
    "mouth": ("mouth_open", "mouth_width", "mouth_pucker"),
}
_TARGET_INDEX = [MOTION_NAMES.index(n) for part in PART_NAMES for n in TARGET_NAMES[part]]
_TARGET_ORDER = [n for part in PART_NAMES for n in TARGET_NAMES[part]]
# A mirrored crop shows the mirrored motion: yaw and gaze_x change sign, the eyes swap.
_FLIP_SIGN = torch.tensor([-1.0 if n in ("yaw", "gaze_x") else 1.0 for n in _TARGET_ORDER])
_FLIP_PERM = torch.tensor(
    [
        _TARGET_ORDER.index({"blink_left": "blink_right", "blink_right": "blink_left"}.get(n, n))
        for n in _TARGET_ORDER
    ]
)
WEIGHTS_PATH = Path(__file__).parent / "weights" / "tiny_motion_encoder.safetensors"
# Trained with the part-invariance term as well (train_disentangled_motion_encoder); not the default:
# the shipped tiny FantasyPortrait was trained on WEIGHTS_PATH's features.
DISENTANGLED_WEIGHTS_PATH = WEIGHTS_PATH.with_name("tiny_motion_encoder_disentangled.safetensors")
# Names accepted wherever an encoder file is chosen (resolve_weights), besides a path.
NAMED_WEIGHTS = {"default": WEIGHTS_PATH, "disentangled": DISENTANGLED_WEIGHTS_PATH}


@dataclass
class TinyMotionEncoderConfig:
    crop_size: int = 64
    channels: tuple[int, ...] = (8, 16, 32, 64)
    trunk_dim: int = 128
    head_hidden: int = 128
    part_dims: tuple[int, int, int, int] = (6, 6, 30, 512)

    @property
    def feature_dim(self) -> int:
        return int(sum(self.part_dims))

    @classmethod
    def from_dict(cls, data: dict) -> TinyMotionEncoderConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


class TinyMotionEncoder(nn.Module):
    """forward: (B, 3, S, S) float RGB in [-1, 1] -> (head, eye, emotion, mouth), widths part_dims."""

    def __init__(self, config: TinyMotionEncoderConfig | None = None):
        super().__init__()
        self.config = config = config or TinyMotionEncoderConfig()
        layers: list[nn.Module] = []
        cin, size = 3, config.crop_size
        for cout in config.channels:
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
            cin, size = cout, (size + 1) // 2
        self.trunk = nn.Sequential(
            *layers, nn.Flatten(), nn.Linear(cin * size * size, config.trunk_dim), nn.ReLU()
        )
        self.parts = nn.ModuleList(
            nn.Sequential(
                nn.Linear(config.trunk_dim, config.head_hidden), nn.ReLU(), nn.Linear(config.head_hidden, d)
            )
            for d in config.part_dims
        )
        # Training only: linear read-outs of each part's renderer parameters.
        self.readouts = nn.ModuleList(
            nn.Linear(d, len(TARGET_NAMES[p])) for d, p in zip(config.part_dims, PART_NAMES)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        feat = self.trunk(x)
        return tuple(part(feat) for part in self.parts)  # type: ignore[return-value]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, sum(part_dims)): head, eye, emotion, mouth concatenated (PD-FGC order)."""
        return torch.cat(self(x), dim=1)

    def predict(self, parts) -> torch.Tensor:
        """(B, 13) normalised parameter estimates (TARGET_NAMES order) from the four features."""
        return torch.cat([r(p) for r, p in zip(self.readouts, parts)], dim=1)


def preprocess(crops_rgb: np.ndarray) -> torch.Tensor:
    """(B, S, S, 3) uint8 RGB -> (B, 3, S, S) float32 in [-1, 1]."""
    x = np.asarray(crops_rgb, np.float32) / 127.5 - 1.0
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def targets_of(motion: np.ndarray) -> np.ndarray:
    """(..., 17) renderer motion -> (..., 13) normalised training targets (TARGET_NAMES order)."""
    return normalize_motion(motion)[..., _TARGET_INDEX]


def aligned_crops(frames: np.ndarray, five_points: np.ndarray, size: int) -> np.ndarray:
    """PD-FGC crops at ``size``: (B, H, W, 3) uint8 and (B, 5, 2) points -> (B, size, size, 3)."""
    from ..faces.align import align_faces

    return align_faces(frames, five_points, size)


@dataclass
class TrainingSet:
    """Pairs of crops: the same motion rendered with two identities; targets (N, 13)."""

    crops_a: np.ndarray
    crops_b: np.ndarray
    targets: np.ndarray
    motion: np.ndarray


def _portrait(rng: np.random.Generator, render_size: int) -> Scene:
    idt = random_identity(rng)
    center = (0.5 + rng.uniform(-0.05, 0.05), 0.47 + rng.uniform(-0.04, 0.04))
    return Scene(
        (Character(idt, center, rng.uniform(0.26, 0.32)),),
        render_size,
        render_size,
        idt.background_top,
        idt.background_bottom,
    )


def _render_size(crop_size: int) -> int:
    # A portrait of this size aligns at about 1:1 onto a crop_size PD-FGC crop.
    return int(round(crop_size * 1.25))


def render_pairs(
    num_pairs: int, seed: int, crop_size: int = 64, render_size: int | None = None, point_jitter: float = 0.02
) -> TrainingSet:
    """Render ``num_pairs`` random motions, each with two random identities, and align the crops.

    point_jitter: standard deviation of noise added to the five points before alignment, as a
    fraction of the eye distance (a real landmark detector is never exact).
    """
    rng = np.random.default_rng(seed)
    render_size = render_size or _render_size(crop_size)
    frames, points, motions = [], [], []
    for _ in range(num_pairs):
        motion = random_motion(rng)
        motions.append(motion)
        for _ in range(2):
            f = render_frame(_portrait(rng, render_size), motion[None])
            pts = f.five_points[0].astype(np.float64)
            eye_dist = np.linalg.norm(pts[1] - pts[0])
            frames.append(f.image)
            points.append(pts + rng.normal(0, point_jitter * eye_dist, pts.shape))
    crops = aligned_crops(np.stack(frames), np.stack(points), crop_size)
    motion = np.stack(motions)
    return TrainingSet(crops[0::2], crops[1::2], targets_of(motion), motion)


@dataclass
class TrainOptions:
    num_pairs: int = 2000
    steps: int = 800
    batch_size: int = 64
    lr: float = 2e-3
    invariance_weight: float = 0.3
    flip: bool = True
    seed: int = 0
    threads: int = 1
    config: TinyMotionEncoderConfig = field(default_factory=TinyMotionEncoderConfig)


def _loss(model: TinyMotionEncoder, xa, xb, y, invariance_weight: float) -> tuple[torch.Tensor, dict]:
    pa, pb = model(xa), model(xb)
    pred = torch.cat([model.predict(pa), model.predict(pb)])
    target = torch.cat([y, y])
    # Gaze is invisible behind a closed lid: weight its error by how open the eyes are.
    w = torch.ones_like(target)
    openness = 1 - (target[:, 2:4].max(dim=1).values + 1) / 2
    w[:, 4:6] = openness[:, None]
    reg = (w * (pred - target) ** 2).mean()
    # Per part: the squared distance between the two identities of the same motion over the distance
    # to another motion of the batch, on a log scale that saturates below 0.05 (scale-free, so
    # collapsing the features gains nothing, and bounded, so it cannot outweigh the read-outs).
    inv = 0.0
    for a, b in zip(pa, pb):
        same = ((a - b) ** 2).sum(1).mean()
        other = ((a - b.roll(1, dims=0)) ** 2).sum(1).mean()
        inv = inv + torch.log(same / (other + 1e-12) + 0.05) / 4
    return reg + invariance_weight * inv, {
        "regression": float(reg.detach()),
        "invariance": float(inv.detach()),
    }


def train_motion_encoder(
    options: TrainOptions, data: TrainingSet | None = None
) -> tuple[TinyMotionEncoder, dict]:
    """Train from scratch on rendered pairs; deterministic for a given seed and thread count."""
    torch.manual_seed(options.seed)
    if options.threads:
        torch.set_num_threads(options.threads)
    t0 = time.perf_counter()
    if data is None:
        data = render_pairs(options.num_pairs, options.seed, options.config.crop_size)
    t_data = time.perf_counter() - t0
    model, opt, sched = _new_training(options)
    xa_all, xb_all = preprocess(data.crops_a), preprocess(data.crops_b)
    y_all = torch.from_numpy(data.targets)
    gen = torch.Generator().manual_seed(options.seed)
    history = []
    model.train()
    for step in range(options.steps):
        idx = torch.randint(0, len(y_all), (options.batch_size,), generator=gen)
        xa, xb = xa_all[idx], xb_all[idx]
        swap = (torch.rand(len(idx), generator=gen) < 0.5)[:, None, None, None]  # identities in both slots
        xa, xb = torch.where(swap, xb, xa), torch.where(swap, xa, xb)
        y = y_all[idx]
        if options.flip:  # mirrored pairs (both crops of a pair flipped together) double the data
            flip = torch.rand(len(idx), generator=gen) < 0.5
            f4 = flip[:, None, None, None]
            xa, xb = torch.where(f4, xa.flip(-1), xa), torch.where(f4, xb.flip(-1), xb)
            y = torch.where(flip[:, None], y[:, _FLIP_PERM] * _FLIP_SIGN, y)
        ramp = min(1.0, max(0.0, step / (0.2 * options.steps) - 1))  # read-outs first, then invariance
        loss, parts = _loss(model, xa, xb, y, options.invariance_weight * ramp)
        _optimizer_step(opt, sched, loss, parts, step, options.steps, history)
    return model, _training_log(model, options, history, t0, t_data)


def _new_training(options):
    """A fresh encoder with its AdamW optimiser and one-cycle schedule (both training recipes)."""
    model = TinyMotionEncoder(options.config)
    opt = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=options.lr, total_steps=options.steps, pct_start=0.1
    )
    return model, opt, sched


def _optimizer_step(
    opt, sched, loss: torch.Tensor, parts: dict, step: int, steps: int, history: list
) -> None:
    """One optimiser + schedule step; every 100th (and the last) step's losses go to ``history``."""
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    if step % 100 == 0 or step == steps - 1:
        history.append({"step": step, "loss": float(loss.detach()), **parts})
        logger.info("step %d loss %.4f (%s)", step, float(loss.detach()), parts)


def _training_log(model: nn.Module, options, history: list, t0: float, t_data: float) -> dict:
    """Puts the model in eval mode and returns the training record (times, loss history, options)."""
    model.eval()
    return {
        "data_seconds": t_data,
        "train_seconds": time.perf_counter() - t0 - t_data,
        "history": history,
        "options": {k: v for k, v in asdict(options).items() if k != "config"},
        "config": asdict(options.config),
    }


@torch.no_grad()
def encode_crops(model: TinyMotionEncoder, crops_rgb: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(B, S, S, 3) uint8 aligned crops -> (B, sum(part_dims)) float32 features."""
    model.eval()
    x = preprocess(crops_rgb)
    out = [model.features(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.config.feature_dim), np.float32)


@torch.no_grad()
def predict_motion(model: TinyMotionEncoder, crops_rgb: np.ndarray) -> np.ndarray:
    """(B, 13) normalised parameter estimates in TARGET_NAMES order."""
    model.eval()
    return model.predict(model(preprocess(crops_rgb))).numpy()


def motion_features(model: TinyMotionEncoder, frames: np.ndarray, five_points: np.ndarray) -> np.ndarray:
    """Features of one face through a clip: (F, H, W, 3) uint8 and (F, 5, 2) -> (F, sum(part_dims))."""
    return encode_crops(model, aligned_crops(frames, five_points, model.config.crop_size))


def identity_agnostic_ratio(
    model: TinyMotionEncoder, num_motions: int = 16, num_identities: int = 6, seed: int = 1234
) -> dict[str, float]:
    """Mean feature distance within a motion (different identities) over the mean across motions.

    Renders ``num_motions`` random motions with the same ``num_identities`` random identities,
    standardises each feature dimension over the whole set, and returns the ratio for all
    features (``"all"``) and per part. 0 means the features ignore identity entirely; about 1 means
    they do not tell motions apart any better than identities.
    """
    rng = np.random.default_rng(seed)
    size = model.config.crop_size
    scenes = [_portrait(rng, _render_size(size)) for _ in range(num_identities)]
    frames, points = [], []
    for _ in range(num_motions):
        motion = random_motion(rng)
        for scene in scenes:
            f = render_frame(scene, motion[None])
            frames.append(f.image)
            points.append(f.five_points[0])
    feats = encode_crops(model, aligned_crops(np.stack(frames), np.stack(points), size))
    feats = feats.reshape(num_motions, num_identities, -1)
    bounds = np.cumsum((0, *model.config.part_dims))
    out = {}
    for name, lo, hi in (("all", 0, bounds[-1]), *zip(PART_NAMES, bounds[:-1], bounds[1:])):
        f = feats[..., lo:hi]
        f = (f - f.reshape(-1, hi - lo).mean(0)) / (f.reshape(-1, hi - lo).std(0) + 1e-6)
        flat = f.reshape(-1, hi - lo)
        d = np.linalg.norm(flat[:, None] - flat[None], axis=-1).reshape(
            num_motions, num_identities, num_motions, num_identities
        )
        same_motion = (
            np.eye(num_motions, dtype=bool)[:, None, :, None]
            & ~np.eye(num_identities, dtype=bool)[None, :, None, :]
        )
        other_motion = ~np.eye(num_motions, dtype=bool)[:, None, :, None] & np.ones(
            (1, num_identities, 1, num_identities), bool
        )
        out[name] = float(d[same_motion].mean() / d[other_motion].mean())
    return out


# ------------------------------------------------------------------------------- part disentanglement
# Which renderer parameters belong to which part: exactly params.MOTION_PARTS (all 17, each in one
# part). A part-invariance group changes one of these slices at a time; every other part's features
# must then stay put, as PD-FGC's parts do (its training disentangles them).
PART_MOTION_NAMES: dict[str, tuple[str, ...]] = {p: MOTION_NAMES[MOTION_PARTS[p]] for p in PART_NAMES}
# Slots of a group: a motion on identity A, the same motion on identity B, then identity A with
# one part's parameters drawn afresh (head, eye, emotion, mouth).
GROUP_SLOTS: tuple[str, ...] = ("base", "other_identity", *(f"changed_{p}" for p in PART_NAMES))


@dataclass
class PartGroupSet:
    """Groups of aligned crops (N, 6, S, S, 3) in GROUP_SLOTS order; targets (N, 6, 13), motion (N, 6, 17)."""

    crops: np.ndarray
    targets: np.ndarray
    motion: np.ndarray


def same_part_slots(part: int) -> list[int]:
    """Slots of a group whose identity-A render shows the base's parameters of ``part`` (index)."""
    return [0, *(2 + k for k in range(len(PART_NAMES)) if k != part)]


def render_part_groups(
    num_groups: int,
    seed: int,
    crop_size: int = 64,
    render_size: int | None = None,
    point_jitter: float = 0.02,
) -> PartGroupSet:
    """Render ``num_groups`` groups (GROUP_SLOTS): a random motion on two identities, and the first
    identity (same place and size) with each part's parameters (PART_MOTION_NAMES) replaced in turn by
    those of another random motion. Five points jittered as in :func:`render_pairs`."""
    rng = np.random.default_rng(seed)
    render_size = render_size or _render_size(crop_size)
    frames, points, motions = [], [], []
    for _ in range(num_groups):
        base = random_motion(rng)
        group = [base, base]
        for part in PART_NAMES:
            changed = base.copy()
            changed[MOTION_PARTS[part]] = random_motion(rng)[MOTION_PARTS[part]]
            group.append(changed)
        scene_a, scene_b = _portrait(rng, render_size), _portrait(rng, render_size)
        for slot, motion in enumerate(group):
            f = render_frame(scene_b if slot == 1 else scene_a, motion[None])
            pts = f.five_points[0].astype(np.float64)
            eye_dist = np.linalg.norm(pts[1] - pts[0])
            frames.append(f.image)
            points.append(pts + rng.normal(0, point_jitter * eye_dist, pts.shape))
        motions.append(np.stack(group))
    k = len(GROUP_SLOTS)
    crops = aligned_crops(np.stack(frames), np.stack(points), crop_size)
    motion = np.stack(motions) if motions else np.zeros((0, k, len(MOTION_NAMES)), np.float32)
    return PartGroupSet(crops.reshape(num_groups, k, *crops.shape[1:]), targets_of(motion), motion)


def _group_terms(feats, batch: int, saturation: float, identity_saturation: float = 0.05):
    """Per part q (log scale, mean over parts):

    - identity term: slot 0 vs slot 1 (same motion, other identity) over slot 0 vs another group's
      slot 1 (other motion, other identity), as the pair loss of :func:`train_motion_encoder`;
    - part term: the mean squared distance between the slots of same_part_slots(q) (identity A, only
      other parts changed) over the distance between slot 0 and slot 2 + q (identity A, only part q
      changed). Against the same face, so that carrying the identity cannot make a part look invariant.

    Every feature dimension is first divided by its standard deviation over the batch, so that a
    low-variance dimension cannot carry another part's parameters unnoticed (a linear read-out would
    find it)."""
    identity, part = 0.0, 0.0
    ratios = []
    for q, f in enumerate(feats):
        f = f / (f.std(0, keepdim=True) + 1e-4)
        f = f.view(batch, len(GROUP_SLOTS), -1)
        other = ((f[:, 0] - f[:, 1].roll(1, dims=0)) ** 2).sum(-1).mean() + 1e-12
        ident = ((f[:, 0] - f[:, 1]) ** 2).sum(-1).mean()
        own = ((f[:, 0] - f[:, 2 + q]) ** 2).sum(-1).mean() + 1e-12
        g = f[:, same_part_slots(q)]
        same = ((g[:, :, None] - g[:, None]) ** 2).sum(-1).sum((1, 2)) / (g.shape[1] * (g.shape[1] - 1))
        ratio = same.mean() / own
        ratios.append(ratio)
        identity = identity + torch.log(ident / other + identity_saturation) / len(feats)
        part = part + torch.log(ratio + saturation) / len(feats)
    return identity, part, ratios


def _weighted_regression(
    pred: torch.Tensor, target: torch.Tensor, emphasis: dict[str, float]
) -> torch.Tensor:
    # Gaze is invisible behind a closed lid: weight its error by how open the eyes are.
    w = torch.ones_like(target)
    openness = 1 - (target[..., 2:4].max(dim=-1).values + 1) / 2
    w[..., 4:6] = openness[..., None]
    for name, factor in emphasis.items():
        w[..., _TARGET_ORDER.index(name)] *= factor
    return (w * (pred - target) ** 2).mean()


@dataclass
class DisentangleOptions:
    """Training of the part-disentangled encoder (train_disentangled_motion_encoder)."""

    num_groups: int = 1500
    steps: int = 2500
    batch_size: int = 24  # groups (x6 crops)
    lr: float = 2e-3
    invariance_weight: float = 0.3  # identity term, as TrainOptions
    part_invariance_weight: float = 0.5
    part_saturation: float = 0.003
    # Read-out weights of parameters shown by a few pixels only (they are learnt last).
    readout_emphasis: dict[str, float] = field(
        default_factory=lambda: {"gaze_x": 3.0, "gaze_y": 3.0, "brow_raise": 2.0}
    )
    flip: bool = True
    seed: int = 0
    threads: int = 1
    config: TinyMotionEncoderConfig = field(default_factory=TinyMotionEncoderConfig)


def group_loss(
    model: TinyMotionEncoder, x: torch.Tensor, y: torch.Tensor, options: DisentangleOptions, ramp: float = 1.0
) -> tuple[torch.Tensor, dict]:
    """x (B, 6, 3, S, S), y (B, 6, 13): read-outs of every render + ramp * (identity and part terms)."""
    b, k = y.shape[:2]
    feats = model(x.flatten(0, 1))
    reg = _weighted_regression(model.predict(feats).view(b, k, -1), y, options.readout_emphasis)
    identity, part, ratios = _group_terms(feats, b, options.part_saturation)
    loss = reg + ramp * (options.invariance_weight * identity + options.part_invariance_weight * part)
    return loss, {
        "regression": float(reg.detach()),
        "identity": float(identity.detach()),
        "part": float(part.detach()),
        "part_ratio": {p: round(float(r.detach()), 5) for p, r in zip(PART_NAMES, ratios)},
    }


def train_disentangled_motion_encoder(
    options: DisentangleOptions, data: PartGroupSet | None = None
) -> tuple[TinyMotionEncoder, dict]:
    """Train from scratch on part groups: read-outs of each part's own parameters (TARGET_NAMES),
    identity invariance, and part invariance (a part's features stay put while only another part's
    parameters change). Deterministic for a given seed and thread count."""
    torch.manual_seed(options.seed)
    if options.threads:
        torch.set_num_threads(options.threads)
    t0 = time.perf_counter()
    if data is None:
        data = render_part_groups(options.num_groups, options.seed, options.config.crop_size)
    t_data = time.perf_counter() - t0
    model, opt, sched = _new_training(options)
    y_all = torch.from_numpy(data.targets)
    gen = torch.Generator().manual_seed(options.seed)
    history = []
    model.train()
    for step in range(options.steps):
        idx = torch.randint(0, len(y_all), (options.batch_size,), generator=gen)
        crops = data.crops[idx.numpy()]
        x = preprocess(crops.reshape(-1, *crops.shape[2:])).view(*crops.shape[:2], 3, *crops.shape[2:4])
        y = y_all[idx]
        if options.flip:  # a mirrored group (all its crops) shows the mirrored motion
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None, None], x.flip(-1), x)
            y = torch.where(flip[:, None, None], y[..., _FLIP_PERM] * _FLIP_SIGN, y)
        ramp = min(1.0, max(0.0, step / (0.2 * options.steps) - 0.5))  # read-outs first
        loss, parts = group_loss(model, x, y, options, ramp)
        _optimizer_step(opt, sched, loss, parts, step, options.steps, history)
    return model, _training_log(model, options, history, t0, t_data)


@torch.no_grad()
def part_invariance(model: TinyMotionEncoder, data: PartGroupSet, saturation: float = 0.003) -> dict:
    """On part groups: per part, the mean squared (standardised) feature distance while only OTHER parts
    change over the distance while only this part changes (0: the part ignores the others, 1: it
    tells them apart no better than its own parameters), ``"loss"`` the part term of
    :func:`group_loss` (lower is better) and ``"identity_loss"`` its identity term."""
    model.eval()
    b = len(data.crops)
    x = preprocess(data.crops.reshape(-1, *data.crops.shape[2:]))
    feats = tuple(torch.cat(p) for p in zip(*(model(x[i : i + 256]) for i in range(0, len(x), 256))))
    identity, part, ratios = _group_terms(feats, b, saturation)
    return {
        **{p: float(r) for p, r in zip(PART_NAMES, ratios)},
        "loss": float(part),
        "identity_loss": float(identity),
    }


def part_r2_table(
    features: np.ndarray,
    targets: np.ndarray,
    part_dims,
    train_fraction: float = 0.7,
    ridge: float = 1.0,
) -> np.ndarray:
    """(4, T) held-out R^2 of a ridge regression (with intercept, penalty ``ridge``) from each part's
    features to each target column: fitted on the first ``train_fraction`` of the rows, scored on the
    rest (keep rows of a clip together). Off-diagonal blocks measure entanglement."""
    n = len(features)
    train = np.arange(n) < n * train_fraction
    bounds = np.cumsum((0, *part_dims))
    y_tr, y_te = targets[train].astype(np.float64), targets[~train].astype(np.float64)
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        a = np.c_[features[:, lo:hi].astype(np.float64), np.ones(n)]
        w = np.linalg.solve(a[train].T @ a[train] + ridge * np.eye(a.shape[1]), a[train].T @ y_tr)
        err = ((a[~train] @ w - y_te) ** 2).sum(0)
        out.append(1 - err / (((y_te - y_te.mean(0)) ** 2).sum(0) + 1e-12))
    return np.stack(out)


def resolve_weights(path: str | os.PathLike | None) -> Path:
    """An encoder file: None or ``"default"`` -> WEIGHTS_PATH, ``"disentangled"`` ->
    DISENTANGLED_WEIGHTS_PATH, anything else a path."""
    if path is None:
        return WEIGHTS_PATH
    return NAMED_WEIGHTS.get(str(path), Path(path))


def weights_reference(path: str | os.PathLike | None) -> str:
    """How to record an encoder file in another model's metadata: its NAMED_WEIGHTS name when it is one
    of the package's files (portable), else the path as given."""
    resolved = resolve_weights(path).resolve()
    for name, named in NAMED_WEIGHTS.items():
        if named.resolve() == resolved:
            return name
    return str(path)


def save_motion_encoder(path: str | os.PathLike, model: TinyMotionEncoder, extra: dict | None = None) -> Path:
    """Save weights (float16, readouts included) and config as one safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
        for k, v in model.state_dict().items()
    }
    meta = {"config": json.dumps(asdict(model.config)), "extra": json.dumps(extra or {})}
    save_file(state, str(path), metadata=meta)
    return path


def load_motion_encoder(
    path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> TinyMotionEncoder:
    """Load a file written by :func:`save_motion_encoder` (default: the weights shipped with the package;
    ``"disentangled"``: DISENTANGLED_WEIGHTS_PATH, see :func:`resolve_weights`)."""
    from safetensors import safe_open

    path = resolve_weights(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: tiny motion encoder weights not found (train them with scripts/train_synthetic_motion_encoder.py)"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        config = TinyMotionEncoderConfig.from_dict(json.loads(meta["config"]))
    except Exception as exc:  # safetensors raises its own error type for damaged files
        raise CheckpointError(f"{path}: not a tiny motion encoder file ({exc})") from exc
    model = TinyMotionEncoder(config)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored config ({exc})") from exc
    return model.to(device).eval()
