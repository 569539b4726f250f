"""Train the tiny synthetic motion encoder (PD-FGC interface) and record how identity-agnostic it is.

    python scripts/train_synthetic_motion_encoder.py            # the shipped weights (seed 0)
    python scripts/train_synthetic_motion_encoder.py --out /tmp/enc.safetensors --steps 300
    python scripts/train_synthetic_motion_encoder.py --disentangle   # tiny_motion_encoder_disentangled

Renders ``--pairs`` random motions with two random identities each, aligns them with the
project's PD-FGC alignment at ``--crop-size``, trains on one thread (the CPU is shared), then
measures on held-out renders: the within-motion / across-motion feature distance ratio and the
parameter read-out error. Weights (float16, < 1 MB) and a JSON record of the options, the config,
the timings and the measurements are written side by side.

``--disentangle`` trains the part-disentangled encoder instead (``train_disentangled_motion_encoder``):
``--groups`` groups of six renders (a motion on two identities, then the first identity with one
part's parameters, ``params.MOTION_PARTS``, drawn afresh per slot), with a part-invariance term next
to the read-outs and the identity term. It also records, for this encoder and ``--compare`` (default:
the shipped one), the part-invariance ratios on held-out groups and the held-out ridge R^2 of each
part's features for every parameter on the driver clips of ``synthetic.cases.make_case`` seeds
``--r2-seeds`` (the issue-15 protocol: 70 % of the clips fit, the rest scored) and on independent
random renders.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from fantasy_portrait.synthetic.motion_encoder import (
    DISENTANGLED_WEIGHTS_PATH,
    PART_NAMES,
    TARGET_NAMES,
    WEIGHTS_PATH,
    DisentangleOptions,
    PartGroupSet,
    TinyMotionEncoder,
    TinyMotionEncoderConfig,
    TrainOptions,
    encode_crops,
    identity_agnostic_ratio,
    load_motion_encoder,
    part_invariance,
    part_r2_table,
    predict_motion,
    render_pairs,
    render_part_groups,
    save_motion_encoder,
    targets_of,
    train_disentangled_motion_encoder,
    train_motion_encoder,
)

NAMES = [n for p in PART_NAMES for n in TARGET_NAMES[p]]


def driver_clips(seeds: range, cache: Path | None):
    """(frames (C, F, H, W, 3), five points (C, F, 5, 2), motion (C, F, 17)) of every driver clip of
    make_case(seed) for seed in ``seeds``; cached in ``cache`` (.npz) when given."""
    if cache is not None and cache.is_file():
        data = np.load(cache)
        if data["seeds"].tolist() == list(seeds):
            return data["frames"], data["points"], data["motion"]
    from fantasy_portrait.synthetic.cases import make_case

    frames, points, motion = [], [], []
    for seed in seeds:
        case = make_case(seed)
        for i, d in enumerate(case.drivers):
            frames.append(d.frames)
            points.append(d.five_points[:, 0])
            motion.append(case.motion[:, i])
    out = np.stack(frames), np.stack(points), np.stack(motion)
    if cache is not None:
        np.savez(cache, seeds=np.array(list(seeds)), frames=out[0], points=out[1], motion=out[2])
    return out


def training_groups(options: DisentangleOptions, cache: Path | None) -> PartGroupSet:
    """The training groups of ``options`` (render_part_groups), cached in ``cache`` (.npz) when given."""
    key = np.array([options.num_groups, options.seed, options.config.crop_size])
    if cache is not None and cache.is_file():
        data = np.load(cache)
        if np.array_equal(data["key"], key):
            return PartGroupSet(data["crops"], data["targets"], data["motion"])
    groups = render_part_groups(options.num_groups, options.seed, options.config.crop_size)
    if cache is not None:
        np.savez(cache, key=key, crops=groups.crops, targets=groups.targets, motion=groups.motion)
    return groups


def driver_r2(model: TinyMotionEncoder, clips) -> np.ndarray:
    """(4, 13) held-out ridge R^2 on the driver clips, features through the pipeline's path (224-px
    PD-FGC crops, area-resized: cases.driver_motion_features without jitter)."""
    from types import SimpleNamespace

    from fantasy_portrait.synthetic.cases import driver_motion_features
    from fantasy_portrait.synthetic.tiny_model import SyntheticMotionEncoder

    enc = SyntheticMotionEncoder(model)
    frames, points, motion = clips
    feats = []
    for f, p in zip(frames, points):
        clip = SimpleNamespace(frames=f, five_points=p[:, None])  # all driver_motion_features reads
        feats.append(driver_motion_features(enc, clip).numpy())
    return part_r2_table(np.concatenate(feats), targets_of(np.concatenate(motion)), model.config.part_dims)


def render_r2(model: TinyMotionEncoder, val) -> np.ndarray:
    """(4, 13) the same on independent random renders (both identities of render_pairs, one after the other)."""
    crops = np.concatenate([val.crops_a, val.crops_b])
    targets = np.concatenate([val.targets, val.targets])
    return part_r2_table(encode_crops(model, crops), targets, model.config.part_dims)


def table(r2: np.ndarray, dims) -> str:
    lines = ["| part features | " + " | ".join(NAMES) + " |", "|---" * (len(NAMES) + 1) + "|"]
    for p, d, row in zip(PART_NAMES, dims, r2):
        lines.append(f"| {p} ({d}) | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    return "\n".join(lines)


def leak_summary(r2: np.ndarray) -> dict:
    """Largest off-diagonal R^2 (a part predicting another part's parameters) and each own part's R^2."""
    own = {n: float(r2[k, NAMES.index(n)]) for k, p in enumerate(PART_NAMES) for n in TARGET_NAMES[p]}
    mask = np.array([[n in TARGET_NAMES[p] for n in NAMES] for p in PART_NAMES])
    return {"max_off_diagonal": float(r2[~mask].max()), "own": own}


def main() -> None:
    defaults = TrainOptions()
    dis = DisentangleOptions()
    cfg = TinyMotionEncoderConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        help="weights file (.safetensors); a .json record goes beside it (default: the shipped file, "
        "with --disentangle the disentangled one)",
    )
    parser.add_argument("--disentangle", action="store_true", help="train with the part-invariance term")
    parser.add_argument("--pairs", type=int, default=defaults.num_pairs)
    parser.add_argument("--groups", type=int, default=dis.num_groups, help="--disentangle: training groups")
    parser.add_argument(
        "--steps", type=int, help=f"default {defaults.steps} ({dis.steps} with --disentangle)"
    )
    parser.add_argument("--batch-size", type=int, help="pairs (default 64) or groups (default 24)")
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--invariance-weight", type=float, default=defaults.invariance_weight)
    parser.add_argument("--part-invariance-weight", type=float, default=dis.part_invariance_weight)
    parser.add_argument("--part-saturation", type=float, default=dis.part_saturation)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--crop-size", type=int, default=cfg.crop_size)
    parser.add_argument(
        "--part-dims", default=",".join(map(str, cfg.part_dims)), help="head,eye,emotion,mouth widths"
    )
    parser.add_argument("--eval-pairs", type=int, default=300, help="held-out pairs for the read-out error")
    parser.add_argument("--eval-groups", type=int, default=100, help="--disentangle: held-out groups")
    parser.add_argument("--r2-seeds", default="1000:1040", help="--disentangle: make_case seeds FIRST:END")
    parser.add_argument("--clip-cache", type=Path, help="--disentangle: .npz cache of those driver clips")
    parser.add_argument("--group-cache", type=Path, help="--disentangle: .npz cache of the training groups")
    parser.add_argument(
        "--compare", default=str(WEIGHTS_PATH), help="--disentangle: encoder measured alongside"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    config = TinyMotionEncoderConfig(
        crop_size=args.crop_size, part_dims=tuple(int(v) for v in args.part_dims.split(","))
    )
    out = args.out or str(DISENTANGLED_WEIGHTS_PATH if args.disentangle else WEIGHTS_PATH)
    if args.disentangle:
        options = DisentangleOptions(
            num_groups=args.groups,
            steps=args.steps or dis.steps,
            batch_size=args.batch_size or dis.batch_size,
            lr=args.lr,
            invariance_weight=args.invariance_weight,
            part_invariance_weight=args.part_invariance_weight,
            part_saturation=args.part_saturation,
            seed=args.seed,
            threads=args.threads,
            config=config,
        )
        model, log = train_disentangled_motion_encoder(options, training_groups(options, args.group_cache))
    else:
        options = TrainOptions(
            num_pairs=args.pairs,
            steps=args.steps or defaults.steps,
            batch_size=args.batch_size or defaults.batch_size,
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
    mae = np.abs(pred - target).mean(0)
    base = np.abs(target - target.mean(0)).mean(0)
    record = {
        **log,
        "config": asdict(config),
        "identity_agnostic_ratio": ratio,
        "untrained_identity_agnostic_ratio": untrained,
        "eval_pairs": args.eval_pairs,
        "readout_mae_normalised": dict(zip(NAMES, np.round(mae, 4).tolist())),
        "mean_predictor_mae_normalised": dict(zip(NAMES, np.round(base, 4).tolist())),
    }
    extra = {"seed": args.seed, "identity_agnostic_ratio": ratio}
    if args.disentangle:
        first, end = (int(v) for v in args.r2_seeds.split(":"))
        clips = driver_clips(range(first, end), args.clip_cache)
        groups = render_part_groups(args.eval_groups, args.seed + 3000, config.crop_size)
        reference = load_motion_encoder(args.compare)
        record["target_names"] = NAMES
        record["part_r2"] = {"r2_seeds": args.r2_seeds, "train_fraction": 0.7, "ridge": 1.0}
        for key, enc in (("this", model), ("compare", reference)):
            drivers, renders = driver_r2(enc, clips), render_r2(enc, val)
            record["part_r2"][key] = {
                "drivers": np.round(drivers, 4).tolist(),
                "renders": np.round(renders, 4).tolist(),
                "drivers_summary": leak_summary(drivers),
                "renders_summary": leak_summary(renders),
                "part_invariance": part_invariance(enc, groups),
            }
            print(f"\n{key} ({out if key == 'this' else args.compare}):")
            print("held-out ridge R^2, driver clips:\n" + table(drivers, enc.config.part_dims))
            print("held-out ridge R^2, random renders:\n" + table(renders, enc.config.part_dims))
            print(
                "part invariance:",
                {k: round(v, 4) for k, v in record["part_r2"][key]["part_invariance"].items()},
            )
        record["part_r2"]["compare_path"] = args.compare
        extra["part_invariance"] = record["part_r2"]["this"]["part_invariance"]
        extra["max_off_diagonal_r2_drivers"] = record["part_r2"]["this"]["drivers_summary"][
            "max_off_diagonal"
        ]
    record["eval_seconds"] = time.perf_counter() - t
    path = save_motion_encoder(out, model, extra)
    path.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {path.with_suffix('.json')}")
    print(f"data {log['data_seconds']:.0f} s, training {log['train_seconds']:.0f} s")
    print(
        "identity-agnostic ratio (within-motion / across-motion distance):",
        {k: round(v, 3) for k, v in ratio.items()},
    )
    print("same measure, untrained network:", {k: round(v, 3) for k, v in untrained.items()})
    print("read-out MAE in [-1, 1] units (mean predictor):")
    for n, a, b in zip(NAMES, mae, base):
        print(f"  {n:14s} {a:.3f} ({b:.3f})")


if __name__ == "__main__":
    main()
