"""Feature caching for the DiT: skip (or extrapolate) transformer work between denoising steps.

Kinds (``enable_cache(transformer, kind, threshold, ...)``):
- ``teacache``: ours (diffusers has none), hooks on the blocks through diffusers' ``HookRegistry``.
  The rule of TeaCache4Wan2.1: from the timestep embedding of each call (``e0``: the block
  modulation input ``timestep_proj``; ``e``: the time embedding) accumulate
  ``poly(mean|m - m_prev| / mean|m_prev|)`` with the published Wan2.1 I2V coefficients; while the
  sum stays below the threshold the whole block stack is skipped and the cached residual of the
  last computed call is added; otherwise compute and reset. Retention: the first step (``e``) or
  first five (``e0``) and, for ``e``, the last step are always computed.
- ``fbc``: diffusers' FirstBlockCache (block 0 always runs; the rest is skipped while block 0's
  residual changes by less than the threshold, relative).
- ``magcache``: diffusers' MagCache with magnitude ratios calibrated on this model
  (:func:`calibrate_mag_ratios`, same formula as diffusers' ``calibrate=True``); threshold = the
  accumulated error allowed, at most ``MAG_MAX_SKIP`` skips in a row, first 20% of steps computed.
- ``taylorseer``: diffusers' TaylorSeer on every block's self-attention, cross-attention (with the
  motion attention inside) and FFN; the "threshold" is its cache interval (full computation every
  N steps after 3 warm-up steps, first-order Taylor prediction in between).

Threshold 0 (interval <= 1 for TaylorSeer) never skips: the output equals the uncached one exactly.

Separate state: every call runs inside ``transformer.cache_context(name)``; the sampler names the
context by temporal window and guidance branch (:func:`context_name`), so windows and branches never
share a residual. When the branches run as ONE batched call (the default), that call is one context
whose cached residual holds every branch's sample, which is exactly what separate branch contexts
would hold for TeaCache and MagCache (their skip decisions depend only on the step, identical for
all branches), and one joint decision over the batch for FirstBlockCache.

Counting: ``CacheHandle.stats()`` gives the block stacks computed and skipped (and for TaylorSeer
the module calls computed and predicted), counted by hooks innermost on the blocks, so only real
executions count.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import BaseState, StateManager

from ..errors import InputError

logger = logging.getLogger(__name__)

CACHE_KINDS = ("none", "teacache", "fbc", "magcache", "taylorseer")
MAG_MAX_SKIP = 4
MAG_RETENTION = 0.2
TAYLOR_WARMUP = 3

# TeaCache4Wan2.1 coefficients (teacache_generate.py; same in LightX2V and the ComfyUI wrapper),
# highest power first. 'e': time embedding; 'e0': block modulation input (use_ret_steps).
TEACACHE_COEFFICIENTS = {
    ("e", "480p"): (-3.02331670e02, 2.23948934e02, -5.25463970e01, 5.87348440e00, -2.01973289e-01),
    ("e0", "480p"): (2.57151496e05, -3.54229917e04, 1.40286849e03, -1.35890334e01, 1.32517977e-01),
    ("e", "720p"): (-114.36346466, 65.26524496, -18.82220707, 4.91518089, -0.23412683),
    ("e0", "720p"): (8.10705460e03, 2.13393892e03, -3.72934672e02, 1.66203073e01, -4.17769401e-02),
}
_RAW = (1.0, 0.0)  # no rescaling: the relative L1 distance itself

_TEA_HEAD, _TEA_BLOCK, _TEA_TIME = "fp_teacache_head", "fp_teacache_block", "fp_teacache_time"
_COUNTER, _MAG_RECORDER = "fp_cache_counter", "fp_mag_recorder"


def context_name(window: int, branch: str) -> str:
    """Cache state name of one transformer call: its temporal window and guidance branch(es)."""
    return f"window{window}/{branch}"


def resolution_tier(height: int, width: int) -> str:
    """'720p' for outputs of more than 480p's 399,360 pixels, else '480p' (picks published coefficients)."""
    return "720p" if height * width > 480 * 832 else "480p"


# --------------------------------------------------------------------------- argument helpers


class _Args:
    """Reads a block forward's arguments by name (the block signature, resolved once)."""

    def __init__(self, block: torch.nn.Module):
        self.params = list(inspect.signature(type(block).forward).parameters)[1:]  # without self

    def get(self, name: str, args, kwargs):
        if name in kwargs:
            return kwargs[name]
        index = self.params.index(name)
        return args[index] if index < len(args) else None


def _blocks(transformer) -> list[torch.nn.Module]:
    return list(transformer.blocks)


# --------------------------------------------------------------------------- counting


class _CallCounter(ModelHook):
    """Counts real executions of a module (registered innermost: cache hooks wrap it)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def pre_forward(self, module, *args, **kwargs):
        self.count += 1
        return args, kwargs


# --------------------------------------------------------------------------- TeaCache


@dataclass(frozen=True)
class TeaCacheConfig:
    threshold: float
    num_inference_steps: int
    mode: str = "e0"  # 'e0' (modulation input, use_ret_steps) or 'e' (time embedding)
    coefficients: tuple[float, ...] = TEACACHE_COEFFICIENTS[("e0", "480p")]
    retention_steps: int | None = None  # None: 5 for 'e0', 1 for 'e' (TeaCache4Wan2.1)
    compute_last_step: bool | None = None  # None: True for 'e', False for 'e0'

    @property
    def first_steps(self) -> int:
        if self.retention_steps is not None:
            return self.retention_steps
        return 5 if self.mode == "e0" else 1

    @property
    def last_computed(self) -> bool:
        return self.mode == "e" if self.compute_last_step is None else self.compute_last_step


class TeaCacheState(BaseState):
    def __init__(self):
        self.reset()

    def reset(self):
        self.step = 0
        self.previous: torch.Tensor | None = None  # modulation input of the previous call
        self.accumulated = 0.0
        self.residual: torch.Tensor | None = None  # block stack output - input of the last computed call
        self.head_input: torch.Tensor | None = None
        self.time_embedding: torch.Tensor | None = None
        self.should_compute = True
        self.distances: list[float] = []  # rescaled distance of every call (inspection, tests)


class _TeaCacheHead(ModelHook):
    _is_stateful = True

    def __init__(self, state_manager: StateManager, config: TeaCacheConfig, args: _Args):
        super().__init__()
        self.state_manager = state_manager
        self.config = config
        self.args = args
        self.poly = np.poly1d(config.coefficients)

    def new_forward(self, module, *args, **kwargs):
        state: TeaCacheState = self.state_manager.get_state()
        x = self.args.get("hidden_states", args, kwargs)
        if self.config.mode == "e0":
            measured = self.args.get("temb", args, kwargs)
        else:
            measured = state.time_embedding
            if measured is None:
                raise RuntimeError(
                    "TeaCache mode 'e' found no time embedding (the recorder hook did not run)"
                )
        state.should_compute = self._decide(state, measured, x.shape)
        state.step += 1
        if state.step >= self.config.num_inference_steps:  # next call starts a new sampling run
            state.step, state.previous, state.accumulated = 0, None, 0.0
        if not state.should_compute:
            return x + state.residual.to(x.dtype)
        state.head_input = x
        return self.fn_ref.original_forward(*args, **kwargs)

    @torch.compiler.disable
    def _decide(self, state: TeaCacheState, measured: torch.Tensor, shape) -> bool:
        c = self.config
        previous, state.previous = state.previous, measured.detach().float()
        retained = state.step < c.first_steps or (c.last_computed and state.step >= c.num_inference_steps - 1)
        if previous is not None and previous.shape == state.previous.shape:
            distance = ((state.previous - previous).abs().mean() / previous.abs().mean()).item()
            rescaled = float(self.poly(distance))
            state.distances.append(rescaled)
        else:
            rescaled = None
        if (
            c.threshold <= 0
            or retained
            or rescaled is None
            or state.residual is None
            or state.residual.shape != shape
        ):
            state.accumulated = 0.0
            return True
        state.accumulated += rescaled
        if state.accumulated < c.threshold:
            return False
        state.accumulated = 0.0
        return True

    def reset_state(self, module):
        self.state_manager.reset()
        return module


class _TeaCacheBlock(ModelHook):
    """Every block after the head: pass through while skipping; the last one stores the residual."""

    def __init__(self, state_manager: StateManager, args: _Args, is_tail: bool):
        super().__init__()
        self.state_manager = state_manager
        self.args = args
        self.is_tail = is_tail

    def new_forward(self, module, *args, **kwargs):
        state: TeaCacheState = self.state_manager.get_state()
        if not state.should_compute:
            return self.args.get("hidden_states", args, kwargs)
        out = self.fn_ref.original_forward(*args, **kwargs)
        if self.is_tail:
            state.residual = (out - state.head_input).detach()
        return out


class _TimeEmbeddingRecorder(ModelHook):
    """On ``condition_embedder.time_embedder``: keeps its output (TeaCache's 'e') for the head hook."""

    def __init__(self, state_manager: StateManager):
        super().__init__()
        self.state_manager = state_manager

    def post_forward(self, module, output):
        self.state_manager.get_state().time_embedding = output.detach()
        return output


def apply_teacache(transformer, config: TeaCacheConfig) -> None:
    blocks = _blocks(transformer)
    args = _Args(blocks[0])
    manager = StateManager(TeaCacheState)
    if len(blocks) > 1:
        for i, block in enumerate(blocks[1:], start=1):
            HookRegistry.check_if_exists_or_initialize(block).register_hook(
                _TeaCacheBlock(manager, args, is_tail=i == len(blocks) - 1), _TEA_BLOCK
            )
    else:  # one block: it is head and tail (tail hook innermost)
        HookRegistry.check_if_exists_or_initialize(blocks[0]).register_hook(
            _TeaCacheBlock(manager, args, is_tail=True), _TEA_BLOCK
        )
    HookRegistry.check_if_exists_or_initialize(blocks[0]).register_hook(
        _TeaCacheHead(manager, config, args), _TEA_HEAD
    )
    if config.mode == "e":
        HookRegistry.check_if_exists_or_initialize(
            transformer.condition_embedder.time_embedder
        ).register_hook(_TimeEmbeddingRecorder(manager), _TEA_TIME)


# --------------------------------------------------------------------------- MagCache calibration


class _MagState(BaseState):
    def __init__(self):
        self.reset()

    def reset(self):
        self.head_input = None
        self.previous = None
        self.ratios: list[float] = []


class _MagHead(ModelHook):
    _is_stateful = True

    def __init__(self, state_manager: StateManager, args: _Args):
        super().__init__()
        self.state_manager = state_manager
        self.args = args

    def pre_forward(self, module, *args, **kwargs):
        self.state_manager.get_state().head_input = self.args.get("hidden_states", args, kwargs)
        return args, kwargs

    def reset_state(self, module):
        return module  # the ratios are read after the run


class _MagTail(ModelHook):
    def __init__(self, state_manager: StateManager):
        super().__init__()
        self.state_manager = state_manager

    def post_forward(self, module, output):
        state: _MagState = self.state_manager.get_state()
        residual = (output - state.head_input).detach().float()
        if state.previous is None or state.previous.shape != residual.shape:
            state.ratios.append(1.0)
        else:  # diffusers' MagCache calibration: mean over tokens of |r_t| / |r_t-1|
            ratio = torch.linalg.norm(residual, dim=-1) / (torch.linalg.norm(state.previous, dim=-1) + 1e-8)
            state.ratios.append(ratio.mean().item())
        state.previous = residual
        return output


@contextmanager
def record_mag_ratios(transformer):
    """Inside the block, every call's block-stack residual ratio is recorded per cache context.
    Yields a dict filled at exit: context name -> ratios (one per call, first 1.0)."""
    blocks = _blocks(transformer)
    manager = StateManager(_MagState)
    HookRegistry.check_if_exists_or_initialize(blocks[-1]).register_hook(_MagTail(manager), _MAG_RECORDER)
    HookRegistry.check_if_exists_or_initialize(blocks[0]).register_hook(
        _MagHead(manager, _Args(blocks[0])), _MAG_RECORDER + "_head"
    )
    HookRegistry.check_if_exists_or_initialize(transformer).invalidate_child_registries_cache()
    transformer._fp_recording = True  # cache_context() sets contexts while recording
    result: dict[str, list[float]] = {}
    try:
        yield result
    finally:
        transformer._fp_recording = False
        result.update({name: list(state.ratios) for name, state in manager._state_cache.items()})
        HookRegistry.check_if_exists_or_initialize(blocks[-1]).remove_hook(_MAG_RECORDER, recurse=False)
        HookRegistry.check_if_exists_or_initialize(blocks[0]).remove_hook(
            _MAG_RECORDER + "_head", recurse=False
        )
        HookRegistry.check_if_exists_or_initialize(transformer).invalidate_child_registries_cache()


def mean_mag_ratios(recorded: dict[str, list[float]]) -> list[float]:
    """One ratio per step: the mean over the recorded contexts (windows, branches) of equal length."""
    lists = [v for v in recorded.values() if v]
    if not lists:
        raise ValueError("no MagCache ratios were recorded (no transformer call ran)")
    n = min(len(v) for v in lists)
    return [float(np.mean([v[i] for v in lists])) for i in range(n)]


def save_mag_ratios(path: str | os.PathLike, ratios: list[float], num_steps: int) -> Path:
    path = Path(path)
    path.write_text(json.dumps({"num_inference_steps": num_steps, "mag_ratios": ratios}, indent=1))
    return path


def load_mag_ratios(path: str | os.PathLike) -> list[float]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        ratios = [float(v) for v in (data["mag_ratios"] if isinstance(data, dict) else data)]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a MagCache ratio file ({exc})") from exc
    if len(ratios) < 2:
        raise InputError(f"{path}: MagCache needs at least 2 ratios, found {len(ratios)}")
    return ratios


# --------------------------------------------------------------------------- selection


@dataclass
class CacheHandle:
    """An enabled cache: what it is, and the counters of real executions."""

    kind: str
    threshold: float
    num_steps: int
    counted: list[_CallCounter] = field(default_factory=list)
    counted_modules: list[torch.nn.Module] = field(default_factory=list)
    description: str = ""

    def stats(self) -> dict:
        """Counts since the last reset: computed block stacks (module calls for TaylorSeer)."""
        return {"kind": self.kind, "computed": sum(c.count for c in self.counted)}

    def reset_counts(self) -> None:
        for c in self.counted:
            c.count = 0


def enable_cache(
    transformer,
    kind: str,
    threshold: float,
    *,
    num_steps: int,
    resolution: str = "480p",
    teacache_mode: str = "e0",
    teacache_coefficients: tuple[float, ...] | str | None = None,
    mag_ratios: list[float] | None = None,
) -> CacheHandle | None:
    """Enable a cache kind on the transformer (see the module docstring); 'none' -> None.

    teacache_coefficients: a tuple, 'raw' (no rescaling) or None (the published Wan2.1 I2V set for
    ``resolution`` and ``teacache_mode``). mag_ratios: MagCache ratios per step of one branch
    (calibrated; they are interpolated to ``num_steps``).
    """
    kind = (kind or "none").lower()
    if kind not in CACHE_KINDS:
        raise InputError(f"unknown cache {kind!r}; choose from {', '.join(CACHE_KINDS)}")
    if kind == "none":
        return None
    if threshold < 0:
        raise InputError(f"cache threshold must be >= 0, got {threshold}")
    if getattr(transformer, "_fp_cache", None) is not None:
        disable_cache(transformer)
    blocks = _blocks(transformer)
    handle = CacheHandle(kind, float(threshold), int(num_steps))
    if kind == "taylorseer":
        targets = [
            m for b in blocks for m in (b.attn1, b.attn2, b.ffn)
        ]  # counters innermost, before TaylorSeer's hooks
    else:
        targets = [blocks[-1]]
    for module in targets:
        counter = _CallCounter()
        HookRegistry.check_if_exists_or_initialize(module).register_hook(counter, _COUNTER)
        handle.counted.append(counter)
    handle.counted_modules = targets

    if kind == "teacache":
        if teacache_mode not in ("e", "e0"):
            raise InputError(f"TeaCache mode must be 'e' or 'e0', got {teacache_mode!r}")
        if teacache_coefficients is None:
            coefficients = TEACACHE_COEFFICIENTS[(teacache_mode, resolution)]
        elif teacache_coefficients == "raw":
            coefficients = _RAW
        else:
            coefficients = tuple(teacache_coefficients)
        apply_teacache(
            transformer,
            TeaCacheConfig(threshold, num_steps, mode=teacache_mode, coefficients=coefficients),
        )
        handle.description = f"TeaCache ({teacache_mode}, {resolution} coefficients) threshold {threshold:g}"
    elif kind == "fbc":
        from diffusers import FirstBlockCacheConfig

        transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
        handle.description = f"FirstBlockCache threshold {threshold:g}"
    elif kind == "magcache":
        from diffusers import MagCacheConfig

        if mag_ratios is None:
            raise InputError(
                "MagCache needs magnitude ratios calibrated on this model: run once with --cache-ratios FILE "
                "(a missing FILE is written by a calibration run without skipping)"
            )
        # Threshold 0 must never skip: diffusers' rule skips while the error is <= the threshold, and a
        # ratio of exactly 1 gives error 0, so 0 maps to a negative threshold.
        config = MagCacheConfig(
            threshold=threshold if threshold > 0 else -1.0,
            max_skip_steps=MAG_MAX_SKIP,
            retention_ratio=MAG_RETENTION,
            num_inference_steps=num_steps,
            mag_ratios=list(mag_ratios),
        )
        transformer.enable_cache(config)
        handle.description = (
            f"MagCache threshold {threshold:g}, at most {MAG_MAX_SKIP} skips in a row, first "
            f"{int(MAG_RETENTION * num_steps + 0.5)} steps computed"
        )
    else:
        from diffusers import TaylorSeerCacheConfig

        interval = max(1, int(round(threshold)))
        dtype = next(transformer.parameters()).dtype
        transformer.enable_cache(
            TaylorSeerCacheConfig(
                cache_interval=interval,
                disable_cache_before_step=TAYLOR_WARMUP,
                max_order=1,
                taylor_factors_dtype=dtype
                if dtype.is_floating_point and dtype.itemsize >= 2
                else torch.bfloat16,
                cache_identifiers=[r"blocks\.\d+\.attn1", r"blocks\.\d+\.attn2", r"blocks\.\d+\.ffn"],
            )
        )
        handle.description = f"TaylorSeer interval {interval} (first {TAYLOR_WARMUP} steps computed)"
    HookRegistry.check_if_exists_or_initialize(transformer).invalidate_child_registries_cache()
    transformer._fp_cache = handle
    logger.info("cache: %s", handle.description)
    return handle


def disable_cache(transformer) -> None:
    handle = getattr(transformer, "_fp_cache", None)
    if handle is None:
        return
    if handle.kind in ("fbc", "magcache", "taylorseer"):
        transformer.disable_cache()
    else:
        registry = HookRegistry.check_if_exists_or_initialize(transformer)
        for name in (_TEA_HEAD, _TEA_BLOCK, _TEA_TIME):
            registry.remove_hook(name, recurse=True)
    for module in handle.counted_modules:
        HookRegistry.check_if_exists_or_initialize(module).remove_hook(_COUNTER, recurse=False)
    HookRegistry.check_if_exists_or_initialize(transformer).invalidate_child_registries_cache()
    transformer._fp_cache = None


def active_cache(transformer) -> CacheHandle | None:
    return getattr(transformer, "_fp_cache", None)


def reset_cache(transformer) -> None:
    """Forget every cached residual and step count (call before each sampling run)."""
    handle = active_cache(transformer)
    if handle is None:
        return
    HookRegistry.check_if_exists_or_initialize(transformer).reset_stateful_hooks(recurse=True)
    handle.reset_counts()


def wants_context(transformer) -> bool:
    """True when a cache of this module (or MagCache ratio recording) needs cache contexts."""
    return active_cache(transformer) is not None or getattr(transformer, "_fp_recording", False)


def cache_context(transformer, name: str):
    """``transformer.cache_context(name)`` when a cache is enabled, else nothing."""
    if not wants_context(transformer) and not getattr(transformer, "is_cache_enabled", False):
        return nullcontext()
    return transformer.cache_context(name)
