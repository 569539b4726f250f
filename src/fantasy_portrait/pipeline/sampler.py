"""The denoising loop (SPEC §8): Euler flow-matching steps with motion (and optional text) guidance,
over the whole clip or over overlapping temporal windows for long clips.

Guidance needs two transformer calls per step (motion on, motion off) or three with text guidance
(plus the negative prompt). They differ only in motion scale and text, so by default they run as
ONE batch: the transformer takes a per-sample motion scale, and the image/text/motion inputs are
shared. ``batch_branches=False`` runs them one after the other (less peak memory).

Long clips (more latent frames than ``window``): every step runs the transformer on overlapping
windows of latent frames and blends the velocities of overlapping frames with linear ramps. Each
window after the first is prefixed with latent frame 0 (the reference frame, the only one that
carries the image latent) so every window sees the identity; that anchor's prediction is used
from window 0 only. Cost: sum of window lengths / T transformer work per step, e.g. T = 76
latent frames (301 frames) with window 21 and overlap 5 -> 5 windows, 1.38x the work of one pass,
with the activation memory of a 21-frame pass.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ..models.motion_attention import MotionCondition
from .schedule import guided_velocity, sampling_sigmas


@dataclass
class Conditions:
    """Everything the transformer sees besides the noisy latents (batch 1).

    y: (1, 20, T, h, w) mask channels + reference-image latents. image: (1, 257, 1280) CLIP features.
    text: (1, 512, text_dim); negative: (1, 512, text_dim) or None (only for text guidance != 1).
    motion: windows of every face over all T latent frames (+ label map for several faces).
    """

    y: torch.Tensor
    image: torch.Tensor
    text: torch.Tensor
    motion: MotionCondition
    negative: torch.Tensor | None = None


class WindowMotion(MotionCondition):
    """The motion condition of some latent frames of a clip's condition.

    Keys/values of a latent frame do not depend on the window, so when the clip's condition caches
    them they are computed once for the whole clip and sliced; otherwise every call recomputes the
    window's own (bounded memory).
    """

    def __init__(self, parent: MotionCondition, index: list[int]):
        super().__init__([w[:, index] for w in parent.windows], parent.labels, cache_kv=False)
        self.parent = parent
        self.index = torch.tensor(index)

    def keys_values(self, block_index: int, attn) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.parent.cache_kv:
            return super().keys_values(block_index, attn)
        k, v = self.parent.keys_values(block_index, attn)
        index = self.index.to(k.device)
        return k[:, index], v[:, index]


def motion_cache_bytes(transformer, num_latent: int, num_faces: int, window_size: int = 97) -> int:
    """Memory of caching every block's motion keys and values for a whole clip."""
    cfg = transformer.config
    inner = cfg.num_attention_heads * cfg.attention_head_dim
    dtype_bytes = next(transformer.parameters()).element_size()
    return 2 * cfg.num_layers * num_latent * num_faces * window_size * inner * dtype_bytes


def latent_windows(num_latent: int, window: int | None, overlap: int) -> list[list[int]]:
    """Latent-frame indices of each window. Windows after the first start with the anchor frame 0.

    window: latent frames per transformer call (anchor included); None or >= num_latent: one window.
    overlap: latent frames shared by consecutive windows (not counting the anchor).
    """
    if window is None or window >= num_latent:
        return [list(range(num_latent))]
    if window < 3:
        raise ValueError(f"a temporal window needs at least 3 latent frames, got {window}")
    overlap = max(1, min(overlap, window - 2))
    windows = [list(range(window))]
    body = window - 1  # frames after the anchor
    end = window
    while end < num_latent:
        start = min(end - overlap, num_latent - body)
        windows.append([0, *range(start, start + body)])
        end = start + body
    return windows


def blend_weights(windows: list[list[int]], num_latent: int) -> list[torch.Tensor]:
    """Per-window (len,) weights: linear ramps over each overlap, 0 for anchors after window 0."""
    weights = []
    for k, idx in enumerate(windows):
        w = torch.ones(len(idx))
        if k > 0:
            w[0] = 0.0  # the anchor frame: window 0 predicts it
            prev = set(windows[k - 1])
            n = sum(1 for i in idx[1:] if i in prev)
            if n:
                w[1 : 1 + n] = torch.arange(1, n + 1) / (n + 1)
        if k + 1 < len(windows):
            nxt = set(windows[k + 1][1:])
            n = sum(1 for i in idx if i in nxt)
            if n:
                w[len(idx) - n :] = torch.minimum(w[len(idx) - n :], torch.arange(n, 0, -1) / (n + 1))
        weights.append(w)
    return weights


class GuidedDenoiser:
    """Velocity of the guided model for the latents of a whole clip (windowed when long)."""

    def __init__(
        self,
        transformer,
        conditions: Conditions,
        *,
        motion_guidance: float = 4.0,
        text_guidance: float = 1.0,
        batch_branches: bool = True,
        window: int | None = None,
        overlap: int = 5,
        motion_range: tuple[float, float] | None = None,
    ):
        """motion_range: (low, high] timesteps (1000 sigma) that get motion (:func:`motion_timestep_range`);
        at other steps the model runs without motion (motion scale 0, one branch less). None: every step."""
        self.transformer = transformer
        self.c = conditions
        self.motion_range = motion_range
        self.g = float(motion_guidance)
        self.text_g = float(text_guidance)
        self.batch_branches = batch_branches
        num_latent = conditions.y.shape[2]
        self.windows = latent_windows(num_latent, window, overlap)
        self.weights = blend_weights(self.windows, num_latent)
        motion = conditions.motion
        if len(self.windows) == 1:
            self.motions = [motion]
        else:  # one view per window; cached keys/values (if any) are computed once for the whole clip
            self.motions = [WindowMotion(motion, idx) for idx in self.windows]
        self.calls = 0
        self._window = 0

    def motion_active(self, t: torch.Tensor) -> bool:
        """Whether the step at timestep ``t`` gets motion (the motion step range)."""
        if self.motion_range is None:
            return True
        low, high = self.motion_range
        return low < float(t.flatten()[0]) <= high

    def _branches(self, x, t, motion, image, text, negative, with_motion: bool = True):
        """Predictions (v_cond, v_uncond_motion, v_neg or None) for one latent block x (1, 36, T', h, w).
        Without motion the motion branches are one and the same call (motion scale 0)."""
        use_text = self.text_g != 1.0 and negative is not None
        use_motion_cfg = self.g != 1.0 and with_motion
        scales = (
            [1.0 if with_motion else 0.0] + ([0.0] if use_motion_cfg else []) + ([0.0] if use_text else [])
        )
        texts = [text] * (1 + use_motion_cfg) + ([negative] if use_text else [])
        tr = self.transformer
        first = "cond" if with_motion else "uncond"
        names = [first] + (["uncond"] if use_motion_cfg else []) + (["negative"] if use_text else [])
        if self.batch_branches:
            b = len(scales)
            self.calls += 1
            with self._cache_context("+".join(names)):
                out = tr(
                    x.expand(b, -1, -1, -1, -1),
                    timestep=t.expand(b),
                    encoder_hidden_states=torch.cat(texts),
                    encoder_hidden_states_image=image.expand(b, -1, -1),
                    motion=motion,
                    motion_scale=torch.tensor(scales),
                )
            outs = list(out.split(1))
        else:
            outs = []
            for name, s, txt in zip(names, scales, texts):
                self.calls += 1
                with self._cache_context(name):
                    outs.append(
                        tr(
                            x,
                            timestep=t,
                            encoder_hidden_states=txt,
                            encoder_hidden_states_image=image,
                            motion=motion,
                            motion_scale=s,
                        )
                    )
        v_cond = outs[0]
        v_unc = outs[1] if use_motion_cfg else v_cond
        v_neg = outs[-1] if use_text else None
        return v_cond, v_unc, v_neg

    def _cache_context(self, name: str):
        """diffusers' cache context of one branch (and window), when a cache is enabled on the
        transformer (``transformer.enable_cache(...)`` or ``caching.enable_cache``, e.g. TeaCache, or
        MagCache ratios being recorded): each gets its own cached state."""
        from .caching import wants_context

        tr = self.transformer
        if not getattr(tr, "is_cache_enabled", False) and not wants_context(tr):
            return nullcontext()
        return tr.cache_context(name if len(self.windows) == 1 else f"{name}@window{self._window}")

    def guided(self, x, t, motion) -> torch.Tensor:
        with_motion = self.motion_active(t)
        c = self.c
        v_cond, v_unc, v_neg = self._branches(x, t, motion, c.image, c.text, c.negative, with_motion)
        return guided_velocity(v_cond, v_unc, self.g, v_neg, self.text_g)

    def __call__(self, latents: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """latents (1, 16, T, h, w) float32, timestep (1,) float32 (= 1000 sigma) -> velocity (1, 16, T, h, w)."""
        dtype = self.c.image.dtype
        t = timestep.to(device=latents.device, dtype=torch.float32)
        if len(self.windows) == 1:
            x = torch.cat([latents, self.c.y], dim=1).to(dtype)
            return self.guided(x, t, self.motions[0]).float()
        total = torch.zeros_like(latents, dtype=torch.float32)
        norm = torch.zeros(latents.shape[2], device=latents.device)
        for k, (idx, weight, motion) in enumerate(zip(self.windows, self.weights, self.motions)):
            self._window = k
            sel = torch.tensor(idx, device=latents.device)
            x = torch.cat([latents[:, :, sel], self.c.y[:, :, sel]], dim=1).to(dtype)
            v = self.guided(x, t, motion).float()
            w = weight.to(latents.device)
            total.index_add_(2, sel, v * w.view(1, 1, -1, 1, 1))
            norm.index_add_(0, sel, w)
        return total / norm.view(1, 1, -1, 1, 1)


def motion_timestep_range(sigmas: torch.Tensor, steps: list[bool]) -> tuple[float, float] | None:
    """(low, high] timesteps (1000 sigma) holding exactly the steps marked in ``steps`` (one contiguous
    run) of a sampler over ``sigmas`` (decreasing); bounds halfway between neighbouring steps, so the
    test does not depend on float rounding. None when every step is marked."""
    if len(steps) != len(sigmas):
        raise ValueError(f"{len(steps)} step flags for {len(sigmas)} steps")
    marked = [i for i, on in enumerate(steps) if on]
    if not marked:
        raise ValueError("no step is marked")
    first, last = marked[0], marked[-1]
    if marked != list(range(first, last + 1)):
        raise ValueError("the marked steps must be one contiguous run")
    if first == 0 and last == len(steps) - 1:
        return None
    t = [float(v) * 1000.0 for v in sigmas]
    high = float("inf") if first == 0 else (t[first - 1] + t[first]) / 2
    low = float("-inf") if last == len(t) - 1 else (t[last] + t[last + 1]) / 2
    return (low, high)


def sample(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    num_steps: int,
    *,
    shift: float = 5.0,
    sigmas: torch.Tensor | list[float] | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    on_step_end: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Euler flow-matching sampling: x <- x + v(x, t) * (sigma_next - sigma), sigma after the last = 0.

    sigmas: explicit noise levels (already shifted, e.g. ``schedule.step_distill_sigmas()``; their
    count replaces ``num_steps``); None: the released schedule of ``num_steps`` at ``shift``.
    noise: (1, 16, T, h, w) float32. velocity(latents, timestep (1,) float32 = 1000 sigma) -> same
    shape as latents. callback(step, latents) is told each step's result; on_step_end(step, timestep,
    latents) may return replacement latents (or raise to stop). Returns the final latents.
    """
    sigmas = sampling_sigmas(num_steps, shift, sigmas)
    timesteps = sigmas * 1000.0
    x = noise.float()
    for i in range(len(sigmas)):
        sigma_next = sigmas[i + 1] if i + 1 < len(sigmas) else torch.zeros((), dtype=torch.float32)
        x = x + velocity(x, timesteps[i : i + 1]) * (sigma_next - sigmas[i]).to(x.device)
        if callback is not None:
            callback(i, x)
        if on_step_end is not None:
            replaced = on_step_end(i, timesteps[i], x)
            x = x if replaced is None else replaced
    return x
