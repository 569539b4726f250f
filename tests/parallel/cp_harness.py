"""Code the context-parallel tests run inside ``torch.multiprocessing.spawn`` processes (gloo, CPU).

Every case builds the same tiny model and inputs on every rank, computes the single-process result
first, then the parallel one, and returns the numbers the test checks; rank 0's results are saved
to a file the test reads. ``torch.accelerator.device_count`` is made to report 1 here only (diffusers
places rank r on device r % device_count, a division by zero on a CPU-only torch).
"""

from __future__ import annotations

import traceback
from datetime import timedelta

import torch

T, H, W = 3, 8, 12  # latent frames, latent height/width: 3 x 4 x 6 = 72 tokens, 36 per rank = 1.5 frames
IMAGE_HW = (H * 8, W * 8)


def build_model(seed: int = 0):
    from fantasy_portrait.models.loading import build_from_preset

    torch.manual_seed(seed)
    transformer, _ = build_from_preset("tiny", device="cpu")
    for module in transformer.motion_modules():  # zero in a fresh model: make the branch visible
        torch.nn.init.normal_(module.weight, std=0.05)
    return transformer.eval()


def labels(num_faces: int, height: int = H, width: int = W):
    from fantasy_portrait.models.masks import token_label_map

    hw = (height * 8, width * 8)
    step = (hw[1] - 16) // num_faces
    regions = [[16 + i * step, 8, 16 + (i + 1) * step - 1, hw[0] - 8] for i in range(num_faces)]
    return token_label_map(regions, hw)


def motion(num_faces: int, frames: int = T, seed: int = 2, height: int = H, width: int = W):
    from fantasy_portrait.models.motion_attention import MotionCondition

    g = torch.Generator().manual_seed(seed)
    windows = [torch.randn(1, frames, 97, 32, generator=g) for _ in range(num_faces)]
    return MotionCondition(windows, labels(num_faces, height, width) if num_faces > 1 else None)


def call_inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 36, T, H, W, generator=g).expand(2, -1, -1, -1, -1)
    context = torch.randn(1, 512, 32, generator=g).expand(2, -1, -1)
    clip = torch.randn(1, 257, 1280, generator=g).expand(2, -1, -1)
    return dict(
        hidden_states=x,
        timestep=torch.full((2,), 700.0),
        encoder_hidden_states=context,
        encoder_hidden_states_image=clip,
        motion_scale=torch.tensor([1.0, 0.0]),  # the two guidance branches as one batch
    )


class Recorder:
    """Records the token range every motion-attention call of the transformer sees."""

    def __init__(self):
        import fantasy_portrait.models.transformer as tr

        self.module = tr
        self.original = tr.motion_attention
        self.calls = []

        def wrapped(query, *args, tokens=None, **kwargs):
            self.calls.append(
                (query.shape[1], None if tokens is None else (tokens.start, tokens.stop, tokens.total))
            )
            return self.original(query, *args, tokens=tokens, **kwargs)

        tr.motion_attention = wrapped

    def close(self):
        self.module.motion_attention = self.original


def cpu_flash_forward_op(
    ctx,
    query,
    key,
    value,
    attn_mask=None,
    dropout_p=0.0,
    is_causal=False,
    scale=None,
    enable_gqa=False,
    return_lse=False,
    _save_ctx=True,
    _parallel_config=None,
):
    """diffusers' ``_native_flash`` forward op on torch's CPU flash kernel (the CUDA one is CUDA-only),
    so ring attention, which needs the log-sum-exp, can run on these CPUs."""
    out, lse, *_ = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), dropout_p, is_causal, scale=scale
    )
    out, lse = out.transpose(1, 2).contiguous(), lse.transpose(1, 2).contiguous()
    return (out, lse) if return_lse else out


def _runtime(spec_text: str):
    from fantasy_portrait.parallel.context import init_runtime
    from fantasy_portrait.parallel.spec import ParallelSpec

    return init_runtime(ParallelSpec.parse(spec_text), device="cpu")


def _diff(a, b) -> float:
    return float((a.float() - b.float()).abs().max())


# ---------------------------------------------------------------------------------------------- cases


def case_transformer(spec_text: str, faces: int, backend: str | None = None, break_all_to_all: bool = False):
    """One transformer call (two guidance branches as a batch): parallel vs single process."""
    inputs = call_inputs()
    with torch.no_grad():
        reference = build_model()(motion=motion(faces), **inputs)
    model = build_model()
    runtime = _runtime(spec_text)
    if backend == "_native_flash":
        import diffusers.models.attention_dispatch as dispatch

        dispatch._native_flash_attention_forward_op = cpu_flash_forward_op
    runtime.enable(model, attention_backend=backend)
    saved = None
    if break_all_to_all:
        import diffusers.models.attention_dispatch as dispatch

        saved = dispatch._all_to_all_single
        dispatch._all_to_all_single = lambda x, group: x  # every rank keeps its own sequence piece
    recorder = Recorder()
    try:
        with torch.no_grad():
            out = model(motion=motion(faces), **inputs)
    finally:
        recorder.close()
        if saved is not None:
            dispatch._all_to_all_single = saved
    return {
        "diff": _diff(out, reference),
        "scale": float(reference.abs().max()),
        "calls": recorder.calls,
        "sequence": T * (H // 2) * (W // 2),
    }


def case_sampler(spec_text: str, faces: int, window: int | None, frames: int = 5, steps: int = 2):
    """The guided sampler (motion guidance, latent windows) over a clip: parallel vs single process."""
    from fantasy_portrait.pipeline.sampler import Conditions, GuidedDenoiser, sample

    g = torch.Generator().manual_seed(3)
    y = torch.randn(1, 20, frames, H, W, generator=g)
    image = torch.randn(1, 257, 1280, generator=g)
    text = torch.randn(1, 512, 32, generator=g)
    noise = torch.randn(1, 16, frames, H, W, generator=g)

    def run(model):
        denoiser = GuidedDenoiser(
            model,
            Conditions(y, image, text, motion(faces, frames)),
            motion_guidance=4.0,
            window=window,
            overlap=1,
        )
        with torch.no_grad():
            return sample(denoiser, noise, steps), len(denoiser.windows)

    reference, windows = run(build_model())
    model = build_model()
    runtime = _runtime(spec_text)
    runtime.enable(model)
    shapes = []  # (batch, tokens) of the last block's input: what each transformer call of this rank held
    hook = model.blocks[-1].register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape[:2])))
    recorder = Recorder()
    try:
        out, _ = run(runtime.denoiser_model(model))
    finally:
        recorder.close()
        hook.remove()
    return {
        "diff": _diff(out, reference),
        "scale": float(reference.abs().max()),
        "windows": windows,
        "calls": recorder.calls,
        "shapes": shapes,
        "tokens_per_frame": (H // 2) * (W // 2),
    }


def case_pipeline(spec_text: str, weights: str, image: str, driving: list[str], **settings):
    """The whole pipeline (faces, motion, encode, sampling, decode) through the Python API: rank 0's
    frames vs a one-process pipeline's; the other ranks return no frames."""
    import torch.distributed as dist

    from fantasy_portrait.pipeline.pipeline import FantasyPortraitPipeline

    settings = dict(max_size=64, num_steps=2, progress=False, **settings)
    if dist.get_rank() == 0:
        reference = FantasyPortraitPipeline.from_pretrained(weights)(image, driving, **settings)
    pipe = FantasyPortraitPipeline.from_pretrained(weights)
    recorder = Recorder()
    try:
        result = pipe(image, driving, parallel=spec_text, **settings)
    finally:
        recorder.close()
    frames_on = [None] * dist.get_world_size()
    dist.all_gather_object(frames_on, result.frames is not None)
    if result.frames is None:  # not rank 0
        return {"frames_on_rank": frames_on}
    return {
        "diff": int(abs(result.frames.astype(int) - reference.frames.astype(int)).max()),
        "frames": result.frames.shape,
        "windows": result.windows,
        "faces": len(result.faces),
        "calls": recorder.calls,
        "frames_on_rank": frames_on,
    }


def case_cli(spec_text: str, weights: str, image: str, driving: list[str], output: str, extra: list[str]):
    """``animate --parallel`` through the command line: rank 0 alone writes the output."""
    import torch.distributed as dist

    import fantasy_portrait.io as fio
    from fantasy_portrait.cli import main

    calls = []
    original = fio.write_video

    def recording(path, *args, **kwargs):
        calls.append(str(path))
        return original(path, *args, **kwargs)

    fio.write_video = recording
    try:
        code = main(
            ["animate", image, *driving, "--weights", weights, "-o", output, "--parallel", spec_text, *extra]
        )
    finally:
        fio.write_video = original
    codes = [None] * dist.get_world_size()
    writes = [None] * dist.get_world_size()
    dist.all_gather_object(codes, code)
    dist.all_gather_object(writes, calls)
    return {"codes": codes, "writes": writes}


def run_cases(rank: int, world: int, init_file: str, out_file: str, cases: list[tuple[str, dict]]) -> None:
    """Spawn entry: join the gloo group, run ``cases`` [(name, kwargs)], save rank 0's results."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    torch.accelerator.device_count = lambda: 1  # test only: see the module docstring
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=timedelta(minutes=5)
    )
    results = {}
    try:
        for name, kwargs in cases:
            kind = kwargs.pop("case")
            try:
                cases = {"transformer": case_transformer, "sampler": case_sampler, "pipeline": case_pipeline}
                cases["cli"] = case_cli
                results[name] = cases[kind](**kwargs)
            except Exception:
                results[name] = {"error": traceback.format_exc()}
            dist.barrier()
        if rank == 0:
            torch.save(results, out_file)
    finally:
        dist.destroy_process_group()
