"""The demo's pictures: a contact sheet (drivers | result | ground truth) and a motion plot.

Both are meant to be understood without reading the metrics: the sheet shows a few frames of the
inputs next to the result and the truth, the faces labelled with the colour of their driver; the plot
shows, for each face, one readable motion parameter over time as the judge reads it in the result,
next to the face's own driver's exact value and the other driver's.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# One colour per face (RGB), shared by the sheet's labels and the plot's lines.
FACE_COLOURS = ((230, 97, 1), (27, 120, 200), (77, 175, 74), (152, 78, 163))
PLOT_PARAMETERS = ("yaw", "mouth_open")
PARAMETER_LABELS = {
    "yaw": "head turn (yaw)",
    "pitch": "head nod (pitch)",
    "gaze_x": "gaze, horizontal",
    "brow_raise": "brow raise",
    "brow_furrow": "brow furrow",
    "smile": "smile",
    "mouth_open": "mouth opening",
}


def _label(img: np.ndarray, text: str, xy, colour=(0, 0, 0), scale: float = 0.5, thick: int = 1) -> None:
    import cv2

    cv2.putText(img, text, xy, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)


def sheet_frames(num_frames: int, count: int = 5) -> list[int]:
    """``count`` frame indices spread over the clip, first and last included."""
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, min(count, num_frames))})


def contact_sheet(
    drivers: list[np.ndarray],
    result: np.ndarray,
    truth: np.ndarray,
    boxes: np.ndarray,
    frames: list[int] | None = None,
    scale: int = 3,
    caption: str = "",
) -> np.ndarray:
    """(H', W', 3) uint8 picture: one row per chosen frame, columns drivers | result | ground truth.

    drivers: per face (F, S, S, 3); result, truth: (F, H, W, 3); boxes: (F, N, 4) the faces' ground-truth
    boxes, drawn on the result and the truth in the face's colour and labelled like its driver."""
    import cv2

    n = len(drivers)
    frames = frames if frames is not None else sheet_frames(len(result))
    h, w = result.shape[1:3]
    hs, ws = h * scale, w * scale
    gap = 12
    label_w = 70
    cols = [("driver " + str(i + 1), hs) for i in range(n)] + [("result", ws), ("ground truth", ws)]
    width = label_w + sum(c[1] for c in cols) + gap * (len(cols) - 1) + gap // 2
    header = 28
    foot = 0
    lines = _wrap(caption, max(40, width // 9)) if caption else []
    if lines:
        foot = 10 + 20 * len(lines)
    sheet = np.full((header + len(frames) * (hs + gap) + foot, width, 3), 255, np.uint8)
    x = label_w
    for i, (name, cw) in enumerate(cols):
        colour = FACE_COLOURS[i % len(FACE_COLOURS)] if i < n else (0, 0, 0)
        _label(sheet, name, (x + 4, 20), colour, 0.6, 2 if i < n else 1)
        x += cw + gap
    for r, t in enumerate(frames):
        y = header + r * (hs + gap)
        _label(sheet, f"frame {t}", (6, y + hs // 2 + 5))
        x = label_w
        for i, drv in enumerate(drivers):
            tile = cv2.resize(
                drv[t], (hs, hs), interpolation=cv2.INTER_AREA if drv.shape[1] > hs else cv2.INTER_NEAREST
            )
            sheet[y : y + hs, x : x + hs] = tile
            cv2.rectangle(sheet, (x, y), (x + hs - 1, y + hs - 1), FACE_COLOURS[i % len(FACE_COLOURS)], 3)
            x += hs + gap
        for img in (result, truth):
            tile = cv2.resize(img[t], (ws, hs), interpolation=cv2.INTER_NEAREST)
            for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes[t], np.float64)[:n]):
                c = FACE_COLOURS[i % len(FACE_COLOURS)]
                p1 = (int(x1 * scale), int(y1 * scale))
                p2 = (int(x2 * scale), int(y2 * scale))
                cv2.rectangle(tile, p1, p2, c, 1, cv2.LINE_AA)
                _label(tile, str(i + 1), (p1[0] + 3, min(p2[1] - 4, hs - 4)), c, 0.5, 2)
            sheet[y : y + hs, x : x + ws] = tile
            x += ws + gap
    for k, line in enumerate(lines):
        _label(sheet, line, (6, sheet.shape[0] - foot + 18 + 20 * k), (0, 0, 0), 0.45)
    return sheet


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


def motion_plot(
    path: str | os.PathLike,
    estimates: np.ndarray,
    motion: np.ndarray,
    truth_estimates: np.ndarray | None = None,
    parameters: tuple[str, ...] = PLOT_PARAMETERS,
    fps: float = 25.0,
    title: str = "",
) -> Path:
    """Write a PNG: one panel per face and parameter, over frames 1..F-1: the judge's reading of the
    result (``estimates`` (N, F-1, 13)), the face's own driver's exact parameter and the other drivers'
    (from ``motion`` (F, N, 17), normalised like the judge's targets), and, when given, the judge's
    reading of the ground truth (``truth_estimates``: what a perfect result would read as)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from .judge import TARGET_ORDER
    from .motion_encoder import targets_of

    targets = targets_of(motion[1:])  # (F-1, N, 13)
    n = targets.shape[1]
    t = np.arange(1, len(motion))
    fig = Figure(figsize=(3.6 * len(parameters), 2.4 * n + 0.6), dpi=100)
    axes = fig.subplots(n, len(parameters), squeeze=False, sharex=True)
    for i in range(n):
        colour = np.array(FACE_COLOURS[i % len(FACE_COLOURS)]) / 255
        for j, name in enumerate(parameters):
            k = TARGET_ORDER.index(name)
            ax = axes[i, j]
            ax.plot(t, targets[:, i, k], color=colour, lw=2.5, alpha=0.45, label="own driver (exact)")
            others = [m for m in range(n) if m != i]
            if others:
                ax.plot(
                    t,
                    targets[:, others, k].mean(1),
                    color="0.45",
                    lw=1.2,
                    ls="--",
                    label="other driver (exact)",
                )
            if truth_estimates is not None:
                ax.plot(
                    t, truth_estimates[i, :, k], color="0.2", lw=0.8, ls=":", label="ground truth (judged)"
                )
            ax.plot(t, estimates[i, :, k], color=colour, lw=1.5, marker="o", ms=3, label="result (judged)")
            ax.set_title(f"face {i + 1}: {PARAMETER_LABELS.get(name, name)}", fontsize=9, color=colour)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if i == n - 1:
                ax.set_xlabel(f"frame ({fps:g} fps)", fontsize=8)
            if j == 0:
                ax.set_ylabel("normalised value", fontsize=8)
    axes[0, -1].legend(fontsize=6, loc="best")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


def open_file(path: str | os.PathLike) -> bool:
    """Open ``path`` with the platform's viewer if there is one; False when none was found."""
    import shutil
    import subprocess
    import sys

    path = str(path)
    if sys.platform == "win32":  # pragma: no cover - not on the CI's platform
        os.startfile(path)  # noqa: S606
        return True
    if sys.platform == "darwin":  # pragma: no cover
        command = "open"
    else:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return False
        command = "xdg-open"
    exe = shutil.which(command)
    if exe is None:
        return False
    subprocess.Popen([exe, path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    return True
