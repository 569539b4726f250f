"""``fantasy-portrait curate INPUT -o OUT``: raw videos -> scored single-shot clips (SPEC §10)."""

from __future__ import annotations

import argparse
import dataclasses

HELP = {
    "shot_threshold": "PySceneDetect ContentDetector threshold for a hard cut",
    "min_seconds": "shorter shots are rejected as too_short",
    "max_seconds": "longer shots are split into equal clips of at most this length",
    "sample_fps": "frames analysed per second of clip",
    "min_samples": "at least this many analysed frames per clip",
    "max_samples": "at most this many analysed frames per clip",
    "analysis_short_side": "frames are downscaled to this short side for detection and frame sharpness",
    "min_faces": "fewest stable faces a kept clip shows (1 for single-face data)",
    "max_faces": "most stable faces a kept clip shows",
    "min_track_coverage": "a face counts when seen in this fraction of the analysed frames",
    "detection_confidence": "face detector score threshold",
    "face_backend": "face backend name (fantasy_portrait.faces)",
    "min_frame_sharpness": "variance of the Laplacian of whole frames (median over analysed frames)",
    "min_face_sharpness": "variance of the Laplacian of the least sharp face (128x128 crops)",
    "min_aesthetic": "aesthetic score threshold (when a scorer is given)",
    "min_head_range_deg": "a face moves if its yaw, pitch or roll range reaches this",
    "min_mouth_motion": "... or its lip landmark motion reaches this (inter-ocular units)",
    "min_eye_motion": "... or its eyelid/iris landmark motion reaches this (inter-ocular units)",
    "motion_faces": "'any': one moving face is enough; 'all': every stable face must move",
    "aesthetic_weights": "LAION-style predictor head (.pth/.safetensors); needs --aesthetic-clip",
    "aesthetic_clip": "local CLIP model folder for the aesthetic predictor",
    "aesthetic_callable": "module:function(frames) -> float used as the aesthetic score",
    "person_callable": "module:function(frame) -> count or boxes; the people count must fit the face range",
    "caption_command": "command template run per kept clip, e.g. 'my-vlm --video {clip}' (stdout = caption)",
    "caption_callable": "module:function(clip_path, frames) -> str used as captioner",
}
FLAG_OVERRIDES = {"stop_at_first_rejection", "cut_clips", "extra"}


def register(subparsers) -> None:
    from ..data.config import CurationConfig

    parser = subparsers.add_parser(
        "curate",
        help="turn raw videos into a scored multi-face clip dataset (Parquet manifest + clips)",
        description="Split videos into single shots, score each clip (faces, sharpness, aesthetic, "
        "facial motion), keep the good ones and write a Parquet manifest, the cut clips and a report. "
        "Re-running with the same OUT resumes.",
    )
    parser.add_argument(
        "input", help="folder of videos, or a CSV/JSONL/Parquet manifest with a 'path' column"
    )
    parser.add_argument("-o", "--out", required=True, help="output folder (manifest, clips, report, journal)")
    parser.add_argument(
        "--executor", choices=("serial", "process", "ray"), default="process", help="where the work runs"
    )
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    parser.add_argument(
        "--ray-address", default=None, help="address of a running Ray cluster (default: start one)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="discard earlier results in OUT and start again"
    )
    parser.add_argument("--max-clips", type=int, default=None, help="stop after this many new clips (trials)")
    parser.add_argument("--all-scores", action="store_true", help="run every stage even after a rejection")
    parser.add_argument("--no-cut", action="store_true", help="do not write the kept clips")
    parser.add_argument("--no-report", action="store_true", help="skip the Markdown/PNG report")
    parser.add_argument(
        "--training-manifest",
        action="store_true",
        help="also track faces in every kept clip and write OUT/training/clips.jsonl for the training precompute step",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    defaults = CurationConfig()
    for field in dataclasses.fields(CurationConfig):
        if field.name in FLAG_OVERRIDES:
            continue
        value = getattr(defaults, field.name)
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            type=type(value),
            default=value,
            help=f"{HELP.get(field.name, '')} (default: {value!r})",
        )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import CurationConfig, curate
    from ..io import check_output_folder

    check_output_folder(args.out, "curation output folder")
    values = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(CurationConfig) if hasattr(args, f.name)
    }
    values.pop("extra", None)
    config = CurationConfig(**values, stop_at_first_rejection=not args.all_scores, cut_clips=not args.no_cut)
    result = curate(
        args.input,
        args.out,
        config,
        executor=args.executor,
        workers=args.workers,
        ray_address=args.ray_address,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        report=not args.no_report,
        max_clips=args.max_clips,
        training_manifest=args.training_manifest,
    )
    rejected = ", ".join(f"{k}: {v}" for k, v in sorted(result.counts.items()) if k != "kept") or "none"
    print(f"{result.num_clips} clips, {result.num_kept} kept, rejected {rejected}")
    print(f"manifest: {result.manifest_path}")
    if result.training_manifest:
        print(f"training manifest: {result.training_manifest}")
    if result.report_path:
        print(f"report: {result.report_path}")
    return 0
