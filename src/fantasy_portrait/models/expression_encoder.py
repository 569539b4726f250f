"""Expression-augmented encoder: per-frame motion features -> 24 motion tokens per frame (SPEC §4).

Per driving frame the four PD-FGC parts (head 6, eye 6, emotion 30, mouth 512) become
- 4 tokens: one bias-free projection per part, each followed by one shared LayerNorm;
- 16 tokens: a perceiver resampler over the mouth vector (fine-grained lip motion);
- 4 tokens: a perceiver resampler over the emotion vector.
Token order within a frame: head, eye, emotion, mouth, mouth queries, emotion queries.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ExpressionEncoderConfig


class PerceiverAttention(nn.Module):
    """Learned queries attend to [inputs, queries] (both LayerNormed separately)."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        inner = heads * head_dim
        self.norm1 = nn.LayerNorm(dim)  # inputs
        self.norm2 = nn.LayerNorm(dim)  # queries
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, inputs: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """inputs (B, N, D), queries (B, Q, D) -> (B, Q, D)."""
        inputs = self.norm1(inputs)
        queries = self.norm2(queries)
        batch, num_q, _ = queries.shape
        q = self.to_q(queries)
        k, v = self.to_kv(torch.cat([inputs, queries], dim=1)).chunk(2, dim=-1)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, t.shape[1], self.heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(q), heads(k), heads(v)
        # Scaling q and k by d^-1/4 each (instead of the product by d^-1/2) is what the released
        # weights were trained with; the softmax runs in float32 for half-precision inputs.
        scale = self.head_dim**-0.25
        weights = (q * scale) @ (k * scale).transpose(-2, -1)
        weights = torch.softmax(weights.float(), dim=-1).to(weights.dtype)
        out = (weights @ v).transpose(1, 2).reshape(batch, num_q, self.heads * self.head_dim)
        return self.to_out(out)


class PerceiverLayer(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, ff_mult: int):
        super().__init__()
        self.attn = PerceiverAttention(dim, heads, head_dim)
        self.ff = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * ff_mult, bias=False),
            nn.GELU(),
            nn.Linear(dim * ff_mult, dim, bias=False),
        )

    def forward(self, inputs: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        queries = queries + self.attn(inputs, queries)
        return queries + self.ff(queries)


class PerceiverResampler(nn.Module):
    """Turns an input sequence (B, N, in_dim) into ``num_queries`` tokens (B, Q, out_dim)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_queries: int,
        dim: int,
        depth: int,
        heads: int,
        head_dim: int,
        ff_mult: int,
    ):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, num_queries, dim) / dim**0.5)
        self.proj_in = nn.Linear(in_dim, dim)
        self.layers = nn.ModuleList([PerceiverLayer(dim, heads, head_dim, ff_mult) for _ in range(depth)])
        self.proj_out = nn.Linear(dim, out_dim)
        self.norm_out = nn.LayerNorm(out_dim)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        queries = self.queries.expand(inputs.shape[0], -1, -1)
        inputs = self.proj_in(inputs)
        for layer in self.layers:
            queries = layer(inputs, queries)
        return self.norm_out(self.proj_out(queries))


class PartProjection(nn.Module):
    """One bias-free linear per motion part, all followed by one shared LayerNorm."""

    def __init__(self, part_dims: tuple[int, ...], token_dim: int):
        super().__init__()
        head, eye, emotion, mouth = part_dims
        self.head = nn.Linear(head, token_dim, bias=False)
        self.eye = nn.Linear(eye, token_dim, bias=False)
        self.emotion = nn.Linear(emotion, token_dim, bias=False)
        self.mouth = nn.Linear(mouth, token_dim, bias=False)
        self.norm = nn.LayerNorm(token_dim)

    def forward(self, parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """parts: four (B, F, d_part) tensors -> (B, F, 4, token_dim)."""
        projections = (self.head, self.eye, self.emotion, self.mouth)
        return torch.stack([self.norm(proj(x)) for proj, x in zip(projections, parts, strict=True)], dim=2)


class ExpressionEncoder(nn.Module):
    """Motion features (B, F, 554) -> motion tokens (B, F * 24, token_dim), frame-major."""

    def __init__(self, config: ExpressionEncoderConfig | None = None):
        super().__init__()
        self.config = config = config or ExpressionEncoderConfig()
        resampler = dict(
            dim=config.resampler_dim,
            depth=config.resampler_depth,
            heads=config.resampler_heads,
            head_dim=config.resampler_head_dim,
            ff_mult=config.ff_mult,
            out_dim=config.token_dim,
        )
        self.parts = PartProjection(config.part_dims, config.token_dim)
        if (config.mouth_queries == 0) != (config.emotion_queries == 0):
            raise ValueError(
                "mouth_queries and emotion_queries must both be zero (no augmentation) or both > 0"
            )
        # Zero queries: the ablation without expression augmentation (4 part tokens per frame only).
        self.augmented = config.mouth_queries > 0
        if self.augmented:
            self.mouth_resampler = PerceiverResampler(
                in_dim=config.part_dims[3], num_queries=config.mouth_queries, **resampler
            )
            self.emotion_resampler = PerceiverResampler(
                in_dim=config.part_dims[2], num_queries=config.emotion_queries, **resampler
            )

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        if motion.ndim != 3 or motion.shape[-1] != sum(self.config.part_dims):
            raise ValueError(
                f"motion features must be (B, F, {sum(self.config.part_dims)}), got {tuple(motion.shape)}"
            )
        batch, frames, _ = motion.shape
        parts = motion.split(list(self.config.part_dims), dim=-1)
        projected = self.parts(parts)  # (B, F, 4, C)
        if not self.augmented:
            return projected.reshape(batch, frames * self.config.tokens_per_frame, self.config.token_dim)
        # Each frame's mouth / emotion vector is a sequence of length one for its resampler.
        mouth = self.mouth_resampler(parts[3].reshape(batch * frames, 1, -1))
        emotion = self.emotion_resampler(parts[2].reshape(batch * frames, 1, -1))
        tokens = torch.cat(
            [
                projected,
                mouth.view(batch, frames, -1, mouth.shape[-1]),
                emotion.view(batch, frames, -1, emotion.shape[-1]),
            ],
            dim=2,
        )
        return tokens.reshape(batch, frames * self.config.tokens_per_frame, self.config.token_dim)
