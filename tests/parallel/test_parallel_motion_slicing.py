"""The motion attention of a rank's share of the video tokens equals that share of the whole sequence's
(one process, no collectives: the slicing logic alone)."""

from __future__ import annotations

import pytest
import torch

from fantasy_portrait.models.masks import token_label_map
from fantasy_portrait.models.motion_attention import MotionCondition, motion_attention
from fantasy_portrait.parallel import TokenRange, shard_bounds

HEADS, DIM, SLOTS = 2, 8, 97


def _condition(faces: int, frames: int, grid: tuple[int, int], per_sample: int = 0):
    g = torch.Generator().manual_seed(faces)
    windows = [torch.randn(1, frames, SLOTS, 4, generator=g) for _ in range(faces)]
    labels = None
    if faces > 1:
        h, w = grid
        step = max(1, w // faces)
        regions = [[16 * i * step, 0, 16 * (i + 1) * step, 16 * h - 16] for i in range(faces)]
        labels = token_label_map(regions, (16 * h, 16 * w))
        if per_sample:
            labels = torch.stack([labels, labels.flip(1)][:per_sample])
    return MotionCondition(windows, labels)


def _qkv(batch: int, frames: int, cells: int, faces: int):
    g = torch.Generator().manual_seed(7)
    query = torch.randn(batch, frames * cells, HEADS, DIM, generator=g)
    keys = torch.randn(batch, frames, faces * SLOTS, HEADS, DIM, generator=g)
    values = torch.randn(batch, frames, faces * SLOTS, HEADS, DIM, generator=g)
    return query, keys, values


@pytest.mark.parametrize("faces", [1, 2, 3])
@pytest.mark.parametrize("world", [2, 3, 4, 7])
def test_each_share_equals_its_slice_of_the_whole(faces, world):
    frames, grid = 3, (3, 5)  # 15 cells per frame, 45 tokens: shares cut frames in the middle
    cells = grid[0] * grid[1]
    condition = _condition(faces, frames, grid)
    query, keys, values = _qkv(2, frames, cells, faces)
    whole = motion_attention(query, keys, values, condition)
    total = frames * cells
    for rank in range(world):
        start, stop = shard_bounds(total, world, rank)
        share = motion_attention(
            query[:, start:stop], keys, values, condition, tokens=TokenRange(start, stop, total)
        )
        torch.testing.assert_close(share, whole[:, start:stop], rtol=0, atol=1e-6)


def test_per_sample_label_maps_follow_the_split():
    frames, grid, faces = 2, (2, 4), 2
    cells = grid[0] * grid[1]
    condition = _condition(faces, frames, grid, per_sample=2)
    query, keys, values = _qkv(1, frames, cells, faces)
    total = frames * cells
    for sample in (0, 1):
        whole = motion_attention(query, keys, values, condition, sample=sample)
        for start, stop in (shard_bounds(total, 2, 0), shard_bounds(total, 2, 1), (3, 13)):
            share = motion_attention(
                query[:, start:stop],
                keys,
                values,
                condition,
                sample=sample,
                tokens=TokenRange(start, stop, total),
            )
            torch.testing.assert_close(share, whole[:, start:stop], rtol=0, atol=1e-6)


def test_a_wrong_offset_gives_other_numbers():
    """The share must know where it lies: the same queries placed one frame off see other windows/labels."""
    frames, grid, faces = 3, (3, 5), 2
    cells = grid[0] * grid[1]
    condition = _condition(faces, frames, grid)
    query, keys, values = _qkv(1, frames, cells, faces)
    whole = motion_attention(query, keys, values, condition)
    total = frames * cells
    start, stop = 20, 40
    wrong = motion_attention(
        query[:, start:stop], keys, values, condition, tokens=TokenRange(start - 7, stop - 7, total)
    )
    assert (wrong - whole[:, start:stop]).abs().max() > 1e-2


def test_range_must_match_the_queries():
    condition = _condition(1, 2, (2, 2))
    query, keys, values = _qkv(1, 2, 4, 1)
    with pytest.raises(ValueError, match="token range"):
        motion_attention(query[:, :3], keys, values, condition, tokens=TokenRange(0, 4, 8))
