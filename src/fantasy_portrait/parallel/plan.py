"""The transformer's context-parallel plan: where diffusers splits and gathers the video tokens.

diffusers' Wan plan splits the rotary tables (outputs of ``rope``) and the first block's input along
the sequence, and gathers after ``proj_out``; text and image tokens stay whole. FantasyPortrait adds
one entry: ``token_positions``, a parameter-free module that returns the index of every video token.
The plan splits its output exactly as it splits the tokens, so each rank learns which tokens it holds
from the same sharder that cut them (equal pieces or the "anything" modes alike): the motion
attention then uses that range to pick each token's motion window and face label.
"""

from __future__ import annotations

import torch
from diffusers.models._modeling_parallel import ContextParallelInput
from torch import nn

from .sharding import TokenRange


class TokenPositions(nn.Module):
    """(B, S, C) video tokens -> (1, S) int64 token indices 0..S-1 (on the CPU: read, never computed on)."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.arange(tokens.shape[1], dtype=torch.int64).unsqueeze(0)


def token_range(positions: torch.Tensor, total: int) -> TokenRange | None:
    """This rank's contiguous token range from the (split) positions; None when it holds every token."""
    count = positions.shape[-1]
    if count == total:
        return None
    start, last = int(positions[0, 0]), int(positions[0, -1])
    if last - start + 1 != count:
        raise ValueError(f"context-parallel split gave non-contiguous video tokens {start}..{last} ({count})")
    return TokenRange(start, last + 1, total)


def motion_cp_plan(base: dict) -> dict:
    """``base`` (diffusers' Wan ``_cp_plan``) plus the token-position split.

    The Wan plan's per-token timestep entry (Wan 2.2's (B, S) timesteps) is left out: this model's
    timestep is one value per sample and is never split.
    """
    plan = {k: v for k, v in base.items() if k != ""}
    for required in ("rope", "blocks.0", "proj_out"):
        if required not in plan:
            raise ValueError(f"diffusers' Wan context-parallel plan has no {required!r} entry")
    plan["token_positions"] = {0: ContextParallelInput(split_dim=1, expected_dims=2, split_output=True)}
    return plan
