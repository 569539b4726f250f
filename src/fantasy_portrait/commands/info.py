"""``fantasy-portrait info``: parameter counts per part of a model preset (built on the meta device)."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    from ..models.config import PRESETS

    parser = subparsers.add_parser(
        "info",
        help="print parameter counts per part of a model preset (no weights needed)",
        description="Build a preset on the meta device (no memory, no weights) and print its parameter "
        "counts per part and the memory its weights take in each dtype.",
    )
    parser.add_argument("--preset", default="wan2.1-i2v-14b-720p", choices=sorted(PRESETS), help="model size")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..models.config import PRESETS
    from ..models.loading import parameter_counts

    counts = parameter_counts(args.preset)
    total = sum(counts.values())
    if args.json:
        print(json.dumps({"preset": args.preset, "parameters": counts, "total": total}, indent=2))
        return 0
    print(f"{args.preset}: {PRESETS[args.preset].description}")
    width = max(len(k) for k in counts)
    for name, count in counts.items():
        print(f"  {name:<{width}}  {count:>16,}")
    print(f"  {'total':<{width}}  {total:>16,}")
    trainable = total - counts["wan_dit"]
    print(
        f"  weights: {total * 2 / 2**30:.2f} GiB in bf16, {total * 4 / 2**30:.2f} GiB in fp32; "
        f"motion parts {trainable:,} ({trainable * 2 / 2**30:.2f} GiB bf16)"
    )
    return 0
