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
    print("| scene | size (HxW) | ms/frame (wall) | ms/frame (process CPU time) |")
    print("|---|---|---|---|")
    for n, h, w in ((1, 128, 128), (1, 256, 256), (2, 256, 384), (4, 256, 512), (1, 512, 512)):
        scene = random_scene(n, n, h, w)
        motion = random_performances(frames, n, seed=n)
        render_clip(scene, motion[:2])  # warm-up
        t, c = time.perf_counter(), time.process_time()
        render_clip(scene, motion)
        ms = (time.perf_counter() - t) / frames * 1000
        cpu = (time.process_time() - c) / frames * 1000
        print(f"| {n} character{'s' if n > 1 else ''} | {h}x{w} | {ms:.1f} | {cpu:.1f} |")


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


def encoder_with_mediapipe_points(portraits: int) -> None:
    """Tiny motion encoder read-outs with exact five points vs MediaPipe's five points."""
    from fantasy_portrait.faces.backend import get_backend
    from fantasy_portrait.synthetic.motion_encoder import (
        PART_NAMES,
        TARGET_NAMES,
        aligned_crops,
        load_motion_encoder,
        predict_motion,
        targets_of,
    )
    from fantasy_portrait.synthetic.params import random_identity
    from fantasy_portrait.synthetic.render import Character, Scene

    backend = get_backend("mediapipe")
    model = load_motion_encoder()
    rng = np.random.default_rng(5)
    frames, exact, detected, targets = [], [], [], []
    for _ in range(portraits):
        idt = random_identity(rng)
        scene = Scene(
            (Character(idt, (0.5, 0.47), 0.3),), 256, 256, idt.background_top, idt.background_bottom
        )
        motion = random_motion(rng)
        f = render_frame(scene, motion[None])
        faces = [o for o in backend.detect(f.image) if o.five_points is not None]
        if not faces:
            continue
        frames.append(f.image)
        exact.append(f.five_points[0])
        detected.append(max(faces, key=lambda o: o.score).five_points)
        targets.append(targets_of(motion))
    frames, targets = np.stack(frames), np.stack(targets)
    size = model.config.crop_size
    p_exact = predict_motion(model, aligned_crops(frames, np.stack(exact), size))
    p_mp = predict_motion(model, aligned_crops(frames, np.stack(detected), size))
    names = [n for p in PART_NAMES for n in TARGET_NAMES[p]]
    print(f"\n{len(frames)} portraits at 256x256 with a MediaPipe face; read-out MAE in [-1, 1] units")
    print("| parameter | exact five points | MediaPipe five points | mean predictor |")
    print("|---|---|---|---|")
    for k, n in enumerate(names):
        a = np.abs(p_exact[:, k] - targets[:, k]).mean()
        b = np.abs(p_mp[:, k] - targets[:, k]).mean()
        c = np.abs(targets[:, k] - targets[:, k].mean()).mean()
        print(f"| {n} | {a:.3f} | {b:.3f} | {c:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--portraits", type=int, default=40)
    parser.add_argument("--skip-mediapipe", action="store_true")
    args = parser.parse_args()
    render_speed(args.frames)
    if not args.skip_mediapipe:
        mediapipe_rates(args.portraits)
        encoder_with_mediapipe_points(args.portraits * 2)


if __name__ == "__main__":
    main()
