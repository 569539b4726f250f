"""The long-driver run of the hardening issue: a 33.5 s driver (837 frames at 25 fps) on tiny weights.

Builds, by code, a 30 fps driving video of 1004 frames (lp_d3.mp4 played forwards, backwards and
forwards again: one face, with lp_d3's audio) and a 4:3 portrait (fp_man.jpeg cropped, so the output is
128x96), writes a tiny random weight folder, runs ``fantasy-portrait animate --json`` and prints the
wall time of every stage (the pipeline's own timer) plus the decode and write throughput. It also
times the video writer alone on the same frames (``--writer-only``), which is what the decode+write
stage should cost.

    nice -n 19 python benchmarks/bench_hardening.py [--work /tmp/fp_hardening] [--steps 4]

Run it with the tree to measure on the import path (``PYTHONPATH=OTHER/src`` measures another tree).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
DRIVER_FRAMES = 1004  # at 30 fps: 33.47 s -> 837 frames at 25 fps (a 4k+1 count)


def make_driver(path: Path) -> Path:
    import av
    import numpy as np

    if path.is_file():
        return path
    with av.open(str(ASSETS / "lp_d3.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    order = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))
    seq = [frames[order[i % len(order)]] for i in range(DRIVER_FRAMES)]
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = seq[0].shape[1], seq[0].shape[0], "yuv420p"
        for i, fr in enumerate(seq):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(fr), format="rgb24")
            vf.pts = i
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    os.replace(tmp, path)
    return path


def make_portrait(path: Path) -> Path:
    from PIL import Image

    if not path.is_file():
        with Image.open(ASSETS / "fp_man.jpeg") as im:
            im.convert("RGB").crop((0, 128, 1024, 896)).save(path)  # 1024x768 -> 128x96 output
    return path


def writer_only(driver: Path, out: Path) -> dict:
    """Decode the driver at 25 fps, downscale to 128x96 and write it: the I/O part alone."""
    import cv2

    from fantasy_portrait.io import iter_video_frames, write_video

    t = time.perf_counter()
    frames = [
        cv2.resize(f, (128, 96), interpolation=cv2.INTER_AREA) for f in iter_video_frames(driver, fps=25)
    ]
    decode = time.perf_counter() - t
    t = time.perf_counter()
    write_video(out, frames, 25.0, audio_from=driver)
    write = time.perf_counter() - t
    return {"frames": len(frames), "decode_s": round(decode, 2), "write_s": round(write, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", default="/tmp/fp_hardening_bench", help="folder for inputs and outputs")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps (default 4)")
    parser.add_argument("--writer-only", action="store_true", help="only time decoding and writing")
    parser.add_argument("--label", default="", help="name printed with the result")
    args = parser.parse_args()
    import fantasy_portrait

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    driver = make_driver(work / "driver_33s.mp4")
    portrait = make_portrait(work / "portrait_4x3.png")
    if args.writer_only:
        print(json.dumps({"label": args.label, **writer_only(driver, work / "writer_only.mp4")}))
        return
    weights = work / "tiny_weights"
    if not (weights / "pd_fpg.pth").is_file():
        from fantasy_portrait.pipeline.tiny import write_tiny_weights

        write_tiny_weights(weights, seed=0)
    from fantasy_portrait.cli import main as cli

    suffix = f"_{args.label}" if args.label else ""  # runs with different labels may go side by side

    # Stage starts with time stamps in a file, so a run that is killed still tells where its time went.
    stages = logging.getLogger("fantasy_portrait.pipeline.pipeline")
    stages.setLevel(logging.INFO)
    handler = logging.FileHandler(work / f"stages{suffix}.log", mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    stages.addHandler(handler)

    out = work / f"out{suffix}.mp4"
    argv = ["animate", str(portrait), str(driver), "--weights", str(weights), "-o", str(out)]
    argv += ["--max-size", "128", "--steps", str(args.steps), "--json", "--no-progress"]
    t = time.perf_counter()
    real_stdout = sys.stdout
    capture = work / f"summary{suffix}.json"
    with open(capture, "w") as sys.stdout:
        code = cli(argv)
    sys.stdout = real_stdout
    wall = time.perf_counter() - t
    summary = json.loads(capture.read_text()) if code == 0 else {}
    seconds = summary.get("seconds", {})
    frames = summary.get("num_frames")
    row = {
        "label": args.label,
        "source": str(Path(fantasy_portrait.__file__).parent),
        "exit": code,
        "frames": frames,
        "size": [summary.get("width"), summary.get("height")],
        "wall_s": round(wall, 1),
        "stages_s": {k: round(v, 1) for k, v in seconds.items()},
        "load": os.getloadavg()[0],
    }
    if frames and seconds.get("decode+write"):
        row["decode_write_fps"] = round(frames / seconds["decode+write"], 1)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
