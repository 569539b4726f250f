"""The FantasyPortrait DiT: diffusers' Wan2.1 transformer plus motion cross-attention in every block.

The base model is diffusers' ``WanTransformer3DModel`` unchanged (same parameters, key names and
attention dispatch, so flash/sage/native backends and diffusers' loaders keep working). Each
block's cross-attention gets two bias-free projections of the motion tokens (``motion_k_proj``,
``motion_v_proj``; ``ip_adapter_single_stream_{k,v}_proj`` in the released checkpoint) and a
processor that adds ``motion_scale * motion_attention`` to the text and image attention before the
output projection (SPEC §6).
"""

from __future__ import annotations

import math

import torch
from diffusers import WanTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
from diffusers.models.transformers.transformer_wan import WanTransformerBlock
from torch import nn

from ..parallel.plan import TokenPositions, motion_cp_plan, token_range
from .motion_attention import MotionCondition, MotionStep, motion_attention

TEXT_LENGTH = 512  # umT5 context length of Wan2.1; the image tokens come before it


class MotionCrossAttnProcessor:
    """Wan I2V cross-attention (text + image) plus the motion attention of SPEC §6."""

    _attention_backend = None
    _parallel_config = None

    def __init__(self, block_index: int):
        self.block_index = block_index

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        rotary_emb=None,
        motion: MotionStep | None = None,
    ) -> torch.Tensor:
        image_context = None
        if attn.add_k_proj is not None:
            split = encoder_hidden_states.shape[1] - TEXT_LENGTH
            image_context = encoder_hidden_states[:, :split]
            encoder_hidden_states = encoder_hidden_states[:, split:]

        query, key, value = _qkv(attn, hidden_states, encoder_hidden_states)
        query = attn.norm_q(query).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))

        image_out = None
        if image_context is not None:
            key_img, value_img = _added_kv(attn, image_context)
            key_img = attn.norm_added_k(key_img).unflatten(2, (attn.heads, -1))
            value_img = value_img.unflatten(2, (attn.heads, -1))
            image_out = self._attend(query, key_img, value_img).flatten(2, 3).type_as(query)

        out = self._attend(query, key, value, attention_mask).flatten(2, 3).type_as(query)
        if image_out is not None:
            out = out + image_out
        if motion is not None:
            out = self._add_motion(attn, out, query, motion)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)

    def _attend(self, query, key, value, mask=None):
        from diffusers.models.attention_dispatch import dispatch_attention_fn

        return dispatch_attention_fn(
            query, key, value, attn_mask=mask, dropout_p=0.0, is_causal=False, backend=self._attention_backend
        )

    @torch.compiler.disable
    def _keys_values(self, condition: MotionCondition, attn):
        """This block's motion keys/values (cached per block); eager under torch.compile, so the
        compiled block graph does not depend on the block index (one graph for all blocks)."""
        return condition.keys_values(self.block_index, attn)

    def _add_motion(self, attn, out, query, motion: MotionStep):
        condition = motion.condition
        keys, values = self._keys_values(condition, attn)
        active = motion.active
        q = query if active is None else query.index_select(0, active)
        if keys.shape[0] != q.shape[0]:
            if keys.shape[0] == 1:
                keys = keys.expand(q.shape[0], *keys.shape[1:])
                values = values.expand(q.shape[0], *values.shape[1:])
            elif active is not None and keys.shape[0] == query.shape[0]:
                keys, values = keys.index_select(0, active), values.index_select(0, active)
            else:
                raise ValueError(
                    f"motion windows have batch {keys.shape[0]}, the video batch is {query.shape[0]}"
                )
        if condition.per_sample_labels:
            samples = range(query.shape[0]) if active is None else active.tolist()
            if condition.labels.shape[0] != query.shape[0]:
                raise ValueError(f"{condition.labels.shape[0]} label maps for a batch of {query.shape[0]}")
            result = torch.cat(
                [
                    motion_attention(
                        q[j : j + 1],
                        keys[j : j + 1],
                        values[j : j + 1],
                        condition,
                        self._attention_backend,
                        b,
                        motion.tokens,
                    )
                    for j, b in enumerate(samples)
                ]
            ).type_as(out)
        else:
            result = motion_attention(
                q, keys, values, condition, backend=self._attention_backend, tokens=motion.tokens
            ).type_as(out)
        scale = motion.scale.to(device=out.device, dtype=out.dtype)
        if active is None:
            return out + scale.view(-1, 1, 1) * result
        return out.index_add(0, active, scale.index_select(0, active).view(-1, 1, 1) * result)


def _qkv(attn, hidden_states: torch.Tensor, context: torch.Tensor):
    """Cross-attention query (from the video tokens) and key/value (from the context); fused or not."""
    query = attn.to_q(hidden_states)
    if getattr(attn, "fused_projections", False):
        key, value = attn.to_kv(context).chunk(2, dim=-1)
    else:
        key, value = attn.to_k(context), attn.to_v(context)
    return query, key, value


def _added_kv(attn, image_context: torch.Tensor):
    """Key/value of the image tokens (Wan I2V's added projections); fused or not."""
    if getattr(attn, "fused_projections", False):
        return attn.to_added_kv(image_context).chunk(2, dim=-1)
    return attn.add_k_proj(image_context), attn.add_v_proj(image_context)


def timestep_sinusoid(timestep: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) -> (B, dim) [cos, sin] timestep embedding, computed in float64 as the released model was."""
    half = dim // 2
    position = timestep.to(torch.float64)
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=timestep.device).div(half))
    angles = torch.outer(position, freqs)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class FantasyPortraitTransformer(WanTransformer3DModel):
    """Wan2.1 DiT with per-block motion cross-attention (FantasyPortrait).

    ``motion_dim`` is the motion-token width (2048 released); None builds the plain Wan model.
    ``_repeated_blocks``: the block class regional compilation compiles (``compile_repeated_blocks``).
    ``_cp_plan``: diffusers' Wan plan plus the token-position split the motion attention follows
    (``transformer.enable_parallelism(config=ContextParallelConfig(...))``; see parallel/plan.py).
    """

    _cp_plan = motion_cp_plan(WanTransformer3DModel._cp_plan)

    _repeated_blocks = ["MotionWanBlock"]
    _no_split_modules = ["MotionWanBlock"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 36,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = 1280,
        added_kv_proj_dim: int | None = 5120,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        motion_dim: int | None = 2048,
    ) -> None:
        super().__init__(
            patch_size=patch_size,
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            text_dim=text_dim,
            freq_dim=freq_dim,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            cross_attn_norm=cross_attn_norm,
            qk_norm=qk_norm,
            eps=eps,
            image_dim=image_dim,
            added_kv_proj_dim=added_kv_proj_dim,
            rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len,
        )
        # The same blocks as MotionWanBlock instances: a forward that also takes the motion input,
        # registered with diffusers' block registry so its hooks (caches, offloading) run on them.
        inner_dim = num_attention_heads * attention_head_dim
        self.blocks = nn.ModuleList(
            [MotionWanBlock.from_wan_block(b, inner_dim, ffn_dim, num_attention_heads) for b in self.blocks]
        )
        self.token_positions = TokenPositions()  # no parameters: split by the context-parallel plan
        if motion_dim is not None:
            inner = inner_dim
            for index, block in enumerate(self.blocks):
                attn = block.attn2
                attn.motion_k_proj = nn.Linear(motion_dim, inner, bias=False)
                attn.motion_v_proj = nn.Linear(motion_dim, inner, bias=False)
                # Zero start: an untrained motion branch leaves the base model's output unchanged.
                nn.init.zeros_(attn.motion_k_proj.weight)
                nn.init.zeros_(attn.motion_v_proj.weight)
                attn.set_processor(MotionCrossAttnProcessor(index))

    def motion_modules(self) -> list[nn.Linear]:
        """The per-block motion key/value projections (the trainable part of the DiT)."""
        return [m for block in self.blocks for m in (block.attn2.motion_k_proj, block.attn2.motion_v_proj)]

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        motion: MotionCondition | None = None,
        motion_scale: float | torch.Tensor = 1.0,
        return_dict: bool = False,
        attention_kwargs=None,
    ) -> torch.Tensor:
        """Velocity prediction.

        hidden_states (B, 36, T, H, W): noisy latents (16) + first-frame mask (4) + image latents (16).
        timestep (B,) float; encoder_hidden_states (B, 512, text_dim); encoder_hidden_states_image
        (B, 257, 1280). motion_scale: float or (B,) per-sample scale; samples whose scale is 0 (and
        every sample when ``motion`` is None) run no motion work and get exactly the plain Wan output.
        Returns (B, out_channels, T, H, W).
        """
        batch, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        rotary_emb = self.rope(hidden_states)
        x = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()

        if timestep.ndim == 0:
            timestep = timestep.expand(batch)
        embed = self.condition_embedder
        time_dtype = next(embed.time_embedder.parameters()).dtype
        sinusoid = timestep_sinusoid(timestep, self.config.freq_dim).to(time_dtype)
        temb = embed.time_embedder(sinusoid).type_as(encoder_hidden_states)
        timestep_proj = embed.time_proj(embed.act_fn(temb)).unflatten(1, (6, -1))
        context = embed.text_embedder(encoder_hidden_states)
        if encoder_hidden_states_image is not None:
            context = torch.cat([embed.image_embedder(encoder_hidden_states_image), context], dim=1)

        # This rank's video tokens (all of them unless context parallelism split the sequence).
        tokens = token_range(self.token_positions(x), x.shape[1])
        step = self._motion_step(motion, motion_scale, batch, x.device, tokens)
        for block in self.blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, x, context, timestep_proj, rotary_emb, step)
            else:
                x = block(x, context, timestep_proj, rotary_emb, motion=step)

        shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        x = (self.norm_out(x.float()) * (1 + scale.to(x.device)) + shift.to(x.device)).type_as(x)
        x = self.proj_out(x)
        x = x.reshape(batch, frames // p_t, height // p_h, width // p_w, p_t, p_h, p_w, -1)
        out = x.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)
        return out

    def _motion_step(self, motion, motion_scale, batch: int, device, tokens=None) -> MotionStep | None:
        if motion is None:
            return None
        if not hasattr(self.blocks[0].attn2, "motion_k_proj"):
            raise ValueError("this transformer was built without motion attention (motion_dim=None)")
        scale = torch.as_tensor(motion_scale, dtype=torch.float32).flatten()
        if scale.numel() == 1:
            scale = scale.expand(batch)
        if scale.numel() != batch:
            raise ValueError(f"motion_scale has {scale.numel()} values for a batch of {batch}")
        nonzero = scale != 0
        if not bool(nonzero.any()):
            return None
        active = None if bool(nonzero.all()) else torch.nonzero(nonzero).flatten().to(device)
        return MotionStep(motion, scale.to(device), active, tokens=tokens)


class MotionWanBlock(WanTransformerBlock):
    """diffusers' Wan block with the motion input passed on to its cross-attention.

    The constructor is diffusers'; parameters and key names are exactly the base model's.
    Registered with diffusers' ``TransformerBlockRegistry`` (as the Wan block is), so
    ``transformer.enable_cache(...)`` (FirstBlockCache, MagCache, ...) hooks these blocks: the
    forward takes ``hidden_states`` first by that name and returns the hidden states alone, and the
    motion input is a keyword argument the hooks pass through unchanged.
    """

    @classmethod
    def from_wan_block(cls, block: WanTransformerBlock, dim: int, ffn_dim: int, heads: int) -> MotionWanBlock:
        """A MotionWanBlock holding ``block``'s own submodules and parameters (no copy, no random init:
        the shell is built on the meta device, so the random stream of a seeded build is unchanged)."""
        with torch.device("meta"):
            new = cls(dim, ffn_dim, heads)
        for name in list(new._modules):
            setattr(new, name, block._modules[name])
        for name, param in block.named_parameters(recurse=False):
            setattr(new, name, param)
        new.train(block.training)
        return new

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary_emb,
        motion: MotionStep | None = None,
    ) -> torch.Tensor:
        x = hidden_states
        shift_msa, scale_msa, gate_msa, c_shift, c_scale, c_gate = (
            self.scale_shift_table + temb.float()
        ).chunk(6, dim=1)
        norm = (self.norm1(x.float()) * (1 + scale_msa) + shift_msa).type_as(x)
        x = (x.float() + self.attn1(norm, None, None, rotary_emb) * gate_msa).type_as(x)
        norm = self.norm2(x.float()).type_as(x)
        if motion is None:
            x = x + self.attn2(norm, encoder_hidden_states, None, None)
        else:
            x = x + self.attn2(norm, encoder_hidden_states, None, None, motion=motion)
        norm = (self.norm3(x.float()) * (1 + c_scale) + c_shift).type_as(x)
        return (x.float() + self.ffn(norm).float() * c_gate).type_as(x)


TransformerBlockRegistry.register(
    model_class=MotionWanBlock,
    metadata=TransformerBlockMetadata(return_hidden_states_index=0, return_encoder_hidden_states_index=None),
)


def count_parameters(module: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in module.parameters())
