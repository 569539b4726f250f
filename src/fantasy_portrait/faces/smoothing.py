"""Landmark smoothing: a One-Euro filter run forward then backward over the whole clip.

The One-Euro filter (Casiez et al., CHI 2012) is a first-order low-pass whose cutoff rises with the
signal's speed: ``cutoff = min_cutoff + beta * |dx/dt|``, so still faces lose their jitter while
fast motion passes almost unfiltered. A causal filter still lags a little; because driving clips are
processed offline we run it a second time backwards over the forward result, which cancels the lag
(the two phase shifts are opposite). Positions are measured in units of the face size (so one set of
parameters fits small and large faces) and time in seconds (so it does not depend on the frame rate).
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_MIN_CUTOFF = 4.0  # Hz: cutoff for a still face
DEFAULT_BETA = 3.0  # cutoff gain per (face sizes / second) of speed
DEFAULT_D_CUTOFF = 1.0  # Hz: cutoff of the speed estimate


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro(
    x: np.ndarray,
    fps: float,
    min_cutoff: float = DEFAULT_MIN_CUTOFF,
    beta: float = DEFAULT_BETA,
    d_cutoff: float = DEFAULT_D_CUTOFF,
) -> np.ndarray:
    """Causal One-Euro filter along axis 0 of x (F, ...); each element filtered independently."""
    x = np.asarray(x, np.float64)
    if x.shape[0] < 2:
        return x.copy()
    dt = 1.0 / fps
    out = np.empty_like(x)
    out[0] = x[0]
    dx_hat = np.zeros_like(x[0])
    a_d = _alpha(d_cutoff, dt)
    for i in range(1, x.shape[0]):
        dx = (x[i] - out[i - 1]) / dt
        dx_hat = a_d * dx + (1 - a_d) * dx_hat
        a = _alpha(min_cutoff + beta * np.abs(dx_hat), dt)
        out[i] = a * x[i] + (1 - a) * out[i - 1]
    return out


def smooth_points(
    points: np.ndarray,
    fps: float,
    scale: np.ndarray | float = 1.0,
    min_cutoff: float = DEFAULT_MIN_CUTOFF,
    beta: float = DEFAULT_BETA,
    d_cutoff: float = DEFAULT_D_CUTOFF,
) -> np.ndarray:
    """Zero-lag smoothing of (F, ...) coordinates: One-Euro forward, then backward.

    scale: face size in pixels (scalar or (F,)); coordinates are divided by it before filtering so
    ``beta`` is in face sizes per second. Returns float32 of the same shape.
    """
    pts = np.asarray(points, np.float64)
    if pts.shape[0] < 3:
        return pts.astype(np.float32)
    s = np.asarray(scale, np.float64)
    s = float(np.median(s)) if s.ndim else float(s)
    s = max(s, 1e-6)
    normed = pts / s
    fwd = one_euro(normed, fps, min_cutoff, beta, d_cutoff)
    both = one_euro(fwd[::-1], fps, min_cutoff, beta, d_cutoff)[::-1]
    return (both * s).astype(np.float32)
