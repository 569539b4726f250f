"""The token split of context parallelism and the motion attention's pieces (pure functions)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fantasy_portrait.errors import InputError
from fantasy_portrait.parallel import ParallelSpec, TokenRange, frame_pieces, shard_bounds
from fantasy_portrait.parallel.plan import TokenPositions, motion_cp_plan, token_range


@given(st.integers(1, 500), st.integers(1, 9))
@settings(max_examples=60, deadline=None)
def test_shard_bounds_match_torch_split(length, parts):
    pieces = torch.arange(length).tensor_split(parts)
    for index, piece in enumerate(pieces):
        start, stop = shard_bounds(length, parts, index)
        assert torch.equal(torch.arange(start, stop), piece)
    if length % parts == 0:  # diffusers' equal split uses chunk
        for index, piece in enumerate(torch.arange(length).chunk(parts)):
            assert shard_bounds(length, parts, index) == (int(piece[0]), int(piece[-1]) + 1)


@given(st.integers(1, 6), st.integers(1, 40), st.data())
@settings(max_examples=80, deadline=None)
def test_frame_pieces_cover_the_range_frame_by_frame(frames, per_frame, data):
    total = frames * per_frame
    start = data.draw(st.integers(0, total - 1))
    stop = data.draw(st.integers(start + 1, total))
    pieces = frame_pieces(TokenRange(start, stop, total), per_frame)
    assert len(pieces) <= 3
    covered = []
    for p in pieces:
        assert p.num_frames >= 1
        if p.num_frames > 1:
            assert p.cells == (0, per_frame)  # several frames: whole frames only
        tokens = [f * per_frame + c for f in range(*p.frames) for c in range(*p.cells)]
        assert p.local[1] - p.local[0] == len(tokens)
        assert tokens == list(range(start + p.local[0], start + p.local[1]))
        covered += tokens
    assert covered == list(range(start, stop))


def test_frame_pieces_of_a_half_split():
    # 3 frames of 24 tokens over 2 ranks: rank 1 holds the second half of frame 1 and all of frame 2
    pieces = frame_pieces(TokenRange(36, 72, 72), 24)
    assert [(p.frames, p.cells, p.local) for p in pieces] == [
        ((1, 2), (12, 24), (0, 12)),
        ((2, 3), (0, 24), (12, 36)),
    ]
    with pytest.raises(ValueError):
        frame_pieces(TokenRange(0, 10, 70), 24)  # 70 is not a number of whole frames


def test_token_positions_and_range():
    x = torch.zeros(2, 12, 5)
    positions = TokenPositions()(x)
    assert positions.tolist() == [list(range(12))]
    assert token_range(positions, 12) is None  # the whole sequence: no split
    assert token_range(positions[:, 6:], 12) == TokenRange(6, 12, 12)
    with pytest.raises(ValueError, match="non-contiguous"):
        token_range(positions[:, ::2], 12)


def test_plan_extends_the_wan_plan():
    from diffusers import WanTransformer3DModel

    from fantasy_portrait.models.transformer import FantasyPortraitTransformer

    base = WanTransformer3DModel._cp_plan
    plan = FantasyPortraitTransformer._cp_plan
    assert plan == motion_cp_plan(base)
    for key in ("rope", "blocks.0", "proj_out"):
        assert plan[key] == base[key]
    assert plan["token_positions"][0].split_output and plan["token_positions"][0].split_dim == 1
    assert "" not in plan  # the per-token timestep split of Wan 2.2 does not apply (one timestep per sample)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ulysses=4", ParallelSpec(ulysses=4)),
        ("ring=2", ParallelSpec(ring=2)),
        (" ulysses=2, ring=2 ", ParallelSpec(ulysses=2, ring=2)),
        ("cfg=2,ulysses=4", ParallelSpec(ulysses=4, cfg=2)),
        ("none", None),
        ("", None),
        ("ulysses=1", None),
    ],
)
def test_parallel_spec_parse(text, expected):
    assert ParallelSpec.parse(text) == expected


@pytest.mark.parametrize("text", ["ulysses", "tensor=2", "ulysses=two", "ulysses=0", "ring=2,ring=2"])
def test_parallel_spec_rejects(text):
    with pytest.raises(InputError, match="--parallel"):
        ParallelSpec.parse(text)


def test_parallel_spec_sizes_and_checks():
    spec = ParallelSpec(ulysses=4, ring=2, cfg=2)
    assert (spec.context_degree, spec.world_size, str(spec)) == (8, 16, "ulysses=4,ring=2,cfg=2")
    spec.check_heads(40)
    with pytest.raises(InputError, match="40 attention heads"):
        ParallelSpec(ulysses=3).check_heads(40)
    spec.check_tokens(21 * 1560)  # 480p, 81 frames: 32760 tokens split into 8
    with pytest.raises(InputError, match="do not split evenly"):
        ParallelSpec(ulysses=8).check_tokens(21 * 45 * 79)
