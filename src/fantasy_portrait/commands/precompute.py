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

    from ..errors import CheckpointError, InputError
    from ..io import check_output_folder, new_output_folder
    from ..pipeline import layout
    from ..pipeline.encoders import load_clip_image_encoder, load_empty_prompt, load_text_encoder, load_vae
    from ..training.precompute import (
        PrecomputeOptions,
        pdfgc_motion_features,
        pipeline_encoders,
        precompute_dataset,
        read_manifest,
    )

    # Everything that can be checked without the encoders is checked before they load.
    options = PrecomputeOptions(
        height=args.height,
        width=args.width,
        max_frames=args.max_frames,
        fps=args.fps,
        dtype=args.dtype,
        shard_size=args.shard_size,
    )
    if args.fps is not None and not args.fps > 0:
        raise InputError(f"--fps must be > 0, got {args.fps}")
    options.validate()
    read_manifest(args.manifest)
    check_output_folder(args.output, "precomputed set")

    # Only the frozen encoders are needed here (no DiT, no FantasyPortrait checkpoint).
    files = layout.find_weight_files(
        args.weights, require=("vae", "clip"), need_text_encoder=args.text_encoder
    )
    dtype = torch.float32 if args.device == "cpu" else torch.bfloat16
    vae = load_vae(files.vae, dtype=dtype, device=args.device)
    clip = load_clip_image_encoder(files.clip, dtype=dtype, device=args.device)
    text, empty = None, None
    if args.text_encoder:
        text = load_text_encoder(files.t5, files.t5_tokenizer, dtype=dtype, device=args.device)
    elif files.empty_prompt is not None:
        empty = load_empty_prompt(files.empty_prompt)
    else:
        raise CheckpointError(
            f"{files.wan_dir}: no {layout.EMPTY_PROMPT_FILE}; pass --text-encoder to encode prompts with umT5"
        )
    motion = None
    if files.motion is not None:
        from ..motion.encoder import MotionEncoder

        motion = pdfgc_motion_features(MotionEncoder.from_pretrained(files.motion, device=args.device))
    encoders = pipeline_encoders(vae, clip, text, empty, device=args.device, motion_features=motion)
    with new_output_folder(args.output, "precomputed set"):
        report = precompute_dataset(args.manifest, args.output, encoders, options)
    print(report.summary())
    for item in report.skipped:
        print(f"skipped {item['id']}: {item['reason']}")
    return 0
