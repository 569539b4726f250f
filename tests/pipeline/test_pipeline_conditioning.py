"""Image-conditioning details of SPEC §8: output size, first-frame mask, VAE input chunks."""

from __future__ import annotations

import pytest
import torch

from fantasy_portrait.pipeline.conditioning import first_frame_mask, image_condition_chunks, target_size


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
    chunks = list(image_condition_chunks(ref, frames))
    assert [c.shape[2] for c in chunks] == [1] + [4] * ((frames - 1) // 4)
    assert torch.equal(chunks[0][:, :, 0], ref)
    assert all(bool((c == 0).all()) for c in chunks[1:])
    assert sum(c.shape[2] for c in chunks) == frames


def _stub_faces(monkeypatch, pl, boxes, motion, num_frames):
    """Replace the face stages (detection, tracking, PD-FGC) by given boxes and motion, faces in
    portrait order: the conditioning is what is under test, not the face detector."""
    from types import SimpleNamespace

    from fantasy_portrait.pipeline.drivers import FaceMotion

    faces = [
        FaceMotion(boxes[i, 0].numpy(), motion[i], boxes[i].numpy(), f"stub#{i}") for i in range(len(boxes))
    ]
    plan = SimpleNamespace(num_frames=num_frames, portrait_faces=faces, mapping=list(range(len(faces))))
    monkeypatch.setattr(pl, "plan_driving", lambda *a, **k: plan)
    monkeypatch.setattr(pl, "face_motions", lambda *a, **k: faces)


def test_precomputed_sample_equals_what_the_pipeline_feeds_the_transformer(tiny_pipe, tmp_path, monkeypatch):
    """Training and inference build the same conditions for the same clip: y (mask + image latents),
    CLIP features, motion windows per face and the label map (faces given right to left)."""
    import numpy as np
    from safetensors.torch import save_file

    from fantasy_portrait.io import save_image, write_video
    from fantasy_portrait.io.video import read_video
    from fantasy_portrait.pipeline import conditioning
    from fantasy_portrait.pipeline import pipeline as pl
    from fantasy_portrait.training.dataset import PrecomputedDataset
    from fantasy_portrait.training.precompute import (
        PrecomputeOptions,
        pipeline_encoders,
        precompute_dataset,
        resize_crop,
    )

    f, height, width = 9, 48, 64
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    write_video(tmp_path / "clip.mp4", np.stack([np.roll(base, i, axis=1) for i in range(f)]), fps=25)
    right = [[36 + i, 6, 58 + i, 30] for i in range(f)]
    left = [[4, 10, 26, 36 - (i % 3)] for i in range(f)]
    boxes = torch.tensor([right, left], dtype=torch.float32)
    motion = torch.randn(2, f, 554, generator=torch.Generator().manual_seed(1))
    save_file({"boxes": boxes, "motion": motion}, str(tmp_path / "clip.safetensors"))
    (tmp_path / "clips.jsonl").write_text('{"id": "c", "video": "clip.mp4", "tracks": "clip.safetensors"}\n')

    # training side: precompute with the pipeline's own VAE and CLIP
    empty = tiny_pipe.encode_text("")
    encoders = pipeline_encoders(tiny_pipe.vae, tiny_pipe.clip, None, empty)
    options = PrecomputeOptions(height=height, width=width, max_frames=f)
    precompute_dataset(tmp_path / "clips.jsonl", tmp_path / "set", encoders, options, progress=False)
    sample = PrecomputedDataset(tmp_path / "set")[0]

    # inference side: the clip's first (decoded, cropped) frame as the portrait, the clip as driver
    frames, scale, ox, oy = resize_crop(read_video(tmp_path / "clip.mp4").frames[:f], height, width)
    assert (scale, ox, oy) == (1.0, 0.0, 0.0)
    save_image(tmp_path / "portrait.png", frames[0])
    order = [1, 0]  # left to right
    _stub_faces(monkeypatch, pl, boxes[order], motion[order], f)
    seen = {}

    def spy(module, args, kwargs):
        seen.setdefault("y", args[0][:1, 16:].clone())
        seen.setdefault("image", kwargs["encoder_hidden_states_image"][:1].clone())
        seen.setdefault("motion", kwargs["motion"])

    handle = tiny_pipe.transformer.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        tiny_pipe(tmp_path / "portrait.png", tmp_path / "clip.mp4", max_size=64, num_steps=1, progress=False)
    finally:
        handle.remove()

    y_train = conditioning.condition_y(sample["image_latents"][None])
    assert torch.equal(seen["y"], y_train)
    assert torch.equal(seen["image"], sample["clip"][None])
    with torch.no_grad():
        windows = conditioning.face_windows(tiny_pipe.expression_encoder, sample["motion"][None])
    assert len(seen["motion"].windows) == 2
    for a, b in zip(seen["motion"].windows, windows):
        assert torch.equal(a, b)
    assert torch.equal(seen["motion"].labels, sample["labels"].long())
    assert set(sample["labels"].unique().tolist()) == {0, 1, 2}  # both faces and background present
