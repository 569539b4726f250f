"""``fantasy-portrait inspect IMAGE DRIVING...``: check faces, tracks and mapping before any GPU work.

Prints (or with --json emits) the portrait faces in left-to-right order, the driving tracks with
their filled frames, the driving->portrait mapping, the regions and frame counts. With -o DIR it
also writes a preview: portrait.png (numbered faces, regions, token label map), driving_K.mp4 (each
video with tracked boxes, ids and landmarks), plan.json and, with --pd-fgc weights, motion_I.png
(the motion features over time). Runs on a CPU.
"""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="check faces, tracking and the face mapping of a portrait and driving video(s) (CPU)",
        description="Detect the portrait's faces, track the driving faces, map them and write a preview, "
        "so you can check everything before spending GPU time.",
    )
    p.add_argument("image", help="portrait image")
    p.add_argument(
        "driving", nargs="+", help="driving video: one with N faces, or one single-face video per face"
    )
    p.add_argument(
        "-o", "--output", help="folder for the preview files (portrait.png, driving_K.mp4, plan.json)"
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON (per-frame boxes included)")
    p.add_argument("--fps", type=float, default=25.0, help="working frame rate (default 25)")
    p.add_argument("--max-frames", type=int, help="use at most this many driving frames")
    p.add_argument("--num-faces", type=int, help="faces to track in a single driving video (default: auto)")
    p.add_argument("--face-boxes", help="portrait face boxes by hand: x1,y1,x2,y2[;x1,y1,x2,y2...]")
    p.add_argument(
        "--map", dest="mapping", help="driving->portrait faces, e.g. 0:1,1:0 (default: left to right)"
    )
    p.add_argument("--backend", default="mediapipe", choices=["mediapipe", "onnx"], help="face backend")
    p.add_argument("--onnx-dir", help="folder with face_det.onnx and face_landmark.onnx (--backend onnx)")
    p.add_argument("--pd-fgc", help="PD-FGC weights (pd_fpg.pth): also plot the motion features")
    p.add_argument("--device", default="cpu", help="device for the motion encoder (default cpu)")
    p.add_argument(
        "--min-coverage", type=float, default=0.5, help="least share of frames a face must be found in"
    )
    p.add_argument("--no-video", action="store_true", help="do not write the driving preview videos")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..faces import get_backend, parse_face_boxes, parse_mapping
    from ..faces.plan import plan_faces
    from ..io import load_image

    image = load_image(args.image)
    backend = get_backend(args.backend, **({"model_dir": args.onnx_dir} if args.backend == "onnx" else {}))
    plan = plan_faces(
        image,
        args.driving,
        fps=args.fps,
        max_frames=args.max_frames,
        num_faces=args.num_faces,
        face_boxes=parse_face_boxes(args.face_boxes) if args.face_boxes else None,
        mapping=parse_mapping(args.mapping) if args.mapping else None,
        backend=backend,
        min_coverage=args.min_coverage,
        image_name=Path(args.image).name,
        progress=not args.json,
    )
    features = None
    if args.pd_fgc:
        from ..faces.plan import extract_plan_motion
        from ..motion import MotionEncoder

        encoder = MotionEncoder.from_pretrained(args.pd_fgc, device=args.device)
        features = extract_plan_motion(plan, encoder)
    if args.output:
        _write_preview(Path(args.output), image, plan, features, videos=not args.no_video)
    if args.json:
        print(json.dumps(plan.to_dict(with_frames=True)))
        return 0
    _print_summary(plan, args.output)
    if features is not None:
        for i, f in enumerate(features):
            t = f.as_tensor()
            print(f"  motion of driver {i}: {tuple(t.shape)}, per-frame std {t.std(0).mean():.4f}")
    return 0


def _print_summary(plan, output) -> None:
    h, w = plan.image_hw
    print(f"portrait {w}x{h}: {len(plan.portrait_faces)} face(s), left to right")
    for f in plan.portrait_faces:
        box = ", ".join(f"{v:.0f}" for v in f.box)
        print(
            f"  face {f.index}: box [{box}] ({f.source}{'' if f.score is None else f', score {f.score:.2f}'})"
        )
    print(f"driving: {len(plan.driving)} face(s) at {plan.fps:g} fps")
    for i, d in enumerate(plan.driving):
        gaps = d.track.gaps()
        filled = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in gaps) or "none"
        print(
            f"  driver {i}: {d.source.name}, {d.track.num_frames} frames, found in {d.track.coverage:.0%}, "
            f"filled frames: {filled} -> portrait face {plan.mapping[i]}, region {plan.regions[i].tolist()}"
        )
    print(f"frames used: {plan.num_frames} (4k+1 of {min(d.track.num_frames for d in plan.driving)})")
    if output:
        print(f"preview written to {output}")


def _write_preview(out, image, plan, features, videos: bool) -> None:
    import numpy as np

    from ..faces.draw import draw_portrait, draw_tracks, plot_motion
    from ..io import iter_video_frames, save_image, write_video

    out.mkdir(parents=True, exist_ok=True)
    from ..models.config import WAN_GEOMETRY
    from ..pipeline.conditioning import label_map

    cell = WAN_GEOMETRY.token_pixels
    h, w = image.shape[:2]
    rows, cols = -(-h // cell), -(-w // cell)  # the label grid on the image padded to whole token cells
    labels = label_map([plan.regions[i] for i in range(len(plan.driving))], (rows * cell, cols * cell))
    labels = labels.numpy()[:rows, :cols]
    if len(plan.driving) > 1:
        # The regions are in driving order; show the labels by portrait face.
        remap = np.array([0] + [plan.mapping[i] + 1 for i in range(len(plan.driving))])
        labels = remap[labels]
    save_image(
        out / "portrait.png", draw_portrait(image, plan.portrait_faces, plan.regions, plan.mapping, labels)
    )
    (out / "plan.json").write_text(json.dumps(plan.to_dict(with_frames=True)))
    if videos:
        by_video: dict = {}
        for i, d in enumerate(plan.driving):
            by_video.setdefault(d.source, []).append(i)
        for k, (video, idx) in enumerate(by_video.items()):
            tracks = [plan.driving[i].track for i in idx]
            frames = (
                draw_tracks(frame, tracks, t, names=idx)
                for t, frame in enumerate(iter_video_frames(video, fps=plan.fps, max_frames=plan.num_frames))
            )
            write_video(out / f"driving_{k}.mp4", frames, plan.fps)
    if features is not None:
        for i, f in enumerate(features):
            plot_motion(f, out / f"motion_{i}.png", title=f"driver {i}: {plan.driving[i].source.name}")
