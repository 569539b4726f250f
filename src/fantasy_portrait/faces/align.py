"""PD-FGC alignment: five points -> similarity transform onto the template -> 224x224 crop (SPEC §3).

The similarity is the least-squares Umeyama estimate with scale (rotation, uniform scale,
translation), computed in float64. The crop is an OpenCV bicubic affine warp with a constant zero
border, as in the reference, so crops match it within a few grey levels (OpenCV versions differ).
"""

from __future__ import annotations

import numpy as np

ALIGN_SIZE = 224
# (x, y) in units of the crop side; order FIVE_POINT_NAMES.
PDFGC_TEMPLATE = np.array(
    [[0.3843, 0.27], [0.62, 0.2668], [0.503, 0.4185], [0.406, 0.5273], [0.5977, 0.525]], dtype=np.float64
)


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991) mapping src (N, D) onto dst (N, D) -> (D+1, D+1) float64."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    n, dim = src.shape
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / n
    sign = np.ones(dim)
    if np.linalg.det(cov) < 0:
        sign[-1] = -1
    u, sv, vt = np.linalg.svd(cov)
    transform = np.eye(dim + 1)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        return np.full((dim + 1, dim + 1), np.nan)
    if rank == dim - 1 and np.linalg.det(u) * np.linalg.det(vt) <= 0:
        # Degenerate (collinear) points: keep a proper rotation.
        last = sign[-1]
        sign[-1] = -1
        rot = u @ np.diag(sign) @ vt
        sign[-1] = last
    else:
        rot = u @ np.diag(sign) @ vt
    scale = (sv @ sign) / s.var(axis=0).sum() if with_scale else 1.0
    transform[:dim, :dim] = scale * rot
    transform[:dim, dim] = mu_d - scale * rot @ mu_s
    return transform


def alignment_matrices(five_points: np.ndarray, size: int = ALIGN_SIZE) -> np.ndarray:
    """(F, 5, 2) or (5, 2) image points -> (F, 2, 3) or (2, 3) float64 affine matrices onto the template."""
    pts = np.asarray(five_points, np.float64)
    single = pts.ndim == 2
    pts = pts.reshape(-1, 5, 2)
    dst = PDFGC_TEMPLATE * size
    out = np.stack([umeyama(p, dst)[:2] for p in pts])
    return out[0] if single else out


def warp_faces(frames: np.ndarray, matrices: np.ndarray, size: int = ALIGN_SIZE) -> np.ndarray:
    """Warp (F, H, W, 3) uint8 frames with (F, 2, 3) matrices -> (F, size, size, 3) uint8 (bicubic)."""
    import cv2

    frames = np.asarray(frames)
    matrices = np.asarray(matrices, np.float64)
    if frames.ndim == 3:
        frames = frames[None]
    if matrices.ndim == 2:
        matrices = np.broadcast_to(matrices, (frames.shape[0], 2, 3))
    if frames.shape[0] != matrices.shape[0]:
        raise ValueError(f"{frames.shape[0]} frames but {matrices.shape[0]} matrices")
    out = np.empty((frames.shape[0], size, size, frames.shape[-1]), np.uint8)
    for i, (frame, m) in enumerate(zip(frames, matrices)):
        out[i] = cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
    return out


def align_faces(frames: np.ndarray, five_points: np.ndarray, size: int = ALIGN_SIZE) -> np.ndarray:
    """PD-FGC crops: frames (F, H, W, 3) uint8 (RGB in, RGB out), five_points (F, 5, 2) -> (F, 224, 224, 3)."""
    frames = np.asarray(frames)
    pts = np.asarray(five_points, np.float64)
    if frames.ndim == 3:
        frames, pts = frames[None], pts.reshape(1, 5, 2)
    if not np.isfinite(pts).all():
        raise ValueError("five_points contain NaN or inf (missing landmarks must be filled first)")
    return warp_faces(frames, alignment_matrices(pts, size), size)


def alignment_error(five_points: np.ndarray, size: int = ALIGN_SIZE) -> np.ndarray:
    """(F, 5) pixel distances, in the 224 crop, between the warped five points and the template."""
    pts = np.asarray(five_points, np.float64).reshape(-1, 5, 2)
    m = alignment_matrices(pts, size).reshape(-1, 2, 3)
    warped = np.einsum("fij,fkj->fki", m[:, :, :2], pts) + m[:, None, :, 2]
    return np.linalg.norm(warped - PDFGC_TEMPLATE * size, axis=-1)
