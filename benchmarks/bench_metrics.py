"""Speed of the ExprBench metric pass on CPU: frames per second of each stage and of a whole case.

Usage: python benchmarks/bench_metrics.py [--frames 48] [--sizes 256 512] [--threads 2] [--inception]

Stages, per frame of a generated video scored against its ground truth (self-reenactment):
- landmarks: face detection + 478-point mesh (MediaPipe, via the project's face backend), one video;
- ssim: the SSIM of one frame pair;
- geometry: LMD + gaze MAE + APD + AED from the two landmark sets;
- case: ``score_case`` end to end on a prepared case (decode both videos, landmarks of both, all
  metrics), nothing cached;
- inception (with --inception): FID features of one frame through the Inception-v3 FID network
  (random weights: the cost is the same as with the real file).
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "assets"


def _rate(fn, count: int, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inception", action="store_true")
    parser.add_argument("--video", default=str(ASSETS / "lp_d12.mp4"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    torch.set_num_threads(args.threads)
    from fantasy_portrait.bench import metrics
    from fantasy_portrait.bench.landmarks import default_backend, extract_tracks
    from fantasy_portrait.bench.manifest import manifest_from_dict
    from fantasy_portrait.bench.methods import RepeatPortrait
    from fantasy_portrait.bench.runner import prepare_case
    from fantasy_portrait.bench.scoring import score_case
    from fantasy_portrait.io import read_video

    backend = default_backend()
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {args.threads}")
    print(f"video: {Path(args.video).name}, {args.frames} frames")
    print("| size | landmarks fps | SSIM fps | geometry fps | whole case fps (2 videos) |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        frames = read_video(args.video, max_frames=args.frames, max_side=size).frames
        other = np.ascontiguousarray(frames[::-1])
        extract_tracks(frames[:2], 1, backend)  # warm-up
        lm_fps = _rate(lambda f=frames: extract_tracks(f, 1, backend), len(frames), repeat=2)
        ssim_fps = _rate(lambda f=frames, o=other: metrics.ssim_frames(f, o), len(frames), repeat=2)
        a = extract_tracks(frames, 1, backend).face(0)
        b = extract_tracks(other, 1, backend).face(0)
        geo_fps = _rate(
            lambda a=a, b=b: [fn(a, b) for fn in metrics.LANDMARK_METRICS.values()], len(frames), repeat=3
        )
        with tempfile.TemporaryDirectory() as tmp:
            manifest = manifest_from_dict(
                {
                    "frames": args.frames,
                    "max_side": size,
                    "cases": [{"id": "c", "mode": "self", "video": str(args.video)}],
                },
                Path(tmp),
            )
            prepared = prepare_case(manifest, manifest.cases[0], Path(tmp))
            out = Path(tmp) / "out.mp4"
            RepeatPortrait("r").generate(prepared, out)
            case_fps = _rate(
                lambda p=prepared, o=out: score_case(p, o, None, backend), prepared.num_frames, repeat=2
            )
        print(f"| {size} | {lm_fps:.1f} | {ssim_fps:.1f} | {geo_fps:.0f} | {case_fps:.1f} |")
    if args.inception:
        from fantasy_portrait.bench.extractors import _build_inception

        model = _build_inception().eval()
        x = torch.rand(8, 3, 256, 256)
        with torch.inference_mode():
            model(x[:1])
            fps = _rate(lambda: model(x), len(x))
        print(f"Inception-v3 FID features (299x299, batch 8): {fps:.1f} frames/s")


if __name__ == "__main__":
    main()
