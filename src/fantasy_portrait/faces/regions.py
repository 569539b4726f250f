"""Face regions of the portrait: where each face may move during the clip (SPEC §7)."""

from __future__ import annotations

import numpy as np

MAX_EXCURSION = 0.25  # per side, as a fraction of the face box


def face_region(ref_box, drive_boxes, image_hw: tuple[int, int]) -> np.ndarray:
    """Enlarge a portrait face box by its driver's largest excursion over the clip.

    ref_box: (4,) x1, y1, x2, y2 of the face in the portrait. drive_boxes: (F, 4) the driving face's
    box in every frame. Per side (left, right, up, down) the excursion is the driver's largest move
    beyond its first-frame box, in units of that box's width (left/right) or height (up/down),
    capped at 0.25; the portrait box grows by that fraction of its own integer width/height. The
    result is truncated to integers and clipped to the image. Returns (4,) int64.
    """
    drive = np.asarray(drive_boxes, dtype=np.float64).reshape(-1, 4)
    if len(drive) == 0:
        raise ValueError("face_region needs at least one driving box")
    first = drive[0]
    w0, h0 = first[2] - first[0], first[3] - first[1]
    if w0 <= 0 or h0 <= 0:
        raise ValueError(f"empty first driving box {first.tolist()}")
    moves = np.array(
        [
            (first[0] - drive[:, 0].min()) / w0,  # left
            (drive[:, 2].max() - first[2]) / w0,  # right
            (first[1] - drive[:, 1].min()) / h0,  # up
            (drive[:, 3].max() - first[3]) / h0,  # down
        ]
    )
    left, right, up, down = np.clip(moves, 0.0, MAX_EXCURSION)
    x1, y1, x2, y2 = (int(v) for v in np.asarray(ref_box).reshape(4))
    width, height = x2 - x1, y2 - y1
    box = np.array([x1 - left * width, y1 - up * height, x2 + right * width, y2 + down * height])
    box = np.trunc(box).astype(np.int64)
    img_h, img_w = image_hw
    return np.clip(box, 0, [img_w, img_h, img_w, img_h]).astype(np.int64)
