"""What the speed and memory settings do to one run (docs/acceleration.md); the pipeline calls three things:

- :func:`plan_run`: sampling (steps, sigmas, motion guidance from ``--preset`` / ``--steps`` /
  ``--sigmas``) and where things live: with ``--vram`` the planner (``planner.plan_memory``) picks
  precision + placement + branch batching + VAE tiling for that budget, else the free-memory rule of
  ``memory.pick_mode``;
- :func:`prepare_model`: LoRAs (fused), fp8 storage, regional compilation, applied to the DiT once
  and remembered (a second call with the same settings does nothing; changes that cannot be undone,
  fusing and fp8, are refused with a clear error);
- :func:`denoising`: a context around the sampling loop: attention backend, feature cache (enabled
  for this run, removed after), MagCache ratio calibration when the ratio file does not exist yet.
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import InputError
from .memory import GIB

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = {"teacache": 0.2, "fbc": 0.05, "magcache": 0.12, "taylorseer": 3.0}
SHIFT = 5.0  # SPEC §8


@dataclass
class RunPlan:
    """How one run samples and where its models live."""

    mode: str
    vae_tiling: bool
    reason: str
    batch_branches: bool
    precision: str  # 'bf16' (as loaded), 'fp8' or 'gguf'
    num_steps: int
    sigmas: torch.Tensor
    motion_guidance: float
    memory_plan: dict | None = None
    cache: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            "steps": self.num_steps,
            "sigmas": [round(float(s), 6) for s in self.sigmas],
            "motion_guidance": self.motion_guidance,
            "batch_branches": self.batch_branches,
            "precision": self.precision,
            "memory_plan": self.memory_plan,
            "cache": self.cache,
        }


def sampling(s) -> tuple[int, torch.Tensor, float]:
    """(steps, sigmas, motion guidance) of the settings (the preset is already in the fields)."""
    from .schedule import sampling_sigmas

    sigmas = sampling_sigmas(s.num_steps, SHIFT, s.sigmas)
    return len(sigmas), sigmas, float(s.motion_guidance)


def _is_gguf(transformer) -> bool:
    return getattr(transformer, "hf_quantizer", None) is not None


def plan_run(pipe, s, estimate, pick_mode, *, width, height, num_frames, faces, text) -> RunPlan:
    """Sampling and placement of one run. ``estimate`` / ``pick_mode``: the pipeline's memory estimate
    and mode rule, used when no ``--vram`` budget is given."""
    num_steps, sigmas, guidance = sampling(s)
    if s.preset == "fast" and not s.loras:
        logger.warning(
            "--preset fast without --lora: 4 steps suit a step-distilled model (e.g. the LightX2V LoRA); "
            "the released model needs about 30"
        )
    current = "gguf" if _is_gguf(pipe.transformer) else ("fp8" if _fp8(pipe) else "bf16")
    precision = current if s.precision == "auto" else s.precision
    if s.vram is None:
        mode, tiling, reason = pick_mode(s.memory_mode or pipe.memory_mode, pipe.device, estimate)
        return RunPlan(mode, tiling, reason, s.batch_branches, precision, num_steps, sigmas, guidance)
    from .planner import ModelSize, RunShape, available_ram, plan_memory

    branches = 1 + (guidance != 1.0) + (s.text_guidance != 1.0)
    size = ModelSize.from_transformer(
        pipe.transformer,
        sum(p.numel() for p in pipe.expression_encoder.parameters()),
        gguf_bytes=_gguf_bytes(pipe.transformer) if current == "gguf" else None,
    )
    shape = RunShape(width, height, num_frames, s.window_frames, branches=branches, text=text, faces=faces)
    allowed = "auto" if s.precision == "auto" and current == "bf16" else precision
    plan = plan_memory(
        size,
        shape,
        int(s.vram * GIB),
        device_type=pipe.device.type,
        precision=allowed if allowed != "gguf" else "auto",
        ram_bytes=available_ram(),
    )
    if current == "fp8" and plan.precision == "bf16":
        plan.precision = "fp8"  # already stored in fp8: keep it (the estimate for bf16 is the larger one)
    reason = f"--vram {s.vram:g}: {plan.describe()}"
    logger.warning("memory plan: %s", reason)
    return RunPlan(
        plan.placement,
        plan.vae_tiling,
        reason,
        s.batch_branches and plan.batch_branches,
        plan.precision,
        num_steps,
        sigmas,
        guidance,
        memory_plan=plan.to_dict(),
    )


def _gguf_bytes(transformer) -> int:
    return sum(p.numel() * p.element_size() for p in transformer.parameters())


def _fp8(pipe) -> bool:
    return bool(getattr(pipe.transformer, "_fp_fp8_storage", False))


def prepare_model(pipe, s, run: RunPlan) -> None:
    """LoRAs, fp8 storage and compilation on the DiT, once per pipeline (see the module docstring)."""
    from ..models.lora import LoraSpec, apply_loras

    tr = pipe.transformer
    state = pipe.__dict__.setdefault("_acceleration", {"loras": (), "loaded": None, "compiled": False})
    wanted = tuple(LoraSpec.parse(x) for x in s.loras)
    if wanted != state["loras"]:
        loaded = state["loaded"]
        if loaded is not None:
            if loaded.fused:
                raise InputError(
                    "this pipeline has LoRAs fused into its weights "
                    f"({', '.join(str(x.path) for x in state['loras'])}): load a new pipeline to change them"
                )
            loaded.remove()
        if wanted and (_fp8(pipe) or state["compiled"]):
            raise InputError("LoRAs must be applied before fp8 storage or compilation: load a new pipeline")
        state["loaded"] = apply_loras(tr, list(wanted), fuse=not _is_gguf(tr)) if wanted else None
        state["loras"] = wanted
        if state["loaded"] is not None:
            logger.warning("LoRA: %s", state["loaded"].describe())
    if run.precision == "fp8" and not _fp8(pipe):
        from ..models.quantization import enable_fp8_storage

        compute = (
            pipe.dtype if pipe.dtype in (torch.bfloat16, torch.float16, torch.float32) else torch.bfloat16
        )
        enable_fp8_storage(tr, compute_dtype=compute)
    elif run.precision == "bf16" and _fp8(pipe):
        raise InputError("this pipeline stores its DiT in fp8 already: load a new pipeline for bf16 weights")
    if s.compile and not state["compiled"]:
        from ..models.speed import compile_blocks

        compile_blocks(tr)
        state["compiled"] = True


@contextmanager
def denoising(pipe, s, run: RunPlan, *, height: int, width: int):
    """Attention backend and feature cache for the sampling loop; the cache is removed afterwards."""
    from ..models.speed import attention
    from . import caching

    tr = pipe.transformer
    with ExitStack() as stack:
        stack.enter_context(attention(s.attention))
        kind = s.cache or "none"
        if kind != "none":
            threshold = DEFAULT_THRESHOLDS[kind] if s.cache_threshold is None else float(s.cache_threshold)
            ratios = None
            if kind == "magcache":
                ratios_file = Path(s.cache_ratios) if s.cache_ratios else None
                if ratios_file is None:
                    raise InputError(
                        "--cache magcache needs --cache-ratios FILE (a missing FILE is calibrated)"
                    )
                if not ratios_file.is_file():  # calibration run: record, skip nothing, write the file
                    with caching.record_mag_ratios(tr) as recorded:
                        run.cache = {"kind": "magcache", "calibrating": str(ratios_file)}
                        yield run
                    _write_ratios(ratios_file, recorded, run)  # only after a complete run
                    return
                ratios = caching.load_mag_ratios(ratios_file)
            handle = caching.enable_cache(
                tr,
                kind,
                threshold,
                num_steps=run.num_steps,
                resolution=caching.resolution_tier(height, width),
                mag_ratios=ratios,
            )
            caching.reset_cache(tr)
            stack.callback(caching.disable_cache, tr)
            stack.callback(_record_stats, run, handle)
        yield run


def _record_stats(run: RunPlan, handle) -> None:
    run.cache = {
        "kind": handle.kind,
        "threshold": handle.threshold,
        "description": handle.description,
        **handle.stats(),
    }


def _write_ratios(path: Path, recorded: dict, run: RunPlan) -> None:
    from . import caching

    ratios = caching.mean_mag_ratios(recorded)
    if str(path.parent):
        os.makedirs(path.parent, exist_ok=True)
    caching.save_mag_ratios(path, ratios, run.num_steps)
    run.cache["ratios"] = len(ratios)
    logger.warning("MagCache: calibrated %d ratios, written to %s", len(ratios), path)


def dry_run_report(s, transformer, *, width, height, frames, device, faces: int = 1, dit=None) -> dict:
    """What ``--dry-run`` shows of the speed settings, without loading weights: sampling (steps,
    sigmas, calls and DiT passes per clip against the reference's 60), and with ``--vram`` the
    planner's choice and every candidate's estimated peak. ``transformer``: the model on the meta
    device; ``dit``: a single-file DiT (its size replaces the bf16 arithmetic for GGUF)."""
    from .planner import ModelSize, RunShape, available_ram, candidates, plan_memory

    num_steps, sigmas, guidance = sampling(s)
    branches = 1 + (guidance != 1.0) + (s.text_guidance != 1.0)
    lines = [
        f"sampling: {num_steps} steps (sigmas {', '.join(f'{float(v):.4g}' for v in sigmas)} -> 0), motion "
        f"guidance {guidance:g}: {num_steps * (1 if s.batch_branches else branches)} transformer calls, "
        f"{num_steps * branches} DiT passes per clip ({num_steps * branches / 60:.3f} of the reference's 60)"
    ]
    if s.cache and s.cache != "none":
        threshold = DEFAULT_THRESHOLDS[s.cache] if s.cache_threshold is None else s.cache_threshold
        lines.append(f"cache: {s.cache} threshold {threshold:g} (skips are decided while sampling)")
    if s.loras:
        lines.append(f"LoRA: {', '.join(str(x) for x in s.loras)} (fused at load)")
    data = {"steps": num_steps, "sigmas": [float(v) for v in sigmas], "passes": num_steps * branches}
    gguf_bytes = None
    if dit is not None and str(dit).lower().endswith(".gguf"):
        gguf_bytes = Path(dit).stat().st_size
    size = ModelSize.from_transformer(transformer, gguf_bytes=gguf_bytes)
    text = s.text_guidance != 1.0 or bool(s.prompt.strip())
    shape = RunShape(width, height, frames, s.window_frames, branches=branches, text=text, faces=faces)
    device_type = getattr(device, "type", str(device))
    plans = candidates(
        size, shape, device_type=device_type, precision="auto" if s.precision == "auto" else s.precision
    )
    data["candidates"] = [p.to_dict() for p in plans]
    if s.vram is not None:
        plan = plan_memory(
            size,
            shape,
            int(s.vram * GIB),
            device_type=device_type,
            precision="auto" if s.precision == "auto" else s.precision,
            ram_bytes=available_ram(),
        )
        data["plan"] = plan.to_dict()
        lines.append(f"memory plan for --vram {s.vram:g}: {plan.describe()}")
        lines.append("  candidates (estimated peak):")
        for p in plans:
            if not p.vae_tiling:
                lines.append(f"    {p.peak / GIB:6.1f} GiB  {p.label()}")
    data["lines"] = lines
    return data
