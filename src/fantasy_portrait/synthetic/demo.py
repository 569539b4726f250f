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
- ``ground truth via latent``: the ground-truth clip through the model's latent (the best the tiny
  model's latent can show).
- ``ground truth``: the ground-truth frames themselves (the measurement floor of the read-outs).

Motion errors are mean absolute errors, in normalised parameter units ([-1, 1] ranges; head = yaw
and pitch, eye = blinks and gaze, emotion = brow raise, furrow, smile, squint, mouth = open, width,
pucker) of the judge network's estimates (``judge.py``: trained apart from the motion encoder the
model is conditioned on) on crops around each face's ground-truth box, over frames 1..F-1 (frame 0
is the portrait), against the driver's parameters. ``psnr`` and ``ssim`` are measured inside each
face's ground-truth box (union over the clip). ``follow`` / ``leak``: how much a face's estimated
motion follows its own driver / the other face's driver (:func:`follow_leak`).
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
    follow: dict = field(default_factory=dict)  # row -> follow_leak() of that row
    seconds: dict[str, float] = field(default_factory=dict)
    faces_source: str = ""
    weights: str = ""
    estimates: dict = field(default_factory=dict)  # row -> (N, F-1, 13) judge estimates
    motion: np.ndarray | None = None  # (F, N, 17) driving parameters
    summary: str = ""  # summary_sentence() of this run

    def table(self) -> str:
        return metrics_table(self.metrics, self.follow)


# ------------------------------------------------------------------------------------------ metrics
def motion_estimates(judge, frames: np.ndarray, truth) -> np.ndarray:
    """(N, F-1, 13): the judge's parameter estimates of every face over frames 1..F-1, read inside
    the face's ground-truth box (the same crop for every method)."""
    from .judge import judge_face

    return np.stack([judge_face(judge, frames[1:], truth.boxes[1:, i]) for i in range(truth.boxes.shape[1])])


def face_box_union(truth, face: int, shape) -> tuple[int, int, int, int]:
    box = truth.boxes[:, face]
    x1, y1 = np.floor(box[:, :2].min(0)).astype(int)
    x2, y2 = np.ceil(box[:, 2:].max(0)).astype(int)
    return max(x1, 0), max(y1, 0), min(x2, shape[1]), min(y2, shape[0])


def face_metrics(frames: np.ndarray, truth, face: int, estimates: np.ndarray, motion: np.ndarray) -> dict:
    """One face over frames 1..F-1: per-group MAE of the judge's estimates ``estimates`` (F-1, 13)
    against the driver's parameters, and PSNR / SSIM inside the face's ground-truth box (union)."""
    from ..bench.metrics import ssim_frames
    from .judge import TARGET_ORDER
    from .motion_encoder import targets_of

    err = np.abs(estimates - targets_of(motion[1:, face]))
    out = {g: float(err[:, [TARGET_ORDER.index(n) for n in names]].mean()) for g, names in GROUPS.items()}
    out["all"] = float(err.mean())
    x1, y1, x2, y2 = face_box_union(truth, face, frames.shape[1:3])
    a = frames[1:, y1:y2, x1:x2]
    b = truth.frames[1:, y1:y2, x1:x2]
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    out["psnr"] = float(10 * np.log10(255.0**2 / max(mse, 1e-10)))
    out["ssim"] = float(ssim_frames(a, b).mean())
    return out


def clip_metrics(frames: np.ndarray, truth, motion: np.ndarray, estimates: np.ndarray) -> dict:
    faces = [face_metrics(frames, truth, i, estimates[i], motion) for i in range(motion.shape[1])]
    mean = {k: float(np.mean([f[k] for f in faces])) for k in faces[0]}
    return {"faces": faces, "mean": mean}


def follow_leak(
    estimates: list[np.ndarray], motions: list[np.ndarray], parameters: tuple[str, ...] | None = None
) -> dict:
    """How much each face's generated motion follows its own driver, and how much the other's.

    estimates: per clip (N, F-1, 13) judge estimates; motions: per clip (F, N, 17) driving parameters
    (N >= 2). Every face of every clip is one series; estimates and parameters are centred per
    series (identity and framing biases drop out), then pooled. Per parameter, least squares of the
    estimate on the face's own driver's parameter and on the other drivers' (mean of the others):
    ``follow`` and ``leak`` are the two slopes averaged over ``parameters`` (default: all 13; the
    demo passes the ones the judge reads, ``judge.readable``) that vary in the clips (NaN slopes for
    the others, e.g. blinks when no driver blinks). The ground truth has leak 0 and the
    judge's follow (below 1: its estimates shrink towards the mean); a face that copies the other
    driver has a leak as large as that follow. Slopes of every parameter are in ``per_parameter``.
    """
    from .judge import TARGET_ORDER
    from .motion_encoder import targets_of

    ys, owns, others = [], [], []
    for est, motion in zip(estimates, motions):
        n = motion.shape[1]
        if n < 2:
            continue
        targets = targets_of(motion[1:])  # (F-1, N, 13)
        for i in range(n):
            other = np.mean([targets[:, j] for j in range(n) if j != i], axis=0)
            for series, bucket in ((est[i], ys), (targets[:, i], owns), (other, others)):
                bucket.append(series - series.mean(0))
    if not ys:
        raise ValueError("follow/leak needs clips with two or more faces")
    y, own, other = (np.concatenate(v).astype(np.float64) for v in (ys, owns, others))
    slopes = []
    for p in range(y.shape[1]):
        x = np.stack([own[:, p], other[:, p]], axis=1)
        coef, *_ = np.linalg.lstsq(x, y[:, p], rcond=None)
        slopes.append(coef)
    slopes = np.array(slopes)
    # Parameters that do not move in these clips (no blink in 17 frames, say) have no slope to measure.
    varies = own.std(0) > 1e-3
    slopes[~varies] = np.nan
    used = [i for i in (TARGET_ORDER.index(n) for n in (parameters or TARGET_ORDER)) if varies[i]]
    if not used:
        raise ValueError("none of the chosen parameters varies in these clips")
    return {
        "follow": float(slopes[used, 0].mean()),
        "leak": float(slopes[used, 1].mean()),
        "parameters": [TARGET_ORDER[i] for i in used],
        "per_parameter": {
            n: {"follow": float(a), "leak": float(b)} for n, (a, b) in zip(TARGET_ORDER, slopes)
        },
    }


def metrics_table(metrics: dict, follow: dict | None = None) -> str:
    """Markdown table: one row per method (mean over faces), judge MAE per group, pixel metrics, and
    the follow / leak slopes when given."""
    cols = [*GROUPS, "all"]
    head = [f"{c} MAE" for c in cols] + ["face PSNR (dB)", "face SSIM"]
    if follow:
        head += ["follow", "leak"]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for row, values in metrics.items():
        m = values["mean"]
        cells = [f"{m[c]:.3f}" for c in cols] + [f"{m['psnr']:.2f}", f"{m['ssim']:.3f}"]
        if follow:
            f = follow.get(row)
            cells += [f"{f['follow']:.3f}", f"{f['leak']:+.3f}"] if f else ["", ""]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_sentence(metrics: dict, follow: dict | None = None) -> str:
    """One sentence: what the run shows and how the model compares with the two baselines on it,
    from that run's numbers (``metrics`` and ``follow`` as in :class:`DemoResult`)."""
    m = {row: metrics[row]["mean"] for row in ("model", "repeat portrait", "paste driver")}
    n = len(metrics["model"]["faces"])
    mae, psnr = m["model"]["all"], m["model"]["psnr"]

    def versus(key: str, higher_better: bool, fmt: str) -> str:
        parts = []
        for base, what in (
            ("repeat portrait", "repeating the portrait"),
            ("paste driver", "pasting the driver"),
        ):
            b = m[base][key]
            better = m["model"][key] > b if higher_better else m["model"][key] < b
            parts.append(f"{'better' if better else 'worse'} than {what} ({fmt.format(b)})")
        return " and ".join(parts)

    sentence = (
        f"The tiny model animated the {n} faces of a synthetic portrait with {n} driving clips of other people: "
        f"its motion error {mae:.3f} is {versus('all', False, '{:.3f}')}, "
        f"its face PSNR {psnr:.1f} dB is {versus('psnr', True, '{:.1f}')}"
    )
    f = (follow or {}).get("model")
    if f:
        fol, leak = f["follow"], f["leak"]
        # On one short case the drivers' motions correlate by chance: the ground truth's own leak on the
        # same case is the reference (zero only over many cases).
        ref = (follow or {}).get("ground truth", {}).get("leak", 0.0)
        figures = f"follow {fol:.2f}, leak {leak:+.2f} against the ground truth's {ref:+.2f}"
        if fol < 0.1:
            tail = f"and the faces hardly follow their own drivers ({figures})"
        elif leak - ref < 0.5 * fol:
            tail = f"and each face follows its own driver, not the other's ({figures})"
        else:
            tail = f"but the faces follow the other driver as well as their own ({figures})"
        sentence += ", " + tail
    return sentence + "."


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
    from .latent import through_latent
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
    masked_motion, motion_encoder = True, None
    if models is None:
        transformer, encoder, latent, extra = load_tiny_model(weights)
        masked_motion = bool(extra.get("masked_motion", True))
        # The features the model was trained on (None: the shipped default encoder's).
        motion_encoder = extra.get("motion_encoder")
        weights_label = str(weights or WEIGHTS_PATH)
    else:
        transformer, encoder, latent = models
        weights_label = "in-memory models"
    pipe = build_pipeline(
        weights,
        models=(transformer, encoder, latent),
        face_backend=face_backend,
        masked_motion=masked_motion,
        motion_encoder=motion_encoder,
    )
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
    from .judge import load_judge
    from .scenes import Clip

    judge = load_judge()
    motion = case.motion[:n]
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
        estimates = {name: motion_estimates(judge, f, truth) for name, f in candidates.items()}
    metrics = {name: clip_metrics(f, truth, motion, estimates[name]) for name, f in candidates.items()}
    follow = {name: follow_leak([estimates[name]], [motion], judge.readable) for name in candidates}
    seconds["metrics"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    from .figures import PLOT_PARAMETERS, contact_sheet, motion_plot

    sentence = summary_sentence(metrics, follow)
    files["contact_sheet"] = out / "contact_sheet.png"
    save_image(
        files["contact_sheet"],
        contact_sheet(
            [d.frames[:n] for d in case.drivers], frames, truth_frames, truth.boxes, caption=sentence
        ),
    )
    files["motion_plot"] = out / "motion_plot.png"
    f = follow["model"]
    motion_plot(
        files["motion_plot"],
        estimates["model"],
        motion,
        estimates["ground truth"],
        parameters=PLOT_PARAMETERS,
        fps=FPS,
        title=f"each face's motion as the judge reads it in the result (follow {f['follow']:.2f}, "
        f"leak {f['leak']:+.2f})",
    )
    seconds["figures"] = time.perf_counter() - t0
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
        "summary": sentence,
        "metrics": metrics,
        "follow": follow,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "files": {k: str(v) for k, v in files.items()},
        "note": "motion MAE: normalised units, estimates of the judge network (synthetic/judge.py, trained "
        "apart from the motion encoder), frames 1..F-1; psnr/ssim inside each face's ground-truth box; "
        "follow/leak: slopes of the estimates on the own / other driver's parameters (follow_leak)",
    }
    files["metrics"] = out / "metrics.json"
    files["metrics"].write_text(json.dumps(summary, indent=1))
    files["table"] = out / "metrics.md"
    files["table"].write_text(metrics_table(metrics, follow) + "\n")
    return DemoResult(
        out,
        files,
        metrics,
        follow,
        seconds,
        faces_source,
        weights_label,
        estimates=estimates,
        motion=motion,
        summary=sentence,
    )
