"""SSIM equals scikit-image's; the Fréchet distance equals an independent float64 computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import linalg
from skimage.metrics import structural_similarity

from fantasy_portrait.bench import frechet, metrics
from fantasy_portrait.io import read_video

ASSETS = Path(__file__).parents[2] / ".." / "shared" / "assets"


def _skimage_ssim(a, b) -> float:
    return structural_similarity(
        a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )


def test_ssim_equals_skimage_on_real_frames():
    frames = read_video(ASSETS / "lp_d12.mp4", max_frames=8, max_side=160).frames
    rng = np.random.default_rng(0)
    noisy = np.clip(frames.astype(np.int16) + rng.integers(-20, 21, frames.shape), 0, 255).astype(np.uint8)
    pairs = [(frames[0], frames[7]), (frames[3], noisy[3]), (frames[5], frames[5])]
    for a, b in pairs:
        assert metrics.ssim_frame(a, b) == pytest.approx(_skimage_ssim(a, b), abs=1e-12)
    per_frame = metrics.ssim_frames(noisy, frames)
    expected = [_skimage_ssim(g, r) for g, r in zip(noisy, frames)]
    np.testing.assert_allclose(per_frame, expected, rtol=0, atol=1e-12)
    assert per_frame.max() < 1.0


def test_ssim_equals_skimage_on_random_odd_sized_images():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-60, 60, a.shape), 0, 255).astype(np.uint8)
    assert metrics.ssim_frame(a, b) == pytest.approx(_skimage_ssim(a, b), abs=1e-12)
    with pytest.raises(ValueError):
        metrics.ssim_frame(a, b[:-1])


def _reference_frechet(x: np.ndarray, y: np.ndarray) -> float:
    """Independent float64 computation: tr sqrt(S1 S2) = sum of sqrt of the eigenvalues of
    sqrt(S1) S2 sqrt(S1), a symmetric PSD matrix (eigh, not sqrtm of a product)."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1 = (x - mu1).T @ (x - mu1) / (len(x) - 1)
    s2 = (y - mu2).T @ (y - mu2) / (len(y) - 1)
    w, v = linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root1 @ s2 @ root1
    eig = np.clip(linalg.eigvalsh((middle + middle.T) / 2), 0, None)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig).sum())


@pytest.mark.parametrize("n,d", [(200, 16), (500, 64), (64, 32)])
def test_frechet_equals_reference(n, d):
    rng = np.random.default_rng(n + d)
    mix = rng.normal(size=(d, d))
    x = rng.normal(size=(n, d)) @ mix
    y = rng.normal(loc=0.3, size=(n + 17, d)) @ (mix + 0.2 * rng.normal(size=(d, d)))
    got = frechet.frechet_distance_of_features(x, y)
    ref = _reference_frechet(x, y)
    assert got == pytest.approx(ref, rel=1e-9, abs=1e-9)
    assert got > 0


def test_frechet_of_identical_sets_is_zero_and_float32_input_is_upcast():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 24)).astype(np.float32)
    assert frechet.frechet_distance_of_features(x, x) == pytest.approx(0.0, abs=1e-8)
    mu, sigma = frechet.feature_statistics(x)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    # A pure mean shift adds exactly |shift|^2.
    shift = np.full(24, 0.5)
    assert frechet.frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(0.25 * 24, rel=1e-9)


def test_frechet_rank_deficient_covariance_stays_finite():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(10, 50))  # fewer samples than dimensions: singular covariances
    y = rng.normal(size=(12, 50)) + 1.0
    got = frechet.frechet_distance_of_features(x, y)
    assert np.isfinite(got)
    assert got == pytest.approx(_reference_frechet(x, y), rel=1e-6)


def test_feature_statistics_needs_two_samples():
    with pytest.raises(ValueError):
        frechet.feature_statistics(np.zeros((1, 4)))
    with pytest.raises(ValueError):
        frechet.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_ssim_of_greyscale_frames_equals_skimage():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (40, 31), dtype=np.uint8)  # 2D: the scipy fallback path
    b = np.clip(a.astype(int) + rng.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    expected = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert metrics.ssim_frame(a, b) == pytest.approx(expected, abs=1e-12)
