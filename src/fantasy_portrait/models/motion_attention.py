"""Motion windows and the motion cross-attention added to every Wan block (SPEC §5-§7).

Each latent frame's video tokens attend to a window of 97 motion-token slots: the 24 tokens of each
of its 4 driving frames plus the last token of the previous frame. With several faces the windows
of all faces are concatenated (face order = portrait order, left to right) and a token-resolution
label map decides who sees what: a token of face i sees only face i's slots; background sees all.

The masked rule is applied by grouping query tokens by label, so each group runs one plain
(unmasked) attention call over a contiguous block of keys. That is what fast kernels (flash, sage)
accept, costs no dense (T, S, N*97) mask, and gives the same numbers as the dense boolean mask.

Motion keys and values depend only on the motion tokens and the block's weights, so at inference
they are computed once per sampling run and block and reused by every step and guidance branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn

from ..parallel.sharding import TokenRange, frame_pieces
from .config import FRAMES_PER_LATENT


def window_index_ranges(num_frames: int, tokens_per_frame: int) -> list[tuple[int, int]]:
    """Inclusive token-index range of every latent frame's window (may start below 0).

    Window t ends at the last token of driving frame 4t and spans 4 * tokens_per_frame + 1 slots,
    e.g. for 24 tokens per frame: t = 0 -> (-73, 23), t >= 1 -> (96t - 73, 96t + 23).
    """
    if num_frames < 1 or (num_frames - 1) % FRAMES_PER_LATENT:
        raise ValueError(f"the number of driving frames must be 4k+1, got {num_frames}")
    span = FRAMES_PER_LATENT * tokens_per_frame
    latent_frames = (num_frames - 1) // FRAMES_PER_LATENT + 1
    return [
        (span * t + tokens_per_frame - 1 - span, span * t + tokens_per_frame - 1)
        for t in range(latent_frames)
    ]


def motion_windows(tokens: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split motion tokens into per-latent-frame windows.

    tokens: (B, F * tpf, C) frame-major motion tokens of F = 4k+1 driving frames.
    Returns windows (B, T, 4 * tpf + 1, C) and k_lens (T,) int64, the real tokens per window.
    Positions outside the sequence become zero tokens appended at the END of the window (also for
    window 0, whose missing positions lie before token 0); they take part in the attention as zero
    keys and values, exactly as in the released model.
    """
    batch, length, channels = tokens.shape
    if length % num_frames:
        raise ValueError(f"{length} motion tokens do not divide into {num_frames} frames")
    tokens_per_frame = length // num_frames
    ranges = window_index_ranges(num_frames, tokens_per_frame)
    size = FRAMES_PER_LATENT * tokens_per_frame + 1
    index = torch.full((len(ranges), size), length, dtype=torch.long)  # `length` = the zero row
    k_lens = torch.empty(len(ranges), dtype=torch.long)
    for t, (start, end) in enumerate(ranges):
        real = torch.arange(max(start, 0), min(end, length - 1) + 1)
        index[t, : len(real)] = real
        k_lens[t] = len(real)
    padded = torch.cat([tokens, tokens.new_zeros(batch, 1, channels)], dim=1)
    return padded[:, index.to(tokens.device)], k_lens


@dataclass(eq=False)
class MotionCondition:
    """Motion input of one sampling run, passed to :class:`FantasyPortraitTransformer`.

    windows: one (Bw, T, W, C) tensor per face (``motion_windows`` output), faces in portrait order;
        Bw is 1 (shared by the whole batch) or the batch size.
    labels: (h, w) int token-grid label map (0 background, i + 1 face i), required for 2+ faces;
        or (B, h, w), one map per sample of the batch (training batches of different clips).
    cache_kv: keep each block's motion keys/values for reuse while gradients are off. Set False to
        recompute them at every call when memory is short (cost: see BENCHMARKS.md).
    masked: False lets every video token see every face's motion slots (the paper's ablation without
        masked motion attention; the released model is trained masked).
    """

    windows: list[torch.Tensor]
    labels: torch.Tensor | None = None
    cache_kv: bool = True
    masked: bool = True
    _kv: dict = field(default_factory=dict, init=False, repr=False)
    _groups: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if not self.windows:
            raise ValueError("MotionCondition needs the windows of at least one face")
        shapes = {tuple(w.shape) for w in self.windows}
        if len(shapes) != 1:
            raise ValueError(f"every face's windows must have one shape, got {sorted(shapes)}")
        if self.num_faces > 1 and self.labels is None and self.masked:
            raise ValueError(f"{self.num_faces} faces need a token label map")
        if self.labels is not None and int(self.labels.max()) > self.num_faces:
            raise ValueError(f"label map names face {int(self.labels.max())} but only {self.num_faces} faces")
        if self.labels is not None and self.labels.ndim == 3 and bool((self.labels == self.labels[:1]).all()):
            self.labels = self.labels[0]  # one map for the whole batch: the shared (faster) path

    @property
    def per_sample_labels(self) -> bool:
        return self.masked and self.num_faces > 1 and self.labels.ndim == 3

    @property
    def num_faces(self) -> int:
        return len(self.windows)

    @property
    def window_size(self) -> int:
        return self.windows[0].shape[2]

    def keys_values(self, block_index: int, attn) -> tuple[torch.Tensor, torch.Tensor]:
        """Motion keys and values of one block: each (Bw, T, N * W, heads, head_dim)."""
        weight = attn.motion_k_proj.weight
        key = (block_index, weight.dtype, weight.device)
        cached = self._kv.get(key)
        if cached is not None:
            return cached
        tokens = torch.cat(self.windows, dim=2).to(device=weight.device, dtype=weight.dtype)
        k = attn.motion_k_proj(tokens).unflatten(-1, (attn.heads, -1))
        v = attn.motion_v_proj(tokens).unflatten(-1, (attn.heads, -1))
        if self.cache_kv and not torch.is_grad_enabled():
            self._kv[key] = (k, v)
        return k, v

    def sample_labels(self, sample: int | None = None) -> torch.Tensor:
        """The label map of one sample (the shared map when there is one)."""
        return self.labels[sample] if self.labels.ndim == 3 else self.labels

    def query_groups(
        self, device: torch.device, sample: int | None = None, cells: tuple[int, int] | None = None
    ) -> list[torch.Tensor]:
        """Token indices (within a latent frame, or within its cells [a, b)) of background, face 1, ..., N."""
        key = (device, sample if self.labels.ndim == 3 else None, cells)
        groups = self._groups.get(key)
        if groups is None:
            labels = self.sample_labels(sample).reshape(-1)
            if cells is not None:
                labels = labels[cells[0] : cells[1]]
            labels = labels.to(device)
            groups = [torch.nonzero(labels == i).flatten() for i in range(self.num_faces + 1)]
            self._groups[key] = groups
        return groups

    def clear_cache(self) -> None:
        self._kv.clear()


@dataclass
class MotionStep:
    """What one transformer call needs from the motion condition (built by the transformer)."""

    condition: MotionCondition
    scale: torch.Tensor  # (B,) float32 motion scale per sample
    active: torch.Tensor | None  # sample indices with a non-zero scale, None = all
    attention_backend: str | None = None
    tokens: TokenRange | None = None  # the video tokens this rank holds (context parallel); None = all


def _attend(query, key, value, backend):
    return dispatch_attention_fn(
        query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, backend=backend
    )


def motion_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    condition: MotionCondition,
    backend=None,
    sample: int | None = None,
    tokens: TokenRange | None = None,
) -> torch.Tensor:
    """query (B, S, heads, d); keys/values (B, T, N*W, heads, d) -> (B, S, heads*d).

    ``sample``: which sample's label map applies (per-sample maps; the query batch is then 1).
    ``tokens``: which video tokens of the clip's T latent frames the queries are (context parallelism
    gives each rank a contiguous share); None: all of them. Each token attends to its own latent
    frame's window with its own cell's label, so a share is computed alone (see parallel.sharding).
    """
    if tokens is None:
        return _frames_attention(query, keys, values, condition, backend, sample)
    if tokens.length != query.shape[1]:
        raise ValueError(f"{query.shape[1]} query tokens for the token range {tokens}")
    frames = keys.shape[1]
    if tokens.total % frames:
        raise ValueError(
            f"{tokens.total} video tokens do not divide into {frames} latent frames of motion windows"
        )
    per_frame = tokens.total // frames
    outputs = []
    for piece in frame_pieces(tokens, per_frame):
        (f0, f1), (i, j) = piece.frames, piece.local
        cells = None if piece.num_cells == per_frame else piece.cells
        outputs.append(
            _frames_attention(
                query[:, i:j], keys[:, f0:f1], values[:, f0:f1], condition, backend, sample, cells, per_frame
            )
        )
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)


def _frames_attention(
    query, keys, values, condition, backend, sample, cells: tuple[int, int] | None = None, frame_cells=None
):
    """Motion attention of whole latent frames (``cells`` None) or of cells [a, b) of each frame."""
    batch, seq, heads, head_dim = query.shape
    frames = keys.shape[1]
    if seq % frames:
        raise ValueError(f"{seq} video tokens do not divide into {frames} latent frames of motion windows")
    per_frame = seq // frames
    query = query.reshape(batch * frames, per_frame, heads, head_dim)
    keys = keys.flatten(0, 1)
    values = values.flatten(0, 1)
    if condition.num_faces == 1 or not condition.masked:
        out = _attend(query, keys, values, backend)
    else:
        labels = condition.sample_labels(sample)
        cells_per_frame = per_frame if cells is None else frame_cells
        if labels.numel() != cells_per_frame:
            raise ValueError(
                f"label map has {labels.numel()} cells but a latent frame has {cells_per_frame} tokens"
            )
        size = condition.window_size
        outputs, order = [], []
        for label, index in enumerate(condition.query_groups(query.device, sample, cells)):
            if index.numel() == 0:
                continue
            if label == 0:  # background sees every face's slots
                k, v = keys, values
            else:
                k = keys[:, (label - 1) * size : label * size]
                v = values[:, (label - 1) * size : label * size]
            outputs.append(_attend(query.index_select(1, index), k, v, backend))
            order.append(index)
        inverse = torch.argsort(torch.cat(order))
        out = torch.cat(outputs, dim=1).index_select(1, inverse)
    return out.reshape(batch, seq, heads * head_dim)
