"""Preview drawings for ``inspect``: numbered portrait faces and regions, tracked driving frames."""

from __future__ import annotations

import cv2
import numpy as np

# One colour per face index (RGB), repeated beyond 8 faces.
COLORS = [(230, 60, 60), (60, 160, 230), (80, 200, 80), (230, 180, 40), (180, 90, 220), (40, 200, 200),
          (240, 120, 180), (160, 160, 160)]  # fmt: skip
FILLED_COLOR = (255, 255, 0)
UNUSED_COLOR = (128, 128, 128)


def color(i: int) -> tuple[int, int, int]:
    return COLORS[i % len(COLORS)]


def _label(img: np.ndarray, text: str, org: tuple[int, int], col, scale: float) -> None:
    thick = max(1, int(round(2 * scale)))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = int(org[0]), int(max(org[1], th + 4))
    cv2.rectangle(img, (x, y - th - 4), (x + tw + 4, y + 2), col, -1)
    cv2.putText(img, text, (x + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)


def draw_portrait(
    image_rgb: np.ndarray, faces, regions=None, mapping=None, labels=None, driver_names=None
) -> np.ndarray:
    """Portrait with face i's box (solid) and region (thin), "face i <- driver j" captions, and the
    token label map (``labels`` (h, w) ints, 0 background, p+1 portrait face p) tinted over the image
    if given. Everything of portrait face p is drawn in colour p (its driver too, in ``draw_tracks``).
    driver_names: the number shown for driver d (default d)."""
    img = np.ascontiguousarray(image_rgb.copy())
    h, w = img.shape[:2]
    scale = max(0.4, min(h, w) / 700)
    if labels is not None:
        lab = np.asarray(labels)
        up = cv2.resize(lab.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        tint = img.copy()
        for k in range(1, int(lab.max()) + 1):
            tint[up == k] = color(k - 1)
        img = cv2.addWeighted(img, 0.75, tint, 0.25, 0)
    drivers = {}
    if mapping is not None:
        for d, p in enumerate(mapping):
            drivers[p] = d if driver_names is None else driver_names[d]
    for f in faces:
        col = color(f.index)
        x1, y1, x2, y2 = (int(round(v)) for v in f.box)
        cv2.rectangle(img, (x1, y1), (x2, y2), col, max(2, int(3 * scale)))
        text = f"face {f.index}" + (f" <- driver {drivers[f.index]}" if f.index in drivers else " (still)")
        _label(img, text, (x1, y1 - 4), col, 0.6 * scale)
        if f.five_points is not None:
            for p in f.five_points:
                cv2.circle(img, (int(p[0]), int(p[1])), max(2, int(3 * scale)), col, -1)
    if regions is not None and mapping is not None:
        for d, r in enumerate(np.asarray(regions)):
            col = color(mapping[d])
            cv2.rectangle(img, (int(r[0]), int(r[1])), (int(r[2]) - 1, int(r[3]) - 1), col, 1)
    return img


def draw_tracks(frame_rgb: np.ndarray, tracks, t: int, names=None, color_ids=None) -> np.ndarray:
    """One driving frame with each track's box, id, five points and sparse landmarks at frame t.
    names: the driving face numbers shown; color_ids: the colour index per track, the portrait face it
    drives (so a pair has one colour in both previews; None: an unused driver, grey). Filled
    (interpolated) frames are drawn in yellow with "(filled)"."""
    img = np.ascontiguousarray(frame_rgb.copy())
    scale = max(0.4, min(img.shape[:2]) / 700)
    for k, tr in enumerate(tracks):
        if t >= tr.num_frames:
            continue
        filled = bool(tr.filled[t])
        if color_ids is not None:
            col = UNUSED_COLOR if color_ids[k] is None else color(color_ids[k])
        else:
            col = color(k if names is None else names[k])
        col = FILLED_COLOR if filled else col
        x1, y1, x2, y2 = (int(round(v)) for v in tr.boxes[t])
        cv2.rectangle(img, (x1, y1), (x2, y2), col, max(2, int(3 * scale)))
        name = f"driver {k if names is None else names[k]}" + (" (filled)" if filled else "")
        _label(img, name, (x1, y1 - 4), col, 0.6 * scale)
        if tr.landmarks is not None:
            for p in tr.landmarks[t][::6]:
                cv2.circle(img, (int(p[0]), int(p[1])), 1, col, -1)
        for p in tr.five_points[t]:
            cv2.circle(img, (int(p[0]), int(p[1])), max(2, int(3 * scale)), (255, 255, 255), -1)
    cv2.putText(img, f"frame {t}", (8, img.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (255, 255, 255),
                max(1, int(scale * 2)), cv2.LINE_AA)  # fmt: skip
    return img


def plot_motion(features, path, title: str = "") -> None:
    """Line plots of head (6), eye (6), emotion (30) and the mouth vector's norm over frames (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(9, 8), sharex=True)
    parts = [("head pose (6)", features.head), ("eye (6)", features.eye), ("emotion (30)", features.emotion)]
    for ax, (name, values) in zip(axes, parts):
        ax.plot(values.numpy(), linewidth=0.8)
        ax.set_ylabel(name)
    axes[3].plot(features.mouth.norm(dim=1).numpy(), color="k", linewidth=1)
    axes[3].set_ylabel("|mouth| (512)")
    axes[3].set_xlabel("frame")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
