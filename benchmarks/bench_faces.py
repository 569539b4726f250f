"""Speed and memory of the face/motion stage on the shared driving videos (CPU).

Prints, per clip: the raw detector+landmark speed (the ceiling), the whole stage (decode, detect,
track, align, PD-FGC encode) in frames per second, and the reference's approach reproduced with our
backend (two full detection+landmark passes per frame, encoder at batch 1). With --memory it also
reports the peak resident memory of the streaming stage on lp_d3.mp4 (run in a fresh subprocess).

    python benchmarks/bench_faces.py [--frames 60] [--memory]

The PD-FGC encoder runs with the golden random weights (same cost as the released ones).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / ".." / "shared" / "assets"
WEIGHTS = ROOT / ".." / "shared" / "golden" / "pd_fgc_random.pth"
CLIPS = [("lp_d0.mp4", 1, "512x512, one face"), ("fp_two_person.mp4", 2, "1280x720, two faces")]


def bench_clip(name: str, num_faces: int, frames_limit: int, encoder) -> dict:
    import numpy as np

    from fantasy_portrait.faces import align_faces, get_backend, track_faces
    from fantasy_portrait.faces.tracking import detect_all
    from fantasy_portrait.io import iter_video_frames, read_video
    from fantasy_portrait.motion import MotionEncoder, extract_tracks_motion

    path = ASSETS / name
    backend = get_backend("mediapipe")
    video = read_video(path, fps=25, max_frames=frames_limit)
    frames = video.frames
    n = len(frames)
    backend.detect(frames[0])  # warm-up

    t = time.perf_counter()
    for f in frames:
        backend.detect_boxes(f)
    det_only = (time.perf_counter() - t) / n

    t = time.perf_counter()
    dets = detect_all(frames, backend, progress=False)
    raw = (time.perf_counter() - t) / n

    t = time.perf_counter()
    list(iter_video_frames(path, fps=25, max_frames=frames_limit))
    decode = (time.perf_counter() - t) / n

    t = time.perf_counter()
    tracks = track_faces(frames, num_faces, detections=dets, fps=25, progress=False)
    track = (time.perf_counter() - t) / n

    t = time.perf_counter()
    crops = [align_faces(frames, tr.five_points) for tr in tracks]
    align = (time.perf_counter() - t) / n

    t = time.perf_counter()
    for c in crops:
        encoder.encode(c)
    encode = (time.perf_counter() - t) / n

    t = time.perf_counter()
    tracks = track_faces(path, num_faces, backend, fps=25, max_frames=frames_limit, progress=False)
    feats = extract_tracks_motion(path, tracks, encoder, fps=25)
    stage = (time.perf_counter() - t) / n
    assert all(len(f) == n for f in feats)

    # Reference approach: per frame, detect+landmarks twice (stage 1 and stage 2), encoder at batch 1.
    ref_n = min(n, 20)
    one = MotionEncoder(encoder.network, batch_size=1)

    t = time.perf_counter()
    for i in range(ref_n):
        backend.detect(frames[i])
        faces = backend.detect(frames[i])
        for face in faces[:num_faces]:
            one.encode(align_faces(frames[i], face.five_points))
    ref = (time.perf_counter() - t) / ref_n
    found = float(np.mean([len(d) >= num_faces for d in dets]))
    return {
        "clip": name,
        "frames": n,
        "detector_ms": det_only * 1e3,
        "detector_landmarks_ms": raw * 1e3,
        "ceiling_fps": 1 / raw,
        "decode_ms": decode * 1e3,
        "track_ms": track * 1e3,
        "align_ms": align * 1e3,
        "encode_ms": encode * 1e3,
        "stage_fps": 1 / stage,
        "reference_approach_fps": 1 / ref,
        "frames_with_all_faces": found,
    }


def peak_memory(frames: int | None) -> dict:
    """Run the streaming stage on lp_d3.mp4 in a subprocess; report its peak RSS."""
    # ru_maxrss survives exec on Linux (the child would report the parent's peak), so read VmHWM.
    hwm = "int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]) / 1024"
    code = f"""
import json, time
from fantasy_portrait.faces import track_faces
from fantasy_portrait.motion import MotionEncoder, extract_tracks_motion
path = {str(ASSETS / "lp_d3.mp4")!r}
base = {hwm}
enc = MotionEncoder.from_pretrained({str(WEIGHTS)!r})
t = time.perf_counter()
tracks = track_faces(path, 1, fps=25, max_frames={frames!r}, progress=False)
feats = extract_tracks_motion(path, tracks, enc, fps=25)
print(json.dumps({{"frames": len(feats[0]), "peak_rss_mib": {hwm}, "rss_after_loading_mib": base,
                  "seconds": time.perf_counter() - t}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    stream = json.loads(out.strip().splitlines()[-1])
    code_full = f"""
import json
from fantasy_portrait.io import read_video
v = read_video({str(ASSETS / "lp_d3.mp4")!r}, fps=25)
print(json.dumps({{"frames": len(v), "peak_rss_mib": {hwm}}}))
"""
    out = subprocess.run([sys.executable, "-c", code_full], capture_output=True, text=True, check=True).stdout
    full = json.loads(out.strip().splitlines()[-1])
    return {"streaming_stage": stream, "decode_all_in_memory": full}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=60, help="frames per clip (at 25 fps)")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory on lp_d3.mp4")
    parser.add_argument("--memory-frames", type=int, default=None, help="limit frames for the memory run")
    args = parser.parse_args()

    import torch

    from fantasy_portrait.motion import MotionEncoder

    print(f"torch threads: {torch.get_num_threads()}, load average: {os.getloadavg()}")
    encoder = MotionEncoder.from_pretrained(WEIGHTS)
    rows = [bench_clip(name, k, args.frames, encoder) for name, k, _ in CLIPS]
    print("| clip | frames | decode | detector | detector+mesh (ceiling fps) | track+smooth | align | PD-FGC encode | "
          "whole stage fps | reference approach fps | frames with all faces |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (_, _, desc), r in zip(CLIPS, rows):
        print(
            f"| {r['clip']} ({desc}) | {r['frames']} | {r['decode_ms']:.1f} ms | {r['detector_ms']:.1f} ms | "
            f"{r['detector_landmarks_ms']:.1f} ms ({r['ceiling_fps']:.1f}) | {r['track_ms']:.2f} ms | {r['align_ms']:.2f} ms | "
            f"{r['encode_ms']:.0f} ms | {r['stage_fps']:.2f} | {r['reference_approach_fps']:.2f} | "
            f"{r['frames_with_all_faces']:.0%} |"
        )
    if args.memory:
        mem = peak_memory(args.memory_frames)
        print(json.dumps(mem, indent=2))


if __name__ == "__main__":
    main()
