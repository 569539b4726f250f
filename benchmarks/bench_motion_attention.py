"""Cost of the motion attention inside the DiT, on CPU (issue 2 and issue 9 figures).

Prints, for the tiny golden config and the mid-size config of ENVIRONMENT.md (width 512, 4 blocks,
1950 video tokens, full-size expression encoder with 2048-wide tokens):
- wall time of one DiT call without motion, with 1 and 2 faces, and the overhead ratio;
- FLOPs of the motion path per guided denoising step (cond + uncond branch), for the released
  algorithm (keys/values recomputed at every call, the scale-0 branch still computed) and for ours
  (keys/values cached per run, no motion work at scale 0), counted with torch.utils.flop_counter;
- peak memory and time of building the multi-face label map for 201 frames at 1280x720.

Usage: python benchmarks/bench_motion_attention.py [--repeats 5] [--steps 30]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from fantasy_portrait.models.config import PRESETS, WanConfig
from fantasy_portrait.models.loading import build_transformer
from fantasy_portrait.models.masks import token_label_map
from fantasy_portrait.models.motion_attention import MotionCondition

CONFIGS = {
    # name: (wan config, motion token width, latent T, latent H, latent W)
    "tiny": (PRESETS["tiny"].wan, PRESETS["tiny"].encoder.token_dim, 5, 8, 8),
    "mid": (WanConfig(dim=512, ffn_dim=1536, num_heads=4, num_layers=4, text_dim=4096), 2048, 6, 26, 50),
}


def build(name):
    wan, token_dim, t, h, w = CONFIGS[name]
    kwargs = wan.to_diffusers_kwargs()
    kwargs["motion_dim"] = token_dim
    torch.manual_seed(0)
    model = build_transformer(kwargs, device="cpu").eval()
    for module in model.motion_modules():
        torch.nn.init.normal_(module.weight, std=0.02)
    g = torch.Generator().manual_seed(0)
    inputs = (
        torch.randn(1, 36, t, h, w, generator=g),
        torch.tensor([700.0]),
        torch.randn(1, 512, wan.text_dim, generator=g),
        torch.randn(1, 257, 1280, generator=g),
    )
    return model, inputs, token_dim, (t, h, w)


def condition(num_faces, token_dim, thw, cache_kv=True):
    t, h, w = thw
    g = torch.Generator().manual_seed(1)
    windows = [torch.randn(1, t, 97, token_dim, generator=g) for _ in range(num_faces)]
    if num_faces == 1:
        return MotionCondition(windows, cache_kv=cache_kv)
    img_h, img_w = h * 8, w * 8
    step = img_w // num_faces
    regions = [
        [i * step + step // 4, img_h // 4, (i + 1) * step - step // 4, 3 * img_h // 4]
        for i in range(num_faces)
    ]
    return MotionCondition(windows, token_label_map(regions, (img_h, img_w)), cache_kv=cache_kv)


def timed(fn, repeats):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    """Forward FLOPs of CPU flash attention (not in torch's default table): QK^T and PV matmuls."""
    batch, heads, q_len, dim = query_shape
    k_len = key_shape[2]
    return 2 * batch * heads * q_len * k_len * dim + 2 * batch * heads * q_len * k_len * value_shape[3]


def flops(fn):
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops()


def report(name, repeats, steps):
    model, inputs, token_dim, thw = build(name)
    tokens = thw[0] * thw[1] * thw[2] // 4
    print(
        f"\n== {name}: width {model.config.num_attention_heads * model.config.attention_head_dim}, "
        f"{model.config.num_layers} blocks, {tokens} video tokens, motion tokens {token_dim} wide"
    )
    with torch.no_grad():
        plain_s = timed(lambda: model(*inputs), repeats)
        plain_f = flops(lambda: model(*inputs))
        print(f"plain DiT call: {plain_s * 1e3:8.1f} ms  {plain_f / 1e9:8.2f} GFLOP")
        for faces in (1, 2):
            uncached = condition(faces, token_dim, thw, cache_kv=False)
            s = timed(lambda c=uncached: model(*inputs, motion=c), repeats)
            f_call = flops(lambda c=uncached: model(*inputs, motion=c)) - plain_f
            cached = condition(faces, token_dim, thw, cache_kv=True)
            model(*inputs, motion=cached)  # fills the cache
            s_cached = timed(lambda c=cached: model(*inputs, motion=c), repeats)
            f_cached = flops(lambda c=cached: model(*inputs, motion=c)) - plain_f
            kv = f_call - f_cached
            # Released algorithm per guided step: two calls, each recomputing K/V and attention.
            reference_step = 2 * f_call
            # Ours per guided step: cond branch attention only; K/V once per run of `steps` steps.
            ours_step = f_cached + kv / steps
            print(
                f"{faces} face(s): call {s * 1e3:8.1f} ms (x{s / plain_s:.3f} of plain), cached K/V "
                f"{s_cached * 1e3:8.1f} ms (x{s_cached / plain_s:.3f}); motion FLOPs per call "
                f"{f_call / 1e9:.3f} G ({f_call / plain_f:.1%} of plain, K/V projections {kv / f_call:.0%})"
            )
            # Wall time of one guided step (cond + uncond call). Released algorithm: the scale-0 branch
            # computes the motion branch too (modelled as a second motion call, scale 1 with the
            # same cost) and keys/values are recomputed; ours: cached K/V, nothing at scale 0.
            step_reference = timed(
                lambda c=uncached: (model(*inputs, motion=c), model(*inputs, motion=c)), repeats
            )
            step_ours = timed(
                lambda c=cached: (model(*inputs, motion=c), model(*inputs, motion=c, motion_scale=0.0)),
                repeats,
            )
            print(
                f"    wall time per guided step: plain Wan x2 {2 * plain_s * 1e3:.0f} ms, released algorithm "
                f"{step_reference * 1e3:.0f} ms, ours {step_ours * 1e3:.0f} ms"
            )
            print(
                f"    motion-path FLOPs per guided step: released algorithm {reference_step / 1e9:.3f} G, "
                f"ours {ours_step / 1e9:.3f} G over a {steps}-step run = {ours_step / reference_step:.3f}x"
            )


def mask_memory():
    frames, height, width = 201, 720, 1280
    regions = [[100, 80, 500, 600], [700, 60, 1180, 650]]
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        start = time.perf_counter()
        labels = token_label_map(regions, (height, width))
        elapsed = time.perf_counter() - start
    allocated = sum(max(e.cpu_memory_usage, 0) for e in prof.events())
    pixel_volume = frames * height * width * 4
    print(
        f"\n== label map, {frames} frames at {width}x{height}, 2 faces: token grid {tuple(labels.shape)}, "
        f"{elapsed * 1e3:.2f} ms, {allocated / 1024:.1f} KiB allocated in total "
        f"(the released pixel volume alone: {pixel_volume / 1e6:.0f} MB float32)"
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30, help="denoising steps a cached K/V is spread over")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    for name in args.configs:
        report(name, args.repeats, args.steps)
    mask_memory()


if __name__ == "__main__":
    main()
