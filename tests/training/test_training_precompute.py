"""Precompute: clips -> sharded tensors + index, with the pipeline's tiny VAE and CLIP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fantasy_portrait.errors import InputError
from fantasy_portrait.training.dataset import INDEX_NAME, PrecomputedDataset
from fantasy_portrait.training.precompute import PrecomputeOptions, pipeline_encoders, precompute_dataset


@pytest.fixture(scope="module")
def tiny_encoders():
    from diffusers import AutoencoderKLWan
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from fantasy_portrait.pipeline.encoders import ClipImageEncoder, WanVAE

    torch.manual_seed(0)
    vae = WanVAE(AutoencoderKLWan(base_dim=8, z_dim=16).eval())
    clip_cfg = CLIPVisionConfig(
        hidden_size=1280,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=16,
        image_size=28,
        patch_size=14,
    )
    clip = ClipImageEncoder(CLIPVisionModel(clip_cfg).eval())
    empty = torch.randn(1, 1, 32)
    from fantasy_portrait.motion.encoder import MotionEncoder
    from fantasy_portrait.training.precompute import pdfgc_motion_features

    return pipeline_encoders(vae, clip, None, empty, motion_features=pdfgc_motion_features(MotionEncoder()))


def _write_clip(root, name, num_frames, boxes, motion=True, seed=0, five_points=False):
    from fantasy_portrait.io.video import write_video

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    frames = np.stack([np.roll(base, i, axis=1) for i in range(num_frames)])
    write_video(root / f"{name}.mp4", frames, fps=25)
    tracks = {"boxes": torch.tensor(boxes, dtype=torch.float32)}
    if motion:
        tracks["motion"] = torch.randn(
            len(boxes), len(boxes[0]), 554, generator=torch.Generator().manual_seed(seed)
        )
    if five_points:
        b = tracks["boxes"]
        cx, cy, w = (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2, b[..., 2] - b[..., 0]
        offsets = torch.tensor([[-0.2, -0.1], [0.2, -0.1], [0.0, 0.1], [-0.15, 0.3], [0.15, 0.3]])
        tracks["five_points"] = torch.stack([cx, cy], -1)[..., None, :] + offsets * w[..., None, None]
    save_file(tracks, str(root / f"{name}.safetensors"))
    return {"id": name, "video": f"{name}.mp4", "tracks": f"{name}.safetensors", "caption": f"clip {name}"}


@pytest.mark.slow
def test_precompute_writes_shards_orders_faces_and_skips_bad_clips(tmp_path, tiny_encoders):
    src = tmp_path / "clips"
    src.mkdir()
    f = 11
    one = [[[20, 10, 40, 34]] * f]
    # Two faces given right one first: precompute must store them left to right.
    right = [[40 + i, 8, 60 + i, 30] for i in range(f)]
    left = [[2, 12, 22, 36]] * f
    entries = [
        _write_clip(src, "single", f, one, seed=1),
        _write_clip(src, "pair", f, [right, left], seed=2),
        _write_clip(src, "nomotion", f, one, motion=False, seed=3),
        _write_clip(src, "points", f, one, motion=False, seed=4, five_points=True),
    ]
    (src / "broken.mp4").write_bytes(b"this is not a video")
    save_file({"boxes": torch.zeros(1, f, 4)}, str(src / "broken.safetensors"))
    entries.append({"id": "broken", "video": "broken.mp4", "tracks": "broken.safetensors"})
    manifest = src / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(e) for e in entries))

    out = tmp_path / "set"
    opts = PrecomputeOptions(height=32, width=32, max_frames=81, shard_size=1)
    report = precompute_dataset(manifest, out, tiny_encoders, opts, progress=False)

    assert report.written == 3
    assert sorted(s["id"] for s in report.skipped) == ["broken", "nomotion"]
    assert "five_points" in next(s["reason"] for s in report.skipped if s["id"] == "nomotion")
    index = json.loads((out / INDEX_NAME).read_text())
    assert len(index["shards"]) == 3 and len(index["skipped"]) == 2

    ds = PrecomputedDataset(out)
    assert len(ds) == 3
    by_key = {rec.key: i for i, rec in enumerate(ds.samples)}
    single = ds[by_key["single"]]
    # 11 frames -> 9 (4k+1) -> 3 latent frames at 32/8 = 4x4.
    assert single["latents"].shape == (16, 3, 4, 4)
    assert single["image_latents"].shape == (16, 3, 4, 4)
    assert single["motion"].shape == (1, 9, 554)
    assert single["clip"].shape[-1] == 1280
    assert single["text"].shape == (512, index["text_dim"])
    assert single["labels"].shape == (2, 2)
    # The image condition is [frame 0, black...]: latent frame 0 agrees with the clip's own encoding
    # only where the causal VAE saw the same pixels, later frames differ.
    assert not torch.allclose(single["latents"][:, 1:], single["image_latents"][:, 1:])

    # No motion in the track file: computed by the PD-FGC encoder from the five points.
    computed = ds[by_key["points"]]["motion"]
    assert computed.shape == (1, 9, 554) and torch.isfinite(computed).all() and computed.std() > 0

    pair = ds[by_key["pair"]]
    regions = torch.tensor(np.asarray(json.loads(json.dumps(pair["regions"].tolist()))))
    assert pair["motion"].shape[0] == 2
    centres = (regions[:, 0] + regions[:, 2]) / 2
    assert centres[0] < centres[1]  # left face first
    assert set(pair["labels"].unique().tolist()) <= {0, 1, 2} and pair["labels"].max() == 2


def test_dataset_drops_unreadable_shard_and_counts_it(tmp_path):
    from fantasy_portrait.training.dataset import ShardWriter

    writer = ShardWriter(tmp_path, shard_size=2)
    writer.write_empty_prompt(torch.randn(1, 8))
    for i in range(4):
        writer.add(
            f"s{i}",
            {
                "latents": torch.randn(16, 2, 4, 4),
                "image_latents": torch.randn(16, 2, 4, 4),
                "clip": torch.randn(5, 1280),
                "text": torch.randn(3, 8),
                "motion": torch.randn(1, 5, 554),
                "labels": torch.ones(2, 2, dtype=torch.int32),
                "regions": torch.tensor([[0, 0, 32, 32]], dtype=torch.int32),
            },
        )
    writer.close(text_len=16)
    (tmp_path / "shard-00001.safetensors").write_bytes(b"\x00garbage")
    ds = PrecomputedDataset(tmp_path)
    assert len(ds) == 2
    assert len(ds.skipped) == 2 and all("unreadable" in s["reason"] for s in ds.skipped)
    item = ds[0]
    assert item["text"].shape == (16, 8) and torch.all(item["text"][3:] == 0)
    assert ds.empty_prompt.shape == (16, 8)


def test_dataset_without_index_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="precompute"):
        PrecomputedDataset(tmp_path)
