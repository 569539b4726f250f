"""FID/FVD extractor loading: clear errors for missing or wrong files, features from valid ones.

The real pytorch-fid Inception and StyleGAN-V I3D files cannot be downloaded here, so these tests use
files of the same format built by code (random Inception weights saved as a state dict, a tiny
TorchScript module with the I3D call signature).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fantasy_portrait.bench import extractors
from fantasy_portrait.errors import CheckpointError


def test_missing_files_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="pt_inception-2015-12-05"):
        extractors.InceptionFeatures(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match=r"nope\.pt: FVD I3D weights file not found"):
        extractors.I3DFeatures(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="none was given"):
        extractors.InceptionFeatures(None)


def test_wrong_files_give_clear_errors(tmp_path):
    bad = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(CheckpointError, match="not the pytorch-fid Inception weights"):
        extractors.InceptionFeatures(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="cannot read the FID Inception weights file: not a torch checkpoint"):
        extractors.InceptionFeatures(junk)
    with pytest.raises(CheckpointError, match="not a TorchScript I3D"):
        extractors.I3DFeatures(junk)


@pytest.mark.slow  # a 24M-parameter network on 299 x 299 inputs: about 20 s on 2 busy cores
def test_inception_architecture_matches_the_pytorch_fid_layout(tmp_path):
    torch.manual_seed(0)  # the random initialisation must not depend on what ran before
    model = extractors._build_inception()
    state = model.state_dict()
    # torchvision's Inception-v3 without the auxiliary head, 1008 classes: 23,850,960 parameters.
    assert sum(p.numel() for p in model.parameters()) == 23_850_960
    assert state["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert state["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert state["fc.weight"].shape == (1008, 2048)
    # A file in that layout (older exports have no num_batches_tracked) loads and gives pool3 features.
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / extractors.FID_WEIGHTS_NAME
    torch.save({k: v for k, v in model.state_dict().items() if "num_batches_tracked" not in k}, path)
    fid = extractors.InceptionFeatures(path, batch_size=2)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 64, 80, 3), dtype=np.uint8)
    feats = fid(frames)
    assert feats.shape == (2, 2048) and feats.dtype == np.float64
    assert np.isfinite(feats).all() and (feats >= 0).all()  # after ReLU and average pooling
    # Random weights give tiny activations: compare with their scale, not an absolute tolerance.
    assert np.abs(feats[0] - feats[1]).max() > 1e-3 * np.abs(feats).max()
    np.testing.assert_allclose(fid(frames[:1]), feats[:1], rtol=1e-5, atol=1e-6)


class _FakeI3D(torch.nn.Module):
    """Same call signature as StyleGAN-V's I3D TorchScript: (N, 3, T, 224, 224) -> (N, 400)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 400)

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = True
    ):
        pooled = x.mean(dim=(2, 3, 4))
        return self.proj(pooled)


def test_i3d_torchscript_file_gives_clip_features(tmp_path):
    path = tmp_path / extractors.I3D_WEIGHTS_NAME
    torch.jit.script(_FakeI3D()).save(str(path))
    fvd = extractors.I3DFeatures(path, batch_size=2)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (40, 48, 64, 3), dtype=np.uint8)
    clips = extractors.video_clips(frames)
    assert len(clips) == 2 and all(len(c) == 16 for c in clips)
    feats = fvd(clips)
    assert feats.shape == (2, 400) and feats.dtype == np.float64


def test_i3d_preprocess_resizes_shorter_side_and_centre_crops():
    clip = np.zeros((16, 100, 200, 3), np.uint8)
    clip[:, :, 100:] = 255  # right half white
    x = extractors.i3d_preprocess(clip)
    assert tuple(x.shape) == (3, 16, 224, 224)
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    # The centre crop of a 224 x 448 resize keeps the boundary in the middle column.
    assert float(x[0, 0, 0, 10]) == -1.0 and float(x[0, 0, 0, 213]) == 1.0
