"""Metric properties on real video: perfect against itself, worse under degradation, mirrored yaw, swapped drivers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fantasy_portrait.bench import metrics, runner
from fantasy_portrait.bench.landmarks import extract_tracks
from fantasy_portrait.io import read_video

ASSETS = Path(__file__).parents[2] / ".." / "shared" / "assets"


@pytest.fixture(scope="module")
def backend():
    from fantasy_portrait.bench.landmarks import default_backend

    return default_backend()


@pytest.fixture(scope="module")
def talking(backend):
    """12 frames of a laughing, talking man at 5 fps (larger motion between frames), 256 px."""
    frames = read_video(ASSETS / "fp_jgz.mp4", fps=5, max_frames=12, max_side=256).frames
    return frames, extract_tracks(frames, 1, backend).face(0)


def _all_metrics(gen_frames, gen_pts, ref_frames, ref_pts) -> dict[str, float]:
    out = {"ssim": float(metrics.ssim_frames(gen_frames, ref_frames).mean())}
    for name, fn in metrics.LANDMARK_METRICS.items():
        out[name] = float(np.nanmean(fn(gen_pts, ref_pts)))
    return out


def test_video_against_itself_scores_perfect(talking, backend):
    frames, pts = talking
    # A second, independent extraction of the same frames: the whole chain must be exact.
    again = extract_tracks(frames.copy(), 1, backend).face(0)
    assert np.isfinite(pts).all(), "the face must be found in every frame of this clip"
    scores = _all_metrics(frames.copy(), again, frames, pts)
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-12)
    for name in ("lmd", "mae", "apd", "aed"):
        assert scores[name] == pytest.approx(0.0, abs=1e-9), name


def _degrade(frames: np.ndarray, kind: str, level: int) -> np.ndarray:
    if kind == "blur":
        return np.stack([cv2.GaussianBlur(f, (0, 0), level) for f in frames])
    if kind == "shift":
        return np.stack(
            [
                cv2.warpAffine(
                    f, np.float32([[1, 0, level], [0, 1, 0]]), f.shape[1::-1], borderMode=cv2.BORDER_REPLICATE
                )
                for f in frames
            ]
        )
    if kind == "drop":  # keep every level-th frame, hold it in between (a stutter of growing length)
        return frames[(np.arange(len(frames)) // level) * level]
    raise ValueError(kind)


# Which metrics must get strictly worse, monotonically, for each degradation. A pure shift moves the
# landmarks but not the pose or expression, so APD / AED / gaze need not change with it.
DEGRADATIONS = {
    "blur": ((1, 2, 4), ("ssim", "lmd", "mae", "apd", "aed")),
    "shift": ((4, 8, 16), ("ssim", "lmd")),
    "drop": ((2, 3, 4), ("ssim", "lmd", "mae", "apd", "aed")),
}


@pytest.mark.parametrize("kind", sorted(DEGRADATIONS))
def test_degradation_scores_worse_monotonically(talking, backend, kind):
    frames, pts = talking
    levels, names = DEGRADATIONS[kind]
    perfect = {"ssim": 1.0, "lmd": 0.0, "mae": 0.0, "apd": 0.0, "aed": 0.0}
    series = []
    for level in levels:
        bad = _degrade(frames, kind, level)
        series.append(_all_metrics(bad, extract_tracks(bad, 1, backend).face(0), frames, pts))
    for name in names:
        values = [perfect[name]] + [s[name] for s in series]
        diffs = np.diff(values)
        if name == "ssim":
            assert (diffs < 0).all(), (kind, name, values)
        else:
            assert (diffs > 0).all(), (kind, name, values)


def test_mirrored_head_turn_flips_yaw(backend):
    frames = read_video(ASSETS / "lp_d12.mp4", fps=5, max_frames=20, max_side=256).frames
    yaw = metrics.pose_angles(extract_tracks(frames, 1, backend).face(0))[:, 0]
    turned = np.flatnonzero(np.abs(yaw) > 10)
    assert len(turned) >= 3, f"clip should contain a head turn, yaws {np.round(yaw)}"
    mirrored = np.ascontiguousarray(frames[turned][:, :, ::-1])
    yaw_m = metrics.pose_angles(extract_tracks(mirrored, 1, backend).face(0))[:, 0]
    assert (np.sign(yaw_m) == -np.sign(yaw[turned])).all(), (yaw[turned], yaw_m)
    # Same turn the other way: magnitudes agree within a few degrees.
    np.testing.assert_allclose(np.abs(yaw_m), np.abs(yaw[turned]), atol=5.0)
    # APD between a turn and its mirror is about twice the yaw (plus roll), far above frame noise.
    original = extract_tracks(frames[turned], 1, backend).face(0)
    mirrored_pts = extract_tracks(mirrored, 1, backend).face(0)
    assert np.nanmean(metrics.pose_errors(mirrored_pts, original)) > 1.5 * np.abs(yaw[turned]).mean()


def test_swapping_drivers_of_two_faces_raises_aed(backend):
    frames = read_video(ASSETS / "fp_two_person.mp4", fps=4, max_frames=16, max_side=640).frames
    tracks = extract_tracks(frames, 2, backend)
    assert tracks.found.all()
    # Drivers: each person's own face cut out of the same video (what bench prepares for multi-face cases).
    drivers = [extract_tracks(c, 1, backend).face(0) for c in runner._driver_crops(frames, tracks)]
    matched = [np.nanmean(metrics.expression_errors(tracks.face(k), drivers[k])) for k in (0, 1)]
    swapped = [np.nanmean(metrics.expression_errors(tracks.face(k), drivers[1 - k])) for k in (0, 1)]
    assert np.mean(swapped) > 2 * np.mean(matched), (matched, swapped)
    assert min(swapped) > max(matched)
