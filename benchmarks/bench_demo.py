"""Demo metrics of the shipped tiny synthetic FantasyPortrait over several seeds, and its wall time.

    python benchmarks/bench_demo.py --seeds 0-9 [--threads 2]

Prints a markdown table (means over seeds and faces) and the follow scores (read-out MAE against a
face's own driver vs the other driver's motion). Writes nothing but a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0-9", help="a-b range or comma list")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from fantasy_portrait.synthetic.demo import DEFAULT_GUIDANCE, DEFAULT_STEPS, metrics_table, run_demo

    if "-" in args.seeds:
        a, b = (int(v) for v in args.seeds.split("-"))
        seeds = list(range(a, b + 1))
    else:
        seeds = [int(v) for v in args.seeds.split(",")]
    steps = args.steps or DEFAULT_STEPS
    guidance = args.guidance if args.guidance is not None else DEFAULT_GUIDANCE
    rows: dict[str, list[dict]] = {}
    follow: dict[str, list[dict]] = {}
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            t0 = time.perf_counter()
            r = run_demo(
                f"{tmp}/{seed}", seed=seed, num_steps=steps, motion_guidance=guidance, progress=False
            )
            times.append(time.perf_counter() - t0)
            for name, m in r.metrics.items():
                rows.setdefault(name, []).append(m["mean"])
            for name, faces in r.follow.items():
                follow.setdefault(name, []).extend(faces)
    mean = {
        name: {"mean": {k: float(np.mean([v[k] for v in vs])) for k in vs[0]}} for name, vs in rows.items()
    }
    print(
        f"seeds {seeds}, {steps} steps, motion guidance {guidance}, {torch.get_num_threads()} torch threads"
    )
    print()
    print(metrics_table(mean))
    print()
    for name, faces in follow.items():
        own = np.mean([f["own"] for f in faces])
        swapped = np.mean([f["swapped"] for f in faces])
        print(f"follow ({name}): MAE vs own driver {own:.3f}, vs other driver {swapped:.3f}")
    print(f"run_demo wall time per seed: median {np.median(times):.1f} s, max {max(times):.1f} s")


if __name__ == "__main__":
    main()
