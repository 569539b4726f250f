"""Feature extractors for FID and FVD, loaded from local files the user provides (nothing is downloaded).

- FID: the Inception-v3 network of TensorFlow's FID as ported by pytorch-fid
  (``pt_inception-2015-12-05-6726825d.pth``). The architecture below follows that port: torchvision's
  Inception-v3 layer names with 1008 classes, no auxiliary head, average pools that ignore padding,
  and a max pool in the last block's pool branch. Frames are resized to 299 x 299 (bilinear), scaled
  to [-1, 1], and the 2048-d output of the final average pool is the feature.
- FVD: the Kinetics-400 I3D TorchScript used by StyleGAN-V (``i3d_torchscript.pt``), called with
  ``rescale=False, resize=False, return_features=True`` on 16-frame clips whose shorter side is
  resized to 224 (bilinear), centre-cropped to 224 x 224 and scaled to [-1, 1]: 400-d features.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from ..errors import CheckpointError

logger = logging.getLogger(__name__)

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
I3D_WEIGHTS_NAME = "i3d_torchscript.pt"
FVD_CLIP_FRAMES = 16


def _check_file(path, what: str, expected: str) -> Path:
    if path is None:
        raise CheckpointError(f"{what} needs a local weights file ({expected}); none was given")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: {what} weights file not found (expected {expected}; nothing is downloaded)"
        )
    return path


def _build_inception():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Conv(nn.Module):
        def __init__(self, cin, cout, kernel, stride=1, padding=0):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    def avg3(x):
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

    class BlockA(nn.Module):
        def __init__(self, cin, pool):
            super().__init__()
            self.branch1x1 = Conv(cin, 64, 1)
            self.branch5x5_1 = Conv(cin, 48, 1)
            self.branch5x5_2 = Conv(48, 64, 5, padding=2)
            self.branch3x3dbl_1 = Conv(cin, 64, 1)
            self.branch3x3dbl_2 = Conv(64, 96, 3, padding=1)
            self.branch3x3dbl_3 = Conv(96, 96, 3, padding=1)
            self.branch_pool = Conv(cin, pool, 1)

        def forward(self, x):
            return torch.cat(
                [
                    self.branch1x1(x),
                    self.branch5x5_2(self.branch5x5_1(x)),
                    self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                    self.branch_pool(avg3(x)),
                ],
                1,
            )

    class BlockB(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3 = Conv(cin, 384, 3, stride=2)
            self.branch3x3dbl_1 = Conv(cin, 64, 1)
            self.branch3x3dbl_2 = Conv(64, 96, 3, padding=1)
            self.branch3x3dbl_3 = Conv(96, 96, 3, stride=2)

        def forward(self, x):
            return torch.cat(
                [
                    self.branch3x3(x),
                    self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                    F.max_pool2d(x, 3, stride=2),
                ],
                1,
            )

    class BlockC(nn.Module):
        def __init__(self, cin, c7):
            super().__init__()
            self.branch1x1 = Conv(cin, 192, 1)
            self.branch7x7_1 = Conv(cin, c7, 1)
            self.branch7x7_2 = Conv(c7, c7, (1, 7), padding=(0, 3))
            self.branch7x7_3 = Conv(c7, 192, (7, 1), padding=(3, 0))
            self.branch7x7dbl_1 = Conv(cin, c7, 1)
            self.branch7x7dbl_2 = Conv(c7, c7, (7, 1), padding=(3, 0))
            self.branch7x7dbl_3 = Conv(c7, c7, (1, 7), padding=(0, 3))
            self.branch7x7dbl_4 = Conv(c7, c7, (7, 1), padding=(3, 0))
            self.branch7x7dbl_5 = Conv(c7, 192, (1, 7), padding=(0, 3))
            self.branch_pool = Conv(cin, 192, 1)

        def forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            d = x
            for i in range(1, 6):
                d = getattr(self, f"branch7x7dbl_{i}")(d)
            return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(avg3(x))], 1)

    class BlockD(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3_1 = Conv(cin, 192, 1)
            self.branch3x3_2 = Conv(192, 320, 3, stride=2)
            self.branch7x7x3_1 = Conv(cin, 192, 1)
            self.branch7x7x3_2 = Conv(192, 192, (1, 7), padding=(0, 3))
            self.branch7x7x3_3 = Conv(192, 192, (7, 1), padding=(3, 0))
            self.branch7x7x3_4 = Conv(192, 192, 3, stride=2)

        def forward(self, x):
            d = x
            for i in range(1, 5):
                d = getattr(self, f"branch7x7x3_{i}")(d)
            return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), d, F.max_pool2d(x, 3, stride=2)], 1)

    class BlockE(nn.Module):
        def __init__(self, cin, max_pool: bool):
            super().__init__()
            self.max_pool = max_pool
            self.branch1x1 = Conv(cin, 320, 1)
            self.branch3x3_1 = Conv(cin, 384, 1)
            self.branch3x3_2a = Conv(384, 384, (1, 3), padding=(0, 1))
            self.branch3x3_2b = Conv(384, 384, (3, 1), padding=(1, 0))
            self.branch3x3dbl_1 = Conv(cin, 448, 1)
            self.branch3x3dbl_2 = Conv(448, 384, 3, padding=1)
            self.branch3x3dbl_3a = Conv(384, 384, (1, 3), padding=(0, 1))
            self.branch3x3dbl_3b = Conv(384, 384, (3, 1), padding=(1, 0))
            self.branch_pool = Conv(cin, 192, 1)

        def forward(self, x):
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
            # The TF FID graph max-pools in the last block (pytorch-fid documents this quirk).
            pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else avg3(x)
            return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pool)], 1)

    class FidInception(nn.Module):
        """Inception-v3 of TF FID; forward: (N, 3, H, W) float in [0, 1] -> (N, 2048) pool features."""

        def __init__(self):
            super().__init__()
            self.Conv2d_1a_3x3 = Conv(3, 32, 3, stride=2)
            self.Conv2d_2a_3x3 = Conv(32, 32, 3)
            self.Conv2d_2b_3x3 = Conv(32, 64, 3, padding=1)
            self.Conv2d_3b_1x1 = Conv(64, 80, 1)
            self.Conv2d_4a_3x3 = Conv(80, 192, 3)
            self.Mixed_5b = BlockA(192, 32)
            self.Mixed_5c = BlockA(256, 64)
            self.Mixed_5d = BlockA(288, 64)
            self.Mixed_6a = BlockB(288)
            self.Mixed_6b = BlockC(768, 128)
            self.Mixed_6c = BlockC(768, 160)
            self.Mixed_6d = BlockC(768, 160)
            self.Mixed_6e = BlockC(768, 192)
            self.Mixed_7a = BlockD(768)
            self.Mixed_7b = BlockE(1280, max_pool=False)
            self.Mixed_7c = BlockE(2048, max_pool=True)
            self.fc = nn.Linear(2048, 1008)  # present in the weights file; unused for features

        def forward(self, x):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            x = 2 * x - 1
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(x, 3, stride=2)
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
            x = F.max_pool2d(x, 3, stride=2)
            for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
                x = getattr(self, f"Mixed_{name}")(x)
            return F.adaptive_avg_pool2d(x, 1).flatten(1)

    return FidInception()


class InceptionFeatures:
    """FID frame features from the pytorch-fid Inception weights.

    ``__call__(frames)``: (N, H, W, 3) uint8 RGB -> (N, 2048) float64.
    """

    name = "inception-v3-fid (pytorch-fid pt_inception-2015-12-05)"

    def __init__(self, weights_path, device="cpu", batch_size: int = 16):
        from ..io.weights import load_torch_file

        path = _check_file(weights_path, "FID Inception", FID_WEIGHTS_NAME)
        state = load_torch_file(path, what="FID Inception weights", mmap=False)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        model = _build_inception()
        expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
        missing = sorted(expected - set(state))
        if missing:
            raise CheckpointError(
                f"{path}: not the pytorch-fid Inception weights ({len(missing)} tensors missing, e.g. {missing[0]})"
            )
        try:
            model.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path}: Inception weights do not fit ({str(exc).splitlines()[0]})"
            ) from exc
        self.model = model.eval().to(device)
        self.device = device
        self.batch_size = batch_size
        self.path = path

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(frames[i : i + self.batch_size]))
                x = x.to(self.device).permute(0, 3, 1, 2).float() / 255.0
                out.append(self.model(x).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2048))


def i3d_preprocess(clip: np.ndarray, resolution: int = 224):
    """(T, H, W, 3) uint8 -> (3, T, 224, 224) float32 tensor in [-1, 1] (shorter side resize, centre crop)."""
    import torch
    import torch.nn.functional as F

    video = torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2).float() / 255.0  # C, T, H, W
    _, _, h, w = video.shape
    scale = resolution / min(h, w)
    size = (resolution, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), resolution)
    video = F.interpolate(video, size=size, mode="bilinear", align_corners=False)
    h, w = video.shape[-2:]
    top, left = (h - resolution) // 2, (w - resolution) // 2
    video = video[:, :, top : top + resolution, left : left + resolution]
    return (video - 0.5) * 2


class I3DFeatures:
    """FVD clip features from StyleGAN-V's I3D TorchScript file.

    ``__call__(clips)``: list of (16, H, W, 3) uint8 clips -> (N, 400) float64.
    """

    name = "i3d-kinetics400 (StyleGAN-V i3d_torchscript.pt)"

    def __init__(self, weights_path, device="cpu", batch_size: int = 4):
        import torch

        path = _check_file(weights_path, "FVD I3D", I3D_WEIGHTS_NAME)
        try:
            # A TorchScript archive, not a pickle: torch.load's weights_only does not apply here.
            self.model = torch.jit.load(str(path), map_location="cpu").eval().to(device)
        except Exception as exc:
            raise CheckpointError(
                f"{path}: not a TorchScript I3D file ({exc.__class__.__name__}: {exc})"
            ) from exc
        self.device = device
        self.batch_size = batch_size
        self.path = path

    def __call__(self, clips: list[np.ndarray]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(clips), self.batch_size):
                x = torch.stack([i3d_preprocess(c) for c in clips[i : i + self.batch_size]]).to(self.device)
                feats = self.model(x, rescale=False, resize=False, return_features=True)
                out.append(feats.double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 400))


def video_clips(frames: np.ndarray, length: int = FVD_CLIP_FRAMES) -> list[np.ndarray]:
    """Non-overlapping clips of ``length`` frames from the start of (T, H, W, 3) frames (the rest dropped)."""
    return [frames[i : i + length] for i in range(0, len(frames) - length + 1, length)]


def weights_from_env(kind: str) -> str | None:
    """FANTASY_PORTRAIT_FID_WEIGHTS / FANTASY_PORTRAIT_FVD_WEIGHTS, if set."""
    return os.environ.get(f"FANTASY_PORTRAIT_{kind.upper()}_WEIGHTS") or None
