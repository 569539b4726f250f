"""``fantasy-portrait inspect IMAGE DRIVING...``: check faces, tracks and mapping before any GPU work.

Prints (or with --json emits) the portrait faces in left-to-right order, the driving tracks with
their filled frames, the driving->portrait mapping, the regions and frame counts. With -o DIR it
also writes a preview: portrait.png (numbered faces, regions, token label map), driving_K.mp4 (each
video with tracked boxes, ids and landmarks), plan.json and, with --pd-fgc weights, motion_I.png
(the motion features over time). Runs on a CPU.
"""

from __future__ import annotations

import json

# The options inspect shares with animate: same flags, defaults, help and checks (AnimationSettings).
SHARED = ("mapping", "face_boxes", "max_frames", "fps", "max_image_pixels")


def register(subparsers) -> None:
    from ..pipeline.settings import AnimationSettings

    p = subparsers.add_parser(
        "inspect",
        help="check faces, tracking and the face mapping of a portrait and driving video(s) (CPU)",
        description="Detect the portrait's faces, track the driving faces, map them and write a preview, "
        "so you can check everything before spending GPU time. It refuses exactly what animate refuses.",
    )
    p.add_argument("image", help="portrait image")
    p.add_argument(
        "driving", nargs="+", help="driving video: one with N faces, or one single-face video per face"
    )
    p.add_argument(
        "-o", "--output", help="folder for the preview files (portrait.png, driving_K.mp4, plan.json)"
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON (per-frame boxes included)")
    p.add_argument("--num-faces", type=int, help="faces to track in a single driving video (default: auto)")
    p.add_argument("--backend", default="mediapipe", help="face backend: mediapipe (default) or onnx")
    p.add_argument("--onnx-dir", help="folder with face_det.onnx and face_landmark.onnx (--backend onnx)")
    p.add_argument("--pd-fgc", help="PD-FGC weights (pd_fpg.pth): also plot the motion features")
    p.add_argument("--device", default="cpu", help="device for the motion encoder (default cpu)")
    p.add_argument(
        "--min-coverage", type=float, default=0.5, help="least share of frames a face must be found in"
    )
    p.add_argument("--no-video", action="store_true", help="do not write the driving preview videos")
    fields = {f.name for f in __import__("dataclasses").fields(AnimationSettings)}
    AnimationSettings.add_arguments(p, exclude=fields - set(SHARED))
    p.set_defaults(func=run)


def run(args) -> int:

    from ..errors import InputError
    from ..faces import get_backend
    from ..faces.backend import available_backends
    from ..faces.plan import plan_faces
    from ..io import check_output_folder, load_image, new_output_folder, probe_video
    from ..pipeline.settings import AnimationSettings

    # Every option first (the same checks as animate's), then the files, then the work.
    s = AnimationSettings.from_args(args)
    if args.num_faces is not None and args.num_faces < 1:
        raise InputError(f"--num-faces must be >= 1, got {args.num_faces}")
    if not 0 < args.min_coverage <= 1:
        raise InputError(f"--min-coverage must be in (0, 1], got {args.min_coverage}")
    if args.backend not in available_backends():
        raise InputError(f"--backend {args.backend!r}: unknown; available: {', '.join(available_backends())}")
    if args.output:
        check_output_folder(args.output, "preview folder")
    image = load_image(args.image, max_pixels=s.max_image_pixels)
    infos = [probe_video(v) for v in args.driving]
    backend = get_backend(args.backend, **({"model_dir": args.onnx_dir} if args.backend == "onnx" else {}))
    encoder = None
    if args.pd_fgc:  # a bad weight file fails before any video is decoded
        from ..motion import MotionEncoder

        encoder = MotionEncoder.from_pretrained(args.pd_fgc, device=args.device)
    plan = plan_faces(
        image,
        args.driving,
        fps=s.fps or infos[0].fps,
        max_frames=s.max_frames,
        num_faces=args.num_faces,
        face_boxes=s.face_boxes,
        mapping=s.mapping or None,
        backend=backend,
        min_coverage=args.min_coverage,
        image_name=str(args.image),
        progress=not args.json,
    )
    features = None
    if encoder is not None:
        from ..motion import extract_plan_motion

        features = extract_plan_motion(plan, encoder, progress=not args.json)
    if args.output:
        with new_output_folder(args.output, "preview folder") as out:
            _write_preview(out, image, plan, features, videos=not args.no_video)
    if args.json:
        print(json.dumps(plan.to_dict(with_frames=True)))
        return 0
    _print_summary(plan, args.output)
    if features is not None:
        for d, f in zip(plan.driving, features):
            t = f.as_tensor()
            print(f"  motion of driver {d.index}: {tuple(t.shape)}, per-frame std {t.std(0).mean():.4f}")
    return 0


def _print_summary(plan, output) -> None:
    h, w = plan.image_hw
    print(f"portrait {w}x{h}: {len(plan.portrait_faces)} face(s), left to right")
    for f in plan.portrait_faces:
        box = ", ".join(f"{v:.0f}" for v in f.box)
        print(
            f"  face {f.index}: box [{box}] ({f.source}{'' if f.score is None else f', score {f.score:.2f}'})"
        )
    print(f"driving: {len(plan.driving) + len(plan.unused)} face(s) at {plan.fps:g} fps")
    for i, d in enumerate(plan.driving):
        gaps = d.track.gaps()
        filled = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in gaps) or "none"
        print(
            f"  driver {d.index}: {d.source.name}, {d.track.num_frames} frames, found in {d.track.coverage:.0%}, "
            f"filled frames: {filled} -> portrait face {plan.mapping[i]}, region {plan.regions[i].tolist()}"
        )
    for d in plan.unused:
        print(
            f"  driver {d.index}: {d.source.name}, found in {d.track.coverage:.0%} -> unused (--map {d.index}:-)"
        )
    still = sorted(set(range(len(plan.portrait_faces))) - set(plan.mapping))
    if still:
        print(f"portrait face(s) without a driver (kept still): {', '.join(map(str, still))}")
    print(f"frames used: {plan.num_frames} (4k+1 of {min(d.track.num_frames for d in plan.driving)})")
    if output:
        print(f"preview written to {output}")


def _write_preview(out, image, plan, features, videos: bool) -> None:
    """portrait.png, plan.json, driving_K.mp4 and motion_I.png. A driving face and the portrait face it
    drives have the same colour in both previews (the portrait face's); unused drivers are grey."""
    import numpy as np

    from ..faces.draw import draw_portrait, draw_tracks, plot_motion
    from ..io import iter_video_frames, save_image, write_video
    from ..models.config import WAN_GEOMETRY
    from ..pipeline.conditioning import label_map

    cell = WAN_GEOMETRY.token_pixels
    h, w = image.shape[:2]
    rows, cols = -(-h // cell), -(-w // cell)  # the label grid on the image padded to whole token cells
    labels = label_map([plan.regions[i] for i in range(len(plan.driving))], (rows * cell, cols * cell))
    labels = labels.numpy()[:rows, :cols]
    # The regions are in driving order; label (and colour) them by the portrait face they drive.
    remap = np.array([0] + [plan.mapping[i] + 1 for i in range(len(plan.driving))])
    labels = remap[labels]
    save_image(
        out / "portrait.png",
        draw_portrait(image, plan.portrait_faces, plan.regions, plan.mapping, labels, plan_drivers(plan)),
    )
    (out / "plan.json").write_text(json.dumps(plan.to_dict(with_frames=True)))
    if videos:
        by_video: dict = {}
        pairs = [(d, p) for d, p in zip(plan.driving, plan.mapping)] + [(d, None) for d in plan.unused]
        for d, p in sorted(pairs, key=lambda pair: pair[0].index):
            by_video.setdefault(d.source, []).append((d, p))
        for k, (video, faces) in enumerate(by_video.items()):
            tracks = [d.track for d, _ in faces]
            names = [d.index for d, _ in faces]
            colors = [p for _, p in faces]
            frames = (
                draw_tracks(frame, tracks, t, names=names, color_ids=colors)
                for t, frame in enumerate(iter_video_frames(video, fps=plan.fps, max_frames=plan.num_frames))
            )
            write_video(out / f"driving_{k}.mp4", frames, plan.fps)
    if features is not None:
        for d, f in zip(plan.driving, features):
            plot_motion(f, out / f"motion_{d.index}.png", title=f"driver {d.index}: {d.source.name}")


def plan_drivers(plan) -> list[int]:
    """The driving face number (as --map names it) of each used driver, in plan order."""
    return [d.index for d in plan.driving]
