"""``fantasy-portrait animate``: animate every face of a portrait with driving video(s)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..pipeline.settings import AnimationSettings


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
    p.add_argument(
        "--dit",
        help="a single-file Wan2.1 I2V DiT to use instead of the folder's: ComfyUI fp8 / fp8-scaled "
        ".safetensors or a city96 GGUF (docs/acceleration.md)",
    )
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument(
        "--dtype", choices=["bf16", "fp16", "fp32"], help="model dtype (default bf16 on GPU, fp32 on CPU)"
    )
    p.add_argument(
        "--face-backend",
        default="mediapipe",
        help="face detector backend: mediapipe (default, offline) or onnx (the reference's face_det.onnx + "
        "face_landmark.onnx from the weight folder)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the memory estimate per mode and exit")
    p.add_argument(
        "--json", action="store_true", help="print a machine-readable summary of the run on stdout"
    )
    AnimationSettings.add_arguments(p)  # every inference setting: flags, defaults and help from one place
    p.set_defaults(func=run)


def _device_dtype(args):
    import torch

    from ..errors import InputError

    try:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as exc:
        raise InputError(
            f"--device {args.device!r}: not a torch device ({str(exc).splitlines()[0]})"
        ) from None
    name = args.dtype or ("bf16" if device.type != "cpu" else "fp32")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]
    return device, dtype


def _output_path(args) -> Path:
    if args.output:
        return Path(args.output)
    return Path.cwd() / f"{Path(args.image).stem}_animated.mp4"


@dataclass
class Preflight:
    """What a run will do, known before any model is loaded or video decoded: sizes, frames, memory."""

    source: str  # where the model sizes come from
    dit_parameters: int
    width: int
    height: int
    frames: int
    dtype_bytes: int
    device: object
    estimate: object
    mode_reason: str
    refusal: str | None  # why the run cannot fit (None: it can)
    speed: dict | None = None  # sampling and, with --vram, the memory plan (pipeline.acceleration)


def preflight(args, s: AnimationSettings) -> Preflight:
    """Check every input of ``animate`` without loading models or decoding video: the device, the face
    backend, the portrait's header, the driving videos' packets, the output path; then estimate the
    memory of the run from the weights' config.json (the released 14B sizes when no weights are given)
    and decide whether it fits where it would run."""
    from ..errors import InputError, ResourceError
    from ..faces.backend import available_backends
    from ..io import check_output_file, frame_count_4k1, load_image, probe_video
    from ..models.config import PRESETS, WanConfig
    from ..models.loading import build_transformer
    from ..pipeline import layout
    from ..pipeline.conditioning import target_size
    from ..pipeline.memory import check_fits, estimate_for_transformer, file_parameters, pick_mode

    device, _ = _device_dtype(args)
    if args.face_backend not in available_backends():
        raise InputError(
            f"--face-backend {args.face_backend!r}: unknown; available: {', '.join(available_backends())}"
        )
    height, width = load_image(args.image, max_pixels=s.max_image_pixels).shape[:2]  # pixels checked first
    infos = [probe_video(v) for v in args.driving]
    fps = s.fps or infos[0].fps
    frames = frame_count_4k1(min(info.frames_at(fps) for info in infos), s.max_frames)
    if not args.dry_run:
        check_output_file(_output_path(args), ".mp4")
    source = "preset wan2.1-i2v-14b-720p (no weights given)"
    wan = PRESETS["wan2.1-i2v-14b-720p"].wan
    weights = args.weights or os.environ.get(layout.WEIGHTS_ENV)
    text = bool(s.prompt.strip()) or s.text_guidance != 1.0
    sizes = {}
    if weights or not args.dry_run:  # every file the run needs, listed by name when missing (none loaded)
        files = layout.find_weight_files(
            args.weights,
            portrait=args.portrait_checkpoint,
            motion=args.motion_checkpoint,
            need_text_encoder=text,
            require=tuple(p for p in layout.RUN_PARTS if not (args.dit and p == "dit")),
        )
        # the sizes of the files at hand (a tiny umT5 is not 5.7 B parameters), released sizes otherwise
        for key, path in (("clip_params", files.clip), ("vae_params", files.vae), ("umt5_params", files.t5)):
            count = file_parameters(path)
            if count:
                sizes[key] = count
    if weights:
        root = layout.resolve_weights_dir(weights)
        cfg = layout.find_wan_dir(root) / layout.WAN_CONFIG
        if cfg.is_file():
            try:
                wan = WanConfig.from_dict(json.loads(cfg.read_text()))
            except (ValueError, TypeError, KeyError) as exc:
                from ..errors import CheckpointError

                raise CheckpointError(f"{cfg}: not a Wan config ({exc})") from None
            source = str(cfg)
    if args.dit:  # a single-file DiT: its size from its tensor shapes
        from ..models.quantization import describe_single_file

        wan, source = describe_single_file(args.dit)["config"], str(args.dit)
    kwargs = wan.to_diffusers_kwargs()
    kwargs["motion_dim"] = 2048 if wan.dim >= 1024 else 32
    transformer = build_transformer(kwargs, device="meta")
    width, height = target_size(width, height, s.max_size)
    bytes_ = {"bf16": 2, "fp16": 2, "fp32": 4}[args.dtype or ("bf16" if device.type != "cpu" else "fp32")]
    est = estimate_for_transformer(
        transformer,
        width=width,
        height=height,
        num_frames=frames,
        window_frames=s.window_frames,
        batch_branches=s.batch_branches,
        text=text,
        dtype_bytes=bytes_,
        **sizes,
    )
    refusal = None
    try:
        check_fits(est, device, f"a {width}x{height} video of {frames} frames")
    except ResourceError as exc:
        refusal = str(exc)
    _, _, reason = pick_mode(s.memory_mode or "auto", device, est)
    speed = None
    if args.dry_run or s.vram is not None:
        from ..pipeline.acceleration import dry_run_report

        speed = dry_run_report(
            s, transformer, width=width, height=height, frames=frames, device=device, dit=args.dit
        )
        if "plan" in speed:
            reason = f"--vram {s.vram:g}: {speed['plan']['label']}"
            if not speed["plan"]["fits"] and refusal is None:
                refusal = (
                    f"a {width}x{height} video of {frames} frames needs about {speed['plan']['peak_gib']:.1f} GiB "
                    f"even as {speed['plan']['label']}, more than --vram {s.vram:g}: lower --max-size, "
                    "--max-frames or --window-frames"
                )
    return Preflight(
        source, sum(p.numel() for p in transformer.parameters()), width, height, frames, bytes_, device, est,
        reason, refusal, speed,
    )  # fmt: skip


def run(args) -> int:
    from ..errors import ResourceError

    settings = AnimationSettings.from_args(args)  # validated: bad values fail before any loading
    plan = preflight(args, settings)  # bad inputs and runs that cannot fit fail before any loading too
    if args.dry_run:
        return dry_run(args, settings, plan)
    if plan.refusal:
        raise ResourceError(plan.refusal)
    device, dtype = _device_dtype(args)
    from ..pipeline.pipeline import FantasyPortraitPipeline

    pipe = FantasyPortraitPipeline.from_pretrained(
        args.weights,
        portrait_checkpoint=args.portrait_checkpoint,
        motion_checkpoint=args.motion_checkpoint,
        torch_dtype=dtype,
        device=device,
        memory_mode=settings.memory_mode or "auto",
        face_backend=args.face_backend,
        need_text_encoder=bool(settings.prompt.strip()) or settings.text_guidance != 1.0,
        dit=args.dit,
    )
    output = _output_path(args)
    result = pipe(args.image, args.driving, settings, output=output)
    summary = result.summary()
    summary.update(
        image=str(args.image),
        driving=[str(d) for d in args.driving],
        seed=settings.seed,
        steps=settings.num_steps,
        settings=settings.to_dict(),
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


def dry_run(args, s: AnimationSettings, plan: Preflight) -> int:
    """Print the memory estimate per mode (no weights loaded, no video decoded). A run that would be
    refused ends with its error line and exit code 2, as the run itself would."""
    from ..errors import ResourceError
    from ..pipeline.memory import GIB

    est = plan.estimate
    table = {
        "model": plan.source,
        "dit_parameters": plan.dit_parameters,
        "width": plan.width,
        "height": plan.height,
        "frames": plan.frames,
        "dtype_bytes": plan.dtype_bytes,
        "estimate_bytes": est.table(),
        "device": str(plan.device),
        "picked": None if plan.refusal else plan.mode_reason,
        "refused": plan.refusal,
        "speed": {k: v for k, v in (plan.speed or {}).items() if k != "lines"},
    }
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        print(f"model: {plan.source}; DiT {plan.dit_parameters / 1e9:.2f} B parameters")
        print(
            f"run: {plan.width}x{plan.height}, {plan.frames} frames, window {s.window_frames or 'whole clip'}"
        )
        print(
            f"weights: DiT {est.dit_params / GIB:.1f} GiB, CLIP+VAE+encoder {est.other_params / GIB:.1f} GiB, "
            f"umT5 {est.text_params / GIB:.1f} GiB"
        )
        print(
            f"activations: DiT {est.dit_activations / GIB:.2f} GiB per call, VAE {est.vae_activations / GIB:.2f} "
            f"GiB ({est.vae_activations_tiled / GIB:.2f} GiB tiled)"
        )
        for m in ("gpu", "model-offload", "group-offload"):
            print(
                f"  {m:<14} peak {est.peak(m) / GIB:7.1f} GiB   with VAE tiling {est.peak(m, True) / GIB:7.1f} GiB"
            )
        for line in (plan.speed or {}).get("lines", []):
            print(line)
        if not plan.refusal:
            print(f"would use: {plan.mode_reason}")
    if plan.refusal:
        raise ResourceError(plan.refusal)
    return 0
