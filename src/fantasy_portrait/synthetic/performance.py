"""Smooth random performances: per-frame motion parameters for one character, from a seed.

A performance mixes the things a talking-head video shows: slow head turns and drift, blinks (now
and then a wink), gaze saccades, expression changes that hold for a while and blend, and talking
(bursts of syllables opening the mouth with changing lip shapes). Everything is drawn from one
``numpy.random.Generator`` so the same seed gives the same performance.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .params import MOTION_NAMES, clip_motion, neutral_motion

_I = {name: i for i, name in enumerate(MOTION_NAMES)}

# Expression targets (brow_raise, brow_furrow, smile, squint, extra mouth_open).
EXPRESSIONS: dict[str, tuple[float, float, float, float, float]] = {
    "neutral": (0.0, 0.0, 0.0, 0.0, 0.0),
    "happy": (0.3, 0.0, 0.9, 0.2, 0.1),
    "surprised": (1.0, 0.0, 0.0, 0.0, 0.5),
    "angry": (-0.6, 0.9, -0.4, 0.4, 0.0),
    "sad": (-0.5, 0.5, -0.8, 0.1, 0.0),
    "smirk": (0.2, 0.1, 0.5, 0.3, 0.0),
    "doubt": (0.5, 0.6, -0.2, 0.5, 0.0),
}


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """(n,) zero-mean, unit-std noise smoothed with a Gaussian of ``sigma`` frames."""
    pad = int(3 * sigma) + 1
    x = gaussian_filter1d(rng.standard_normal(n + 2 * pad), sigma)[pad : pad + n]
    x = x - x.mean()
    return x / (x.std() + 1e-8)


def _piecewise(rng: np.random.Generator, n: int, hold: tuple[float, float], blend: float, draw) -> np.ndarray:
    """Hold values drawn by draw() for random durations (frames), blending with a smoothstep."""
    out = np.zeros((n, len(np.atleast_1d(draw()))), np.float32)
    t = 0
    current = np.atleast_1d(draw()).astype(np.float32)
    while t < n:
        dur = int(rng.uniform(*hold))
        nxt = np.atleast_1d(draw()).astype(np.float32)
        b = max(1, int(blend))
        for k in range(max(dur, b)):
            if t >= n:
                break
            a = min(1.0, k / b)
            a = a * a * (3 - 2 * a)
            out[t] = (1 - a) * current + a * nxt
            t += 1
        current = nxt
    return out


def random_performance(
    num_frames: int,
    seed: int | np.random.Generator,
    fps: float = 25.0,
    intensity: float = 1.0,
) -> np.ndarray:
    """(num_frames, 17) float32 motion parameters of one character (MOTION_NAMES order).

    intensity scales head motion and expression amplitudes (0 gives a still, neutral face that
    still blinks and talks).
    """
    rng = np.random.default_rng(seed)
    n = int(num_frames)
    if n <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    out = np.tile(neutral_motion(), (n, 1))
    sec = float(fps)

    # Head: slow drift plus held turns.
    turns = _piecewise(
        rng,
        n,
        (0.8 * sec, 3.0 * sec),
        0.5 * sec,
        lambda: rng.uniform([-25, -12, -10], [25, 12, 10]),
    )
    for k, name in enumerate(("yaw", "pitch", "roll")):
        amp = rng.uniform(2.0, 6.0)
        out[:, _I[name]] = intensity * (
            turns[:, k] * rng.uniform(0.3, 1.0) + amp * _smooth_noise(rng, n, 0.4 * sec)
        )
    out[:, _I["tx"]] = intensity * rng.uniform(0.01, 0.08) * _smooth_noise(rng, n, 0.8 * sec)
    out[:, _I["ty"]] = intensity * rng.uniform(0.01, 0.05) * _smooth_noise(rng, n, 0.8 * sec)
    out[:, _I["scale"]] = 1.0 + intensity * rng.uniform(0.0, 0.05) * _smooth_noise(rng, n, 1.0 * sec)

    # Blinks: short closing events every few seconds, sometimes a single-eye wink.
    dur = max(3, int(round(0.2 * sec)))
    profile = np.sin(np.linspace(0, np.pi, dur + 2)[1:-1]) ** 0.7
    t = int(rng.uniform(0.2, 2.0) * sec)
    while t < n:
        eyes = ("blink_left", "blink_right")
        if rng.random() < 0.1:
            eyes = (eyes[int(rng.integers(2))],)
        depth = rng.uniform(0.85, 1.0)
        for e in eyes:
            seg = out[t : t + dur, _I[e]]
            seg[:] = np.maximum(seg, depth * profile[: len(seg)])
        t += dur + int(rng.exponential(2.5 * sec)) + int(0.6 * sec)

    # Gaze: saccades between held fixations.
    gaze = _piecewise(rng, n, (0.4 * sec, 2.0 * sec), 2, lambda: rng.uniform(-0.7, 0.7, 2))
    out[:, _I["gaze_x"]] = gaze[:, 0]
    out[:, _I["gaze_y"]] = gaze[:, 1]

    # Emotion: held expressions blending into each other.
    names = list(EXPRESSIONS)
    emo = _piecewise(
        rng,
        n,
        (1.0 * sec, 3.5 * sec),
        0.4 * sec,
        lambda: np.array(EXPRESSIONS[names[int(rng.integers(len(names)))]]) * rng.uniform(0.5, 1.0),
    )
    for k, name in enumerate(("brow_raise", "brow_furrow", "smile", "squint")):
        out[:, _I[name]] = intensity * emo[:, k] + 0.08 * _smooth_noise(rng, n, 0.5 * sec)

    # Mouth: talking bursts of syllables, each with its own opening and lip shape.
    talk = np.zeros(n, np.float32)
    width = np.zeros(n, np.float32)
    pucker = np.zeros(n, np.float32)
    t = int(rng.uniform(0.0, 1.0) * sec)
    while t < n:
        end = min(n, t + int(rng.uniform(1.0, 4.0) * sec))
        while t < end:
            syl = max(2, int(rng.uniform(0.15, 0.3) * sec))
            shape = np.sin(np.linspace(0, np.pi, syl + 1)[:-1]) ** 1.5
            seg = slice(t, min(end, t + syl))
            k = seg.stop - seg.start
            talk[seg] = rng.uniform(0.25, 0.9) * shape[:k]
            vowel = rng.random()
            width[seg] = (0.6 if vowel < 0.3 else -0.2) * shape[:k]
            pucker[seg] = (0.8 if vowel > 0.8 else 0.0) * shape[:k]
            t += syl
        t = end + int(rng.uniform(0.5, 2.0) * sec)
    out[:, _I["mouth_open"]] = talk + intensity * emo[:, 4]
    out[:, _I["mouth_width"]] = width + 0.15 * _smooth_noise(rng, n, 0.6 * sec)
    out[:, _I["mouth_pucker"]] = pucker
    out = gaussian_filter1d(out, 0.6, axis=0, mode="nearest")  # no frame-to-frame jumps
    return clip_motion(out)


def random_motion(seed: int | np.random.Generator) -> np.ndarray:
    """(17,) float32: one independent random frame covering the whole parameter range (for training)."""
    rng = np.random.default_rng(seed)
    m = neutral_motion()
    m[_I["yaw"]] = rng.uniform(-32, 32)
    m[_I["pitch"]] = rng.uniform(-20, 20)
    m[_I["roll"]] = rng.uniform(-20, 20)
    m[_I["tx"]] = rng.uniform(-0.1, 0.1)
    m[_I["ty"]] = rng.uniform(-0.1, 0.1)
    m[_I["scale"]] = rng.uniform(0.9, 1.1)
    for name in ("blink_left", "blink_right"):
        m[_I[name]] = rng.choice([0.0, rng.uniform(0, 1), 1.0], p=(0.5, 0.35, 0.15))
    if rng.random() < 0.7:
        m[_I["blink_right"]] = m[_I["blink_left"]]
    m[_I["gaze_x"]], m[_I["gaze_y"]] = rng.uniform(-0.8, 0.8, 2)
    m[_I["brow_raise"]] = rng.uniform(-1, 1)
    m[_I["brow_furrow"]] = rng.uniform(0, 1) * (rng.random() < 0.5)
    m[_I["smile"]] = rng.uniform(-1, 1)
    m[_I["squint"]] = rng.uniform(0, 0.8) * (rng.random() < 0.5)
    m[_I["mouth_open"]] = rng.uniform(0, 1) * (rng.random() < 0.7)
    m[_I["mouth_width"]] = rng.uniform(-1, 1)
    m[_I["mouth_pucker"]] = rng.uniform(0, 1) * (rng.random() < 0.4)
    return clip_motion(m)
