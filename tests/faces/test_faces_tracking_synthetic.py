"""Tracker logic on scripted detections: crossing, vanishing, late entry, smoothing, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fantasy_portrait.errors import FaceError
from fantasy_portrait.faces import FaceObservation
from fantasy_portrait.faces.backend import FaceBackend
from fantasy_portrait.faces.smoothing import smooth_points
from fantasy_portrait.faces.tracking import track_faces

# Five points of a face box (x1, y1, x2, y2) as fractions of the box.
FIVE = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])


def face(cx: float, cy: float, size: float = 60.0, score: float = 0.9) -> FaceObservation:
    box = np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], np.float32)
    pts = (box[:2] + FIVE * size).astype(np.float32)
    return FaceObservation(
        box=box, score=score, five_points=pts, landmarks=pts.copy(), landmark_layout="test"
    )


def test_crossing_faces_keep_identity_through_occlusion():
    n = 40
    xa = np.linspace(100, 500, n)  # face A moves right
    xb = np.linspace(500, 100, n)  # face B moves left, a bit lower and smaller
    dets = []
    for t in range(n):
        frame = [face(xa[t], 200, 60), face(xb[t], 215, 50)]
        if 17 <= t <= 22:  # A passes in front of B: B is not detected
            frame = frame[:1]
        dets.append(frame[::-1] if t % 2 else frame)  # detector order must not matter
    tracks = track_faces(np.zeros((n, 8, 8, 3), np.uint8), num_faces=2, detections=dets, fps=25)
    assert len(tracks) == 2
    a = min(tracks, key=lambda tr: tr.raw_boxes[0, 0])
    b = max(tracks, key=lambda tr: tr.raw_boxes[0, 0])
    ca = (a.raw_boxes[:, 0] + a.raw_boxes[:, 2]) / 2
    cb = (b.raw_boxes[:, 0] + b.raw_boxes[:, 2]) / 2
    np.testing.assert_allclose(ca, xa, atol=1e-3)
    np.testing.assert_allclose(cb, xb, atol=1.0)  # filled frames interpolate along the straight path
    assert b.filled[17:23].all() and not b.filled[:17].any() and not a.filled.any()


def test_short_gap_is_interpolated_and_flagged():
    n = 30
    xs = np.linspace(100, 200, n)
    dets = [[] if 10 <= t <= 13 else [face(xs[t], 100)] for t in range(n)]
    (track,) = track_faces(np.zeros((n, 8, 8, 3), np.uint8), detections=dets, fps=25, smooth=False)
    assert track.num_frames == n
    assert track.gaps() == [(10, 13)]
    np.testing.assert_allclose((track.boxes[:, 0] + track.boxes[:, 2]) / 2, xs, atol=1e-3)
    assert (track.scores[10:14] == 0).all() and (track.scores[:10] > 0).all()


def test_long_gap_is_an_error_naming_the_frames():
    n = 60
    dets = [[] if 10 <= t <= 39 else [face(150, 100)] for t in range(n)]
    with pytest.raises(FaceError, match="frames 10-39"):
        track_faces(np.zeros((n, 8, 8, 3), np.uint8), detections=dets, fps=25)


def test_late_entry():
    n = 40
    # A second face enters at frame 15: asked for two faces, the missing start is named.
    dets = [[face(100, 100)] + ([face(400, 100)] if t >= 15 else []) for t in range(n)]
    with pytest.raises(FaceError, match="frames 0-14"):
        track_faces(np.zeros((n, 8, 8, 3), np.uint8), num_faces=2, detections=dets, fps=25)
    # Asked for one face, the latecomer is ignored and the main face kept.
    (only,) = track_faces(np.zeros((n, 8, 8, 3), np.uint8), num_faces=1, detections=dets, fps=25)
    assert not only.filled.any() and only.center_x == pytest.approx(100, abs=1)
    # Entering 3 frames late is within the gap limit: the first frames hold its first position.
    dets = [[face(100, 100)] + ([face(400, 100)] if t >= 3 else []) for t in range(n)]
    left, right = track_faces(np.zeros((n, 8, 8, 3), np.uint8), num_faces=2, detections=dets, fps=25)
    assert right.filled[:3].all() and not right.filled[3:].any()
    assert right.center_x == pytest.approx(400, abs=1) and left.center_x == pytest.approx(100, abs=1)


def test_false_positives_do_not_steal_a_track():
    n = 30
    rng = np.random.default_rng(3)
    dets = []
    for t in range(n):
        frame = [face(200 + t, 150)]
        if t % 7 == 3:
            frame.append(face(rng.uniform(0, 600), rng.uniform(0, 400), 30, score=0.55))
        dets.append(frame)
    (track,) = track_faces(np.zeros((n, 8, 8, 3), np.uint8), detections=dets, fps=25, smooth=False)
    np.testing.assert_allclose((track.boxes[:, 0] + track.boxes[:, 2]) / 2, 200 + np.arange(n), atol=1e-3)


def test_too_few_frames_and_no_faces():
    n = 20
    with pytest.raises(FaceError, match="no face found in any of its 20 frames"):
        track_faces(np.zeros((n, 8, 8, 3), np.uint8), detections=[[] for _ in range(n)])
    dets = [[face(100, 100)] if t < 6 else [] for t in range(n)]
    with pytest.raises(FaceError, match="only 6 of 20 frames"):
        track_faces(np.zeros((n, 8, 8, 3), np.uint8), num_faces=1, detections=dets, max_gap=100)
    with pytest.raises(FaceError, match="found 1 face"):
        track_faces(np.zeros((n, 8, 8, 3), np.uint8), num_faces=2, detections=[[face(1, 1)]] * n)


def test_smoothing_removes_jitter_without_lag():
    fps = 25.0
    t = np.arange(100) / fps
    noise = np.random.default_rng(0).normal(0, 1.5, t.shape)
    still = smooth_points((100 + noise)[:, None], fps, scale=60.0)[:, 0]
    assert np.std(still - 100) < 0.6 * np.std(noise)  # jitter of a still face drops by more than 40 %
    clean = 100 + 40 * np.sin(2 * np.pi * 0.8 * t)  # a head turning at 0.8 Hz, 40 px amplitude
    moving = smooth_points((clean + noise)[:, None], fps, scale=60.0)[:, 0]
    err = (moving - clean)[3:-3]
    assert np.std(err) < np.std(noise)  # follows the motion: no added error beyond the noise
    assert abs(err.mean()) < 0.3
    # No lag: the smoothed path lines up with the true one (a causal filter would trail it).
    shifts = range(-3, 4)
    best = min(shifts, key=lambda s: np.abs(np.roll(moving, s) - clean)[5:-5].mean())
    assert best == 0


class _CountingBackend(FaceBackend):
    """Fake backend: a face whose x position is the frame's first pixel value."""

    name = "fake"

    def detect(self, image_rgb):
        return [face(float(image_rgb[0, 0, 0]) * 2 + 50, 80)]


def test_backend_path_and_frame_iterables():
    frames = np.zeros((12, 16, 16, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(12)
    (track,) = track_faces(
        iter(list(frames)), backend=_CountingBackend(), fps=12, progress=False, smooth=False
    )
    assert track.num_frames == 12 and track.fps == 12
    np.testing.assert_allclose((track.boxes[:, 0] + track.boxes[:, 2]) / 2, np.arange(12) * 2 + 50, atol=1e-4)


def test_very_short_clips_and_single_frames():
    (one,) = track_faces(np.zeros((1, 8, 8, 3), np.uint8), detections=[[face(50, 50)]], fps=25)
    assert one.num_frames == 1 and not one.filled.any()
    two = track_faces(
        np.zeros((2, 8, 8, 3), np.uint8), num_faces=2, detections=[[face(50, 50), face(200, 50)]] * 2
    )
    assert [round(t.center_x) for t in two] == [50, 200]
