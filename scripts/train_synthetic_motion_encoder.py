"""Train the tiny synthetic motion encoder (PD-FGC interface) and record how identity-agnostic it is.

    python scripts/train_synthetic_motion_encoder.py            # the shipped weights (seed 0)
    python scripts/train_synthetic_motion_encoder.py --out /tmp/enc.safetensors --steps 300

Renders ``--pairs`` random motions with two random identities each, aligns them with the
project's PD-FGC alignment at ``--crop-size``, trains on one thread (the CPU is shared), then
measures on held-out renders: the within-motion / across-motion feature distance ratio and the
parameter read-out error. Weights (float16, < 1 MB) and a JSON record of the options, the config,
the timings and the measurements are written side by side.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict

import numpy as np
import torch

from fantasy_portrait.synthetic.motion_encoder import (
    PART_NAMES,
    TARGET_NAMES,
    WEIGHTS_PATH,
    TinyMotionEncoder,
    TinyMotionEncoderConfig,
    TrainOptions,
    identity_agnostic_ratio,
    predict_motion,
    render_pairs,
    save_motion_encoder,
    train_motion_encoder,
)


def main() -> None:
    defaults = TrainOptions()
    cfg = TinyMotionEncoderConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default=str(WEIGHTS_PATH), help="weights file (.safetensors); a .json record goes beside it"
    )
    parser.add_argument("--pairs", type=int, default=defaults.num_pairs)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--invariance-weight", type=float, default=defaults.invariance_weight)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--crop-size", type=int, default=cfg.crop_size)
    parser.add_argument(
        "--part-dims", default=",".join(map(str, cfg.part_dims)), help="head,eye,emotion,mouth widths"
    )
    parser.add_argument("--eval-pairs", type=int, default=300, help="held-out pairs for the read-out error")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    config = TinyMotionEncoderConfig(
        crop_size=args.crop_size, part_dims=tuple(int(v) for v in args.part_dims.split(","))
    )
    options = TrainOptions(
        num_pairs=args.pairs,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        invariance_weight=args.invariance_weight,
        seed=args.seed,
        threads=args.threads,
        config=config,
    )
    model, log = train_motion_encoder(options)
    t = time.perf_counter()
    ratio = identity_agnostic_ratio(model, num_motions=24, num_identities=8, seed=args.seed + 1000)
    torch.manual_seed(args.seed)
    untrained = identity_agnostic_ratio(
        TinyMotionEncoder(config).eval(), num_motions=24, num_identities=8, seed=args.seed + 1000
    )
    val = render_pairs(args.eval_pairs, args.seed + 2000, config.crop_size)
    pred = predict_motion(model, np.concatenate([val.crops_a, val.crops_b]))
    target = np.concatenate([val.targets, val.targets])
    names = [n for p in PART_NAMES for n in TARGET_NAMES[p]]
    mae = np.abs(pred - target).mean(0)
    base = np.abs(target - target.mean(0)).mean(0)
    record = {
        **log,
        "config": asdict(config),
        "identity_agnostic_ratio": ratio,
        "untrained_identity_agnostic_ratio": untrained,
        "eval_pairs": args.eval_pairs,
        "readout_mae_normalised": dict(zip(names, np.round(mae, 4).tolist())),
        "mean_predictor_mae_normalised": dict(zip(names, np.round(base, 4).tolist())),
        "eval_seconds": time.perf_counter() - t,
    }
    path = save_motion_encoder(args.out, model, {"seed": args.seed, "identity_agnostic_ratio": ratio})
    path.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {path.with_suffix('.json')}")
    print(f"data {log['data_seconds']:.0f} s, training {log['train_seconds']:.0f} s")
    print(
        "identity-agnostic ratio (within-motion / across-motion distance):",
        {k: round(v, 3) for k, v in ratio.items()},
    )
    print("same measure, untrained network:", {k: round(v, 3) for k, v in untrained.items()})
    print("read-out MAE in [-1, 1] units (mean predictor):")
    for n, a, b in zip(names, mae, base):
        print(f"  {n:14s} {a:.3f} ({b:.3f})")


if __name__ == "__main__":
    main()
