"""The built-in demo: animate a synthetic two-character portrait with the shipped tiny model.

``run_demo`` renders a case of the synthetic world (``cases.make_case``: a portrait of two
characters, two single-character drivers of other identities, and the exact ground truth), runs
the tiny model through the same :class:`~fantasy_portrait.pipeline.pipeline.FantasyPortraitPipeline`
call as ``fantasy-portrait animate`` (faces found by the real face stack, MediaPipe by default),
and measures the result against the ground truth, next to reference rows:

- ``model``: the animated result.
- ``repeat portrait``: every frame is the portrait (trivial baseline).
- ``paste driver``: each driver's face pasted onto the portrait's face position, scaled by the
  box ratio (oracle-free baseline: it copies the driver's identity along with its motion).
- ``ground truth via latent``: the ground-truth clip through the linear latent (the best the tiny
  model's latent can show).
- ``ground truth``: the ground-truth frames themselves (the measurement floor of the read-outs).

Motion errors are mean absolute errors, in normalised parameter units ([-1, 1] ranges; head = yaw
and pitch, eye = blinks and gaze, emotion = brow raise, furrow, smile, squint, mouth = open, width,
pucker) of the synthetic motion encoder's linear read-outs on crops aligned with the ground-truth
five points, over frames 1..F-1 (frame 0 is the portrait). NOTE: the read-outs come from the same
network that extracts the driving motion, so they are not an independent judge. ``psnr`` is
measured inside each face's ground-truth box (union over the clip).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DEMO_SEED_BASE = 0  # demo case seeds are DEMO_SEED_BASE + seed; training uses 100000 + i
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 4.0
GROUPS = {
    "head": ("yaw", "pitch"),
    "eye": ("blink_left", "blink_right", "gaze_x", "gaze_y"),
    "emotion": ("brow_raise", "brow_furrow", "smile", "squint"),
    "mouth": ("mouth_open", "mouth_width", "mouth_pucker"),
}
ROWS = ("model", "repeat portrait", "paste driver", "ground truth via latent", "ground truth")


@dataclass
class DemoResult:
    output_dir: Path
    files: dict[str, Path]
    metrics: dict  # row -> {"faces": [per-face dict], "mean": dict}
    follow: dict = field(default_factory=dict)  # row -> per face {"own", "swapped"} (follow_scores)
    seconds: dict[str, float] = field(default_factory=dict)
    faces_source: str = ""
    weights: str = ""

    def table(self) -> str:
        return metrics_table(self.metrics)


# ------------------------------------------------------------------------------------------ metrics
def motion_readouts(network, frames: np.ndarray, five_points: np.ndarray) -> np.ndarray:
    """(F, 13) normalised parameter estimates (motion_encoder.TARGET_NAMES order) of one face."""
    from .motion_encoder import aligned_crops, predict_motion

    return predict_motion(
        network, aligned_crops(frames, five_points.astype(np.float64), network.config.crop_size)
    )


def face_metrics(network, frames: np.ndarray, truth, face: int, motion: np.ndarray) -> dict:
    """Errors of one face over frames 1..F-1: per-group MAE of the read-outs and PSNR in its box."""
    from .motion_encoder import TARGET_NAMES, targets_of

    order = [n for part in TARGET_NAMES for n in TARGET_NAMES[part]]
    sl = slice(1, None)
    est = motion_readouts(network, frames[sl], truth.five_points[sl, face])
    ref = targets_of(motion[sl, face])
    err = np.abs(est - ref)
    out = {g: float(err[:, [order.index(n) for n in names]].mean()) for g, names in GROUPS.items()}
    out["all"] = float(err.mean())
    box = truth.boxes[:, face]
    x1, y1 = np.floor(box[:, :2].min(0)).astype(int)
    x2, y2 = np.ceil(box[:, 2:].max(0)).astype(int)
    h, w = frames.shape[1:3]
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    a = frames[sl, y1:y2, x1:x2].astype(np.float64)
    b = truth.frames[sl, y1:y2, x1:x2].astype(np.float64)
    mse = float(((a - b) ** 2).mean())
    out["psnr"] = float(10 * np.log10(255.0**2 / max(mse, 1e-10)))
    return out


def clip_metrics(network, frames: np.ndarray, truth, motion: np.ndarray) -> dict:
    faces = [face_metrics(network, frames, truth, i, motion) for i in range(motion.shape[1])]
    mean = {k: float(np.mean([f[k] for f in faces])) for k in faces[0]}
    return {"faces": faces, "mean": mean}


def follow_scores(network, frames: np.ndarray, truth, motion: np.ndarray) -> list[dict]:
    """Per face: read-out MAE against its own driver's motion and against the other driver's (faces
    swapped). A result that follows its drivers has own < swapped; equal values mean the motion is
    ignored; own > swapped would mean the faces follow the wrong driver (leakage)."""
    from .motion_encoder import targets_of

    n = motion.shape[1]
    out = []
    for i in range(n):
        est = motion_readouts(network, frames[1:], truth.five_points[1:, i])
        own = float(np.abs(est - targets_of(motion[1:, i])).mean())
        others = [float(np.abs(est - targets_of(motion[1:, j])).mean()) for j in range(n) if j != i]
        out.append({"own": own, "swapped": float(np.mean(others)) if others else float("nan")})
    return out


def metrics_table(metrics: dict) -> str:
    """Markdown table: one row per method (mean over faces), motion MAE per group and PSNR."""
    cols = [*GROUPS, "all", "psnr"]
    lines = [
        "| method | " + " | ".join(f"{c} MAE" if c != "psnr" else "face PSNR (dB)" for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for row, values in metrics.items():
        m = values["mean"]
        lines.append(
            f"| {row} | " + " | ".join(f"{m[c]:.3f}" if c != "psnr" else f"{m[c]:.2f}" for c in cols) + " |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- baselines
def paste_driver(case) -> np.ndarray:
    """Baseline: each driver frame mapped onto the portrait's face (frame-0 box to portrait box), pasted
    inside the moved box enlarged by 20%, over the portrait."""
    import cv2

    out = np.repeat(case.portrait[None], len(case.truth.frames), 0).copy()
    h, w = case.portrait.shape[:2]
    for i, drv in enumerate(case.drivers):
        d0 = drv.boxes[0, 0]
        p0 = case.truth.boxes[0, i]
        s = (p0[3] - p0[1]) / max(d0[3] - d0[1], 1e-6)
        dc = np.array([(d0[0] + d0[2]) / 2, (d0[1] + d0[3]) / 2])
        pc = np.array([(p0[0] + p0[2]) / 2, (p0[1] + p0[3]) / 2])
        m = np.array([[s, 0, pc[0] - s * dc[0]], [0, s, pc[1] - s * dc[1]]], np.float64)
        for t in range(len(out)):
            warped = cv2.warpAffine(
                drv.frames[t], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            b = drv.boxes[t, 0]
            bw, bh = b[2] - b[0], b[3] - b[1]
            corners = np.array([[b[0] - 0.2 * bw, b[1] - 0.2 * bh], [b[2] + 0.2 * bw, b[3] + 0.2 * bh]])
            (x1, y1), (x2, y2) = corners * s + (pc - s * dc)
            x1, y1 = int(max(0, np.floor(x1))), int(max(0, np.floor(y1)))
            x2, y2 = int(min(w, np.ceil(x2))), int(min(h, np.ceil(y2)))
            out[t, y1:y2, x1:x2] = warped[y1:y2, x1:x2]
    return out


def through_latent(latent, frames: np.ndarray) -> np.ndarray:
    import torch

    from .cases import to_video_tensor

    with torch.no_grad():
        rec = latent.decode(latent.encode(to_video_tensor(frames)))
    return ((rec[0].permute(1, 2, 3, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


# -------------------------------------------------------------------------------------------- video
def side_by_side(
    drivers: list[np.ndarray], result: np.ndarray, truth: np.ndarray, scale: int = 3
) -> np.ndarray:
    """(F, H', W', 3): drivers (side by side) | result | ground truth, upscaled, with a caption row."""
    import cv2

    size = result.shape[1]  # drivers shown at the result's height
    drivers = [
        np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in d]) for d in drivers
    ]
    drv = np.concatenate(drivers, axis=2)
    gap = np.full((*result.shape[:2], 4, 3), 255, np.uint8)
    frames = np.concatenate([drv, gap, result, gap, truth], axis=2)
    f, h, w = frames.shape[:3]
    big = np.stack([cv2.resize(x, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST) for x in frames])
    header = np.full((f, 20, w * scale, 3), 255, np.uint8)
    labels = [
        ("drivers", 0),
        ("result", drv.shape[2] + 4),
        ("ground truth", drv.shape[2] + result.shape[2] + 8),
    ]
    for x in header:
        for text, x0 in labels:
            cv2.putText(
                x, text, (x0 * scale + 4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA
            )
    out = np.concatenate([header, big], axis=1)
    return out[:, : out.shape[1] // 2 * 2, : out.shape[2] // 2 * 2]


# --------------------------------------------------------------------------------------------- demo
def run_demo(
    output_dir: str | os.PathLike,
    *,
    seed: int = 0,
    num_steps: int = DEFAULT_STEPS,
    motion_guidance: float = DEFAULT_GUIDANCE,
    weights: str | os.PathLike | None = None,
    models=None,
    face_backend: str = "mediapipe",
    exact_boxes: bool = False,
    progress: bool = True,
) -> DemoResult:
    """Render, animate, compare; write the files into ``output_dir`` (created). See the module docstring.

    models: (transformer, expression encoder, latent) to use instead of loading ``weights`` (tests).
    exact_boxes: give the pipeline the renderer's exact portrait boxes instead of detecting them.
    """
    import torch

    from ..errors import FaceError
    from ..io import save_image, write_video
    from .cases import FPS, make_case
    from .tiny_model import WEIGHTS_PATH, build_pipeline, load_tiny_model

    t_start = time.perf_counter()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    case = make_case(DEMO_SEED_BASE + seed)
    files = {"portrait": out / "portrait.png", "ground_truth": out / "ground_truth.mp4"}
    save_image(files["portrait"], case.portrait)
    driver_paths = []
    for i, drv in enumerate(case.drivers):
        p = out / f"driver_{i + 1}.mp4"
        write_video(p, drv.frames, fps=FPS)
        driver_paths.append(p)
        files[f"driver_{i + 1}"] = p
    write_video(files["ground_truth"], case.truth.frames, fps=FPS)
    seconds["render"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if models is None:
        transformer, encoder, latent, _ = load_tiny_model(weights)
        weights_label = str(weights or WEIGHTS_PATH)
    else:
        transformer, encoder, latent = models
        weights_label = "in-memory models"
    pipe = build_pipeline(weights, models=(transformer, encoder, latent), face_backend=face_backend)
    seconds["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    h, w = case.portrait.shape[:2]
    kwargs = dict(
        max_size=max(h, w),
        fps=FPS,
        num_steps=num_steps,
        motion_guidance=motion_guidance,
        seed=seed,
        window_frames=None,
        progress=progress,
    )
    boxes = case.truth.boxes[0].astype(np.float32)
    faces_source = "exact boxes from the renderer (--exact-boxes)"
    if exact_boxes:
        result = pipe(files["portrait"], driver_paths, face_boxes=boxes, **kwargs)
    else:
        try:
            result = pipe(files["portrait"], driver_paths, **kwargs)
            faces_source = f"detected by the face stack ({face_backend})"
        except FaceError as exc:
            logger.warning("face detection failed on the synthetic portrait (%s); using the exact boxes", exc)
            faces_source = f"exact boxes from the renderer ({face_backend} failed: {exc})"
            result = pipe(files["portrait"], driver_paths, face_boxes=boxes, **kwargs)
    frames = result.frames
    seconds["animate"] = time.perf_counter() - t0
    seconds.update({f"animate/{k}": v for k, v in result.seconds.items()})
    n = len(frames)
    truth_frames = case.truth.frames[:n]

    t0 = time.perf_counter()
    files["result"] = out / "result.mp4"
    write_video(files["result"], frames, fps=FPS)
    files["side_by_side"] = out / "side_by_side.mp4"
    write_video(
        files["side_by_side"],
        side_by_side([d.frames[:n] for d in case.drivers], frames, truth_frames),
        fps=FPS,
    )
    seconds["write"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    network = pipe.motion_encoder.network
    motion = case.motion[:n]
    from .scenes import Clip

    truth = Clip(
        truth_frames,
        motion,
        case.truth.boxes[:n],
        case.truth.five_points[:n],
        case.truth.landmarks[:n],
        case.truth.landmark_visible[:n],
    )
    candidates = {
        "model": frames,
        "repeat portrait": np.repeat(case.portrait[None], n, 0),
        "paste driver": paste_driver(case)[:n],
        "ground truth via latent": through_latent(latent, truth_frames),
        "ground truth": truth_frames,
    }
    with torch.no_grad():
        metrics = {name: clip_metrics(network, f, truth, motion) for name, f in candidates.items()}
        follow = {
            name: follow_scores(network, candidates[name], truth, motion)
            for name in ("model", "ground truth")
        }
    seconds["metrics"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start

    summary = {
        "seed": seed,
        "case_seed": DEMO_SEED_BASE + seed,
        "weights": weights_label,
        "faces": faces_source,
        "num_frames": n,
        "size": [w, h],
        "num_steps": num_steps,
        "motion_guidance": motion_guidance,
        "torch_threads": torch.get_num_threads(),
        "metrics": metrics,
        "follow": follow,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "files": {k: str(v) for k, v in files.items()},
        "note": "motion MAE: normalised units, read-outs of the synthetic motion encoder (the same network "
        "that extracts the driving motion), frames 1..F-1; psnr inside each face's ground-truth box",
    }
    files["metrics"] = out / "metrics.json"
    files["metrics"].write_text(json.dumps(summary, indent=1))
    files["table"] = out / "metrics.md"
    files["table"].write_text(metrics_table(metrics) + "\n")
    return DemoResult(out, files, metrics, follow, seconds, faces_source, weights_label)
