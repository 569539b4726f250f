"""The flow-matching objective of SPEC §9 and the condition dropout of the paper.

Conventions (they must agree with the sampler in ``pipeline/schedule.py``, which integrates
``x <- x + v * (sigma_next - sigma)`` with sigma falling from 1 to 0):

* noisy latents ``z_t = (1 - t) * z + t * eps`` with t in (0, 1), t = 1 pure noise;
* the velocity the model regresses is ``dz_t/dt = eps - z``;
* the DiT receives the timestep ``1000 * t`` (the sampler passes ``1000 * sigma``);
* t is logit-normal: ``t = sigmoid(mean + std * n)``, n standard normal.

All randomness of one training sample (its t, its noise and its three dropout decisions) comes
from a generator seeded by (run seed, optimizer step, the sample's slot in the global batch), so the
result does not depend on how the global batch is split across processes, and a resumed run draws
exactly what an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Wan's diffusion timesteps run over [0, 1000].
NUM_TRAIN_TIMESTEPS = 1000


@dataclass(frozen=True)
class ObjectiveConfig:
    """Timestep distribution and condition dropout probabilities (paper: 0.2 each, independent)."""

    logit_mean: float = 0.0
    logit_std: float = 1.0
    drop_image: float = 0.2
    drop_motion: float = 0.2
    drop_prompt: float = 0.2


@dataclass
class SampleDraws:
    """Random draws for a batch: t (B,) float32, noise like the latents, keep flags (B,) bool."""

    t: torch.Tensor
    noise: torch.Tensor
    keep_image: torch.Tensor
    keep_motion: torch.Tensor
    keep_prompt: torch.Tensor


def sample_generator(seed: int, step: int, slot: int) -> torch.Generator:
    """CPU generator for the sample in global-batch ``slot`` of optimizer ``step``."""
    # A fixed odd-multiplier mix keeps distinct (seed, step, slot) triples on distinct seeds.
    mixed = (seed * 1_000_003 + step) * 1_000_033 + slot
    return torch.Generator(device="cpu").manual_seed(mixed % (2**63 - 1))


def draw_for_sample(
    generator: torch.Generator, latent_shape: tuple[int, ...], config: ObjectiveConfig
) -> tuple[float, torch.Tensor, bool, bool, bool]:
    """One sample's (t, noise (latent_shape) float32, keep_image, keep_motion, keep_prompt).

    The draw order is fixed (uniforms first, then t, then the noise) so it is reproducible.
    """
    u = torch.rand(3, generator=generator)
    n = torch.randn(1, generator=generator)
    t = torch.sigmoid(config.logit_mean + config.logit_std * n).item()
    noise = torch.randn(latent_shape, generator=generator, dtype=torch.float32)
    return (
        t,
        noise,
        bool(u[0] >= config.drop_image),
        bool(u[1] >= config.drop_motion),
        bool(u[2] >= config.drop_prompt),
    )


def draw_batch(
    seed: int, step: int, slots: list[int], latent_shape: tuple[int, ...], config: ObjectiveConfig
) -> SampleDraws:
    """Draws for the samples at global-batch ``slots`` of ``step``; latent_shape is one sample's (C,T,H,W)."""
    ts, noises, ki, km, kp = [], [], [], [], []
    for slot in slots:
        t, noise, a, b, c = draw_for_sample(sample_generator(seed, step, slot), latent_shape, config)
        ts.append(t)
        noises.append(noise)
        ki.append(a)
        km.append(b)
        kp.append(c)
    return SampleDraws(
        t=torch.tensor(ts, dtype=torch.float32),
        noise=torch.stack(noises),
        keep_image=torch.tensor(ki),
        keep_motion=torch.tensor(km),
        keep_prompt=torch.tensor(kp),
    )


def noisy_latents(latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """z_t = (1 - t) z + t eps. latents, noise (B, C, T, H, W); t (B,). Returns float32."""
    tt = t.to(torch.float32).view(-1, *([1] * (latents.dim() - 1)))
    return (1.0 - tt) * latents.float() + tt * noise.float()


def velocity_target(latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The velocity d z_t / d t = eps - z (B, C, T, H, W) float32."""
    return noise.float() - latents.float()


def model_timestep(t: torch.Tensor) -> torch.Tensor:
    """The DiT's timestep input for flow time t (B,): 1000 * t, float32."""
    return t.to(torch.float32) * NUM_TRAIN_TIMESTEPS


def flow_matching_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element, computed in float32 (a scalar)."""
    return torch.mean((prediction.float() - target.float()) ** 2)


def image_condition_mask(batch: int, num_latent_frames: int, height: int, width: int) -> torch.Tensor:
    """Wan's image-to-video frame mask (B, 4, T, H, W): ones on latent frame 0 (the given image), else 0."""
    from ..pipeline.conditioning import first_frame_mask

    return first_frame_mask(num_latent_frames, height, width, batch)
