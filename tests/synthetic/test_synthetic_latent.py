"""The tiny model's convolutional latent (a trained VAE stand-in): interface, training, loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fantasy_portrait.synthetic.cases import make_case, to_video_tensor
from fantasy_portrait.synthetic.latent import (
    ConvLatent,
    LinearLatent,
    fit_conv_latent,
    latent_from_state,
    through_latent,
)


@pytest.fixture(scope="module")
def cases():
    return [make_case(100_000 + i) for i in range(2)]


@pytest.fixture(scope="module")
def linear(cases):
    return LinearLatent.fit([c.truth.frames for c in cases])


def _face_psnr(a: np.ndarray, b: np.ndarray, boxes: np.ndarray) -> float:
    errs = []
    for i in range(boxes.shape[1]):
        x1, y1 = np.floor(boxes[:, i, :2].min(0)).astype(int)
        x2, y2 = np.ceil(boxes[:, i, 2:].max(0)).astype(int)
        errs.append(((a[1:, y1:y2, x1:x2].astype(np.float64) - b[1:, y1:y2, x1:x2]) ** 2).mean())
    return float(10 * np.log10(255**2 / np.mean(errs)))


def test_conv_latent_has_the_wan_vae_interface_and_starts_as_the_linear_one(linear, cases):
    latent = ConvLatent(linear, width=16)
    video = to_video_tensor(cases[0].truth.frames)
    z = latent.encode(video)
    assert z.shape == (1, 16, 5, 8, 16) and latent.z_dim == 16
    torch.testing.assert_close(z, linear.encode(video))  # corrections start at zero
    plain = LinearLatent.from_state(linear.state_dict())  # the linear decode without a refiner
    torch.testing.assert_close(latent.decode(z), plain.decode(z))
    chunks = [video[:, :, :1]] + [video[:, :, 1 + 4 * k : 5 + 4 * k] for k in range(4)]
    torch.testing.assert_close(latent.encode_stream(iter(chunks)), z)
    torch.testing.assert_close(torch.cat(list(latent.decode_stream(z)), dim=2), latent.decode(z))
    still = video[:, :, :1].expand(-1, -1, 9, -1, -1)
    zs = latent.encode(still)
    torch.testing.assert_close(zs[:, :, 0], zs[:, :, 2], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="4k\\+1"):
        latent.encode(video[:, :, :4])


def test_training_sharpens_the_faces_and_the_state_reloads(linear, cases):
    torch.manual_seed(0)
    latent = ConvLatent(linear, width=32)
    clips = [c.truth.frames for c in cases]
    boxes = [c.truth.boxes for c in cases]
    before = _face_psnr(through_latent(latent, clips[0]), clips[0], boxes[0])
    states = []
    history = fit_conv_latent(
        latent,
        clips,
        boxes,
        steps=40,
        batch_size=8,
        lr=2e-3,
        log_every=10,
        checkpoint=lambda s, st: states.append(st),
        checkpoint_every=20,
    )
    after = _face_psnr(through_latent(latent, clips[0]), clips[0], boxes[0])
    assert history[-1]["loss"] < history[0]["loss"]
    assert after > before + 0.25, (before, after)
    # channels normalised over the training frames
    z = latent.encode(to_video_tensor(clips[1]))
    assert abs(float(z.mean())) < 0.5 and 0.5 < float(z.std()) < 2.0
    again = latent_from_state(latent.state_dict())
    assert isinstance(again, ConvLatent)
    video = to_video_tensor(clips[0])
    torch.testing.assert_close(again.decode(again.encode(video)), latent.decode(latent.encode(video)))
    assert isinstance(latent_from_state(linear.state_dict()), LinearLatent)
    # resuming from the step-20 checkpoint repeats the uninterrupted run exactly
    resumed = ConvLatent(linear, width=32)
    fit_conv_latent(resumed, clips, boxes, steps=40, batch_size=8, lr=2e-3, state=states[0])
    for (k, a), b in zip(latent.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    bad = {k: v for k, v in latent.state_dict().items() if not k.startswith("decoder.")}
    with pytest.raises(RuntimeError, match="decoder"):
        latent_from_state(bad)


def test_decoder_only_training_keeps_the_latent_space(linear, cases):
    latent = ConvLatent(linear, width=16)
    clips = [c.truth.frames for c in cases]
    fit_conv_latent(latent, clips, steps=3, batch_size=2)  # a trained encoder, normalised channels
    video = to_video_tensor(clips[0])
    z = latent.encode(video)
    decoded = latent.decode(z)
    fit_conv_latent(latent, clips, steps=5, batch_size=2, train_encoder=False)
    torch.testing.assert_close(latent.encode(video), z, rtol=0, atol=0)
    assert not torch.allclose(latent.decode(z), decoded)
    assert all(p.requires_grad for p in latent.parameters())


def test_shipped_conv_latent_is_sharper_than_the_linear_one():
    """Ground truth through the default model's convolutional latent, through the linear latent it was
    built on and through the earlier default's refined linear latent, on demo cases none was fitted on
    (face PSNR; 20 cases in benchmarks/demo.md: 22.2 vs 21.9)."""
    from fantasy_portrait.synthetic.tiny_model import SHIPPED_MODELS, WEIGHTS_PATH, load_tiny_model

    conv = load_tiny_model(WEIGHTS_PATH)[2]  # the default model's
    assert isinstance(conv, ConvLatent)
    linear = load_tiny_model(SHIPPED_MODELS["linear"])[2]  # the earlier default's (with its refiner)
    for seed in (3, 5):
        case = make_case(seed)
        sharp = _face_psnr(through_latent(conv, case.truth.frames), case.truth.frames, case.truth.boxes)
        plain = _face_psnr(
            through_latent(conv.linear, case.truth.frames), case.truth.frames, case.truth.boxes
        )
        shipped = _face_psnr(through_latent(linear, case.truth.frames), case.truth.frames, case.truth.boxes)
        assert sharp > plain + 0.1 and sharp > shipped + 0.1 and sharp > 20.0, (seed, sharp, plain, shipped)
