"""Training figures: CPU throughput of the tiny config, and per-GPU memory of 14B training.

    python benchmarks/bench_training.py                 # both parts
    python benchmarks/bench_training.py --steps 40 --threads 2 --micro-batch 2
    python benchmarks/bench_training.py --memory-only --gpus 8 24

Throughput: the real trainer (one process, float32) on a synthetic precomputed set at the tiny
preset's sizes (2 latent frames of 4x4, 5 driving frames, 1 face, 512 text tokens); the first steps
are discarded as warm-up. Memory: arithmetic from the preset's parameter counts
(``fantasy-portrait info``), weights and optimizer states only (no activations, no buffers).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

GiB = 2**30


def synthetic_set(root: Path, num: int, latent_hw: int, frames: int, faces: int, text_dim: int = 32) -> Path:
    from fantasy_portrait.training.dataset import ShardWriter

    g = torch.Generator().manual_seed(0)
    t = (frames - 1) // 4 + 1
    writer = ShardWriter(root, shard_size=16)
    writer.write_empty_prompt(torch.randn(1, text_dim, generator=g))
    grid = latent_hw // 2
    labels = torch.ones(grid, grid, dtype=torch.int32)
    if faces > 1:
        labels[:, grid // 2 :] = 2
    for i in range(num):
        writer.add(
            f"s{i}",
            {
                "latents": torch.randn(16, t, latent_hw, latent_hw, generator=g),
                "image_latents": torch.randn(16, t, latent_hw, latent_hw, generator=g),
                "clip": torch.randn(257, 1280, generator=g),
                "text": torch.randn(12, text_dim, generator=g),
                "motion": torch.randn(faces, frames, 554, generator=g),
                "labels": labels,
                "regions": torch.zeros(faces, 4, dtype=torch.int32),
            },
        )
    writer.close(text_len=512)
    return root


def throughput(args) -> dict:
    from fantasy_portrait.training.config import TrainConfig
    from fantasy_portrait.training.trainer import Trainer, read_loss_log

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic_set(Path(tmp) / "set", 16, args.latent, args.frames, args.faces)
        cfg = TrainConfig.from_dict(
            {
                "model": {"preset": "tiny"},
                "data": {"root": str(root), "micro_batch": args.micro_batch},
                "optim": {"lr": 1e-3, "warmup_steps": 2},
                "train": {
                    "output_dir": str(Path(tmp) / "run"),
                    "max_steps": args.steps,
                    "save_every": 10**9,
                    "progress": False,
                    "gradient_checkpointing": args.checkpointing,
                },
            }
        )
        start = time.perf_counter()
        Trainer(cfg).train()
        wall = time.perf_counter() - start
        log = [json.loads(line) for line in (Path(tmp) / "run" / "losses.jsonl").read_text().splitlines()]
        read_loss_log(Path(tmp) / "run")
    rates = [entry["samples_per_s"] for entry in log[args.warmup :]]
    return {
        "samples_per_s_median": statistics.median(rates),
        "samples_per_s_min": min(rates),
        "samples_per_s_max": max(rates),
        "steps_timed": len(rates),
        "wall_s_including_setup_and_final_save": wall,
    }


def memory_table(preset: str, gpus: list[int]) -> str:
    from fantasy_portrait.models.loading import parameter_counts

    counts = parameter_counts(preset)
    base = counts["wan_dit"]
    train = sum(v for k, v in counts.items() if k != "wan_dit")
    lines = [
        f"Preset {preset}: frozen base P_b = {base:,} parameters; trainable P_t = {train:,} "
        f"(motion attention {counts['motion_attention']:,} + expression encoder "
        f"{train - counts['motion_attention']:,}).",
        "",
        "Bytes per parameter: trainable parts in float32 with AdamW = 4 (weights) + 4 (gradients) + 8 (two moments) = 16.",
        "",
        "| strategy | formula (bytes per GPU) | " + " | ".join(f"{n} GPUs" for n in gpus) + " |",
        "| --- | --- | " + " | ".join("---" for _ in gpus) + " |",
    ]

    def row(name, formula, fn):
        cells = " | ".join(f"{fn(n) / GiB:.1f} GiB" for n in gpus)
        lines.append(f"| {name} | {formula} | {cells} |")

    row("DDP (base bf16 replicated)", "2 P_b + 16 P_t", lambda n: 2 * base + 16 * train)
    row(
        "FSDP FULL_SHARD, ideal (base fp32 storage sharded, bf16 compute)",
        "(4 P_b + 16 P_t) / N",
        lambda n: (4 * base + 16 * train) / n,
    )
    row(
        "FSDP1 use_orig_params (flat grads also cover the frozen part)",
        "(8 P_b + 16 P_t) / N",
        lambda n: (8 * base + 16 * train) / n,
    )
    row(
        "DeepSpeed ZeRO-2 (bf16 module replicated; fp32 master + Adam + grads sharded)",
        "2 (P_b + P_t) + 16 P_t / N",
        lambda n: 2 * (base + train) + 16 * train / n,
    )
    row(
        "DeepSpeed ZeRO-3 (everything sharded)",
        "(2 (P_b + P_t) + 16 P_t) / N",
        lambda n: (2 * (base + train) + 16 * train) / n,
    )
    block = 2 * base / 40
    lines += [
        "",
        f"Not counted: activations, CUDA/NCCL workspaces, and under FSDP/ZeRO-3 the all-gathered bf16 weights of the "
        f"block being computed (2 P_b / 40 = {block / GiB:.2f} GiB per block in flight, two with prefetch).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--latent", type=int, default=4, help="latent height = width")
    parser.add_argument("--frames", type=int, default=5, help="driving frames (4k+1)")
    parser.add_argument("--faces", type=int, default=1)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing on")
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--preset", default="wan2.1-i2v-14b-720p")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8, 24])
    args = parser.parse_args()
    if not args.memory_only:
        result = throughput(args)
        print(
            f"tiny preset, CPU float32, {args.threads} threads, micro-batch {args.micro_batch}, "
            f"latent {args.latent}x{args.latent}, {args.frames} frames, {args.faces} face(s)"
        )
        print(json.dumps(result, indent=1))
    print(memory_table(args.preset, args.gpus))


if __name__ == "__main__":
    main()
