"""Synthetic portrait world: renderer speed and how the real face stack (MediaPipe) sees the faces.

    python benchmarks/bench_synthetic.py [--frames 50] [--portraits 40]

Prints ms per frame for single- and multi-character scenes, and for MediaPipe (the project's
``mediapipe`` face backend): the share of rendered faces it detects, and its five-point error against
the renderer's exact points (mean distance / eye distance). Figures go to benchmarks/synthetic.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fantasy_portrait.synthetic.performance import random_motion
from fantasy_portrait.synthetic.render import render_frame
from fantasy_portrait.synthetic.scenes import random_performances, random_scene, render_clip


def render_speed(frames: int) -> None:
    print("| scene | size (HxW) | ms/frame |")
    print("|---|---|---|")
    for n, h, w in ((1, 128, 128), (1, 256, 256), (2, 256, 384), (4, 256, 512), (1, 512, 512)):
        scene = random_scene(n, n, h, w)
        motion = random_performances(frames, n, seed=n)
        render_clip(scene, motion[:2])  # warm-up
        t = time.perf_counter()
        render_clip(scene, motion)
        ms = (time.perf_counter() - t) / frames * 1000
        print(f"| {n} character{'s' if n > 1 else ''} | {h}x{w} | {ms:.1f} |")


def mediapipe_rates(portraits: int) -> None:
    from fantasy_portrait.faces.backend import get_backend

    backend = get_backend("mediapipe")
    print("\n| scenes | size (HxW) | faces detected | five-point error / eye distance (median, 90th pct) |")
    print("|---|---|---|---|")
    for n, h, w in ((1, 128, 128), (1, 256, 256), (2, 256, 384), (3, 256, 512), (4, 256, 512)):
        found = total = 0
        errors = []
        for seed in range(portraits):
            scene = random_scene(1000 + seed, n, h, w)
            rng = np.random.default_rng(seed)
            f = render_frame(scene, np.stack([random_motion(rng) for _ in range(n)]))
            faces = backend.detect(f.image)
            total += n
            for i in range(n):
                box = f.boxes[i]
                hits = [
                    o
                    for o in faces
                    if box[0] <= o.center_x <= box[2] and box[1] <= (o.box[1] + o.box[3]) / 2 <= box[3]
                ]
                if not hits:
                    continue
                found += 1
                obs = max(hits, key=lambda o: o.score)
                if obs.five_points is not None:
                    eye = np.linalg.norm(f.five_points[i, 1] - f.five_points[i, 0])
                    errors.append(np.linalg.norm(obs.five_points - f.five_points[i], axis=1).mean() / eye)
        err = f"{np.median(errors):.3f}, {np.percentile(errors, 90):.3f}" if errors else "-"
        print(
            f"| {portraits} x {n} face{'s' if n > 1 else ''}, random poses | {h}x{w} | {found}/{total} ({100 * found / total:.0f}%) | {err} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--portraits", type=int, default=40)
    parser.add_argument("--skip-mediapipe", action="store_true")
    args = parser.parse_args()
    render_speed(args.frames)
    if not args.skip_mediapipe:
        mediapipe_rates(args.portraits)


if __name__ == "__main__":
    main()
