"""Motion controls measured in the synthetic world (exact ground truth, the shipped tiny model, the judge).

    nice -n 19 python benchmarks/bench_controls.py --seeds 0-9 --threads 1 --save /tmp/controls.json
    python benchmarks/bench_controls.py --report /tmp/controls.json          # tables from a saved run

Every configuration animates the same cases through ``FantasyPortraitPipeline`` (faces detected and
tracked by MediaPipe, as the demo does) and is scored against the *intended* motion: the portrait's
characters performing what the control asks for, in parameter space (strength s on a part: the
portrait's parameters + s x (driver - portrait); relative: the portrait's + the driver's change from
its first frame; multiplier m: driver[0] + m x (driver - driver[0])). The intended clip is rendered,
so face PSNR is measured against exact pixels too.

Two case families:
- ``demo``: ``synthetic.cases.make_case`` (neutral portrait, drivers that start neutral);
- ``offset``: the same, but each driver starts with its head turned (yaw 12-25 deg, pitch 6-14 deg)
  and another expression (smile, brows, mouth a little open) and performs its changes from there:
  the cross-reenactment case where absolute motion turns the portrait at frame 0.

Where a strength acts (``--where``): ``features`` (the shipped choice: the PD-FGC features of a part
are interpolated before the expression encoder), ``tokens`` (the same formulas on the encoder's
output tokens of that part: head token 0, eye 1, emotion 2 and 20-23, mouth 3 and 4-19). Both give the
same tokens at strength 0 and 1; they differ in between and for multipliers/relative motion.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# Token indices of each part within a frame's 24 tokens (SPEC §4: 4 projected, 16 mouth, 4 emotion).
TOKEN_PARTS = {"head": [0], "eye": [1], "emotion": [2, 20, 21, 22, 23], "mouth": [3, *range(4, 20)]}
READABLE = {
    "head": ("yaw", "pitch"),
    "eye": ("gaze_x",),
    "emotion": ("brow_raise", "smile"),
    "mouth": ("mouth_open",),
}
DEGREES = {"yaw": 35.0, "pitch": 25.0}  # one normalised unit in degrees ([-35, 35] and [-25, 25] -> [-1, 1])

# name -> (case family, where, controls for MotionControls.create)
CONFIGS: dict[str, tuple[str, str, dict]] = {
    "demo/none": ("demo", "features", {}),
    "demo/mouth=0": ("demo", "features", {"strength": "mouth=0"}),
    "demo/head=0": ("demo", "features", {"strength": "head=0"}),
    "demo/animate=lips": ("demo", "features", {"animate": "lips"}),
    "demo/animate=expression": ("demo", "features", {"animate": "expression"}),
    "demo/mouth=0.5 features": ("demo", "features", {"strength": "mouth=0.5"}),
    "demo/mouth=0.5 tokens": ("demo", "tokens", {"strength": "mouth=0.5"}),
    "demo/head=0.5 features": ("demo", "features", {"strength": "head=0.5"}),
    "demo/head=0.5 tokens": ("demo", "tokens", {"strength": "head=0.5"}),
    "demo/multiplier=1.5 features": ("demo", "features", {"multiplier": "1.5"}),
    "demo/multiplier=1.5 tokens": ("demo", "tokens", {"multiplier": "1.5"}),
    "demo/relative=head": ("demo", "features", {"relative": "head"}),
    "demo/relative=all": ("demo", "features", {"relative": "all"}),
    "demo/smoothing=1": ("demo", "features", {"smoothing": "1"}),
    "demo/steps=0:0.5": ("demo", "features", {"motion_steps": "0:0.5"}),
    "demo/steps=0.5:1": ("demo", "features", {"motion_steps": "0.5:1"}),
    "offset/none": ("offset", "features", {}),
    "offset/relative=head": ("offset", "features", {"relative": "head"}),
    "offset/relative=head tokens": ("offset", "tokens", {"relative": "head"}),
    "offset/relative=all": ("offset", "features", {"relative": "all"}),
    "offset/relative=all tokens": ("offset", "tokens", {"relative": "all"}),
}


# --------------------------------------------------------------------------------------------- cases
@dataclass
class BenchCase:
    seed: int
    family: str
    portrait: np.ndarray  # (H, W, 3)
    portrait_motion: np.ndarray  # (N, 17) the portrait's own parameters
    driver_motion: np.ndarray  # (F, N, 17)
    scene: object
    drivers: list  # driver Clips
    files: dict  # "portrait", "drivers"
    truth_boxes: np.ndarray  # (F, N, 4) boxes used for every judge crop of this case


def make_bench_case(seed: int, family: str, folder: Path) -> BenchCase:
    from fantasy_portrait.io import save_image, write_video
    from fantasy_portrait.synthetic.cases import FPS, make_case
    from fantasy_portrait.synthetic.params import MOTION_NAMES, clip_motion
    from fantasy_portrait.synthetic.scenes import render_clip

    case = make_case(seed)
    motion = case.motion.copy()
    drivers = list(case.drivers)
    if family == "offset":
        rng = np.random.default_rng([seed, 9173])
        for i in range(motion.shape[1]):
            off = np.zeros(len(MOTION_NAMES), np.float32)
            off[MOTION_NAMES.index("yaw")] = rng.choice([-1, 1]) * rng.uniform(12, 25)
            off[MOTION_NAMES.index("pitch")] = rng.choice([-1, 1]) * rng.uniform(6, 14)
            off[MOTION_NAMES.index("smile")] = rng.choice([-1, 1]) * rng.uniform(0.3, 0.7)
            off[MOTION_NAMES.index("brow_raise")] = rng.choice([-1, 1]) * rng.uniform(0.3, 0.6)
            off[MOTION_NAMES.index("mouth_open")] = rng.uniform(0.15, 0.35)
            motion[:, i] = clip_motion(motion[:, i] + off)
        drivers = [render_clip(s, motion[:, i : i + 1]) for i, s in enumerate(case.driver_scenes)]
    elif family != "demo":
        raise ValueError(family)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"portrait": folder / "portrait.png", "drivers": []}
    save_image(files["portrait"], case.portrait)
    for i, d in enumerate(drivers):
        p = folder / f"driver_{i}.mp4"
        write_video(p, d.frames, fps=FPS)
        files["drivers"].append(p)
    return BenchCase(
        seed,
        family,
        case.portrait,
        case.truth.motion[0].copy(),
        motion,
        case.scene,
        drivers,
        files,
        case.truth.boxes,
    )


def intended_motion(case: BenchCase, controls) -> np.ndarray:
    """(F, N, 17): what the controls ask for, in the renderer's parameter space."""
    from fantasy_portrait.motion.controls import PARTS
    from fantasy_portrait.synthetic.params import MOTION_PARTS, clip_motion

    out = case.driver_motion.copy()
    for i in range(out.shape[1]):
        fc = controls.for_face(i)
        p = case.portrait_motion[i]
        d = case.driver_motion[:, i]
        k = fc.relative_frame
        for part in PARTS:
            sl = MOTION_PARTS[part]
            if part == "head":
                # yaw and pitch: what the features carry (the alignment removes roll, shift and scale,
                # which stay the driver's); smoothing aims at the driver's own motion (not modelled)
                sl = slice(0, 2)
            f = d[:, sl].copy()
            m = fc.multiplier[part]
            anchor = p[sl] if part in fc.relative else f[k]
            f = anchor + m * (f - f[k])
            s = fc.strength[part]
            f = p[sl] + s * (f - p[sl])
            out[:, i, sl] = f
    return clip_motion(out)


# ---------------------------------------------------------------------------------------- controls
class TokenControls(torch.nn.Module):
    """Wraps the expression encoder: applies the controls to the tokens of each part instead of the
    features (the alternative measured against the shipped feature-space controls). Faces are the
    pipeline's calls in portrait order."""

    def __init__(self, encoder, controls, portraits: list[torch.Tensor]):
        super().__init__()
        self.encoder = encoder
        self.controls = controls
        self.portraits = portraits
        self.calls = 0

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        face = self.calls % len(self.portraits)
        self.calls += 1
        fc = self.controls.for_face(face)
        tokens = self.encoder(feats)
        if fc.is_identity:
            return tokens
        frames = feats.shape[1]
        t = tokens.view(1, frames, -1, tokens.shape[-1])[0].clone()  # (F, 24, C)
        p = self.encoder(self.portraits[face].reshape(1, 1, -1).to(feats)).view(1, -1, tokens.shape[-1])[0]
        k = fc.relative_frame
        for part, idx in TOKEN_PARTS.items():
            if fc.part_is_identity(part):
                continue
            f = t[:, idx]
            m = fc.multiplier[part]
            if part in fc.relative or m != 1.0:
                anchor = p[idx] if part in fc.relative else f[k]
                f = anchor + m * (f - f[k])
            s = fc.strength[part]
            if s != 1.0:
                f = p[idx] + s * (f - p[idx])
            t[:, idx] = f
        return t.reshape(1, -1, tokens.shape[-1])


def portrait_features(pipe, portrait: np.ndarray) -> list[torch.Tensor]:
    """Each portrait face's own features, from its detected five points (as the pipeline does)."""
    from fantasy_portrait.faces import get_backend
    from fantasy_portrait.faces.align import align_faces
    from fantasy_portrait.faces.portrait import find_portrait_faces

    faces = find_portrait_faces(portrait, get_backend(pipe.face_backend))
    return [
        pipe.motion_encoder.encode(align_faces(portrait[None], np.asarray(f.five_points, np.float64)[None]))
        .as_tensor()[0]
        .float()
        for f in faces
    ]


SETTING_NAMES = {"multiplier": "motion_multiplier", "smoothing": "motion_smoothing"}


def animate(
    pipe, case: BenchCase, options: dict, where: str, steps: int, guidance: float
) -> tuple[np.ndarray, int]:
    """Run the pipeline on a case: ``features`` through its own settings (the shipped path), ``tokens``
    through a wrapper of the expression encoder (the pipeline's controls left neutral)."""
    from fantasy_portrait.motion.controls import MotionControls
    from fantasy_portrait.synthetic.cases import FPS

    h, w = case.portrait.shape[:2]
    kwargs = dict(
        max_size=max(h, w),
        fps=FPS,
        num_steps=steps,
        motion_guidance=guidance,
        seed=case.seed,
        window_frames=None,
        progress=False,
        relative="none",
    )
    if where == "features":
        kwargs.update({SETTING_NAMES.get(k, k): v for k, v in options.items()})
        result = pipe(case.files["portrait"], case.files["drivers"], **kwargs)
        return result.frames, result.transformer_calls
    controls = MotionControls.create(**options)
    if not controls.schedule_is_identity:
        raise ValueError("the token-space variant has no step range")
    encoder = pipe.expression_encoder
    pipe.expression_encoder = TokenControls(encoder, controls, portrait_features(pipe, case.portrait))
    try:
        result = pipe(case.files["portrait"], case.files["drivers"], **kwargs)
    finally:
        pipe.expression_encoder = encoder
    return result.frames, result.transformer_calls


# ------------------------------------------------------------------------------------------ metrics
def judged(judge, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, F, 13) judge estimates of every face (TARGET_ORDER) in crops around ``boxes`` (F, N, 4)."""
    from fantasy_portrait.synthetic.judge import judge_face

    with torch.no_grad():
        return np.stack([judge_face(judge, frames, boxes[:, i]) for i in range(boxes.shape[1])])


def score(judge, case: BenchCase, frames: np.ndarray, controls, portrait_est: np.ndarray) -> dict:
    from fantasy_portrait.synthetic.judge import TARGET_ORDER
    from fantasy_portrait.synthetic.motion_encoder import targets_of
    from fantasy_portrait.synthetic.scenes import render_clip

    n = len(frames)
    intended = intended_motion(case, controls)[:n]
    truth = render_clip(case.scene, intended)
    boxes = case.truth_boxes[:n]
    est = judged(judge, frames, boxes)  # (N, F, 13)
    target = targets_of(intended).transpose(1, 0, 2)  # (N, F, 13)
    driver = targets_of(case.driver_motion[:n]).transpose(1, 0, 2)
    col = {name: TARGET_ORDER.index(name) for name in TARGET_ORDER}
    out: dict = {}
    for group, names in READABLE.items():
        idx = [col[x] for x in names]
        out[f"mae/{group}"] = float(np.abs(est[:, 1:, idx] - target[:, 1:, idx]).mean())
    for name in ("yaw", "pitch"):
        c = col[name]
        out[f"start/{name}"] = float(np.abs(est[:, 1:5, c] - portrait_est[:, None, c]).mean() * DEGREES[name])
        out[f"frame0/{name}"] = float(np.abs(est[:, 0, c] - portrait_est[:, c]).mean() * DEGREES[name])
    c = col["mouth_open"]
    out["mouth_open/mean"] = float(est[:, 1:, c].mean())
    out["mouth_open/portrait"] = float(portrait_est[:, c].mean())
    out["mouth_open/driver"] = float(driver[:, 1:, c].mean())
    c = col["yaw"]
    out["yaw/mean_abs_change"] = float(
        np.abs(est[:, 1:, c] - portrait_est[:, None, c]).mean() * DEGREES["yaw"]
    )
    psnr = []
    for i in range(est.shape[0]):
        b = boxes[:, i]
        x1, y1 = np.floor(b[:, :2].min(0)).astype(int)
        x2, y2 = np.ceil(b[:, 2:].max(0)).astype(int)
        x1, y1 = max(x1, 0), max(y1, 0)
        a = frames[1:, y1:y2, x1:x2].astype(np.float64)
        t = truth.frames[1:, y1:y2, x1:x2].astype(np.float64)
        psnr.append(10 * np.log10(255.0**2 / max(float(((a - t) ** 2).mean()), 1e-10)))
    out["psnr"] = float(np.mean(psnr))
    jitter = np.abs(np.diff(est[:, 1:, [col["yaw"], col["pitch"]]], n=2, axis=1)).mean()
    out["jitter/head"] = float(jitter)
    series = {"est": est[:, 1:].tolist(), "driver": driver[:, 1:].tolist(), "target": target[:, 1:].tolist()}
    return {"metrics": out, "series": series}


def pooled_slope(runs: list[dict], name: str, against: str = "driver") -> float:
    """Slope of the judged parameter on the driver's (centred per face series), pooled over runs."""
    from fantasy_portrait.synthetic.judge import TARGET_ORDER

    c = TARGET_ORDER.index(name)
    ys, xs = [], []
    for r in runs:
        est, x = np.asarray(r["series"]["est"]), np.asarray(r["series"][against])
        for i in range(est.shape[0]):
            ys.append(est[i, :, c] - est[i, :, c].mean())
            xs.append(x[i, :, c] - x[i, :, c].mean())
    y, x = np.concatenate(ys), np.concatenate(xs)
    return float((x * y).sum() / max((x * x).sum(), 1e-12))


def slope_with_error(
    runs: list[dict], name: str, against: str = "driver", boots: int = 200
) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    value = pooled_slope(runs, name, against)
    samples = [
        pooled_slope([runs[i] for i in rng.integers(0, len(runs), len(runs))], name, against)
        for _ in range(boots)
    ]
    return value, float(np.std(samples))


def mean_se(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


# ------------------------------------------------------------------------------ token distribution
def recorded_motion_encoder(weights=None):
    """The synthetic motion encoder a tiny model file records as trained on (None: the shipped one), as
    build_pipeline uses it."""
    from fantasy_portrait.synthetic.tiny_model import load_tiny_model

    return load_tiny_model(weights)[3].get("motion_encoder")


def token_distribution(num_cases: int = 40, seed0: int = 1000, weights=None) -> dict:
    """How far controlled tokens are from the tokens the model was trained on, per place of action.

    Reference: the shipped expression encoder's tokens of real driving frames (``num_cases`` demo-style
    cases, 2 drivers each, exact five points). For held-out cases each control (strength s on every
    part, multiplier m) is applied to the features (then encoded) or to the tokens; per part we report
    (a) the token RMS over the reference tokens' RMS and (b) the distance of each frame's part tokens
    to the nearest reference frame, over the same for real held-out frames (1 = as typical as real).
    """
    from fantasy_portrait.faces.align import align_faces
    from fantasy_portrait.motion.controls import MotionControls, apply_face_controls
    from fantasy_portrait.synthetic.cases import driver_motion_features, make_case
    from fantasy_portrait.synthetic.tiny_model import SyntheticMotionEncoder, load_tiny_model

    _, encoder, _, extra = load_tiny_model(weights)
    menc = SyntheticMotionEncoder(path=extra.get("motion_encoder"))  # the one the model was trained on
    feats, portraits = [], []
    for seed in range(seed0, seed0 + num_cases):
        case = make_case(seed)
        for i, d in enumerate(case.drivers):
            feats.append(driver_motion_features(menc, d))
            crop = align_faces(case.portrait[None], case.truth.five_points[0, i].astype(np.float64)[None])
            portraits.append(menc.encode(crop).as_tensor()[0])

    def tokens(f: torch.Tensor) -> torch.Tensor:  # (F, 554) -> (F, 24, C)
        with torch.no_grad():
            return encoder(f[None])[0].view(f.shape[0], 24, -1)

    split = len(feats) * 3 // 4
    ref = torch.cat([tokens(f) for f in feats[:split]])
    held = list(zip(feats[split:], portraits[split:]))
    ref_rms = {part: ref[:, idx].pow(2).mean().sqrt() for part, idx in TOKEN_PARTS.items()}

    def nn_dist(x: torch.Tensor, part: str) -> torch.Tensor:
        idx = TOKEN_PARTS[part]
        a, b = x[:, idx].flatten(1), ref[:, idx].flatten(1)
        return torch.cdist(a, b).min(dim=1).values

    real = torch.cat([tokens(f) for f, _ in held])
    base = {part: nn_dist(real, part).mean() for part in TOKEN_PARTS}
    out: dict = {}
    for label, options in (
        ("strength 0.5", {"strength": "0.5"}),
        ("strength 0.25", {"strength": "0.25"}),
        ("multiplier 1.5", {"multiplier": "1.5"}),
        ("multiplier 2", {"multiplier": "2"}),
        ("relative all", {"relative": "all"}),
    ):
        fc = MotionControls.create(**options).for_face(0)
        for where in ("features", "tokens"):
            got = []
            for f, p in held:
                if where == "features":
                    got.append(tokens(apply_face_controls(f, fc, p)))
                    continue
                t, tp = tokens(f), tokens(p[None])[0]
                for part, idx in TOKEN_PARTS.items():
                    x = t[:, idx]
                    m = fc.multiplier[part]
                    anchor = tp[idx] if part in fc.relative else x[0]
                    x = anchor + m * (x - x[0])
                    x = tp[idx] + fc.strength[part] * (x - tp[idx])
                    t[:, idx] = x
                got.append(t)
            got = torch.cat(got)
            out[f"{label} / {where}"] = {
                part: {
                    "rms_ratio": float(got[:, idx].pow(2).mean().sqrt() / ref_rms[part]),
                    "nn_ratio": float(nn_dist(got, part).mean() / base[part]),
                }
                for part, idx in TOKEN_PARTS.items()
            }
    return out


def part_entanglement(num_cases: int = 40, seed0: int = 1000, weights=None) -> str:
    """Held-out R^2 of a ridge read-out from each part's features to each readable parameter, on the
    drivers of ``num_cases`` cases (70% fit, 30% held out): how separable the shipped synthetic motion
    encoder's parts are (PD-FGC's are trained to be)."""
    from fantasy_portrait.motion.controls import PART_SLICES, PARTS
    from fantasy_portrait.synthetic.cases import driver_motion_features, make_case
    from fantasy_portrait.synthetic.judge import TARGET_ORDER
    from fantasy_portrait.synthetic.motion_encoder import targets_of
    from fantasy_portrait.synthetic.tiny_model import SyntheticMotionEncoder

    enc = SyntheticMotionEncoder(path=recorded_motion_encoder(weights))  # the model's (--weights) encoder
    xs, ys = [], []
    for seed in range(seed0, seed0 + num_cases):
        case = make_case(seed)
        for i, d in enumerate(case.drivers):
            xs.append(driver_motion_features(enc, d).numpy())
            ys.append(targets_of(case.motion[:, i]))
    x, y = np.concatenate(xs), np.concatenate(ys)
    fit = np.arange(len(x)) < int(len(x) * 0.7)
    names = [n for group in READABLE.values() for n in group]
    cols = [TARGET_ORDER.index(n) for n in names]
    lines = ["| part features | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for part in PARTS:
        a = np.c_[x[:, PART_SLICES[part]], np.ones(len(x))]
        w = np.linalg.solve(a[fit].T @ a[fit] + np.eye(a.shape[1]), a[fit].T @ y[fit][:, cols])
        pred, true = a[~fit] @ w, y[~fit][:, cols]
        r2 = 1 - ((pred - true) ** 2).sum(0) / ((true - true.mean(0)) ** 2).sum(0)
        lines.append(
            f"| {part} ({PART_SLICES[part].stop - PART_SLICES[part].start}) | "
            + " | ".join(f"{v:.2f}" for v in r2)
            + " |"
        )
    return "\n".join(lines)


def token_report(table: dict) -> str:
    lines = [
        "| control / where | " + " | ".join(f"{p} RMS ratio | {p} NN ratio" for p in TOKEN_PARTS) + " |",
        "|---" * (1 + 2 * len(TOKEN_PARTS)) + "|",
    ]
    for name, parts in table.items():
        cells = [f"{parts[p]['rms_ratio']:.2f} | {parts[p]['nn_ratio']:.2f}" for p in TOKEN_PARTS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- report
def report(data: dict) -> str:
    runs = data["runs"]
    lines = [
        f"weights: {data['weights']} (sha256 {data['weights_sha256'][:16]}), "
        f"motion encoder: {data.get('motion_encoder', 'default')}, seeds {data['seeds']}, "
        f"{data['steps']} steps, motion guidance {data['guidance']}, {data['threads']} torch thread(s); "
        "mean +- standard error over seeds (2 faces each); slopes pooled, +- bootstrap SE over seeds",
        "",
        "| configuration | head MAE | eye MAE | emotion MAE | mouth MAE | face PSNR vs intended (dB) | "
        "yaw / pitch error at frames 1-4 vs the portrait (deg) | yaw slope | pitch slope | mouth-open slope | "
        "judged mouth open (portrait's) | transformer calls |",
        "|---" * 12 + "|",
    ]
    for name in data["configs"]:
        rs = runs.get(name)
        if not rs:
            continue

        def cell(key, fmt=".3f", rs=rs):
            m, s = mean_se([r["metrics"][key] for r in rs])
            return f"{m:{fmt}} ± {s:{fmt}}"

        slopes = [slope_with_error(rs, x) for x in ("yaw", "pitch", "mouth_open")]
        calls = int(np.mean([r["calls"] for r in rs]))
        portrait_mouth = np.mean([r["metrics"]["mouth_open/portrait"] for r in rs])
        lines.append(
            f"| {name} | {cell('mae/head')} | {cell('mae/eye')} | {cell('mae/emotion')} | {cell('mae/mouth')} | "
            f"{cell('psnr', '.2f')} | {cell('start/yaw', '.1f')} / {cell('start/pitch', '.1f')} | "
            + " | ".join(f"{v:.2f} ± {e:.2f}" for v, e in slopes)
            + f" | {cell('mouth_open/mean')} ({portrait_mouth:.3f}) | {calls} |"
        )
    lines += ["", "Paired differences from the same cases without the control (mean ± SE over seeds):", ""]
    lines += ["| configuration | against | quantity | difference |", "|---|---|---|---|"]
    for name, base, key, label in PAIRED:
        if name not in runs or base not in runs:
            continue
        d = [a["metrics"][key] - b["metrics"][key] for a, b in zip(runs[name], runs[base])]
        m, e = mean_se(d)
        lines.append(f"| {name} | {base} | {label} | {m:+.3f} ± {e:.3f} |")
    return "\n".join(lines)


PAIRED = [
    ("demo/mouth=0", "demo/none", "mouth_open/mean", "judged mouth opening (normalised)"),
    ("demo/mouth=0", "demo/none", "yaw/mean_abs_change", "judged yaw distance from the portrait's (deg)"),
    ("demo/animate=lips", "demo/none", "yaw/mean_abs_change", "judged yaw distance from the portrait's (deg)"),
    ("demo/animate=lips", "demo/none", "mouth_open/mean", "judged mouth opening (normalised)"),
    ("demo/head=0", "demo/none", "yaw/mean_abs_change", "judged yaw distance from the portrait's (deg)"),
    ("demo/head=0", "demo/none", "mouth_open/mean", "judged mouth opening (normalised)"),
    ("demo/animate=expression", "demo/none", "yaw/mean_abs_change", "judged yaw distance from the portrait's (deg)"),
    ("offset/relative=head", "offset/none", "frame0/yaw", "yaw error at frame 0 vs the portrait (deg)"),
    ("offset/relative=head", "offset/none", "start/yaw", "yaw error at frames 1-4 vs the portrait (deg)"),
    ("offset/relative=head", "offset/none", "start/pitch", "pitch error at frames 1-4 vs the portrait (deg)"),
    ("offset/relative=head", "offset/none", "mae/head", "head MAE vs the relative target, frames 1-16"),
    ("offset/relative=all", "offset/none", "frame0/yaw", "yaw error at frame 0 vs the portrait (deg)"),
    ("offset/relative=all", "offset/none", "start/yaw", "yaw error at frames 1-4 vs the portrait (deg)"),
    ("offset/relative=all", "offset/none", "start/pitch", "pitch error at frames 1-4 vs the portrait (deg)"),
    ("offset/relative=all", "offset/none", "mae/head", "head MAE vs the relative target, frames 1-16"),
    ("offset/relative=all", "offset/none", "psnr", "face PSNR vs the relative target (dB)"),
    ("demo/relative=all", "demo/none", "mae/head", "head MAE, frames 1-16"),
    ("demo/relative=all", "demo/none", "psnr", "face PSNR (dB)"),
    ("demo/mouth=0.5 tokens", "demo/mouth=0.5 features", "mae/mouth", "mouth MAE vs the intended"),
    ("demo/head=0.5 tokens", "demo/head=0.5 features", "mae/head", "head MAE vs the intended"),
    ("demo/multiplier=1.5 tokens", "demo/multiplier=1.5 features", "mae/head", "head MAE vs the intended"),
    ("demo/multiplier=1.5 tokens", "demo/multiplier=1.5 features", "psnr", "face PSNR vs the intended (dB)"),
    ("offset/relative=all tokens", "offset/relative=all", "mae/head", "head MAE vs the intended"),
    ("offset/relative=all tokens", "offset/relative=all", "psnr", "face PSNR vs the intended (dB)"),
]


def _matches(name: str, pattern: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0-9", help="a-b range or comma list")
    p.add_argument(
        "--configs", default="", help="';'-separated names, a trailing * matches a prefix (default: all)"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--weights", default=None, help="tiny model file (default: shipped)")
    p.add_argument("--save", help="write every run's metrics and judged series to this JSON")
    p.add_argument("--report", help="print the tables of a saved JSON and stop")
    p.add_argument(
        "--tokens", action="store_true", help="only the token-distribution table (no pipeline runs)"
    )
    p.add_argument(
        "--entanglement", action="store_true", help="only the part-separability table of the encoder"
    )
    args = p.parse_args()
    if args.report:
        print(report(json.loads(Path(args.report).read_text())))
        return
    torch.set_num_threads(args.threads)
    if args.tokens:
        print(token_report(token_distribution(weights=args.weights)))
        return
    if args.entanglement:
        print(part_entanglement(weights=args.weights))
        return
    from fantasy_portrait.motion.controls import MotionControls
    from fantasy_portrait.synthetic.demo import DEFAULT_GUIDANCE, DEFAULT_STEPS
    from fantasy_portrait.synthetic.judge import load_judge
    from fantasy_portrait.synthetic.tiny_model import WEIGHTS_PATH, build_pipeline

    if "-" in args.seeds:
        a, b = (int(v) for v in args.seeds.split("-"))
        seeds = list(range(a, b + 1))
    else:
        seeds = [int(v) for v in args.seeds.split(",")]
    steps = args.steps or DEFAULT_STEPS
    guidance = args.guidance if args.guidance is not None else DEFAULT_GUIDANCE
    wanted = [c.strip() for c in args.configs.split(";") if c.strip()]
    configs = {k: v for k, v in CONFIGS.items() if not wanted or any(_matches(k, x) for x in wanted)}
    weights = Path(args.weights) if args.weights else WEIGHTS_PATH
    pipe = build_pipeline(args.weights)
    judge = load_judge()
    data = {
        "weights": weights.name,
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "motion_encoder": recorded_motion_encoder(args.weights) or "default",
        "seeds": seeds,
        "steps": steps,
        "guidance": guidance,
        "threads": torch.get_num_threads(),
        "configs": list(configs),
        "runs": {},
    }
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            cases = {}
            for name, (family, where, options) in configs.items():
                if family not in cases:
                    case = make_bench_case(seed, family, Path(tmp) / f"{seed}-{family}")
                    est = judged(judge, case.portrait[None], case.truth_boxes[:1])[:, 0]
                    cases[family] = (case, est)
                case, portrait_est = cases[family]
                controls = MotionControls.create(**options)
                frames, calls = animate(pipe, case, options, where, steps, guidance)
                run = score(judge, case, frames, controls, portrait_est)
                run["calls"] = calls
                data["runs"].setdefault(name, []).append(run)
            print(f"seed {seed} done ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)
    if args.save:
        Path(args.save).write_text(json.dumps(data))
    print(report(data))


if __name__ == "__main__":
    main()
