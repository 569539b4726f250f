"""Image-conditioning details of SPEC §8: output size, first-frame mask, VAE input chunks."""

from __future__ import annotations

import pytest
import torch

from fantasy_portrait.pipeline.pipeline import _conditioning_chunks, first_frame_mask, target_size


@pytest.mark.parametrize(
    "wh,max_size,expected",
    [
        ((1024, 1024), 720, (720, 720)),
        ((1280, 720), 720, (720, 416)),
        ((610, 1084), 720, (416, 720)),
        ((1084, 610), 64, (64, 48)),
        ((100, 37), 720, (720, 272)),
    ],
)
def test_target_size_longer_side_then_round_up_to_16(wh, max_size, expected):
    w, h = target_size(*wh, max_size)
    assert (w, h) == expected and w % 16 == 0 and h % 16 == 0
    assert max(w, h) >= max_size and max(w, h) < max_size + 16


def test_first_frame_mask_marks_latent_frame_zero_only():
    m = first_frame_mask(5, 3, 4)
    assert m.shape == (1, 4, 5, 3, 4)
    assert bool((m[:, :, 0] == 1).all()) and bool((m[:, :, 1:] == 0).all())


@pytest.mark.parametrize("frames", [1, 5, 81])
def test_vae_input_is_image_then_zero_frames_in_causal_chunks(frames):
    ref = torch.rand(1, 3, 16, 16) * 2 - 1
    chunks = list(_conditioning_chunks(ref, frames))
    assert [c.shape[2] for c in chunks] == [1] + [4] * ((frames - 1) // 4)
    assert torch.equal(chunks[0][:, :, 0], ref)
    assert all(bool((c == 0).all()) for c in chunks[1:])
    assert sum(c.shape[2] for c in chunks) == frames
