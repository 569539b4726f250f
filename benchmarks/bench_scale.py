"""Scaling arithmetic of context parallelism for the released 14B model (docs/scale.md, benchmarks/scale.md).

Per denoising step (the two motion-guidance branches as one batch of 2, bf16): the bytes each rank
sends/receives for every mode, the transformer FLOPs, and the step time these give on a GPU with a
stated throughput and link bandwidth. Arithmetic, not a measurement:

    python benchmarks/bench_scale.py [--tflops 500] [--link-gbs 350] [--ib-gbs 50]
"""

from __future__ import annotations

import argparse

from fantasy_portrait.models.config import PRESETS, WAN_GEOMETRY

BYTES = 2  # bf16
BATCH = 2  # cond + uncond-motion in one call
SIZES = {"480p": (832, 480), "720p": (1280, 720)}
FRAMES = 81


def tokens(width: int, height: int, frames: int = FRAMES) -> tuple[int, int]:
    grid = WAN_GEOMETRY.token_grid(height, width)
    return grid[0] * grid[1], WAN_GEOMETRY.latent_frames(frames)


def step_flops(seq: int, batch: int = BATCH) -> float:
    """Transformer FLOPs of one call: token-wise matmuls + self-attention (cross-attention keys are few)."""
    wan = PRESETS["wan2.1-i2v-14b-720p"].wan
    d, f, layers = wan.dim, wan.ffn_dim, wan.num_layers
    per_token = 2 * (6 * d * d + 2 * d * f)  # self q,k,v,o + cross q,o + ffn, 2 FLOPs per multiply-add
    attention = 4 * seq * seq * d  # Q K^T and A V
    return batch * layers * (per_token * seq + attention)


def volumes(seq: int, ulysses: int, ring: int, cfg: int = 1) -> float:
    """Bytes one rank moves per step (sends for Ulysses' all-to-all, receives for ring's all-gather)."""
    wan = PRESETS["wan2.1-i2v-14b-720p"].wan
    batch = BATCH // cfg if cfg > 1 else BATCH
    x = batch * seq * wan.dim * BYTES  # one activation tensor of the whole sequence
    u, r = ulysses, ring
    per_layer = 4 * x / (u * r) * (u - 1) / u + 2 * x * (r - 1) / (r * u)
    gather = batch * seq * wan.out_dim * 4 * BYTES * (u * r - 1) / (u * r)  # proj_out all-gather
    cfg_gather = (cfg - 1) / cfg * BATCH * seq * wan.out_dim * 4 * BYTES if cfg > 1 else 0.0
    return wan.num_layers * per_layer + gather + cfg_gather


MODES = [
    ("ulysses=2", 2, 1, 1),
    ("ulysses=4", 4, 1, 1),
    ("ulysses=8", 8, 1, 1),
    ("ring=8", 1, 8, 1),
    ("ulysses=4,ring=2", 4, 2, 1),
    ("cfg=2", 1, 1, 2),
    ("cfg=2,ulysses=4", 4, 1, 2),
    ("ulysses=8,ring=2 (2 nodes)", 8, 2, 1),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflops", type=float, default=500.0, help="sustained bf16 TFLOP/s of one GPU")
    parser.add_argument("--link-gbs", type=float, default=350.0, help="NVLink GB/s per GPU for collectives")
    parser.add_argument("--ib-gbs", type=float, default=50.0, help="inter-node GB/s per GPU (400 Gb/s IB)")
    args = parser.parse_args()
    for name, (w, h) in SIZES.items():
        per_frame, latent = tokens(w, h)
        seq = per_frame * latent
        flops = step_flops(seq)
        one = flops / (args.tflops * 1e12)
        print(
            f"\n{name} ({w}x{h}), {FRAMES} frames: {latent} latent frames x {per_frame} tokens = {seq} tokens"
        )
        print(f"  one step (2 branches, one call): {flops / 1e15:.2f} PFLOP -> {one:.1f} s on one GPU")
        print(f"  {'mode':<28} {'GPUs':>4} {'GB/rank/step':>13} {'comm s':>7} {'step s':>7} {'speed-up':>8}")
        for mode, u, r, c in MODES:
            gpus = u * r * c
            gb = volumes(seq, u, r, c) / 1e9
            cross_node = "nodes" in mode
            if cross_node:  # Ulysses inside a node (NVLink), the ring part across nodes
                wan = PRESETS["wan2.1-i2v-14b-720p"].wan
                x = BATCH * seq * wan.dim * BYTES
                ring_gb = wan.num_layers * 2 * x * (r - 1) / (r * u) / 1e9
                comm = (gb - ring_gb) / args.link_gbs + ring_gb / args.ib_gbs
            else:
                comm = gb / args.link_gbs
            step = one / gpus + comm
            print(f"  {mode:<28} {gpus:>4} {gb:>13.2f} {comm:>7.2f} {step:>7.2f} {one / step:>7.1f}x")


if __name__ == "__main__":
    main()
