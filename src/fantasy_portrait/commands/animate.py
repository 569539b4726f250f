"""``fantasy-portrait animate``: animate every face of a portrait with driving video(s)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "animate",
        help="animate the faces of a portrait with one or more driving videos",
        description="Animate every face of IMAGE with the expressions, lips, eyes and head motion of the "
        "driving video(s): one video with N faces, or N videos with one face each. Faces are numbered "
        "from 0, left to right, in the portrait and in the driving input; the i-th driving face drives "
        "the i-th portrait face unless --map says otherwise. Writes an H.264 mp4 with the driving audio.",
    )
    p.add_argument("image", help="portrait image (any number of faces)")
    p.add_argument("driving", nargs="+", help="driving video(s): one with N faces, or N with one face each")
    p.add_argument(
        "-o", "--output", help="output .mp4 (default: IMAGE-STEM_animated.mp4 in the current folder)"
    )
    p.add_argument(
        "--weights",
        help="folder with the released weight files (Wan2.1-I2V files, fantasyportrait_model.safetensors, "
        "pd_fpg.pth); default: $FANTASY_PORTRAIT_WEIGHTS",
    )
    p.add_argument(
        "--portrait-checkpoint",
        help="FantasyPortrait weights to use instead of the folder's (e.g. a checkpoint written by "
        "`fantasy-portrait train`: .safetensors or .ckpt)",
    )
    p.add_argument("--motion-checkpoint", help="PD-FGC weights to use instead of the folder's pd_fpg.pth")
    p.add_argument("--map", help="driving face -> portrait face pairs, e.g. 0:1,1:0 (default: in order)")
    p.add_argument(
        "--face-boxes",
        help="portrait face boxes by hand, 'x1,y1,x2,y2;x1,y1,x2,y2' in image pixels (for faces the detector "
        "misses: cartoons, animals)",
    )
    p.add_argument(
        "--max-frames", type=int, help="use at most this many driving frames (after --fps resampling)"
    )
    p.add_argument(
        "--max-size", type=int, default=720, help="longer side of the output in pixels (default 720)"
    )
    p.add_argument(
        "--fps",
        type=float,
        default=25.0,
        help="working and output frame rate; drivers are resampled to it, audio stays in sync "
        "(default 25, as the reference; 0 = the first driving video's own rate)",
    )
    p.add_argument("--steps", type=int, default=30, help="denoising steps (default 30)")
    p.add_argument("--motion-guidance", type=float, default=4.0, help="motion guidance scale (default 4.0)")
    p.add_argument(
        "--text-guidance", type=float, default=1.0, help="text guidance scale; != 1 loads umT5 (default 1.0)"
    )
    p.add_argument("--prompt", default="", help="text prompt (default empty: umT5 is not loaded)")
    p.add_argument("--negative-prompt", default="", help="negative prompt (used when --text-guidance != 1)")
    p.add_argument("--seed", type=int, default=0, help="noise seed; the same seed gives the same video")
    p.add_argument(
        "--window-frames",
        type=int,
        default=81,
        help="frames per temporal window for long clips (4k+1; 0 = whole clip in one pass; default 81)",
    )
    p.add_argument(
        "--overlap-frames", type=int, default=20, help="frames shared by neighbouring windows (default 20)"
    )
    p.add_argument(
        "--memory",
        default="auto",
        choices=["auto", "gpu", "model-offload", "sequential"],
        help="where models live on an accelerator: all on it, moved per stage, or DiT block by block "
        "(default auto: chosen from free memory; on the CPU this does not apply)",
    )
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument(
        "--dtype", choices=["bf16", "fp16", "fp32"], help="model dtype (default bf16 on GPU, fp32 on CPU)"
    )
    p.add_argument(
        "--sequential-branches",
        action="store_true",
        help="run the guidance branches one after the other instead of as one batch (less memory, slower)",
    )
    p.add_argument(
        "--face-backend",
        default="mediapipe",
        help="face detector backend: mediapipe (default, offline) or onnx (the reference's face_det.onnx + "
        "face_landmark.onnx from the weight folder)",
    )
    p.add_argument("--max-image-pixels", type=int, default=40_000_000, help="refuse larger portraits")
    p.add_argument("--dry-run", action="store_true", help="print the memory estimate per mode and exit")
    p.add_argument(
        "--json", action="store_true", help="print a machine-readable summary of the run on stdout"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _device_dtype(args):
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = args.dtype or ("bf16" if device.type != "cpu" else "fp32")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]
    return device, dtype


def _output_path(args) -> Path:
    if args.output:
        return Path(args.output)
    return Path.cwd() / f"{Path(args.image).stem}_animated.mp4"


def run(args) -> int:
    from ..errors import InputError
    from ..faces.portrait import parse_face_boxes

    if args.window_frames and (args.window_frames < 9 or (args.window_frames - 1) % 4):
        raise InputError(f"--window-frames must be 0 or 4k+1 >= 9, got {args.window_frames}")
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.max_size < 16 or args.fps < 0:
        raise InputError("--max-size must be >= 16 and --fps >= 0")
    boxes = parse_face_boxes(args.face_boxes) if args.face_boxes else None
    if args.dry_run:
        return dry_run(args)
    device, dtype = _device_dtype(args)
    from ..pipeline.pipeline import FantasyPortraitPipeline

    pipe = FantasyPortraitPipeline.from_pretrained(
        args.weights,
        portrait_checkpoint=args.portrait_checkpoint,
        motion_checkpoint=args.motion_checkpoint,
        torch_dtype=dtype,
        device=device,
        memory_mode=args.memory,
        face_backend=args.face_backend,
        need_text_encoder=bool(args.prompt.strip()) or args.text_guidance != 1.0,
    )
    output = _output_path(args)
    result = pipe(
        args.image,
        args.driving,
        output=output,
        face_boxes=boxes,
        mapping=args.map,
        max_frames=args.max_frames,
        max_size=args.max_size,
        fps=args.fps,
        num_steps=args.steps,
        motion_guidance=args.motion_guidance,
        text_guidance=args.text_guidance,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        seed=args.seed,
        window_frames=args.window_frames or None,
        overlap_frames=args.overlap_frames,
        batch_branches=not args.sequential_branches,
        max_image_pixels=args.max_image_pixels,
        progress=not args.no_progress,
    )
    summary = result.summary()
    summary.update(
        image=str(args.image),
        driving=[str(d) for d in args.driving],
        seed=args.seed,
        steps=args.steps,
        weights=str(pipe.files.root),
        device=str(device),
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"wrote {output}: {result.num_frames} frames, {result.size[0]}x{result.size[1]}, {result.fps:g} fps, "
            f"{len(result.faces)} face(s); memory: {result.memory_mode}; "
            f"{sum(result.seconds.values()):.1f} s",
            file=sys.stderr,
        )
    return 0


def dry_run(args) -> int:
    """Memory estimate per mode without loading weights: model sizes from the weights' config.json
    (or the released 14B size when no weights are given), frame size from the image, frames from the video."""
    from ..io import frame_count_4k1, probe_video
    from ..models.config import PRESETS, WanConfig
    from ..models.loading import build_transformer
    from ..pipeline import layout
    from ..pipeline.memory import GIB, estimate_for_transformer, pick_mode
    from ..pipeline.pipeline import target_size

    device, dtype = _device_dtype(args)
    source = "preset wan2.1-i2v-14b-720p (no weights given)"
    wan = PRESETS["wan2.1-i2v-14b-720p"].wan
    weights = args.weights or os.environ.get(layout.WEIGHTS_ENV)
    if weights:
        root = layout.resolve_weights_dir(weights)
        cfg = layout._wan_dir(root) / layout.WAN_CONFIG
        if cfg.is_file():
            wan = WanConfig.from_dict(json.loads(cfg.read_text()))
            source = str(cfg)
    kwargs = wan.to_diffusers_kwargs()
    kwargs["motion_dim"] = 2048 if wan.dim >= 1024 else 32
    transformer = build_transformer(kwargs, device="meta")
    from PIL import Image

    try:
        with Image.open(args.image) as im:
            width, height = target_size(im.size[0], im.size[1], args.max_size)
    except OSError:
        width = height = 16 * -(-args.max_size // 16)
    available = min(
        probe_video(v).num_frames
        * (args.fps or probe_video(args.driving[0]).fps)
        / max(probe_video(v).fps, 1e-6)
        for v in args.driving
    )
    frames = frame_count_4k1(max(1, int(available)), args.max_frames)
    bytes_ = {"bf16": 2, "fp16": 2, "fp32": 4}[args.dtype or ("bf16" if device.type != "cpu" else "fp32")]
    est = estimate_for_transformer(
        transformer,
        width=width,
        height=height,
        num_frames=frames,
        window_frames=args.window_frames or None,
        batch_branches=not args.sequential_branches,
        text=bool(args.prompt.strip()) or args.text_guidance != 1.0,
        dtype_bytes=bytes_,
    )
    mode, tiling, reason = pick_mode(args.memory, device, est)
    table = {
        "model": source,
        "dit_parameters": sum(p.numel() for p in transformer.parameters()),
        "width": width,
        "height": height,
        "frames": frames,
        "dtype_bytes": bytes_,
        "estimate_bytes": est.table(),
        "device": str(device),
        "picked": reason,
    }
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    print(f"model: {source}; DiT {table['dit_parameters'] / 1e9:.2f} B parameters")
    print(f"run: {width}x{height}, {frames} frames, window {args.window_frames or 'whole clip'}")
    print(
        f"weights: DiT {est.dit_params / GIB:.1f} GiB, CLIP+VAE+encoder {est.other_params / GIB:.1f} GiB, "
        f"umT5 {est.text_params / GIB:.1f} GiB"
    )
    print(
        f"activations: DiT {est.dit_activations / GIB:.2f} GiB per call, VAE {est.vae_activations / GIB:.2f} GiB "
        f"({est.vae_activations_tiled / GIB:.2f} GiB tiled)"
    )
    for m in ("gpu", "model-offload", "sequential"):
        print(
            f"  {m:<14} peak {est.peak(m) / GIB:7.1f} GiB   with VAE tiling {est.peak(m, True) / GIB:7.1f} GiB"
        )
    print(f"would use: {reason}")
    return 0
