"""PD-FGC motion encoder network (``FanEncoder``), state-dict compatible with ``pd_fpg.pth``.

A FAN trunk (one hourglass) reduces a 224x224 aligned face to a 512-vector; four heads turn it into
head pose (6), eye (6), emotion (30) and mouth (512) features (SPEC §3). Module names follow the
released state dict (``model.*``, ``to_mouth.*``, ``mouth_embed.*``, ...), so it loads strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=False)


class ConvBlock(nn.Module):
    """Pre-activation residual block whose output concatenates three conv stages (1/2, 1/4, 1/4 width)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, cout // 2)
        self.bn2 = nn.BatchNorm2d(cout // 2)
        self.conv2 = _conv3x3(cout // 2, cout // 4)
        self.bn3 = nn.BatchNorm2d(cout // 4)
        self.conv3 = _conv3x3(cout // 4, cout // 4)
        self.downsample = (
            nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, kernel_size=1, bias=False))
            if cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(F.relu(self.bn1(x)))
        b = self.conv2(F.relu(self.bn2(a)))
        c = self.conv3(F.relu(self.bn3(b)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat([a, b, c], dim=1) + residual


class HourGlass(nn.Module):
    """Recursive hourglass of ``depth`` levels at 256 channels; upsampling is bilinear (no corner alignment)."""

    def __init__(self, depth: int = 4, channels: int = 256):
        super().__init__()
        self.depth = depth
        self.dropout = nn.Dropout(0.5)  # inactive in eval mode; kept for training parity
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(channels, channels))
            self.add_module(f"b2_{level}", ConvBlock(channels, channels))
            if level == 1:
                self.add_module(f"b2_plus_{level}", ConvBlock(channels, channels))
            self.add_module(f"b3_{level}", ConvBlock(channels, channels))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        upper = self.dropout(self._modules[f"b1_{level}"](x))
        lower = self._modules[f"b2_{level}"](F.max_pool2d(x, 2, stride=2))
        if level > 1:
            lower = self._level(level - 1, lower)
        else:
            lower = self._modules[f"b2_plus_{level}"](lower)
        lower = self._modules[f"b3_{level}"](lower)
        lower = F.interpolate(lower, size=upper.shape[-2:], mode="bilinear", align_corners=False)
        return upper + lower

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class FanTrunk(nn.Module):
    """FAN feature extractor: (B, 3, 224, 224) in [-1, 1] -> (B, 512)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)
        self.m0 = HourGlass(4, 256)
        self.top_m_0 = ConvBlock(256, 256)
        self.conv_last0 = nn.Conv2d(256, 256, kernel_size=1)
        self.l0 = nn.Conv2d(256, 68, kernel_size=1)  # the 68-landmark heatmap head
        self.bn_end0 = nn.BatchNorm2d(256)
        self.conv6 = nn.Conv2d(68, 1, kernel_size=3, stride=2, padding=1)
        self.fc = nn.Linear(28 * 28, 512)
        self.bn5 = nn.BatchNorm2d(68)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(self.conv2(x), 2)
        x = self.conv4(self.conv3(x))
        x = self.top_m_0(self.m0(x))
        x = self.bn_end0(self.conv_last0(x))
        heat = self.l0(F.relu(x))
        x = self.conv6(F.relu(self.bn5(heat)))
        return self.fc(F.relu(x.flatten(1)))


def _head() -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.BatchNorm1d(512), nn.Linear(512, 512))


def _embed(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), nn.Linear(512, dim))


class FanEncoder(nn.Module):
    """PD-FGC motion encoder. forward: (B, 3, 224, 224) float in [-1, 1], RGB ->
    (head (B, 6), eye (B, 6), emotion (B, 30), mouth (B, 512)). Use in eval mode."""

    HEAD_DIM, EYE_DIM, EMOTION_DIM, MOUTH_DIM = 6, 6, 30, 512

    def __init__(self):
        super().__init__()
        self.model = FanTrunk()
        self.to_mouth = _head()
        # Present in the released weights, unused by the forward pass (the mouth feature is to_mouth's output).
        self.mouth_embed = _embed(512 - self.HEAD_DIM - self.EYE_DIM)
        self.to_headpose = _head()
        self.headpose_embed = _embed(self.HEAD_DIM)
        self.to_eye = _head()
        self.eye_embed = _embed(self.EYE_DIM)
        self.to_emo = _head()
        self.emo_embed = _embed(self.EMOTION_DIM)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        feat = self.model(x)
        head = self.headpose_embed(self.to_headpose(feat))
        eye = self.eye_embed(self.to_eye(feat))
        emotion = self.emo_embed(self.to_emo(feat))
        mouth = self.to_mouth(feat)
        return head, eye, emotion, mouth
