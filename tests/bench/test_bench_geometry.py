"""Head pose, pose-normalised shape and gaze geometry on a real face mesh under known transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fantasy_portrait.bench import geometry, metrics
from fantasy_portrait.bench.landmarks import default_backend, extract_tracks
from fantasy_portrait.io import read_video

ASSETS = Path(__file__).parents[2] / ".." / "shared" / "assets"


@pytest.fixture(scope="module")
def mesh() -> np.ndarray:
    """(478, 3) landmarks of a near-frontal real face."""
    frames = read_video(ASSETS / "lp_d0.mp4", max_frames=1, max_side=256).frames
    pts = extract_tracks(frames, 1, default_backend()).face(0)[0].astype(np.float64)
    assert np.isfinite(pts).all()
    return pts


def _rot(yaw=0.0, pitch=0.0, roll=0.0) -> np.ndarray:
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _about_centre(pts: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    c = pts.mean(0)
    return (pts - c) @ rotation.T + c


@pytest.mark.parametrize("angles", [(20, 0, 0), (-15, 10, 0), (0, -12, 8), (30, 5, -10)])
def test_rotating_the_mesh_changes_the_pose_by_that_rotation(mesh, angles):
    base = geometry.head_rotation(mesh)
    turned = _about_centre(mesh, _rot(*angles))
    # The fitted head rotation composes exactly with the applied one.
    np.testing.assert_allclose(geometry.head_rotation(turned), _rot(*angles) @ base, atol=1e-9)
    # Relative to an upright frontal face the Euler angles are the applied ones.
    frontal = _about_centre(mesh, base.T)
    np.testing.assert_allclose(geometry.head_pose(frontal), 0.0, atol=1e-9)
    np.testing.assert_allclose(geometry.head_pose(_about_centre(frontal, _rot(*angles))), angles, atol=1e-9)


def test_shape_is_invariant_to_position_rotation_and_scale(mesh):
    moved = _about_centre(mesh, _rot(25, -10, 7)) * 1.7 + np.array([40.0, -13.0, 5.0])
    np.testing.assert_allclose(geometry.normalized_shape(moved), geometry.normalized_shape(mesh), atol=1e-9)
    # ...so AED ignores a moving head, while APD and LMD see it.
    seq_a = np.stack([mesh, mesh])
    seq_b = np.stack([mesh, moved])
    assert np.nanmax(metrics.expression_errors(seq_b, seq_a)) < 1e-7
    assert metrics.pose_errors(seq_b, seq_a)[1] > 30
    assert metrics.lmd_frames(seq_b, seq_a)[1] > 10


def test_gaze_follows_the_head_and_the_irises(mesh):
    base = geometry.gaze_directions(mesh)
    assert base.shape == (2, 3)
    np.testing.assert_allclose(np.linalg.norm(base, axis=-1), 1.0)
    assert (base[:, 2] < 0).all()  # looking towards the camera
    turned = geometry.gaze_directions(_about_centre(mesh, _rot(20, 0, 0)))
    # Eyes fixed in a turning head: the gaze turns with the head, exactly.
    np.testing.assert_allclose(turned, base @ _rot(20, 0, 0).T, atol=1e-9)
    assert geometry.angle_between(turned, base).min() > 15
    # Moving both irises towards the image right turns the gaze right, by an amount that grows with the move.
    errors = []
    for shift in (0.05, 0.1, 0.2):
        eyes = mesh.copy()
        width = np.linalg.norm(mesh[33] - mesh[133])
        eyes[468:478, 0] += shift * width
        g = geometry.gaze_directions(eyes)
        assert (g[:, 0] > base[:, 0]).all()
        errors.append(float(np.mean(geometry.angle_between(g, base))))
    assert errors[0] > 1 and errors[0] < errors[1] < errors[2]
    frame_errors = metrics.gaze_errors(np.stack([mesh, eyes]), np.stack([mesh, mesh]))
    assert frame_errors[0] == 0 and frame_errors[1] == pytest.approx(errors[2])


def test_missing_frames_are_nan_not_zero(mesh):
    seq = np.stack([mesh, np.full_like(mesh, np.nan), mesh])
    for fn in metrics.LANDMARK_METRICS.values():
        values = fn(seq, np.stack([mesh, mesh, mesh]))
        assert np.isnan(values[1])
        assert np.isfinite(values[2])
