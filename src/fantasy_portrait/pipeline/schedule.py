"""Flow-matching schedule and guidance of the released sampler (SPEC §8)."""

from __future__ import annotations

import torch

NUM_TRAIN_TIMESTEPS = 1000


def flow_match_sigmas(num_steps: int, shift: float = 5.0) -> torch.Tensor:
    """(S,) float32 noise levels from 1 down, shifted: s*sigma / (1 + (s-1)*sigma).

    The unshifted levels are the first S of S+1 evenly spaced values from 1 to 0 (the last step
    then goes to sigma 0). Timesteps for the DiT are ``NUM_TRAIN_TIMESTEPS * sigmas``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    sigmas = torch.linspace(1.0, 0.0, num_steps + 1)[:-1]
    return shift * sigmas / (1 + (shift - 1) * sigmas)


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
