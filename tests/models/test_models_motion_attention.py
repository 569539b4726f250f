"""Properties of the motion attention that the golden cases cannot pin down alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fantasy_portrait.models import motion_attention as ma
from fantasy_portrait.models import transformer as tr
from fantasy_portrait.models.loading import build_from_preset
from fantasy_portrait.models.masks import dense_motion_mask, token_label_map
from fantasy_portrait.models.motion_attention import MotionCondition, motion_attention
from fantasy_portrait.pipeline.schedule import euler_step, flow_match_sigmas, guided_velocity

T, H, W = 3, 8, 12  # latent frames, latent height/width -> token grid 4 x 6
IMAGE_HW = (H * 8, W * 8)


def _random_model(seed=0):
    torch.manual_seed(seed)
    transformer, encoder = build_from_preset("tiny", device="cpu")
    for module in transformer.motion_modules():  # zero in a fresh model; make the branch visible
        torch.nn.init.normal_(module.weight, std=0.05)
    return transformer.eval(), encoder.eval()


def _inputs(seed=1, batch=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 36, T, H, W, generator=g)
    context = torch.randn(batch, 512, 32, generator=g)
    clip = torch.randn(batch, 257, 1280, generator=g)
    return x, torch.full((batch,), 700.0), context, clip


def _twice(x, t, context, clip):
    """The same inputs as a batch of two (the two guidance branches)."""
    return x.expand(2, -1, -1, -1, -1), t.expand(2), context.expand(2, -1, -1), clip.expand(2, -1, -1)


def _windows(num_faces, seed=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, T, 97, 32, generator=g) for _ in range(num_faces)]


def _labels(num_faces):
    """Vertical strips: background column 0, then faces left to right."""
    regions = []
    step = (IMAGE_HW[1] - 16) // num_faces
    for i in range(num_faces):
        regions.append([16 + i * step, 8, 16 + (i + 1) * step - 1, IMAGE_HW[0] - 8])
    return token_label_map(regions, IMAGE_HW)


class _Recorder:
    """Wraps motion_attention to record its outputs (per call) and count calls."""

    def __init__(self, monkeypatch):
        self.outputs = []
        original = ma.motion_attention

        def wrapped(*args, **kwargs):
            out = original(*args, **kwargs)
            self.outputs.append(out.detach().clone())
            return out

        monkeypatch.setattr(tr, "motion_attention", wrapped)


@pytest.mark.parametrize("num_faces", [2, 3, 4])
def test_changing_one_face_leaves_the_others_untouched(monkeypatch, num_faces):
    transformer, _ = _random_model()
    labels = _labels(num_faces)
    recorder = _Recorder(monkeypatch)
    windows = _windows(num_faces)
    changed = [w.clone() for w in windows]
    b = num_faces - 1  # change the last face's driver
    changed[b] = torch.randn_like(changed[b])
    with torch.no_grad():
        transformer(*_inputs(), motion=MotionCondition(windows, labels))
        transformer(*_inputs(), motion=MotionCondition(changed, labels))
    n_blocks = len(transformer.blocks)
    first, second = recorder.outputs[0], recorder.outputs[n_blocks]  # block 0: identical queries
    flat = labels.flatten()
    per_frame = first.view(1, T, -1, first.shape[-1])
    per_frame2 = second.view(1, T, -1, second.shape[-1])
    for face in range(num_faces):
        cells = flat == face + 1
        assert cells.any()
        same = torch.equal(per_frame[:, :, cells], per_frame2[:, :, cells])
        assert same == (face != b), f"face {face}: unchanged={same}"
    background = flat == 0
    assert not torch.equal(per_frame[:, :, background], per_frame2[:, :, background])


def test_motion_scale_zero_is_exactly_plain_and_runs_no_motion_kernel(monkeypatch):
    transformer, _ = _random_model()
    recorder = _Recorder(monkeypatch)
    calls = []
    original_kv = MotionCondition.keys_values
    monkeypatch.setattr(
        MotionCondition, "keys_values", lambda self, *a: calls.append(1) or original_kv(self, *a)
    )
    motion = MotionCondition(_windows(2), _labels(2))
    with torch.no_grad():
        plain = transformer(*_inputs())
        zero = transformer(*_inputs(), motion=motion, motion_scale=0.0)
        x, t, context, clip = _inputs()
        zero_vec = transformer(
            *_twice(x, t, context, clip),
            motion=motion,
            motion_scale=torch.zeros(2),
        )
        scaled = transformer(*_inputs(), motion=motion, motion_scale=1.0)
    assert torch.equal(plain, zero)
    torch.testing.assert_close(zero_vec[:1], plain, atol=1e-5, rtol=0)  # batch 2 vs 1: same up to rounding
    assert torch.equal(zero_vec[0], zero_vec[1])
    assert not torch.equal(plain, scaled)
    n_blocks = len(transformer.blocks)
    assert len(recorder.outputs) == n_blocks and len(calls) == n_blocks  # only the scaled call


def test_batched_guidance_branches_equal_separate_calls():
    transformer, _ = _random_model()
    motion = MotionCondition(_windows(2), _labels(2))
    x, t, context, clip = _inputs()
    with torch.no_grad():
        cond = transformer(x, t, context, clip, motion=motion, motion_scale=1.0)
        uncond = transformer(x, t, context, clip, motion=motion, motion_scale=0.0)
        both = transformer(
            *_twice(x, t, context, clip),
            motion=motion,
            motion_scale=torch.tensor([1.0, 0.0]),
        )
    torch.testing.assert_close(both[:1], cond, atol=1e-5, rtol=0)
    torch.testing.assert_close(both[1:], uncond, atol=1e-5, rtol=0)


def test_cached_motion_keys_match_recomputed_over_a_guided_run(monkeypatch):
    transformer, _ = _random_model()
    projections = []
    original_kv = MotionCondition.keys_values

    def counting(self, block_index, attn):
        if (block_index, attn.motion_k_proj.weight.dtype, attn.motion_k_proj.weight.device) not in self._kv:
            projections.append(block_index)
        return original_kv(self, block_index, attn)

    monkeypatch.setattr(MotionCondition, "keys_values", counting)

    def sample(cache_kv):
        motion = MotionCondition(_windows(2), _labels(2), cache_kv=cache_kv)
        x, _, context, clip = _inputs()
        latents = torch.randn(1, 16, T, H, W, generator=torch.Generator().manual_seed(5))
        sigmas = flow_match_sigmas(3).tolist() + [0.0]
        with torch.no_grad():
            for i in range(3):
                inp = torch.cat([latents, x[:, 16:]], dim=1)
                t = torch.tensor([1000 * sigmas[i]])
                v = transformer(
                    *_twice(inp, t, context, clip),
                    motion=motion,
                    motion_scale=torch.tensor([1.0, 0.0]),
                )
                latents = euler_step(latents, guided_velocity(v[:1], v[1:], 4.0), sigmas[i], sigmas[i + 1])
        return latents

    cached = sample(True)
    n_cached = len(projections)
    projections.clear()
    recomputed = sample(False)
    torch.testing.assert_close(cached, recomputed, atol=1e-6, rtol=0)
    n_blocks = len(transformer.blocks)
    assert n_cached == n_blocks and len(projections) == 3 * n_blocks


@settings(max_examples=40, deadline=None)
@given(num_faces=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_grouped_attention_equals_dense_mask(num_faces, seed):
    g = torch.Generator().manual_seed(seed)
    frames, cells, heads, dim, window = 2, 24, 2, 8, 97
    rng = np.random.default_rng(seed)
    labels = torch.as_tensor(rng.integers(0, num_faces + 1, size=(4, 6)))
    q = torch.randn(1, frames * cells, heads, dim, generator=g)
    k = torch.randn(1, frames, num_faces * window, heads, dim, generator=g)
    v = torch.randn(1, frames, num_faces * window, heads, dim, generator=g)
    condition = MotionCondition([torch.zeros(1, frames, window, 4)] * num_faces, labels)
    grouped = motion_attention(q, k, v, condition)
    mask = dense_motion_mask(labels, num_faces, window)  # (cells, N*W)
    dense = (
        F.scaled_dot_product_attention(
            q.view(frames, cells, heads, dim).transpose(1, 2),
            k[0].transpose(1, 2),
            v[0].transpose(1, 2),
            attn_mask=mask if num_faces > 1 else None,
        )
        .transpose(1, 2)
        .reshape(1, frames * cells, heads * dim)
    )
    torch.testing.assert_close(grouped, dense, atol=1e-5, rtol=1e-5)


def _pooled_pixel_volume(regions, image_hw, latent_frames):
    """The released method: paint a full-resolution label volume, then max-pool it."""
    height, width = image_hw
    frames = 4 * (latent_frames - 1) + 1
    volume = torch.zeros(frames, height, width)
    for i, (x1, y1, x2, y2) in enumerate(regions):
        volume[:, y1:y2, x1:x2] = i + 1
    first = F.max_pool2d(volume[:1][None], 16)[0]
    rest = F.max_pool3d(volume[1:][None, None], (4, 16, 16))[0, 0] if frames > 1 else volume[:0, ::16, ::16]
    return torch.cat([first, rest]).long()


@settings(max_examples=60, deadline=None)
@given(
    num_faces=st.integers(1, 4),
    grid=st.tuples(st.integers(1, 6), st.integers(1, 8)),
    data=st.data(),
)
def test_token_label_map_equals_pooled_pixel_volume(num_faces, grid, data):
    height, width = grid[0] * 16, grid[1] * 16
    regions = []
    for _ in range(num_faces):
        x1 = data.draw(st.integers(0, width - 1))
        y1 = data.draw(st.integers(0, height - 1))
        x2 = data.draw(st.integers(x1 + 1, width))
        y2 = data.draw(st.integers(y1 + 1, height))
        regions.append([x1, y1, x2, y2])
    latent_frames = data.draw(st.integers(1, 3))
    expected = _pooled_pixel_volume(regions, (height, width), latent_frames)
    labels = token_label_map(regions, (height, width))
    assert torch.equal(labels.expand(latent_frames, -1, -1), expected)


def test_condition_validation():
    with pytest.raises(ValueError, match="label map"):
        MotionCondition(_windows(2))
    with pytest.raises(ValueError, match="one shape"):
        MotionCondition([torch.zeros(1, 3, 97, 32), torch.zeros(1, 4, 97, 32)], _labels(2))
    with pytest.raises(ValueError, match="4k\\+1"):
        ma.motion_windows(torch.zeros(1, 24 * 6, 8), 6)


def test_blocks_are_called_as_modules_so_hooks_fire():
    transformer, _ = _random_model()
    seen = []
    handles = [
        b.register_forward_hook(lambda m, a, kw, out: seen.append(kw), with_kwargs=True)
        for b in transformer.blocks
    ]
    with torch.no_grad():
        transformer(*_inputs(), motion=MotionCondition(_windows(2), _labels(2)))
        transformer(*_inputs())
    for handle in handles:
        handle.remove()
    assert len(seen) == 2 * len(transformer.blocks)


def test_per_sample_label_maps_equal_separate_calls():
    """A batch of clips with different face layouts: each sample uses its own map."""
    transformer, _ = _random_model()
    windows = _windows(3)
    labels_a, labels_b = _labels(3), _labels(3).flip(-1).clamp(max=3)
    x, t, context, clip = _inputs()
    with torch.no_grad():
        alone_a = transformer(x, t, context, clip, motion=MotionCondition(windows, labels_a))
        alone_b = transformer(x, t, context, clip, motion=MotionCondition(windows, labels_b))
        both = transformer(
            *_twice(x, t, context, clip), motion=MotionCondition(windows, torch.stack([labels_a, labels_b]))
        )
        # the uncond branch skipped: per-sample maps with a partly active batch
        mixed = transformer(
            *_twice(x, t, context, clip),
            motion=MotionCondition(windows, torch.stack([labels_b, labels_a])),
            motion_scale=torch.tensor([1.0, 0.0]),
        )
    assert not torch.equal(labels_a, labels_b)
    torch.testing.assert_close(both[:1], alone_a, atol=1e-5, rtol=0)
    torch.testing.assert_close(both[1:], alone_b, atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[:1], alone_b, atol=1e-5, rtol=0)
    same = MotionCondition(windows, torch.stack([labels_a, labels_a]))
    assert same.labels.ndim == 2  # identical maps collapse to the shared path


def test_unmasked_condition_lets_every_face_see_every_driver(monkeypatch):
    """The ablation without masked motion attention: changing face B's driver changes face A's output,
    and every token is treated like background (the same as a label map with no faces)."""
    transformer, _ = _random_model()
    labels = _labels(2)
    recorder = _Recorder(monkeypatch)
    windows = _windows(2)
    changed = [windows[0], torch.randn_like(windows[1])]
    with torch.no_grad():
        transformer(*_inputs(), motion=MotionCondition(windows, labels, masked=False))
        transformer(*_inputs(), motion=MotionCondition(changed, labels, masked=False))
        transformer(*_inputs(), motion=MotionCondition(windows, torch.zeros_like(labels)))
    n = len(transformer.blocks)
    first, second, all_background = recorder.outputs[0], recorder.outputs[n], recorder.outputs[2 * n]
    face_a = (labels.flatten() == 1).repeat(T)
    assert not torch.equal(first[:, face_a], second[:, face_a])
    torch.testing.assert_close(first, all_background, atol=1e-6, rtol=1e-6)
    assert MotionCondition(windows, None, masked=False).num_faces == 2  # no label map needed


def test_encoder_without_expression_augmentation_has_four_tokens_per_frame():
    from fantasy_portrait.models.config import ExpressionEncoderConfig
    from fantasy_portrait.models.expression_encoder import ExpressionEncoder

    small = dict(token_dim=16, resampler_dim=16, resampler_depth=1, resampler_heads=2, resampler_head_dim=8)
    plain = ExpressionEncoder(ExpressionEncoderConfig(mouth_queries=0, emotion_queries=0, **small))
    assert plain.config.tokens_per_frame == 4 and plain.config.window_size == 17
    assert not any(name.startswith(("mouth_", "emotion_")) for name, _ in plain.named_parameters())
    motion = torch.randn(2, 5, sum(plain.config.part_dims))
    tokens = plain(motion)
    assert tokens.shape == (2, 20, 16)
    # The four tokens are the part projections, the same as in the augmented encoder.
    full = ExpressionEncoder(ExpressionEncoderConfig(**small))
    full.parts.load_state_dict(plain.parts.state_dict())
    torch.testing.assert_close(full(motion).view(2, 5, 24, 16)[:, :, :4], tokens.view(2, 5, 4, 16))
    with pytest.raises(ValueError, match="both be zero"):
        ExpressionEncoder(ExpressionEncoderConfig(mouth_queries=0, **small))
