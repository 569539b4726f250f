"""Pipeline figures on the CPU with tiny random weights (prints a Markdown table).

1. Guidance branches as one batch vs one call each, per denoising step (tiny DiT, several sizes).
2. Temporal windows: transformer work relative to a single pass.
3. Seconds per stage of an end-to-end `animate` run on the tiny weights.

Usage: python benchmarks/bench_pipeline.py [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from fantasy_portrait.models.config import PRESETS

TINY = PRESETS["tiny"]  # the golden tiny sizes: one definition (models.config)

ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"


def bench_branches(transformer, repeats: int) -> list[tuple]:
    from fantasy_portrait.models.motion_attention import MotionCondition, motion_windows
    from fantasy_portrait.pipeline.sampler import Conditions, GuidedDenoiser

    rows = []
    g = torch.Generator().manual_seed(0)
    cfg = transformer.config
    for frames, side in ((17, 128), (33, 256), (81, 256)):
        T, h = (frames - 1) // 4 + 1, side // 8
        tokens = torch.randn(1, frames * 24, cfg.motion_dim, generator=g)
        motion = MotionCondition([motion_windows(tokens, frames)[0]])
        cond = Conditions(
            torch.randn(1, 20, T, h, h, generator=g),
            torch.randn(1, 257, 1280, generator=g),
            torch.randn(1, 512, cfg.text_dim, generator=g),
            motion,
        )
        x = torch.randn(1, 16, T, h, h, generator=g)
        t = torch.tensor([900.0])
        out = {}
        for batched in (True, False):
            den = GuidedDenoiser(transformer, cond, batch_branches=batched)
            den(x, t)  # warm-up (and motion key/value cache)
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(repeats):
                den(x, t)
            out[batched] = ((time.perf_counter() - start) / repeats, (time.process_time() - cpu) / repeats)
        rows.append((f"{frames} frames, {side}x{side} ({T * (h // 2) ** 2} tokens)", out[True], out[False]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from fantasy_portrait.models.loading import load_portrait_checkpoint, load_wan_transformer
    from fantasy_portrait.pipeline.pipeline import FantasyPortraitPipeline
    from fantasy_portrait.pipeline.sampler import latent_windows
    from fantasy_portrait.pipeline.tiny import write_tiny_weights

    folder = Path(tempfile.mkdtemp(prefix="fp_bench_"))
    write_tiny_weights(folder)
    transformer = load_wan_transformer(folder, motion_dim=TINY.encoder.token_dim)
    load_portrait_checkpoint(folder / "fantasyportrait_model.safetensors", transformer)

    print(f"torch threads: {args.threads}\n")
    print(
        "| guided step (tiny DiT: width 64, 2 blocks) | one batch: wall s / CPU s | one call per branch: "
        "wall s / CPU s | speedup (wall) |"
    )
    print("| --- | --- | --- | --- |")
    with torch.no_grad():
        for name, (bw, bc), (sw, sc) in bench_branches(transformer, args.repeats):
            print(f"| {name} | {bw:.3f} / {bc:.3f} | {sw:.3f} / {sc:.3f} | {sw / bw:.2f}x |")

    print("\n| latent frames | window | overlap | windows | transformer work vs one pass |")
    print("| --- | --- | --- | --- | --- |")
    for T, w, o in ((21, 21, 5), (51, 21, 5), (76, 21, 5), (376, 21, 5), (376, 21, 2)):
        ws = latent_windows(T, w, o)
        print(f"| {T} | {w} | {o} | {len(ws)} | {sum(map(len, ws)) / T:.2f}x |")

    pipe = FantasyPortraitPipeline.from_pretrained(folder)
    start = time.perf_counter()
    res = pipe(
        ASSETS / "fp_man.jpeg",
        ASSETS / "fp_jgz.mp4",
        output=folder / "out.mp4",
        max_frames=33,
        max_size=128,
        num_steps=4,
        progress=False,
    )
    total = time.perf_counter() - start
    print("\nEnd to end, tiny weights, fp_man.jpeg + fp_jgz.mp4, 33 frames, 128x128, 4 steps:\n")
    print("| stage | seconds |")
    print("| --- | --- |")
    for stage, sec in res.seconds.items():
        print(f"| {stage} | {sec:.2f} |")
    print(f"| total | {total:.2f} |")


if __name__ == "__main__":
    main()
