"""Token-resolution label maps and masks for several faces (SPEC §7).

The released pipeline paints a pixel label volume (face i -> i + 1, later faces over earlier ones)
over all 4(T-1)+1 frames at image resolution and max-pools it to the token grid (16x16 pixels per
token for frame 0, 4x16x16 for the rest). Because the face regions do not move, every latent frame
gets the same map, and a token cell's label is simply the largest i + 1 among the regions that
touch the cell. We compute that directly on the (H/16, W/16) grid: no pixel volume (the released
code's is 741 MB for 201 frames at 1280x720).
"""

from __future__ import annotations

import numpy as np
import torch

from .config import WAN_GEOMETRY

TOKEN_PIXELS = WAN_GEOMETRY.token_pixels  # VAE 8x spatial stride times the DiT's 2x2 patch


def token_label_map(regions, image_hw: tuple[int, int], cell: int = TOKEN_PIXELS) -> torch.Tensor:
    """Label of every token cell: 0 background, i + 1 if face i's region touches the cell.

    regions: (N, 4) integer pixel boxes x1, y1, x2, y2 (end-exclusive, already enlarged and
    clipped), faces in portrait order. Where regions of two faces meet, the face with the larger
    index (further right in portrait order) wins, as max pooling gives. Returns (H//cell, W//cell) int64.
    """
    height, width = image_hw
    if height % cell or width % cell:
        raise ValueError(f"image size {width}x{height} is not a multiple of {cell}")
    labels = torch.zeros(height // cell, width // cell, dtype=torch.long)
    for face, (x1, y1, x2, y2) in enumerate(np.asarray(regions, dtype=np.int64).reshape(-1, 4).tolist()):
        x1, y1 = max(x1, 0), max(y1, 0)
        x2, y2 = min(x2, width), min(y2, height)
        if x2 <= x1 or y2 <= y1:
            continue
        rows = slice(y1 // cell, -(-y2 // cell))
        cols = slice(x1 // cell, -(-x2 // cell))
        labels[rows, cols] = torch.clamp(labels[rows, cols], min=face + 1)
    return labels


def dense_motion_mask(labels: torch.Tensor, num_faces: int, window: int) -> torch.Tensor:
    """Boolean mask (cells, num_faces * window), True = may attend, of the masked motion rule.

    Face i's tokens see only slots [i*window, (i+1)*window); background tokens see all. The model
    never builds this (it groups queries instead); it documents the rule and checks the grouping.
    """
    labels = labels.reshape(-1, 1)
    block = torch.arange(num_faces * window).div(window, rounding_mode="floor").view(1, -1) + 1
    return (labels == 0) | (labels == block)
