#!/usr/bin/env python
"""Train the synthetic world's judge network (src/fantasy_portrait/synthetic/weights/judge.safetensors).

    python scripts/train_synthetic_judge.py --clips 1600 --frames 5 --steps 4000 --seed 0 --threads 1 \
        --latent runs/synthetic48/latent.safetensors

Renders --clips scenes (seeds from synthetic.judge.SEED_BASE, apart from the model's and the demo's),
adds each again after a round trip through the shipped tiny model's latent (and through every
--latent file: the shipped judge also saw the linear latent and the refined one), trains the judge,
measures it on 60 held-out clips next to the motion encoder's read-outs, and writes the weights with
that record (--out, default: the package's weights folder; the record goes beside it as judge.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch


def main(argv=None) -> int:
    from fantasy_portrait.synthetic.judge import (
        SEED_BASE,
        WEIGHTS_PATH,
        JudgeOptions,
        evaluate,
        render_judge_set,
        save_judge,
        train_judge,
    )
    from fantasy_portrait.synthetic.tiny_model import load_tiny_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=1600)
    p.add_argument("--frames", type=int, default=5, help="frames per training clip")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    p.add_argument(
        "--rescore", action="store_true", help="only re-measure the judge in --out, rewrite its record"
    )
    p.add_argument(
        "--latent",
        type=Path,
        nargs="*",
        help="more latents to augment with (beside the shipped model's): latent state files or tiny "
        "model files (their latent)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    options = JudgeOptions(num_clips=args.clips, num_frames=args.frames, steps=args.steps, seed=args.seed)
    latents = [load_tiny_model()[2], *extra_latents(args.latent or [])]
    from fantasy_portrait.synthetic.motion_encoder import load_motion_encoder

    encoder = load_motion_encoder()
    if args.rescore:
        return rescore(args.out, latents, args.seed, encoder)
    t0 = time.perf_counter()
    data = render_judge_set(
        args.clips, SEED_BASE + args.seed, options.config.crop_size, latents, num_frames=args.frames
    )
    held_out = render_judge_set(
        60, SEED_BASE + 10_000 + args.seed, options.config.crop_size, latents, jitter=0.0, encoder=encoder
    )
    t_data = time.perf_counter() - t0
    logging.info(
        "judge data: %d crops (+%d held out) in %.0f s", len(data.targets), len(held_out.targets), t_data
    )
    model, log = train_judge(options, data)
    scores = evaluate(model, held_out)
    record = {
        "command": " ".join(["python", "scripts/train_synthetic_judge.py", *(argv or sys.argv[1:])]),
        "options": {k: v for k, v in asdict(options).items() if k != "config"},
        "config": asdict(options.config),
        "data_seconds": round(t_data, 1),
        "train_seconds": round(log["train_seconds"], 1),
        "history": log["history"],
        "held_out_mae": scores,
    }
    save_judge(args.out, model, extra={"held_out_mae": scores})
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print_scores(scores)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


def extra_latents(paths) -> list:
    """The latents of ``paths``: latent state files (linear or convolutional) or tiny model files."""
    from safetensors.torch import load_file

    from fantasy_portrait.synthetic.latent import latent_from_state
    from fantasy_portrait.synthetic.tiny_model import load_tiny_model

    latents = []
    for path in paths:
        state = load_file(str(path))
        if any(k.startswith("latent.") for k in state):  # a tiny model file: its latent
            latents.append(load_tiny_model(path)[2])
        else:
            latents.append(latent_from_state(state))
    return latents


def rescore(path: Path, latents, seed: int, encoder) -> int:
    """Re-measure a trained judge on the held-out clips; rewrite its metadata and JSON record."""
    from fantasy_portrait.synthetic.judge import SEED_BASE, evaluate, load_judge, render_judge_set, save_judge

    model = load_judge(path)
    held_out = render_judge_set(
        60, SEED_BASE + 10_000 + seed, model.config.crop_size, latents, jitter=0.0, encoder=encoder
    )
    scores = evaluate(model, held_out)
    save_judge(path, model, extra={"held_out_mae": scores})
    record_path = path.with_suffix(".json")
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    record["held_out_mae"] = scores
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    print_scores(scores)
    return 0


def print_scores(scores: dict) -> None:
    names = list(scores["clean"])
    print(
        "| parameter | judge, clean | judge, through latent | motion encoder read-out, clean | best constant |"
    )
    print("|---|---|---|---|---|")
    for n in names:
        print(
            f"| {n} | {scores['clean'][n]:.3f} | {scores['latent'][n]:.3f} | "
            f"{scores['motion_encoder_readouts_clean'][n]:.3f} | {scores['constant_predictor'][n]:.3f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
