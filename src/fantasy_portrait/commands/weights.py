"""``fantasy-portrait make-tiny-weights DIR``: a complete tiny random weight folder (released layout)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "make-tiny-weights",
        help="write a tiny RANDOM weight folder in the released layout (for tests and trying the CLI)",
        description="Write every file `fantasy-portrait animate` needs, under the released file names, at "
        "tiny sizes with random values (about 80 MB, mostly the fixed-size PD-FGC encoder and the CLIP "
        "tower). The tool runs end to end with them, but the videos are NOISE, not animation.",
    )
    p.add_argument("folder", help="folder to write (created if needed)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the weights")
    p.add_argument("--overwrite", action="store_true", help="replace files that already exist")
    p.add_argument(
        "--with-text-encoder",
        action="store_true",
        help="also write a tiny umT5 and tokenizer (only needed for --prompt or --text-guidance != 1)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..io import new_output_folder
    from ..pipeline.tiny import NOISE_NOTE, write_tiny_weights

    with new_output_folder(args.folder, "weight folder"):  # a failed or interrupted run leaves no new folder
        paths = write_tiny_weights(
            args.folder, seed=args.seed, overwrite=args.overwrite, text_encoder=args.with_text_encoder
        )
    for path in paths:
        print(path)
    print(f"note: {NOISE_NOTE}", file=sys.stderr)
    return 0
