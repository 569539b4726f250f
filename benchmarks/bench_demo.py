"""Demo metrics of tiny synthetic FantasyPortrait models over several seeds, and the demo's wall time.

    python benchmarks/bench_demo.py --seeds 0-9 [--threads 2]
    python benchmarks/bench_demo.py --seeds 0-19 --weights full=a.safetensors no-mask=b.safetensors

Prints a markdown table: means over seeds and faces of the judge's motion errors, the face PSNR / SSIM
and the follow / leak slopes pooled over every face of every seed (``synthetic.demo.follow_leak``).
Without --weights the shipped model is the ``model`` row; with --weights every named file gets a row
(the ablation table) next to the baselines, all on the same cases. Writes only a temporary folder.
"""

from __future__ import annotations

import argparse
import json
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
    p.add_argument("--weights", nargs="*", default=[], help="NAME=PATH tiny model files (default: shipped)")
    p.add_argument("--exact-boxes", action="store_true", help="give the pipeline the renderer's boxes")
    p.add_argument("--save", help="write the per-row metrics, judge estimates and motions to this .npz")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from fantasy_portrait.synthetic.demo import (
        DEFAULT_GUIDANCE,
        DEFAULT_STEPS,
        follow_leak,
        metrics_table,
        run_demo,
    )

    if "-" in args.seeds:
        a, b = (int(v) for v in args.seeds.split("-"))
        seeds = list(range(a, b + 1))
    else:
        seeds = [int(v) for v in args.seeds.split(",")]
    steps = args.steps or DEFAULT_STEPS
    guidance = args.guidance if args.guidance is not None else DEFAULT_GUIDANCE
    models = [tuple(w.split("=", 1)) for w in args.weights] or [("model", None)]
    rows: dict[str, list[dict]] = {}
    estimates: dict[str, list[np.ndarray]] = {}
    motions: list[np.ndarray] = []
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for k, (name, path) in enumerate(models):
                t0 = time.perf_counter()
                r = run_demo(
                    f"{tmp}/{seed}-{k}",
                    seed=seed,
                    num_steps=steps,
                    motion_guidance=guidance,
                    weights=path,
                    exact_boxes=args.exact_boxes,
                    progress=False,
                )
                times.append(time.perf_counter() - t0)
                for row, m in r.metrics.items():
                    latent_row = row == "ground truth via latent" and len(models) > 1
                    if row == "model" or k == 0 or latent_row:  # baselines once per seed
                        key = name if row == "model" else f"{row} ({name})" if latent_row else row
                        rows.setdefault(key, []).append(m["mean"])
                        estimates.setdefault(key, []).append(r.estimates[row])
            motions.append(r.motion)
    mean = {
        name: {"mean": {k: float(np.mean([v[k] for v in vs])) for k in vs[0]}} for name, vs in rows.items()
    }
    if args.save:
        np.savez_compressed(
            args.save,
            rows=json.dumps(rows),
            motions=np.stack(motions),
            **{f"estimates/{name}": np.stack(est) for name, est in estimates.items()},
        )
    from fantasy_portrait.synthetic.judge import load_judge

    readable = load_judge().readable
    follow = {name: follow_leak(est, motions, readable) for name, est in estimates.items()}
    print(
        f"seeds {seeds}, {steps} steps, motion guidance {guidance}, {torch.get_num_threads()} torch threads"
        + (", exact boxes" if args.exact_boxes else ", faces detected by MediaPipe")
    )
    print()
    print(metrics_table(mean, follow))
    print()
    # Uncertainty of the pooled slopes: bootstrap over seeds (the cases are the independent units).
    rng = np.random.default_rng(0)
    boot: dict[str, list] = {name: [] for name in estimates}
    for _ in range(200):
        pick = rng.integers(0, len(motions), len(motions))
        for name, est in estimates.items():
            f = follow_leak([est[i] for i in pick], [motions[i] for i in pick], readable)
            boot[name].append((f["follow"], f["leak"]))
    print("follow / leak with bootstrap standard errors over seeds:")
    for name, values in boot.items():
        sd = np.std(np.array(values), axis=0)
        print(
            f"  {name}: follow {follow[name]['follow']:.3f} +- {sd[0]:.3f}, leak {follow[name]['leak']:+.3f} +- {sd[1]:.3f}"
        )
    print()
    print(f"follow / leak over the parameters the judge reads: {', '.join(readable)}")
    for name, f in follow.items():
        per = ", ".join(f"{k} {v['follow']:.2f}/{v['leak']:+.2f}" for k, v in f["per_parameter"].items())
        print(f"  {name}: {per}")
    print()
    print(per_parameter_table(estimates, motions, readable, rng))
    print()
    print(versus_baselines(rows))
    print()
    print(f"run_demo wall time: median {np.median(times):.1f} s, max {max(times):.1f} s")


def _se(values) -> float:
    values = np.asarray(values, np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def versus_baselines(rows: dict[str, list[dict]]) -> str:
    """Markdown: every model row's all-parameter motion MAE and face PSNR, mean ± standard error over
    seeds, and its paired differences from the two baselines on the same seeds (± standard error)."""
    baselines = ("repeat portrait", "paste driver")
    models = [name for name in rows if name not in baselines and not name.startswith("ground truth")]
    head = "| method | all MAE | face PSNR (dB) | " + " | ".join(
        f"MAE - {b} | PSNR - {b} (dB)" for b in baselines
    )
    lines = [head + " |", "|---" * (3 + 2 * len(baselines)) + "|"]
    for name in [*models, *baselines, *(n for n in rows if n.startswith("ground truth via latent"))]:
        mae = [r["all"] for r in rows[name]]
        psnr = [r["psnr"] for r in rows[name]]
        cells = [f"{np.mean(mae):.3f} ± {_se(mae):.3f}", f"{np.mean(psnr):.2f} ± {_se(psnr):.2f}"]
        for b in baselines:
            if name in baselines:
                cells += ["", ""]
                continue
            dm = np.subtract(mae, [r["all"] for r in rows[b]])
            dp = np.subtract(psnr, [r["psnr"] for r in rows[b]])
            cells += [f"{dm.mean():+.3f} ± {_se(dm):.3f}", f"{dp.mean():+.2f} ± {_se(dp):.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "(± : standard error over seeds; differences are paired, seed by seed)\n" + "\n".join(lines)


def per_parameter_table(estimates: dict, motions: list, readable, rng, rounds: int = 200) -> str:
    """Markdown: follow / leak per readable parameter and row, ± bootstrap standard error over seeds."""
    from fantasy_portrait.synthetic.demo import follow_leak

    names = list(estimates)
    point = {name: follow_leak(estimates[name], motions, readable)["per_parameter"] for name in names}
    boot = {name: [] for name in names}
    for _ in range(rounds):
        pick = rng.integers(0, len(motions), len(motions))
        for name in names:
            f = follow_leak([estimates[name][i] for i in pick], [motions[i] for i in pick], readable)
            boot[name].append(f["per_parameter"])
    lines = ["| parameter | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for p in readable:
        cells = []
        for name in names:
            fo = np.array([b[p]["follow"] for b in boot[name]])
            le = np.array([b[p]["leak"] for b in boot[name]])
            cells.append(
                f"{point[name][p]['follow']:.2f} ± {np.nanstd(fo):.2f} / "
                f"{point[name][p]['leak']:+.2f} ± {np.nanstd(le):.2f}"
            )
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return "follow / leak per readable parameter (± bootstrap standard error over seeds)\n" + "\n".join(lines)


if __name__ == "__main__":
    main()
