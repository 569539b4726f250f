"""GPU benchmark of the DiT per sampling preset, with random weights (nothing to download).

    python benchmarks/bench_gpu.py                       # 14B and 1.3B, 480p and 720p, 81 frames (CUDA)
    python benchmarks/bench_gpu.py --models 14b --resolutions 720p --json out.json
    python benchmarks/bench_gpu.py --tiny                # CPU smoke test: tiny model, tiny frames

Full-size models are built on the meta device and materialised on the GPU with random weights, so
the numbers are the real model's cost (speed does not depend on the weight values). Measured per
model and resolution, for one face and the released motion-token width:

- seconds per transformer call with 1 sample (one guidance branch) and with 2 (the two motion
  guidance branches batched), bf16, everything resident, peak VRAM of each;
- the same call with fp8 storage (layerwise casting), with block group offloading (CUDA stream
  prefetch, pinned memory; the 24 GB plan) and after regional compilation (first call = compile
  time, then the compiled call);
- the cost of a call whose block stack a cache skips (embedders and head only).

The table then gives, per preset, seconds per output frame of an 81-frame clip = steps x calls per
step x seconds per call / 81 (DiT only: the face stage, CLIP, VAE are not included), transformer
calls and sample passes (the reference runs 60 passes: 30 steps x 2 unbatched branches), and the
peak VRAM of the DiT stage. Cache rows are not given: how many calls a cache skips depends on
trained weights (random weights say nothing); multiply the computed calls measured in the
synthetic world (benchmarks/acceleration.md) by the per-call figures here. A time budget
(--budget-s, default 540 s) skips what would not fit; each item says so.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

MODELS = {"14b": "wan2.1-i2v-14b-720p", "1.3b": "wan2.1-i2v-1.3b", "tiny": "tiny"}
RESOLUTIONS = {"480p": (832, 480), "720p": (1280, 720), "tiny": (64, 48)}


class Clock:
    def __init__(self, budget: float):
        self.start = time.perf_counter()
        self.budget = budget

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_transformer(preset: str, device, dtype):
    """The preset's DiT with random weights, materialised directly on ``device`` (no CPU copy)."""
    from fantasy_portrait.models.config import PRESETS
    from fantasy_portrait.models.loading import _finish_meta_model, _keep_fp32, build_transformer

    p = PRESETS[preset]
    kwargs = p.wan.to_diffusers_kwargs()
    kwargs["motion_dim"] = p.encoder.token_dim
    model = build_transformer(kwargs, device="meta")
    torch.nn.Module.to(model, dtype=dtype)  # still on the meta device: no memory
    for name, param in model.named_parameters():  # the loader keeps these in float32 for half dtypes
        if dtype != torch.float32 and _keep_fp32(model, name):
            param.data = param.data.float()
    model = model.to_empty(device=device)
    g = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2:
                fan_in = param[0].numel()
                param.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=g)
            elif "norm" in name:
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02, generator=g)
    _finish_meta_model(model, dtype, device)
    return model.eval(), p


def inputs(preset, width, height, frames, batch, device, dtype):
    from fantasy_portrait.models.config import WAN_GEOMETRY
    from fantasy_portrait.models.motion_attention import MotionCondition

    t = WAN_GEOMETRY.latent_frames(frames)
    h, w = height // 8, width // 8
    g = torch.Generator().manual_seed(1)
    cfg = preset.wan
    x = torch.randn(batch, cfg.in_dim, t, h, w, generator=g).to(device, dtype)
    text = torch.randn(batch, 512, cfg.text_dim, generator=g).to(device, dtype)
    image = torch.randn(batch, 257, cfg.image_dim, generator=g).to(device, dtype)
    windows = [
        torch.randn(1, t, preset.encoder.window_size, preset.encoder.token_dim, generator=g).to(device, dtype)
    ]
    motion = MotionCondition(windows)
    scale = torch.tensor([1.0] + [0.0] * (batch - 1))
    return dict(
        hidden_states=x,
        timestep=torch.full((batch,), 900.0, device=device),
        encoder_hidden_states=text,
        encoder_hidden_states_image=image,
        motion=motion,
        motion_scale=scale,
    )


def timed_call(model, kwargs, device, repeats: int = 1) -> tuple[float, int | None]:
    """(seconds of the last of ``repeats`` calls, peak bytes allocated during them)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = 0.0
    with torch.no_grad():
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            model(**kwargs)
            sync(device)
            seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return seconds, peak


def free(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure(model_key, res_keys, frames, device, dtype, clock, args) -> dict:
    """Every per-call figure of one model at the given resolutions."""
    from fantasy_portrait.models.quantization import enable_fp8_storage
    from fantasy_portrait.models.speed import attention, compile_blocks
    from fantasy_portrait.pipeline import caching

    out: dict = {"model": model_key, "resolutions": {}}
    skipped: list[str] = []

    def room(item: str, need: float) -> bool:
        if clock.left() < need:
            skipped.append(item)
            print(f"  skipped {item} (time budget)", flush=True)
            return False
        return True

    t0 = time.perf_counter()
    model, preset = random_transformer(MODELS[model_key], device, dtype)
    out["parameters"] = sum(p.numel() for p in model.parameters())
    out["build_s"] = time.perf_counter() - t0
    res = {k: {} for k in res_keys}
    with attention(args.attention):
        # 1. bf16 resident: 1 and 2 samples per call, and a call whose block stack is skipped
        for key in res_keys:
            w, h = RESOLUTIONS[key]
            if not room(f"{model_key} {key} bf16", 30):
                continue
            one = inputs(preset, w, h, frames, 1, device, dtype)
            timed_call(model, one, device)  # warm-up
            res[key]["t1"], res[key]["peak1"] = timed_call(model, one, device, args.repeats)
            two = inputs(preset, w, h, frames, 2, device, dtype)
            res[key]["t2"], res[key]["peak2"] = timed_call(model, two, device, args.repeats)
            del two
            caching.enable_cache(model, "teacache", 1e9, num_steps=1000, teacache_coefficients="raw")
            caching.reset_cache(model)
            with model.cache_context("bench"):  # first call computes, the next ones skip the blocks
                timed_call(model, one, device)
                res[key]["t_skip"], _ = timed_call(model, one, device, args.repeats)
            caching.disable_cache(model)
            print(f"  {model_key} {key}: {res[key]}", flush=True)
            del one
            free(device)
        # 2. regional compilation (first resolution only: a new shape recompiles)
        if not args.skip_compile and room(f"{model_key} compile", 150):
            key = res_keys[0]
            w, h = RESOLUTIONS[key]
            one = inputs(preset, w, h, frames, 1, device, dtype)
            compile_blocks(model, backend=args.compile_backend, fullgraph=False, dynamic=False)
            first, _ = timed_call(model, one, device)
            res[key]["compile_first_call"] = first
            res[key]["t1_compiled"], _ = timed_call(model, one, device, args.repeats)
            print(f"  {model_key} {key} compiled: first call {first:.1f} s", flush=True)
            del one
        del model
        free(device)
        # 3. fp8 storage
        if room(f"{model_key} fp8", 40):
            model, preset = random_transformer(MODELS[model_key], device, dtype)
            enable_fp8_storage(model, compute_dtype=dtype)
            for key in res_keys:
                w, h = RESOLUTIONS[key]
                if not room(f"{model_key} {key} fp8", 20):
                    continue
                one = inputs(preset, w, h, frames, 1, device, dtype)
                timed_call(model, one, device)
                res[key]["t1_fp8"], res[key]["peak1_fp8"] = timed_call(model, one, device, args.repeats)
                print(f"  {model_key} {key} fp8: {res[key]['t1_fp8']:.2f} s", flush=True)
                del one
            del model
            free(device)
        # 4. block group offloading (the low-VRAM plans)
        if room(f"{model_key} group offload", 60):
            from fantasy_portrait.pipeline.memory import group_offload

            model, preset = random_transformer(MODELS[model_key], device, dtype)
            model.to("cpu")
            free(device)
            stream = device.type == "cuda"
            group_offload(model, device, use_stream=stream)
            for key in res_keys:
                w, h = RESOLUTIONS[key]
                if not room(f"{model_key} {key} offload", 20):
                    continue
                one = inputs(preset, w, h, frames, 1, device, dtype)
                timed_call(model, one, device)  # the first call traces the prefetch order
                res[key]["t1_offload"], res[key]["peak1_offload"] = timed_call(
                    model, one, device, args.repeats
                )
                print(f"  {model_key} {key} group offload: {res[key]['t1_offload']:.2f} s", flush=True)
                del one
            del model
            free(device)
    out["resolutions"] = res
    out["skipped"] = skipped
    return out


def preset_rows(result: dict, frames: int) -> list[dict]:
    """Per preset: seconds per frame, calls, passes, peak VRAM from the per-call figures."""
    rows = []
    for key, r in result["resolutions"].items():
        if "t1" not in r:
            continue
        entries = [
            ("quality (30 steps, guidance batched)", 30, 2, r.get("t2"), r.get("peak2"), None),
            ("quality, branches one by one", 60, 1, r.get("t1"), r.get("peak1"), None),
            ("fast (4 steps, no motion guidance)", 4, 1, r.get("t1"), r.get("peak1"), None),
            ("fast + motion guidance (batched)", 4, 2, r.get("t2"), r.get("peak2"), None),
            ("fast + fp8 storage", 4, 1, r.get("t1_fp8"), r.get("peak1_fp8"), None),
            ("fast + compile", 4, 1, r.get("t1_compiled"), r.get("peak1"), r.get("compile_first_call")),
            ("fast + group offload", 4, 1, r.get("t1_offload"), r.get("peak1_offload"), None),
        ]
        for name, calls, samples, t, peak, compile_s in entries:
            passes = calls * samples
            rows.append(
                {
                    "model": result["model"],
                    "resolution": key,
                    "preset": name,
                    "calls": calls,
                    "passes": passes,
                    "s_per_call": t,
                    "s_per_frame": None if t is None else calls * t / frames,
                    "peak_gib": None if peak is None else peak / 2**30,
                    "first_call_s": compile_s,
                }
            )
        rows.append(
            {
                "model": result["model"],
                "resolution": key,
                "preset": "a call with the block stack skipped (cache)",
                "calls": 1,
                "passes": 0,
                "s_per_call": r.get("t_skip"),
                "s_per_frame": None,
                "peak_gib": None,
                "first_call_s": None,
            }
        )
    return rows


def table(rows: list[dict], frames: int = 81) -> str:
    def f(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    lines = [
        f"| model | res | preset | calls | passes (ref 60) | s/call | s/frame ({frames}) | peak VRAM GiB | first call s |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['resolution']} | {r['preset']} | {r['calls']} | {r['passes']} | "
            f"{f(r['s_per_call'], '.3f')} | {f(r['s_per_frame'], '.3f')} | {f(r['peak_gib'], '.1f')} | "
            f"{f(r['first_call_s'], '.1f')} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="CPU smoke test with the tiny preset")
    p.add_argument("--models", default="14b,1.3b")
    p.add_argument("--resolutions", default="480p,720p")
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--repeats", type=int, default=1, help="timed calls per figure (the last counts)")
    p.add_argument("--budget-s", type=float, default=540.0, help="stop starting new items after this")
    p.add_argument("--attention", default="native", choices=["native", "flash", "sage"])
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--skip-compile", action="store_true")
    p.add_argument("--json", help="write the raw figures and the table rows here")
    args = p.parse_args(argv)
    if args.tiny:
        models, resolutions, frames = ["tiny"], ["tiny"], 9
        device, dtype = torch.device("cpu"), torch.float32
    else:
        if not torch.cuda.is_available():
            print("error: no CUDA device (use --tiny for the CPU smoke test)", file=sys.stderr)
            return 2
        models, resolutions, frames = args.models.split(","), args.resolutions.split(","), args.frames
        device, dtype = torch.device("cuda"), torch.bfloat16
    clock = Clock(args.budget_s)
    print(
        f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}; torch {torch.__version__}; "
        f"{frames} frames; attention {args.attention}",
        flush=True,
    )
    results, rows = [], []
    for model_key in models:
        result = measure(model_key, resolutions, frames, device, dtype, clock, args)
        results.append(result)
        rows += preset_rows(result, frames)
    print()
    print(table(rows, frames))
    print(f"\nwall time {time.perf_counter() - clock.start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "rows": rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
