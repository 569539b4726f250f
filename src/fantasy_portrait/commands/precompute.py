"""``fantasy-portrait precompute MANIFEST OUTPUT``: cache the frozen encoders' outputs for training."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "precompute",
        help="encode training clips once (VAE, CLIP, text, motion) into sharded tensor files",
        description="Read a clip manifest (JSON Lines: id, video, tracks, caption; see docs/training.md), "
        "run the frozen Wan VAE, CLIP and text encoders on every clip and write shards plus index.json. "
        "Clips that cannot be read are skipped and listed in the index.",
    )
    parser.add_argument("manifest", help="clip manifest (.jsonl)")
    parser.add_argument("output", help="folder for the precomputed set")
    parser.add_argument("--weights", default=None, help="weight folder (default: $FANTASY_PORTRAIT_WEIGHTS)")
    parser.add_argument(
        "--height", type=int, default=480, help="training height, multiple of 16 (default 480)"
    )
    parser.add_argument("--width", type=int, default=832, help="training width, multiple of 16 (default 832)")
    parser.add_argument("--max-frames", type=int, default=81, help="frames per clip, 4k+1 (default 81)")
    parser.add_argument("--fps", type=float, default=None, help="resample clips to this rate (default: keep)")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--shard-size", type=int, default=64, help="clips per shard file (default 64)")
    parser.add_argument("--device", default="cpu", help="device for the encoders, e.g. cuda:0 (default cpu)")
    parser.add_argument(
        "--text-encoder",
        action="store_true",
        help="load umT5 and encode captions (else every clip gets the empty prompt)",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..errors import CheckpointError
    from ..pipeline import layout
    from ..pipeline.encoders import load_clip_image_encoder, load_empty_prompt, load_text_encoder, load_vae
    from ..training.precompute import (
        PrecomputeOptions,
        pdfgc_motion_features,
        pipeline_encoders,
        precompute_dataset,
    )

    root = layout.resolve_weights_dir(args.weights)
    # Only the frozen encoders are needed here (no DiT, no FantasyPortrait checkpoint).
    folders = [root] + [root / name for name in layout.WAN_SUBFOLDERS]
    wan_dir = next((f for f in folders if (f / layout.VAE_FILE).is_file()), None)
    if wan_dir is None or not (wan_dir / layout.CLIP_FILE).is_file():
        raise CheckpointError(f"{root}: needs {layout.VAE_FILE} and {layout.CLIP_FILE} (Wan2.1 I2V release)")
    dtype = torch.float32 if args.device == "cpu" else torch.bfloat16
    vae = load_vae(wan_dir / layout.VAE_FILE, dtype=dtype, device=args.device)
    clip = load_clip_image_encoder(wan_dir / layout.CLIP_FILE, dtype=dtype, device=args.device)
    text, empty = None, None
    if args.text_encoder:
        text = load_text_encoder(
            wan_dir / layout.T5_FILE, wan_dir / layout.T5_TOKENIZER, dtype=dtype, device=args.device
        )
    elif (wan_dir / layout.EMPTY_PROMPT_FILE).is_file():
        empty = load_empty_prompt(wan_dir / layout.EMPTY_PROMPT_FILE)
    else:
        raise CheckpointError(
            f"{wan_dir}: no {layout.EMPTY_PROMPT_FILE}; pass --text-encoder to encode prompts with umT5"
        )
    motion = None
    for folder in (root, wan_dir):
        if (folder / layout.MOTION_FILE).is_file():
            from ..motion.encoder import MotionEncoder

            motion = pdfgc_motion_features(
                MotionEncoder.from_pretrained(folder / layout.MOTION_FILE, device=args.device)
            )
            break
    encoders = pipeline_encoders(vae, clip, text, empty, device=args.device, motion_features=motion)
    options = PrecomputeOptions(
        height=args.height,
        width=args.width,
        max_frames=args.max_frames,
        fps=args.fps,
        dtype=args.dtype,
        shard_size=args.shard_size,
    )
    report = precompute_dataset(args.manifest, args.output, encoders, options)
    print(report.summary())
    for item in report.skipped:
        print(f"skipped {item['id']}: {item['reason']}")
    return 0
