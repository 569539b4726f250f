"""Small box helpers shared by detection, tracking and regions. Boxes are x1, y1, x2, y2 pixels."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a (N, 4) and b (M, 4) -> (N, M) float64."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def box_centers(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) boxes -> (..., 2) centres."""
    boxes = np.asarray(boxes, np.float64)
    return (boxes[..., :2] + boxes[..., 2:]) / 2


def box_sizes(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) boxes -> (...,) sqrt(width * height)."""
    boxes = np.asarray(boxes, np.float64)
    wh = np.clip(boxes[..., 2:] - boxes[..., :2], 0, None)
    return np.sqrt(wh[..., 0] * wh[..., 1])
