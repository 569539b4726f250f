"""PD-FGC encoder and alignment against the reference's golden fixtures (golden/README.md, case f)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from safetensors.torch import save_file

from fantasy_portrait.errors import CheckpointError
from fantasy_portrait.faces.align import PDFGC_TEMPLATE, alignment_matrices, umeyama, warp_faces
from fantasy_portrait.io import load_image
from fantasy_portrait.motion import MotionEncoder, MotionFeatures, extract_motion

GOLDEN = Path(__file__).parents[2] / ".." / "shared" / "golden"
ASSETS = Path(__file__).parents[2] / ".." / "shared" / "assets"
FIVE_ROWS = [182, 202, 36, 149, 133]


@pytest.fixture(scope="module")
def golden():
    return load_file(GOLDEN / "pdfgc.safetensors")


@pytest.fixture(scope="module")
def encoder():
    return MotionEncoder.from_pretrained(GOLDEN / "pd_fgc_random.pth")


def test_umeyama_and_warp_matrix(golden):
    five = golden["landmarks222"][FIVE_ROWS]
    np.testing.assert_allclose(umeyama(five, PDFGC_TEMPLATE * 224), golden["umeyama_T"], atol=1e-9, rtol=0)
    np.testing.assert_allclose(alignment_matrices(five), golden["warp_matrix"], atol=1e-9, rtol=0)


def test_warped_crop_within_a_few_grey_levels(golden):
    five = golden["landmarks222"][FIVE_ROWS]
    bgr = cv2.imread(str(ASSETS / "fp_man.jpeg"))
    crop = warp_faces(bgr, alignment_matrices(five))[0]
    diff = np.abs(crop.astype(int) - golden["warped_bgr"].astype(int))
    assert diff.max() <= 3 and (diff > 0).mean() <= 0.05
    # Our loader (PIL, RGB) gives the same crop with channels reversed.
    rgb_crop = warp_faces(load_image(ASSETS / "fp_man.jpeg"), alignment_matrices(five))[0]
    diff = np.abs(rgb_crop[..., ::-1].astype(int) - golden["warped_bgr"].astype(int))
    assert diff.max() <= 3 and (diff > 0).mean() <= 0.05


def test_preprocess_matches_fan_input(golden):
    x = MotionEncoder.preprocess(golden["warped_bgr"][..., ::-1])
    np.testing.assert_allclose(x.numpy(), golden["fan_input"], atol=1e-7, rtol=0)


def test_encoder_outputs(golden, encoder):
    features = encoder.encode_tensor(torch.from_numpy(golden["fan_input"]))
    for name, key in [
        ("head", "headpose_emb"),
        ("eye", "eye_embed"),
        ("emotion", "emo_embed"),
        ("mouth", "mouth_feat"),
    ]:
        np.testing.assert_allclose(getattr(features, name).numpy(), golden[key], atol=1e-5, rtol=0)
    np.testing.assert_allclose(features.as_tensor().numpy(), golden["motion_554"], atol=1e-5, rtol=0)


def test_extract_motion_end_to_end_from_image(golden, encoder):
    five = golden["landmarks222"][FIVE_ROWS]
    rgb = load_image(ASSETS / "fp_man.jpeg")
    frames = np.stack([rgb, rgb])
    features = extract_motion(frames, np.stack([five, five]), encoder, chunk=1)
    assert features.as_tensor().shape == (2, 554)
    np.testing.assert_allclose(features.as_tensor()[0].numpy(), golden["motion_554"][0], atol=2e-2)
    np.testing.assert_allclose(features.as_tensor()[0].numpy(), features.as_tensor()[1].numpy(), atol=1e-6)


def test_batching_does_not_change_results(golden, encoder):
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (3, 224, 224, 3), dtype=np.uint8)
    one = MotionEncoder(encoder.network, batch_size=1).encode(crops).as_tensor()
    many = MotionEncoder(encoder.network, batch_size=3).encode(crops).as_tensor()
    torch.testing.assert_close(one, many, atol=1e-4, rtol=1e-4)


def test_motion_features_roundtrip():
    x = torch.randn(7, 554)
    f = MotionFeatures.from_tensor(x)
    assert f.head.shape == (7, 6) and f.eye.shape == (7, 6) and f.emotion.shape == (7, 30)
    assert f.mouth.shape == (7, 512)
    torch.testing.assert_close(f.as_tensor(), x)
    torch.testing.assert_close(f[2:4].as_tensor(), x[2:4])
    with pytest.raises(ValueError):
        MotionFeatures.from_tensor(torch.randn(3, 553))


def test_checkpoint_section_and_bad_weights(tmp_path):
    state = torch.load(GOLDEN / "pd_fgc_random.pth", weights_only=True)
    bundled = {f"pd_fpg.{k}": v for k, v in state.items()}
    bundled["proj_model.norm.weight"] = torch.ones(4)
    save_file({k: v.contiguous() for k, v in bundled.items()}, tmp_path / "all.safetensors")
    enc = MotionEncoder.from_pretrained(tmp_path / "all.safetensors")
    loaded = enc.network.state_dict()
    assert set(loaded) == set(state)
    for k, v in state.items():
        torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)

    del state["to_eye.0.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="broken.pth: not PD-FGC"):
        MotionEncoder.from_pretrained(tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="not found"):
        MotionEncoder.from_pretrained(tmp_path / "pd_fpg.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pth: cannot read"):
        MotionEncoder.from_pretrained(tmp_path / "junk.pth")
