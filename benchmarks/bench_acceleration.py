"""Speed-quality table of the acceleration options in the synthetic world, judged against exact ground truth.

    nice -n 19 python benchmarks/bench_acceleration.py --seeds 0-9 [--configs quality,fast-g1,...] [--threads 1]

The shipped tiny synthetic FantasyPortrait model animates the demo's two-character cases (the same
renderer, judge and metrics as ``benchmarks/bench_demo.py``: motion MAE over the judge's estimates,
follow / leak pooled over every face of every seed, face PSNR inside the ground-truth boxes) under
each configuration: steps, motion guidance, and feature caches at several thresholds. Portrait faces
are given by the renderer's exact boxes (the faces stage is the same for every row and not under
test); the drivers are tracked by the face stack as in the demo.

Per row: transformer calls per clip (batched calls; samples through the DiT in brackets), block stacks
actually computed (cached rows), the judge's metrics, and the wall time per clip on this machine
(shared box: use the calls, not the seconds). The tiny model was NOT step-distilled: 4-step rows
measure the schedule alone (a distilled LoRA is what makes 4 steps work on the real model).

TeaCache on this model uses the raw relative L1 change of the modulation input (no rescaling
polynomial: the published coefficients were fitted on Wan2.1-14B, whose timestep embedding differs);
MagCache uses ratios calibrated here on case seed 1000 (not an evaluation seed); FirstBlockCache and
TaylorSeer need no calibration.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

CALIBRATION_SEED = 1000

# name -> (steps, motion guidance, cache kind, threshold, extra)
CONFIGS = {
    "quality": (30, 4.0, "none", 0.0),
    "steps8": (8, 4.0, "none", 0.0),
    "steps4-g4": (4, 4.0, "none", 0.0),
    "steps4-g1": (4, 1.0, "none", 0.0),
    "quality-tea0.03": (30, 4.0, "teacache", 0.03),
    "quality-tea0.06": (30, 4.0, "teacache", 0.06),
    "quality-fbc0.1": (30, 4.0, "fbc", 0.1),
    "quality-fbc0.2": (30, 4.0, "fbc", 0.2),
    "quality-mag0.12": (30, 4.0, "magcache", 0.12),
    "quality-mag0.24": (30, 4.0, "magcache", 0.24),
    "quality-taylor2": (30, 4.0, "taylorseer", 2.0),
    "quality-taylor3": (30, 4.0, "taylorseer", 3.0),
    "steps8-g1": (8, 1.0, "none", 0.0),
}


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = (int(v) for v in text.split("-"))
        return list(range(a, b + 1))
    return [int(v) for v in text.split(",")]


class World:
    """The tiny model's pipeline and the judge, loaded once; one case per call."""

    def __init__(self, tmp: Path):
        from fantasy_portrait.synthetic.judge import load_judge
        from fantasy_portrait.synthetic.tiny_model import build_pipeline, load_tiny_model

        transformer, encoder, latent, extra = load_tiny_model()
        self.pipe = build_pipeline(
            models=(transformer, encoder, latent), masked_motion=extra.get("masked_motion", True)
        )
        self._memoize_faces()
        self.judge = load_judge()
        self.tmp = tmp
        self.cases: dict[int, tuple] = {}

    def _memoize_faces(self):
        """The faces and motion stages depend only on the inputs, which are the same for every config of
        a seed: compute them once per seed (the benchmark measures the sampler, not face tracking)."""
        from fantasy_portrait.pipeline import pipeline as module

        memo: dict = {}
        plan, motions = module.plan_driving, module.face_motions

        def plan_once(portrait, videos, **kwargs):
            key = ("plan", tuple(str(v) for v in videos))
            if key not in memo:
                memo[key] = plan(portrait, videos, **kwargs)
            return memo[key]

        def motions_once(plan_, portrait, encoder, **kwargs):
            key = ("motion", id(plan_))
            if key not in memo:
                memo[key] = motions(plan_, portrait, encoder, **kwargs)
            return memo[key]

        module.plan_driving, module.face_motions = plan_once, motions_once

    def case(self, seed: int):
        from fantasy_portrait.io import save_image, write_video
        from fantasy_portrait.synthetic.cases import FPS, make_case
        from fantasy_portrait.synthetic.demo import DEMO_SEED_BASE

        if seed not in self.cases:
            case = make_case(DEMO_SEED_BASE + seed)
            folder = self.tmp / str(seed)
            folder.mkdir(exist_ok=True)
            save_image(folder / "portrait.png", case.portrait)
            drivers = []
            for i, drv in enumerate(case.drivers):
                write_video(folder / f"driver_{i}.mp4", drv.frames, fps=FPS)
                drivers.append(folder / f"driver_{i}.mp4")
            self.cases[seed] = (case, folder / "portrait.png", drivers)
        return self.cases[seed]

    def animate(self, seed: int, steps: int, guidance: float, **settings):
        from fantasy_portrait.synthetic.cases import FPS

        case, portrait, drivers = self.case(seed)
        h, w = case.portrait.shape[:2]
        return self.pipe(
            portrait,
            drivers,
            face_boxes=case.truth.boxes[0].astype(np.float32),
            max_size=max(h, w),
            fps=FPS,
            num_steps=steps,
            motion_guidance=guidance,
            seed=seed,
            window_frames=None,
            progress=False,
            **settings,
        )

    def score(self, seed: int, frames: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
        from fantasy_portrait.synthetic.demo import clip_metrics, motion_estimates
        from fantasy_portrait.synthetic.scenes import Clip

        case = self.case(seed)[0]
        n = len(frames)
        t = case.truth
        truth = Clip(
            t.frames[:n],
            case.motion[:n],
            t.boxes[:n],
            t.five_points[:n],
            t.landmarks[:n],
            t.landmark_visible[:n],
        )
        with torch.no_grad():
            est = motion_estimates(self.judge, frames, truth)
        return clip_metrics(frames, truth, case.motion[:n], est)["mean"], est, case.motion[:n]


def calibrate_mag_ratios(world: World, steps: int, guidance: float) -> list[float]:
    from fantasy_portrait.pipeline import caching

    with caching.record_mag_ratios(world.pipe.transformer) as recorded:
        world.animate(CALIBRATION_SEED, steps, guidance)
    return caching.mean_mag_ratios(recorded)


def run_config(world: World, name: str, seeds: list[int], mag_ratios: dict) -> dict:
    from fantasy_portrait.pipeline import caching
    from fantasy_portrait.synthetic.demo import follow_leak

    steps, guidance, kind, threshold = CONFIGS[name]
    tr = world.pipe.transformer
    rows, estimates, motions, calls, computed, seconds = [], [], [], [], [], []
    for seed in seeds:
        handle = None
        if kind != "none":
            kwargs = {}
            if kind == "teacache":
                kwargs["teacache_coefficients"] = "raw"
            if kind == "magcache":
                key = (steps, guidance)
                if key not in mag_ratios:
                    mag_ratios[key] = calibrate_mag_ratios(world, steps, guidance)
                kwargs["mag_ratios"] = mag_ratios[key]
            handle = caching.enable_cache(tr, kind, threshold, num_steps=steps, **kwargs)
            caching.reset_cache(tr)
        try:
            t0 = time.perf_counter()
            result = world.animate(seed, steps, guidance)
            seconds.append(time.perf_counter() - t0)
            if handle is not None:
                computed.append(handle.stats()["computed"])
        finally:
            caching.disable_cache(tr)
        calls.append(result.transformer_calls)
        metrics, est, motion = world.score(seed, result.frames)
        rows.append(metrics)
        estimates.append(est)
        motions.append(motion)
    fl = follow_leak(estimates, motions, world.judge.readable)
    per_call = 3 * len(tr.blocks) if kind == "taylorseer" else 1
    out = {
        "name": name,
        "steps": steps,
        "guidance": guidance,
        "cache": kind,
        "threshold": threshold,
        "calls": float(np.mean(calls)),
        "samples_per_call": 2 if guidance != 1.0 else 1,
        "computed": float(np.mean(computed)) / per_call if computed else float(np.mean(calls)),
        "seconds": float(np.median(seconds)),
        "follow": fl["follow"],
        "leak": fl["leak"],
        **{k: float(np.mean([r[k] for r in rows])) for k in rows[0]},
    }
    print(json.dumps(out), flush=True)
    return out


def table(results: list[dict]) -> str:
    ref = next((r for r in results if r["name"] == "quality"), results[0])
    ref_passes = ref["computed"] * ref["samples_per_call"]
    lines = [
        "| config | steps | motion guidance | cache | calls (samples) | computed stacks | passes vs quality | "
        "motion MAE | follow | leak | face PSNR dB | SSIM | s/clip |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        passes = r["computed"] * r["samples_per_call"]
        cache = "-" if r["cache"] == "none" else f"{r['cache']} {r['threshold']:g}"
        lines.append(
            f"| {r['name']} | {r['steps']} | {r['guidance']:g} | {cache} | {r['calls']:.0f} "
            f"({r['calls'] * r['samples_per_call']:.0f}) | {r['computed']:.1f} | {passes / ref_passes:.3f} | "
            f"{r['all']:.3f} | {r['follow']:.3f} | {r['leak']:+.3f} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
            f"{r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = parse_seeds(args.seeds)
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        p.error(f"unknown config(s) {unknown}; choose from {', '.join(CONFIGS)}")
    results, mag = [], {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp))
        for name in names:
            results.append(run_config(world, name, seeds, mag))
            if args.json:
                Path(args.json).write_text(
                    json.dumps(
                        {"seeds": seeds, "rows": results, "mag_ratios": {str(k): v for k, v in mag.items()}},
                        indent=1,
                    )
                )
    print(
        f"\nseeds {seeds}; {torch.get_num_threads()} torch thread(s); wall {time.perf_counter() - t0:.0f} s\n"
    )
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
