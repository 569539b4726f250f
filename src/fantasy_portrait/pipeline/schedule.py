"""Flow-matching schedules and guidance of the sampler (SPEC §8), and the sampling presets.

Two schedules:
- the released sampler's: S evenly spaced noise levels from 1, shifted (``flow_match_sigmas``);
- the step-distilled sampler's (LightX2V ``WanStepDistillScheduler``): the shifted levels of a
  1000-step grid picked at given training timesteps, by default [1000, 750, 500, 250], which at
  shift 5 gives sigmas [1.0, 0.9375, 0.8333, 0.625] then 0 (``step_distill_sigmas``).
Both are stepped with Euler: x <- x + v (sigma_next - sigma), the sigma after the last being 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

NUM_TRAIN_TIMESTEPS = 1000
DISTILLED_TIMESTEPS = (1000, 750, 500, 250)


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """s*sigma / (1 + (s-1)*sigma)."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def flow_match_sigmas(num_steps: int, shift: float = 5.0) -> torch.Tensor:
    """(S,) float32 noise levels from 1 down, shifted: s*sigma / (1 + (s-1)*sigma).

    The unshifted levels are the first S of S+1 evenly spaced values from 1 to 0 (the last step
    then goes to sigma 0). Timesteps for the DiT are ``NUM_TRAIN_TIMESTEPS * sigmas``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    sigmas = torch.linspace(1.0, 0.0, num_steps + 1)[:-1]
    return shift_sigmas(sigmas, shift)


def step_distill_sigmas(timesteps: Sequence[float] = DISTILLED_TIMESTEPS, shift: float = 5.0) -> torch.Tensor:
    """Noise levels of the step-distilled sampler at the given training timesteps (1000 = pure noise).

    The grid is linspace(1, 0, 1001) without its last value, shifted; timestep t picks index 1000 - t
    (LightX2V ``WanStepDistillScheduler``). Default: [1.0, 0.9375, 0.8333, 0.625] at shift 5.
    """
    grid = shift_sigmas(torch.linspace(1.0, 0.0, NUM_TRAIN_TIMESTEPS + 1)[:-1].double(), shift)
    picked = []
    for t in timesteps:
        if not 0 < t <= NUM_TRAIN_TIMESTEPS:
            raise ValueError(f"distilled timesteps must be in (0, {NUM_TRAIN_TIMESTEPS}], got {t}")
        picked.append(grid[NUM_TRAIN_TIMESTEPS - int(round(t))])
    return torch.stack(picked).float()


def check_sigmas(sigmas: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """A given sigma list as a (S,) float32 tensor: strictly decreasing, in (0, 1] (the final 0 is implied)."""
    s = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    if s.numel() < 1:
        raise ValueError("a sigma list needs at least one value")
    if bool((s <= 0).any()) or bool((s > 1).any()):
        raise ValueError(f"sigmas must lie in (0, 1] (the final 0 is implied), got {s.tolist()}")
    if s.numel() > 1 and not bool((s[1:] < s[:-1]).all()):
        raise ValueError(f"sigmas must be strictly decreasing, got {s.tolist()}")
    return s.float()


def sampling_sigmas(
    num_steps: int, shift: float = 5.0, sigmas: Sequence[float] | torch.Tensor | None = None
) -> torch.Tensor:
    """The sampler's noise levels: ``sigmas`` as given (already shifted; their count sets the steps)
    or the released schedule of ``num_steps`` at ``shift``."""
    if sigmas is not None:
        return check_sigmas(sigmas)
    return flow_match_sigmas(num_steps, shift).float()


def euler_step(
    latents: torch.Tensor, velocity: torch.Tensor, sigma: float, sigma_next: float
) -> torch.Tensor:
    """x <- x + v * (sigma_next - sigma)."""
    return latents + velocity * (sigma_next - sigma)


def guided_velocity(
    v_cond: torch.Tensor,
    v_uncond_motion: torch.Tensor,
    motion_guidance: float,
    v_neg: torch.Tensor | None = None,
    text_guidance: float = 1.0,
) -> torch.Tensor:
    """Motion classifier-free guidance, plus text guidance when ``v_neg`` is given.

    v = v_uncond_motion + g (v_cond - v_uncond_motion); with text guidance c != 1:
    v = v_neg + c (v_uncond_motion - v_neg) + g (v_cond - v_uncond_motion).
    """
    motion_term = motion_guidance * (v_cond - v_uncond_motion)
    if v_neg is None:
        return v_uncond_motion + motion_term
    return v_neg + text_guidance * (v_uncond_motion - v_neg) + motion_term


# --------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class SamplingPreset:
    """Steps, schedule and motion guidance that belong together.

    sigmas: an explicit (already shifted) noise-level list, or None for the released schedule of
    ``num_steps`` at ``shift``. motion_guidance 1.0 means one transformer call per step (no
    motion-off branch).
    """

    name: str
    description: str
    num_steps: int
    shift: float
    motion_guidance: float
    sigmas: tuple[float, ...] | None = None

    def schedule(self) -> torch.Tensor:
        return sampling_sigmas(self.num_steps, self.shift, self.sigmas)

    def calls_per_step(self, text_guidance: float = 1.0) -> int:
        """Guidance branches per step (= transformer calls when the branches run one by one)."""
        return 1 + (self.motion_guidance != 1.0) + (text_guidance != 1.0)


def _distilled_sigmas() -> tuple[float, ...]:
    return tuple(round(float(s), 6) for s in step_distill_sigmas(DISTILLED_TIMESTEPS, 5.0))


SAMPLING_PRESETS: dict[str, SamplingPreset] = {
    p.name: p
    for p in (
        SamplingPreset(
            "quality",
            "the reference's sampler: 30 Euler steps at shift 5, motion guidance 4 (2 calls per step)",
            num_steps=30,
            shift=5.0,
            motion_guidance=4.0,
        ),
        SamplingPreset(
            "fast",
            "4 steps of the step-distilled schedule (sigmas 1, 0.9375, 0.8333, 0.625 -> 0, Euler, "
            "shift 5) for a distilled LoRA (--lora); motion guidance 1: one call per step (chosen by "
            "measurement, see docs/acceleration.md)",
            num_steps=4,
            shift=5.0,
            motion_guidance=1.0,
            sigmas=_distilled_sigmas(),
        ),
    )
}
