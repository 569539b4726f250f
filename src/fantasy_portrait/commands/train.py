"""``fantasy-portrait train CONFIG``: train the motion parts (see docs/training.md)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the FantasyPortrait motion parts on a precomputed set",
        description="Train the expression encoder and the motion attention (optionally LoRA on the base) "
        "on top of a frozen Wan2.1 I2V model, from a YAML config. One process by default; launch with "
        "`accelerate launch --config_file configs/accelerate/<ddp|fsdp|deepspeed>.yaml -m fantasy_portrait.cli "
        "train CONFIG` for several GPUs. Resumes from the newest checkpoint in the output folder.",
    )
    parser.add_argument("config", help="training config (YAML), e.g. configs/train_tiny_cpu.yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value, e.g. --set train.max_steps=100 (repeatable)",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..training.config import load_config
    from ..training.trainer import Trainer

    config = load_config(args.config, args.overrides)
    result = Trainer(config).train()
    if result.checkpoint is not None:
        print(f"step {result.final_step}: checkpoint {result.checkpoint}")
    return 0
