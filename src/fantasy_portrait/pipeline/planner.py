"""Memory planner: from a VRAM budget (``--vram 24``) to a precision and a placement that fit.

Candidates, fastest and most exact first (the first whose estimated peak fits the budget wins):

1. ``gpu``: everything resident, bf16 weights;
2. ``model-offload``: each model on the accelerator only for its stage (the DiT while sampling);
3. ``group-offload`` bf16: diffusers' block-level group offloading, one block per group with CUDA
   stream prefetch (the next block copies from pinned CPU memory while the current one computes),
   exact weights; on accelerators without streams this ranks after fp8 (transfers would not overlap);
4. ``model-offload`` + fp8 storage (the blocks' Linears in float8 e4m3, compute bf16);
5. ``group-offload`` + fp8 storage (half the bytes to move and to pin);
6. and 7.: the same two offloads with the guidance branches one after the other instead of one
   batch (half the activations, a few percent slower).
Each with the VAE untiled, else tiled. A GGUF DiT has its own (file) size and no fp8 step.

Peak = the largest stage: sampling (DiT weights resident + activations of one call + cached motion
keys/values) or encoding/decoding (CLIP + VAE + expression encoder + VAE activations) or the text
encoder, plus a fixed reserve for the CUDA context and allocator slack. Activations come from
``memory.estimate_memory`` (one place for that formula). These are estimates: the GPU benchmark
(benchmarks/bench_gpu.py) measures the real peaks when a device is lent.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .memory import GIB, estimate_memory

RESERVE = 1 * GIB  # CUDA context, cuBLAS workspace, allocator fragmentation
BF16, FP8 = 2, 1
MOTION_CACHE_LIMIT = (
    2 * GIB
)  # the pipeline recomputes motion keys/values above this (pipeline.MOTION_CACHE_BYTES)


@dataclass(frozen=True)
class ModelSize:
    """Parameter counts of the DiT parts the planner needs (from a real or meta-device model)."""

    dit_params: int
    fp8_params: int  # what fp8 storage holds in fp8 (the blocks' Linears, not the motion projections)
    block_params: int  # one block, motion projections included
    num_blocks: int
    dim: int
    ffn_dim: int
    num_heads: int
    largest_layer_params: int
    encoder_params: int = 164_463_616  # released expression encoder
    gguf_bytes: int | None = None  # a GGUF DiT: its packed size replaces the bf16/fp8 arithmetic
    motion_dim: int = 2048  # motion-token width (released)

    @classmethod
    def from_transformer(cls, transformer, encoder_params: int | None = None, gguf_bytes: int | None = None):
        from ..models.quantization import fp8_parameter_count

        cfg = transformer.config
        block = transformer.blocks[0]
        largest = max(
            m.weight.numel() for m in block.modules() if hasattr(m, "weight") and m.weight is not None
        )
        kwargs = {} if encoder_params is None else {"encoder_params": encoder_params}
        return cls(
            dit_params=sum(p.numel() for p in transformer.parameters()),
            fp8_params=fp8_parameter_count(transformer),
            block_params=sum(p.numel() for p in block.parameters()),
            num_blocks=cfg.num_layers,
            dim=cfg.num_attention_heads * cfg.attention_head_dim,
            ffn_dim=cfg.ffn_dim,
            num_heads=cfg.num_attention_heads,
            largest_layer_params=largest,
            gguf_bytes=gguf_bytes,
            motion_dim=cfg.motion_dim or 2048,
            **kwargs,
        )

    @classmethod
    def from_preset(cls, name: str) -> ModelSize:
        from ..models.loading import build_from_preset

        transformer, encoder = build_from_preset(name)  # meta device: no memory
        return cls.from_transformer(transformer, sum(p.numel() for p in encoder.parameters()))

    @property
    def nonblock_params(self) -> int:
        return self.dit_params - self.num_blocks * self.block_params


@dataclass(frozen=True)
class RunShape:
    """What one run processes: output size, frames per transformer call, branches per step."""

    width: int
    height: int
    num_frames: int
    window_frames: int | None = 81
    branches: int = 2  # guidance branches per step (1 + motion guidance + text guidance)
    text: bool = False  # umT5 needed (a prompt or text guidance)
    faces: int = 1

    @property
    def latent_frames(self) -> int:
        from ..models.config import WAN_GEOMETRY

        latent = WAN_GEOMETRY.latent_frames(self.num_frames)
        if self.window_frames:
            latent = min(latent, WAN_GEOMETRY.latent_frames(self.window_frames))
        return latent


@dataclass
class Plan:
    """A precision + placement and its estimate (bytes)."""

    precision: str  # 'bf16' | 'fp8' | 'gguf'
    placement: str  # 'gpu' | 'model-offload' | 'group-offload'
    batch_branches: bool
    vae_tiling: bool
    use_stream: bool = False
    peak: int = 0
    stages: dict[str, int] = field(default_factory=dict)
    cpu_bytes: int = 0  # host memory holding offloaded weights (pinned for streams)
    budget: int | None = None
    note: str = ""

    @property
    def fits(self) -> bool:
        return self.budget is None or self.peak <= self.budget

    def label(self) -> str:
        parts = {"bf16": "bf16 weights", "fp8": "fp8 storage (compute bf16)", "gguf": "GGUF weights"}[
            self.precision
        ]
        place = {
            "gpu": "all on the GPU",
            "model-offload": "model offload",
            "group-offload": "group offload (1 block/group"
            + (", CUDA stream prefetch, pinned memory)" if self.use_stream else ")"),
        }[self.placement]
        extra = ("" if self.batch_branches else " + branches one by one") + (
            " + VAE tiling" if self.vae_tiling else ""
        )
        return f"{parts}, {place}{extra}"

    def describe(self) -> str:
        budget = f" of {self.budget / GIB:.1f} GiB" if self.budget else ""
        verdict = "" if self.fits else " (does NOT fit)"
        note = f"; {self.note}" if self.note else ""
        return f"{self.label()}: about {self.peak / GIB:.1f} GiB{budget}{verdict}{note}"

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "placement": self.placement,
            "batch_branches": self.batch_branches,
            "vae_tiling": self.vae_tiling,
            "use_stream": self.use_stream,
            "peak_gib": round(self.peak / GIB, 2),
            "stages_gib": {k: round(v / GIB, 2) for k, v in self.stages.items()},
            "cpu_gib": round(self.cpu_bytes / GIB, 2),
            "budget_gib": None if self.budget is None else round(self.budget / GIB, 2),
            "fits": self.fits,
            "label": self.label(),
            "note": self.note,
        }


def _dit_bytes(size: ModelSize, precision: str) -> int:
    if precision == "gguf":
        return size.gguf_bytes or size.dit_params * BF16
    if precision == "fp8":  # fp8 layers + the rest in bf16 + one layer's transient bf16 copy
        return (
            size.fp8_params * FP8
            + (size.dit_params - size.fp8_params) * BF16
            + size.largest_layer_params * BF16
        )
    return size.dit_params * BF16


def _block_bytes(size: ModelSize, precision: str) -> int:
    share = _dit_bytes(size, precision) - size.nonblock_params * BF16
    return max(0, share) // max(1, size.num_blocks)


def motion_cache_bytes(size: ModelSize, shape: RunShape, window_size: int = 97) -> int:
    """Cached motion keys/values of the whole clip (0 when above the pipeline's limit: recomputed)."""
    from ..models.config import WAN_GEOMETRY

    latent = WAN_GEOMETRY.latent_frames(shape.num_frames)
    total = 2 * size.num_blocks * latent * shape.faces * window_size * size.dim * BF16
    return total if total <= MOTION_CACHE_LIMIT else 0


def estimate_plan(size: ModelSize, shape: RunShape, plan: Plan) -> Plan:
    """Fill ``plan`` with its stage peaks."""
    branches = shape.branches if plan.batch_branches else 1
    est = estimate_memory(
        size.dit_params,
        size.dim,
        size.ffn_dim,
        size.num_heads,
        height=shape.height,
        width=shape.width,
        latent_frames=shape.latent_frames,
        branches=branches,
        dtype_bytes=BF16,
        text=shape.text,
        encoder_params=size.encoder_params,
        num_blocks=size.num_blocks,
    )
    dit = _dit_bytes(size, plan.precision)
    vae_act = est.vae_activations_tiled if plan.vae_tiling else est.vae_activations
    others = est.other_params
    kv = motion_cache_bytes(size, shape)
    if plan.placement == "group-offload":  # non-block part + the current block + the prefetched next one
        resident = size.nonblock_params * BF16 + (2 if plan.use_stream else 1) * _block_bytes(
            size, plan.precision
        )
    else:
        resident = dit
    stages = {"sampling": resident + est.dit_activations + kv}
    if plan.placement == "gpu":
        stages["sampling"] += others + est.text_params
        stages["decoding"] = dit + others + est.text_params + vae_act
    else:
        stages["decoding"] = others + vae_act
        if est.text_params:
            stages["text"] = est.text_params
    plan.stages = {k: v + RESERVE for k, v in stages.items()}
    plan.peak = max(plan.stages.values())
    plan.cpu_bytes = 0 if plan.placement == "gpu" else dit + others + est.text_params
    return plan


def candidates(
    size: ModelSize, shape: RunShape, *, device_type: str = "cuda", precision: str = "auto"
) -> list[Plan]:
    """Every plan in the order of preference (see the module docstring)."""
    stream = device_type == "cuda"
    precisions = ["gguf"] if size.gguf_bytes else (["bf16", "fp8"] if precision == "auto" else [precision])
    order: list[tuple[str, str, bool]] = []  # (precision, placement, batched)
    low = precisions[-1]
    first = precisions[0]
    order += [(first, "gpu", True), (first, "model-offload", True)]
    if low != first:
        fp8_first = [(low, "model-offload", True)]
        group = [(first, "group-offload", True)]
        order += group + fp8_first if stream else fp8_first + group
    else:
        order += [(first, "group-offload", True)]
    order += [(p, "group-offload", True) for p in precisions[1:]]
    order += [(p, "group-offload", False) for p in precisions]
    seen, plans = set(), []
    for p, place, batched in order:
        if shape.branches == 1 and not batched:
            continue  # one branch: nothing to split
        for tiling in (False, True):
            key = (p, place, batched, tiling)
            if key in seen:
                continue
            seen.add(key)
            plan = Plan(p, place, batched, tiling, use_stream=stream and place == "group-offload")
            plans.append(estimate_plan(size, shape, plan))
    return plans


def plan_memory(
    size: ModelSize,
    shape: RunShape,
    budget_bytes: int | None,
    *,
    device_type: str = "cuda",
    precision: str = "auto",
    ram_bytes: int | None = None,
) -> Plan:
    """The first candidate whose peak fits ``budget_bytes`` (and whose offloaded weights fit
    ``ram_bytes`` when given); if none fits, the one with the smallest peak, marked as not fitting.
    ``budget_bytes`` None: the first candidate (everything on the GPU)."""
    plans = candidates(size, shape, device_type=device_type, precision=precision)
    for plan in plans:
        plan.budget = budget_bytes
    if budget_bytes is None:
        return plans[0]
    for plan in plans:
        if plan.peak <= budget_bytes and (ram_bytes is None or plan.cpu_bytes <= ram_bytes):
            return plan
    fitting = [p for p in plans if p.peak <= budget_bytes]
    if fitting:  # the accelerator budget can be met, host memory is short: the least host memory
        plan = min(fitting, key=lambda p: p.cpu_bytes)
        plan.note = (
            f"host memory short: the offloaded weights need about {plan.cpu_bytes / GIB:.1f} GiB, "
            f"{ram_bytes / GIB:.1f} GiB available"
        )
        return plan
    return replace(min(plans, key=lambda p: p.peak))


def available_ram() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def preset_table(model: str = "wan2.1-i2v-14b-720p", budgets=(24, 12)) -> list[dict]:
    """Estimates per sampling preset for ``model`` at 480p and 720p, 81 frames, one face: the peak of
    every placement and the plan picked for each budget (GiB). Used by --dry-run docs and benchmarks."""
    from .schedule import SAMPLING_PRESETS

    size = ModelSize.from_preset(model)
    rows = []
    for res, (w, h) in (("480p", (832, 480)), ("720p", (1280, 720))):
        for name, preset in SAMPLING_PRESETS.items():
            shape = RunShape(w, h, 81, 81, branches=preset.calls_per_step())
            plans = candidates(size, shape)
            row = {
                "resolution": res,
                "preset": name,
                "branches": shape.branches,
                "all_plans": {p.label(): round(p.peak / GIB, 1) for p in plans},
            }
            for budget in budgets:
                chosen = plan_memory(size, shape, int(budget * GIB))
                row[f"{budget}GB"] = chosen.describe()
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- compute


def pass_flops(size: ModelSize, shape: RunShape, *, motion_kv: bool = False, parts: bool = False):
    """Multiply-add FLOPs (2 per MAC) of one DiT pass of one sample over one window, in the blocks:
    linear layers (self-attention q/k/v/o, cross-attention q/o and text/image keys/values, FFN) and
    attention (QK^T and PV over all tokens; cross-attention over 512 text + 257 image tokens; motion
    attention of each token against its latent frame's 97 tokens per face). The embedders and head
    outside the blocks are left out (under 0.01% at 14B). ``motion_kv``: add the motion key/value
    projections (the pipeline computes them once per clip and caches them; the reference recomputed
    them every pass). ``parts``: {"linear": ..., "attention": ...} instead of the sum."""
    from ..models.config import WAN_GEOMETRY

    rows, cols = WAN_GEOMETRY.token_grid(shape.height, shape.width)
    t = shape.latent_frames * rows * cols
    d, f = size.dim, size.ffn_dim
    motion_tokens = 97 * shape.faces
    linear = 8 * t * d * d + 4 * t * d * d + 4 * (512 + 257) * d * d + 4 * t * d * f
    if motion_kv:
        linear += 4 * shape.latent_frames * motion_tokens * size.motion_dim * d
    attention = 4 * t * t * d + 4 * t * (512 + 257) * d + 4 * t * motion_tokens * d
    linear, attention = float(size.num_blocks * linear), float(size.num_blocks * attention)
    return {"linear": linear, "attention": attention} if parts else linear + attention


def clip_flops_table(model: str = "wan2.1-i2v-14b-720p", frames: int = 81) -> list[dict]:
    """DiT passes and FLOPs per clip for each sampling preset against the reference (30 steps x 2
    unbatched passes with motion keys/values recomputed in every pass)."""
    from .schedule import SAMPLING_PRESETS

    size = ModelSize.from_preset(model)
    rows = []
    for res, (w, h) in (("480p", (832, 480)), ("720p", (1280, 720))):
        shape = RunShape(w, h, frames, 81)
        ref = 60 * pass_flops(size, shape, motion_kv=True)
        kv_once = pass_flops(size, shape, motion_kv=True) - pass_flops(size, shape)
        variants = [(name, p.num_steps, p.calls_per_step()) for name, p in SAMPLING_PRESETS.items()]
        variants.append(("fast + motion guidance", 4, 2))
        for name, steps, per_step in variants:
            passes = steps * per_step
            flops = passes * pass_flops(size, shape) + kv_once
            rows.append(
                {
                    "resolution": res,
                    "preset": name,
                    "passes": passes,
                    "pflops": flops / 1e15,
                    "passes_ratio": passes / 60,
                    "flops_ratio": flops / ref,
                }
            )
    return rows
