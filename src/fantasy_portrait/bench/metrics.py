"""Per-frame metrics of a generated video against a reference (ground truth or driving video).

Every function returns one value per frame (NaN where a face was missing in either video); the
scorer averages them. Definitions (also in docs/bench.md):

- SSIM: Wang et al. 2004 on RGB uint8 frames, Gaussian window sigma 1.5 (11 x 11), K1 0.01, K2 0.03,
  L 255, population (co)variances, each channel separately, the map averaged without the 5-pixel
  border, channels averaged. Identical to ``skimage.metrics.structural_similarity(a, b,
  channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)``.
- LMD: mean Euclidean image-plane distance over the 468 mesh points, divided by the reference face's
  inter-ocular (outer eye corner) distance, times 100 (percent of the inter-ocular distance).
- Gaze MAE: mean angle in degrees between the generated and reference gaze directions of both eyes
  (see :func:`geometry.gaze_directions`).
- APD: L1 distance between (yaw, pitch, roll) in degrees (sum of the three absolute differences).
- AED: pose-normalised shape displacement from the video's reference frame, compared between the two
  videos: mean over the 468 points of the Euclidean distance between displacement vectors, in percent
  of the inter-ocular distance.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import geometry

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
SSIM_DATA_RANGE = 255.0


def _ssim_kernel() -> np.ndarray:
    """The normalised 1D Gaussian of scipy.ndimage.gaussian_filter for SSIM_SIGMA and SSIM_TRUNCATE."""
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / SSIM_SIGMA**2 * x * x)
    return phi / phi.sum()


def ssim_frame(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two (H, W, 3) uint8 RGB frames of the same size (definition in the module docstring)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"SSIM needs frames of one size, got {x.shape} and {y.shape}")
    kernel = _ssim_kernel()
    if x.ndim == 3 and x.shape[2] <= 4 and min(x.shape[:2]) > kernel.size:
        import cv2

        # The same separable float64 filter as scipy's gaussian_filter(mode="reflect"), about 5x faster.
        def blur(v):
            return cv2.sepFilter2D(v, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT)
    else:
        sigma = (SSIM_SIGMA, SSIM_SIGMA) + (0.0,) * (x.ndim - 2)

        def blur(v):
            return ndimage.gaussian_filter(v, sigma=sigma, mode="reflect", truncate=SSIM_TRUNCATE)

    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    c1 = (SSIM_K1 * SSIM_DATA_RANGE) ** 2
    c2 = (SSIM_K2 * SSIM_DATA_RANGE) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    return float(s[pad:-pad, pad:-pad].mean(dtype=np.float64))


def ssim_frames(gen: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 pair -> (T,) float64 per-frame SSIM."""
    return np.array([ssim_frame(g, r) for g, r in zip(gen, ref)], dtype=np.float64)


def _valid(gen: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.isfinite(gen).all(axis=(-1, -2)) & np.isfinite(ref).all(axis=(-1, -2))


def lmd_frames(gen: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Landmark mean distance per frame in % of the reference inter-ocular distance.

    gen, ref: (T, 478, 3) landmarks in the same pixel frame. Returns (T,) float64, NaN where missing.
    """
    gen = np.asarray(gen, np.float64)
    ref = np.asarray(ref, np.float64)
    n = geometry.NUM_MESH_POINTS
    dist = np.linalg.norm(gen[:, :n, :2] - ref[:, :n, :2], axis=-1).mean(axis=-1)
    out = 100.0 * dist / geometry.interocular_2d(ref)
    out[~_valid(gen, ref)] = np.nan
    return out


def gaze_errors(gen: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Mean angular gaze error of both eyes per frame, degrees. (T, 478, 3) pair -> (T,)."""
    gen = np.asarray(gen, np.float64)
    ref = np.asarray(ref, np.float64)
    ok = _valid(gen, ref)
    out = np.full(len(gen), np.nan)
    if ok.any():
        out[ok] = geometry.angle_between(
            geometry.gaze_directions(gen[ok]), geometry.gaze_directions(ref[ok])
        ).mean(axis=-1)
    return out


def pose_errors(gen: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """APD per frame: sum of |yaw|, |pitch|, |roll| differences in degrees. (T, 478, 3) pair -> (T,)."""
    gen = np.asarray(gen, np.float64)
    ref = np.asarray(ref, np.float64)
    ok = _valid(gen, ref)
    out = np.full(len(gen), np.nan)
    if ok.any():
        diff = geometry.wrap_degrees(geometry.head_pose(gen[ok]) - geometry.head_pose(ref[ok]))
        out[ok] = np.abs(diff).sum(axis=-1)
    return out


def expression_errors(gen: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """AED per frame, % inter-ocular distance. (T, 478, 3) pair -> (T,).

    Both videos' pose-normalised shapes are taken relative to their own shape at the first frame where
    both show the face, so identity (a different person in cross-reenactment) cancels and only the
    change of expression since that frame is compared. That frame is NaN (it would be 0 by
    construction and compares nothing), so a face seen in a single frame has no AED.
    """
    gen = np.asarray(gen, np.float64)
    ref = np.asarray(ref, np.float64)
    ok = _valid(gen, ref)
    out = np.full(len(gen), np.nan)
    if not ok.any():
        return out
    g = geometry.normalized_shape(gen[ok])
    r = geometry.normalized_shape(ref[ok])
    dg, dr = g - g[:1], r - r[:1]
    values = 100.0 * np.linalg.norm(dg - dr, axis=-1).mean(axis=-1)
    values[0] = np.nan  # the reference frame compares nothing (0 by construction): left out of the mean
    out[ok] = values
    return out


def pose_angles(points: np.ndarray) -> np.ndarray:
    """(T, 478, 3) -> (T, 3) (yaw, pitch, roll) degrees, NaN where missing (for plots and tests)."""
    points = np.asarray(points, np.float64)
    ok = np.isfinite(points).all(axis=(-1, -2))
    out = np.full((len(points), 3), np.nan)
    if ok.any():
        out[ok] = geometry.head_pose(points[ok])
    return out


LANDMARK_METRICS = {
    "lmd": lmd_frames,
    "mae": gaze_errors,
    "apd": pose_errors,
    "aed": expression_errors,
}
