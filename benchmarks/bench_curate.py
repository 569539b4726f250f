"""Curation throughput: clips per minute and seconds of video per second, overall and per stage.

Runs ``fantasy_portrait.data.curate`` over the shared asset videos (or a folder/manifest given as
argument) with every stage forced on (``stop_at_first_rejection=False``, one face allowed, so every
clip is scored, cut and timed) and prints Markdown tables.

    python benchmarks/bench_curate.py [INPUT] [--executors serial process ray] [--workers 2]

Per-stage figures are seconds of video processed per second of that stage's wall time in one
worker (sum over clips); the overall figures are for the whole run's wall time with all workers.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

ASSETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "assets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", default=str(ASSETS))
    parser.add_argument("--executors", nargs="+", default=["serial", "process", "ray"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from fantasy_portrait.data import CurationConfig, curate, read_manifest
    from fantasy_portrait.data.stages import STAGES

    config = CurationConfig(min_faces=1, stop_at_first_rejection=False)
    print(
        f"input: {args.input}; machine: {platform.machine()}, {os.cpu_count()} CPUs; workers {args.workers}\n"
    )
    per_stage = None
    print("| executor | clips | video s | wall s | clips/min | video s per s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for executor in args.executors:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            try:
                result = curate(
                    args.input,
                    Path(tmp) / "out",
                    config,
                    executor=executor,
                    workers=args.workers,
                    progress=False,
                )
            except Exception as exc:  # e.g. ray not installed
                print(f"| {executor} | failed: {exc} | | | | |")
                continue
            wall = time.perf_counter() - start
            if executor == "ray":
                import ray

                ray.shutdown()
            rows = read_manifest(result.manifest_path).to_pylist()
        video_s = sum(r["duration_s"] for r in rows)
        print(
            f"| {executor} | {len(rows)} | {video_s:.1f} | {wall:.1f} | {60 * len(rows) / wall:.1f} | "
            f"{video_s / wall:.2f} |"
        )
        if per_stage is None:
            per_stage = (executor, rows)
    if per_stage is None:
        return
    executor, rows = per_stage
    print(f"\nPer stage ({executor} run; seconds of video per second of stage time in one worker):\n")
    print("| stage | clips | stage s | video s per s | ms per clip |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for stage in STAGES:
        timed = [r for r in rows if (r[f"time_{stage}_s"] or 0) > 1e-3]
        if not timed:
            continue
        seconds = sum(r[f"time_{stage}_s"] for r in timed)
        video_s = sum(r["duration_s"] for r in timed)
        print(
            f"| {stage} | {len(timed)} | {seconds:.2f} | {video_s / seconds:.1f} | {1000 * seconds / len(timed):.0f} |"
        )


if __name__ == "__main__":
    main()
