"""``fantasy-portrait synth``: render synthetic portraits, clips and cross-reenactment datasets."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HEIGHTxWIDTH, e.g. 256x384, got {text!r}") from None
    if h < 32 or w < 32:
        raise argparse.ArgumentTypeError(f"size {text} is too small (at least 32x32)")
    return h, w


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="render synthetic portraits with exact ground truth (clips, cross-reenactment datasets)",
        description="Procedural stylised faces with exact head pose, gaze, blinks, expression and mouth "
        "parameters, boxes, five points and landmarks (docs/synthetic.md).",
    )
    sub = parser.add_subparsers(dest="synth_command", metavar="ACTION", required=True)

    render = sub.add_parser(
        "render", help="render one clip (mp4 or, with --frames 1, png) and its track file"
    )
    render.add_argument("output", help="output .mp4 (or .png for a single frame)")
    render.add_argument("--characters", type=int, default=1, help="number of characters, 1 to 4 (default 1)")
    render.add_argument("--frames", type=int, default=50, help="number of frames (default 50)")
    render.add_argument("--size", type=_size, default=(256, 256), help="HEIGHTxWIDTH (default 256x256)")
    render.add_argument("--fps", type=float, default=25.0)
    render.add_argument("--seed", type=int, default=0, help="identities, layout and performance seed")
    render.add_argument("--no-tracks", action="store_true", help="do not write the .safetensors track file")
    render.set_defaults(func=_render)

    dataset = sub.add_parser(
        "dataset", help="write a cross-reenactment dataset (manifest.jsonl, pairs.jsonl)"
    )
    dataset.add_argument("output", help="output folder")
    dataset.add_argument("--samples", type=int, default=8, help="number of samples (default 8)")
    dataset.add_argument("--frames", type=int, default=33, help="frames per clip (default 33)")
    dataset.add_argument("--size", type=_size, default=(256, 256), help="HEIGHTxWIDTH (default 256x256)")
    dataset.add_argument(
        "--characters", default="1,2", help="comma-separated character counts used in turn (default 1,2)"
    )
    dataset.add_argument("--fps", type=float, default=25.0)
    dataset.add_argument("--seed", type=int, default=0)
    dataset.add_argument(
        "--motion-features",
        action="store_true",
        help="also store 554-wide 'motion' features from the shipped tiny motion encoder in the track files",
    )
    dataset.add_argument(
        "--single-drivers",
        action="store_true",
        help="also write each driver character alone as its own driving video (driver_<i>.mp4)",
    )
    dataset.set_defaults(func=_dataset)


def _render(args) -> int:
    from pathlib import Path

    from ..errors import InputError
    from ..synthetic.dataset import clip_tracks, save_tracks, write_clip_video
    from ..synthetic.scenes import random_performances, random_scene, render_clip

    if not 1 <= args.characters <= 4:
        raise InputError(f"--characters must be 1 to 4, got {args.characters}")
    if args.frames < 1:
        raise InputError(f"--frames must be at least 1, got {args.frames}")
    from ..io import check_output_file

    out = Path(args.output)
    if out.suffix.lower() not in (".mp4", ".png", ".jpg", ".jpeg"):
        raise InputError(f"{out}: the render must be a .mp4 (or, with --frames 1, a .png/.jpg) file")
    check_output_file(out, what="render")
    h, w = args.size
    scene = random_scene(args.seed, args.characters, h, w)
    clip = render_clip(scene, random_performances(args.frames, args.characters, args.seed, args.fps))
    if out.suffix.lower() in (".png", ".jpg", ".jpeg"):
        from ..io.image import save_image

        if args.frames != 1:
            raise InputError(f"{out}: an image output needs --frames 1")
        save_image(out, clip.frames[0])
    else:
        write_clip_video(out, clip.frames, args.fps)
    if not args.no_tracks:
        tracks = out.with_suffix(".safetensors")
        save_tracks(tracks, clip_tracks(clip), {"seed": args.seed, "fps": args.fps})
        logger.info("wrote %s and %s", out, tracks)
    else:
        logger.info("wrote %s", out)
    return 0


def _dataset(args) -> int:
    from ..errors import InputError
    from ..synthetic.dataset import DatasetOptions, generate_dataset

    try:
        counts = tuple(int(v) for v in args.characters.split(","))
    except ValueError:
        raise InputError(f"--characters must be comma-separated numbers, got {args.characters!r}") from None
    h, w = args.size
    options = DatasetOptions(
        num_samples=args.samples,
        num_frames=args.frames,
        height=h,
        width=w,
        characters=counts,
        fps=args.fps,
        seed=args.seed,
        motion_features=args.motion_features,
        single_drivers=args.single_drivers,
    )
    from ..io import new_output_folder

    with new_output_folder(args.output, "dataset folder"):  # a failed run leaves no new folder
        pairs = generate_dataset(args.output, options)
    print(f"{len(pairs)} samples written to {args.output} (manifest.jsonl, pairs.jsonl)")
    return 0
