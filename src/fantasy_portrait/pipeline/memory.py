"""Memory modes: where the models live during a run, chosen from free memory, and an up-front estimate.

Modes (accelerator only; on a CPU-only machine the mode is simply ``cpu``):
- ``gpu``: every model on the accelerator (fastest; 14B bf16 needs about 40 GB).
- ``model-offload``: models wait in CPU memory and move to the accelerator one at a time
  (CLIP, VAE, text while encoding; the DiT while sampling): peak = the DiT plus activations.
- ``group-offload`` (alias ``sequential``): diffusers' block-level group offloading. The DiT's
  blocks wait in CPU memory and visit the accelerator one at a time; on CUDA with a side stream and
  pinned memory, so the next block is copied while the current one computes (prefetch). The 14B model
  runs in well under 24 GB; transfers of 33 GB per call overlap with the compute of a call.
VAE tiling (``vae_tiling``) cuts the VAE's activation peak for large frames; it is switched on
automatically when the estimate says the untiled VAE does not fit.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

from ..models.config import WAN_GEOMETRY, LatentGeometry

logger = logging.getLogger(__name__)

MODES = ("auto", "gpu", "model-offload", "group-offload", "sequential", "cpu")
OFFLOAD_MODES = ("group-offload", "sequential")  # the same: diffusers' block-level group offloading
GIB = 1024**3

# Fixed component sizes of the released files (parameters), for estimates without loading anything.
CLIP_VISUAL_PARAMS = 611_088_640  # ViT-H/14 visual tower, the 31 blocks used of 32
VAE_PARAMS = 127_000_000  # Wan2.1 VAE
UMT5_PARAMS = 5_680_000_000  # umT5-XXL encoder
PDFGC_PARAMS = 9_054_995


@dataclass
class MemoryEstimate:
    """Bytes per item for one run. Activation figures are for one transformer call of one window."""

    dit_params: int
    other_params: int  # CLIP + VAE + expression encoder (+ umT5 when a prompt is used)
    text_params: int
    dit_activations: int
    vae_activations: int
    vae_activations_tiled: int
    dtype_bytes: int
    num_blocks: int = 40

    def peak(self, mode: str, vae_tiling: bool = False) -> int:
        """Accelerator bytes at the peak of a run in ``mode``."""
        vae_act = self.vae_activations_tiled if vae_tiling else self.vae_activations
        if mode in ("gpu", "cpu"):
            return self.dit_params + self.other_params + self.text_params + max(self.dit_activations, vae_act)
        if mode == "model-offload":
            return max(self.dit_params + self.dit_activations, self.other_params + vae_act, self.text_params)
        if mode in OFFLOAD_MODES:
            block = self.dit_params // max(1, self.num_blocks)
            return max(2 * block + self.dit_activations, self.other_params + vae_act, self.text_params // 8)
        raise ValueError(f"unknown memory mode {mode!r}")

    def table(self) -> dict:
        out = {k: v for k, v in asdict(self).items()}
        out["peak_by_mode_gib"] = {
            m: round(self.peak(m) / GIB, 2) for m in ("gpu", "model-offload", "sequential")
        }
        out["peak_by_mode_vae_tiling_gib"] = {
            m: round(self.peak(m, True) / GIB, 2) for m in ("gpu", "model-offload", "sequential")
        }
        return out


def estimate_memory(
    dit_params: int,
    dit_dim: int,
    dit_ffn: int,
    num_heads: int,
    *,
    height: int,
    width: int,
    latent_frames: int,
    branches: int,
    dtype_bytes: int = 2,
    text: bool = False,
    encoder_params: int = 0,
    vae_base_dim: int = 96,
    num_blocks: int = 40,
    clip_params: int = CLIP_VISUAL_PARAMS,
    vae_params: int = VAE_PARAMS,
    umt5_params: int = UMT5_PARAMS,
) -> MemoryEstimate:
    """Estimate memory for a run at ``height`` x ``width`` with ``latent_frames`` per transformer call.

    DiT activations (one block alive at a time in inference): the residual stream, the q/k/v and
    attention output (4 x dim), the FFN hidden (ffn) per token, times the guidance branches that run
    as one batch; attention itself is memory-efficient (no L x L matrix).
    VAE peak: about six full-resolution feature maps of width ``vae_base_dim`` for one 4-frame chunk
    (the causal decoder works a latent frame at a time and we stream its output); tiles are 256 px.
    """
    rows, cols = WAN_GEOMETRY.token_grid(height, width)
    tokens = latent_frames * rows * cols
    dit_act = branches * tokens * (6 * dit_dim + dit_ffn) * dtype_bytes
    vae_act = 6 * 4 * vae_base_dim * height * width * dtype_bytes
    vae_tiled = 6 * 4 * vae_base_dim * min(height, 320) * min(width, 320) * dtype_bytes
    other = (clip_params + vae_params + encoder_params) * dtype_bytes
    return MemoryEstimate(
        dit_params=dit_params * dtype_bytes,
        other_params=other,
        text_params=umt5_params * dtype_bytes if text else 0,
        dit_activations=dit_act,
        vae_activations=vae_act,
        vae_activations_tiled=vae_tiled,
        dtype_bytes=dtype_bytes,
        num_blocks=num_blocks,
    )


def estimate_for_transformer(
    transformer,
    *,
    width: int,
    height: int,
    num_frames: int,
    window_frames: int | None,
    batch_branches: bool = True,
    text: bool = False,
    dtype_bytes: int = 2,
    encoder_params: int = 0,
    vae_base_dim: int = 96,
    **sizes,
) -> MemoryEstimate:
    """:func:`estimate_memory` for a built transformer (real or on the meta device); vae_base_dim: the
    VAE's width (96 released); sizes: clip_params, vae_params, umt5_params when they are known (the
    released sizes otherwise)."""
    cfg = transformer.config
    geo = LatentGeometry.from_transformer(transformer)
    latent = geo.latent_frames(num_frames)
    if window_frames:
        latent = min(latent, geo.latent_frames(window_frames))
    return estimate_memory(
        sum(p.numel() for p in transformer.parameters()),
        cfg.num_attention_heads * cfg.attention_head_dim,
        cfg.ffn_dim,
        cfg.num_attention_heads,
        height=height,
        width=width,
        latent_frames=latent,
        branches=2 if batch_branches else 1,
        dtype_bytes=dtype_bytes,
        text=text,
        encoder_params=encoder_params,
        vae_base_dim=vae_base_dim,
        num_blocks=cfg.num_layers,
        **sizes,
    )


def free_accelerator_memory(device: torch.device) -> int | None:
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return None


def pick_mode(requested: str, device: torch.device, estimate: MemoryEstimate | None) -> tuple[str, bool, str]:
    """(mode, vae_tiling, reason). 'auto' picks the fastest mode whose peak fits 90% of free memory."""
    if device.type == "cpu":
        return "cpu", False, "running on the CPU"
    if requested != "auto":
        return requested, False, f"{requested} as requested"
    free = free_accelerator_memory(device)
    if free is None or estimate is None:
        return "gpu", False, "free memory unknown: everything on the accelerator"
    budget = 0.9 * free
    for mode in ("gpu", "model-offload", "group-offload"):
        for tiling in (False, True):
            if estimate.peak(mode, tiling) <= budget:
                return (
                    mode,
                    tiling,
                    (
                        f"{mode}{' + VAE tiling' if tiling else ''}: needs about "
                        f"{estimate.peak(mode, tiling) / GIB:.1f} GiB of {free / GIB:.1f} GiB free"
                    ),
                )
    return (
        "group-offload",
        True,
        f"group-offload + VAE tiling (even that may not fit in {free / GIB:.1f} GiB free)",
    )


def file_parameters(path: str | os.PathLike | None) -> int | None:
    """Number of values stored in a weight file, from its header (safetensors) or a memory-mapped,
    weights-only read (torch pickles): no tensor data is read. None when it cannot be told."""
    if path is None:
        return None
    from pathlib import Path

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
        from ..io.weights import load_torch_file

        state = load_torch_file(path)
    except Exception:  # the loader reports unreadable files; an estimate just falls back
        return None
    tensors = state.values() if isinstance(state, dict) else []
    return sum(t.numel() for t in tensors if isinstance(t, torch.Tensor)) or None


def machine_memory(device: torch.device) -> tuple[int | None, str]:
    """(total bytes, what they are) of where a run's peak lives: the accelerator's memory, or the
    machine's RAM when running on the CPU. None when unknown."""
    device = torch.device(device)
    if device.type == "cpu":
        try:
            import psutil

            return int(psutil.virtual_memory().total), "RAM"
        except ImportError:
            pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
            return (int(pages * size) if pages > 0 and size > 0 else None), "RAM"
    if device.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(device).total_memory), f"memory of {device}"
    return None, f"memory of {device}"


def check_fits(estimate: MemoryEstimate, device: torch.device, what: str = "the run") -> None:
    """Refuse (ResourceError, with the numbers) a run whose smallest possible peak is above the total
    memory of where it runs: the CPU's RAM, or the accelerator's memory in the most frugal mode
    (group offload + VAE tiling). A run that fits only in a frugal mode is left to :func:`pick_mode`."""
    from ..errors import ResourceError

    total, where = machine_memory(device)
    if total is None:
        return
    device = torch.device(device)
    if device.type == "cpu":
        need, how = estimate.peak("cpu"), ""
    else:
        need, how = estimate.peak("group-offload", True), " even with group offload and VAE tiling"
    if need > total:
        raise ResourceError(
            f"{what} needs about {need / GIB:,.1f} GiB{how}, more than the {total / GIB:,.1f} GiB of {where}: "
            "lower --max-size, --max-frames or --window-frames"
        )


_GROUP_HOOKS = ("group_offloading", "layer_execution_tracker", "lazy_prefetch_group_offloading")


def group_offload(
    transformer: torch.nn.Module, device: torch.device, *, use_stream: bool | None = None
) -> None:
    """diffusers' block-level group offloading of the DiT: one block per group, onloaded to ``device``
    for its forward; with ``use_stream`` (default: on CUDA) the next block is prefetched on a side
    stream from pinned CPU memory while the current one computes. The rest of the model (embedders,
    head) forms one group onloaded when the transformer's forward starts."""
    from diffusers.hooks import apply_group_offloading

    device = torch.device(device)
    stream = device.type == "cuda" if use_stream is None else use_stream
    apply_group_offloading(
        transformer,
        onload_device=device,
        offload_device=torch.device("cpu"),
        offload_type="block_level",
        num_blocks_per_group=1,
        use_stream=stream,
        record_stream=stream,
        non_blocking=stream,
    )


def remove_group_offload(transformer: torch.nn.Module) -> None:
    """Undo :func:`group_offload` (the weights stay where the hooks left them: on the CPU)."""
    from diffusers.hooks import HookRegistry

    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    for name in _GROUP_HOOKS:
        registry.remove_hook(name, recurse=True)


def _device_of(module: torch.nn.Module) -> torch.device | None:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return None


class Placement:
    """Where the models live during one run, as a context that restores what it changed.

    ::

        with Placement(mode, device, transformer, [clip, vae, encoder], vae=vae, vae_tiling=True) as place:
            with place.use(clip):  # on the accelerator inside (model-offload / sequential: moved back after)
                ...

    On exit the block hooks are removed, every module goes back to the device it was on at entry and
    the VAE's tiling is as before, so a long-lived pipeline (an app, a batch worker) starts each run
    fresh whatever the previous run's mode was. ``group-offload`` (alias ``sequential``) streams the
    DiT's blocks with diffusers' group offloading (:func:`group_offload`), removed again on exit.
    """

    def __init__(
        self,
        mode: str,
        device: torch.device,
        transformer: torch.nn.Module | None = None,
        others: list[torch.nn.Module] = (),
        *,
        vae=None,
        vae_tiling: bool = False,
    ):
        self.mode = mode
        self.device = torch.device(device)
        self.transformer = transformer
        self.others = [m for m in others if m is not None]
        self.vae = vae
        self.vae_tiling = vae_tiling
        self._handles: list = []
        self._devices: list[tuple[torch.nn.Module, torch.device]] = []
        self._tiling_before: bool | None = None
        self._grouped = False

    # ------------------------------------------------------------------------------ context
    def __enter__(self) -> Placement:
        modules = ([self.transformer] if self.transformer is not None else []) + self.others
        self._devices = [(m, d) for m in modules if (d := _device_of(m)) is not None]
        if self.vae is not None and self.vae_tiling:
            self._tiling_before = bool(getattr(self.vae, "use_tiling", False))
            self.vae.enable_tiling()
        if self.transformer is not None:
            self.setup(self.transformer, self.others)
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._grouped:
            remove_group_offload(self.transformer)
            self._grouped = False
        for module, device in self._devices:
            module.to(device)
        self._devices = []
        if self._tiling_before is False and hasattr(self.vae, "disable_tiling"):
            self.vae.disable_tiling()
        self._tiling_before = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------------------ placing
    def setup(self, transformer: torch.nn.Module, others: list[torch.nn.Module]) -> None:
        if self.mode in ("gpu", "cpu"):
            transformer.to(self.device)
            for m in others:
                m.to(self.device)
        elif self.mode in OFFLOAD_MODES:
            self._group_offload(transformer)

    def _group_offload(self, transformer: torch.nn.Module) -> None:
        """diffusers' block-level group offloading (streams and pinned memory on CUDA)."""
        transformer.to("cpu")
        group_offload(transformer, self.device)
        self._grouped = True

    @contextmanager
    def use(self, module: torch.nn.Module):
        """Have ``module`` on the accelerator inside the block (model offload moves it back after)."""
        if self.mode == "model-offload":
            module.to(self.device)
            try:
                yield module
            finally:
                module.to("cpu")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
        elif self.mode in OFFLOAD_MODES and not hasattr(module, "blocks"):
            module.to(self.device)
            try:
                yield module
            finally:
                module.to("cpu")
        else:
            yield module
