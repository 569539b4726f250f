"""Renderer, performances and scenes of the synthetic portrait world: determinism and exact ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from fantasy_portrait.synthetic.params import (
    MOTION_DIM,
    MOTION_NAMES,
    denormalize_motion,
    neutral_motion,
    normalize_motion,
    random_identity,
)
from fantasy_portrait.synthetic.performance import random_motion, random_performance
from fantasy_portrait.synthetic.render import LANDMARK_NAMES, Character, Scene, render_frame
from fantasy_portrait.synthetic.scenes import layout, random_performances, random_scene, render_clip

IDX = {n: i for i, n in enumerate(MOTION_NAMES)}


def _scene(seed: int, size: int = 192) -> Scene:
    idt = random_identity(seed)
    return Scene((Character(idt, (0.5, 0.45), 0.27),), size, size, idt.background_top, idt.background_bottom)


def _motion(**values) -> np.ndarray:
    m = neutral_motion()
    for k, v in values.items():
        m[IDX[k]] = v
    return m[None]


def test_same_seed_same_clip_and_other_seed_differs():
    a = render_clip(random_scene(3, 2, 128, 192), random_performances(6, 2, seed=5))
    b = render_clip(random_scene(3, 2, 128, 192), random_performances(6, 2, seed=5))
    c = render_clip(random_scene(4, 2, 128, 192), random_performances(6, 2, seed=5))
    for name in ("frames", "motion", "boxes", "five_points", "landmarks", "landmark_visible"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert np.abs(a.frames.astype(int) - c.frames.astype(int)).mean() > 5
    assert not np.allclose(a.five_points, c.five_points)


@pytest.mark.parametrize("seed", range(6))
def test_ground_truth_is_consistent_for_random_poses(seed):
    scene = _scene(seed)
    motion = random_motion(seed)[None]
    f = render_frame(scene, motion)
    assert f.image.shape == (192, 192, 3) and f.image.dtype == np.uint8
    assert f.landmarks.shape == (1, len(LANDMARK_NAMES), 2)
    box, five = f.boxes[0], f.five_points[0]
    assert np.isfinite(f.landmarks).all()
    # Every point lies in the box; the box lies in a plausible area of the image.
    assert (five[:, 0] >= box[0]).all() and (five[:, 0] <= box[2]).all()
    assert (five[:, 1] >= box[1]).all() and (five[:, 1] <= box[3]).all()
    # Image-left first, eyes above the nose tip above the mouth.
    assert five[0, 0] < five[1, 0] and five[3, 0] < five[4, 0]
    assert five[:2, 1].max() < five[2, 1] < five[3:, 1].min()
    # The box is filled by the rendered head: its centre pixel differs from the background.
    from fantasy_portrait.synthetic.render import background

    bg = background(scene)
    cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
    assert np.abs(f.image[cy, cx].astype(int) - bg[cy, cx].astype(int)).sum() > 20


@pytest.mark.parametrize("yaw", [-25.0, 25.0])
def test_yaw_sign_moves_the_nose_to_the_same_side(yaw):
    f = render_frame(_scene(1), _motion(yaw=yaw))
    five = f.five_points[0]
    eyes_mid = five[:2, 0].mean()
    offset = five[2, 0] - eyes_mid
    assert np.sign(offset) == np.sign(yaw) and abs(offset) > 2
    # The far eye is foreshortened: the eye towards the turn is nearer the nose.
    d_left, d_right = abs(five[2, 0] - five[0, 0]), abs(five[1, 0] - five[2, 0])
    assert (d_right < d_left) == (yaw > 0)


def test_pitch_up_moves_the_nose_up_towards_the_eyes():
    down = render_frame(_scene(2), _motion(pitch=-20.0)).five_points[0]
    up = render_frame(_scene(2), _motion(pitch=20.0)).five_points[0]
    gap = lambda p: p[2, 1] - p[:2, 1].mean()  # noqa: E731
    assert gap(up) < gap(down)


@pytest.mark.parametrize("roll", [-20.0, 0.0, 15.0])
def test_roll_is_the_exact_eye_line_angle(roll):
    five = render_frame(_scene(3), _motion(roll=roll)).five_points[0]
    dx, dy = five[1] - five[0]
    # Counter-clockwise in the image (y down): the right eye rises for a positive roll.
    assert np.degrees(np.arctan2(-dy, dx)) == pytest.approx(roll, abs=1e-3)


def _eye_white_pixels(image: np.ndarray, landmarks: np.ndarray, side: str) -> int:
    names = [f"{side}_eye_{k}" for k in ("outer", "inner", "top", "bottom")]
    pts = landmarks[[LANDMARK_NAMES.index(n) for n in names]]
    x0, y0 = np.floor(pts.min(0) - 3).astype(int)
    x1, y1 = np.ceil(pts.max(0) + 3).astype(int)
    patch = image[y0:y1, x0:x1].astype(int)
    return int(((patch.min(-1) > 200) & (patch.max(-1) - patch.min(-1) < 40)).sum())


def test_blink_closes_only_that_eye():
    scene = _scene(5, 256)
    open_ = render_frame(scene, _motion())
    left_shut = render_frame(scene, _motion(blink_left=1.0))
    for side in ("left", "right"):
        assert _eye_white_pixels(open_.image, open_.landmarks[0], side) > 15
    assert _eye_white_pixels(left_shut.image, open_.landmarks[0], "left") == 0
    assert _eye_white_pixels(left_shut.image, open_.landmarks[0], "right") > 15
    # The lid landmarks meet when the eye is shut.
    lm = left_shut.landmarks[0]
    top, bottom = LANDMARK_NAMES.index("left_eye_top"), LANDMARK_NAMES.index("left_eye_bottom")
    assert np.linalg.norm(lm[top] - lm[bottom]) < 0.5


def test_mouth_open_separates_the_inner_lips_and_shows_the_cavity():
    scene = _scene(6, 256)
    closed, opened = (render_frame(scene, _motion(mouth_open=v)) for v in (0.0, 1.0))
    up, lo = LANDMARK_NAMES.index("upper_lip_inner"), LANDMARK_NAMES.index("lower_lip_inner")
    gap = lambda f: f.landmarks[0, lo, 1] - f.landmarks[0, up, 1]  # noqa: E731
    assert gap(closed) < 0.5 < 8 < gap(opened)
    x, y = np.round((opened.landmarks[0, up] + opened.landmarks[0, lo]) / 2).astype(int)
    assert opened.image[y, x].max() < 90  # dark mouth cavity between the lips


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_multi_character_boxes_are_ordered_and_disjoint(n):
    scene = random_scene(n, n, 128, 256)
    clip = render_clip(scene, random_performances(4, n, seed=n))
    for boxes in clip.boxes:
        centres = (boxes[:, 0] + boxes[:, 2]) / 2
        assert (np.diff(centres) > 0).all()
        assert (boxes[1:, 0] > boxes[:-1, 2]).all()
        assert (boxes[:, :2] >= -1).all() and (boxes[:, 2] <= 257).all() and (boxes[:, 3] <= 129).all()


def test_layout_rejects_more_than_four_characters():
    with pytest.raises(ValueError):
        layout(5, 128, 256)


def test_performance_is_smooth_and_has_blinks_talking_and_turns():
    p = random_performance(250, seed=11, fps=25)
    assert p.shape == (250, MOTION_DIM) and p.dtype == np.float32
    np.testing.assert_array_equal(p, random_performance(250, seed=11, fps=25))
    assert np.abs(np.diff(p[:, IDX["yaw"]])).max() < 6.0  # degrees per frame at 25 fps
    assert p[:, IDX["yaw"]].max() - p[:, IDX["yaw"]].min() > 5
    assert (p[:, IDX["blink_left"]] > 0.8).any() and (p[:, IDX["blink_left"]] < 0.05).mean() > 0.7
    assert (p[:, IDX["mouth_open"]] > 0.3).any() and (p[:, IDX["mouth_open"]] < 0.05).any()
    assert p[:, IDX["smile"]].std() + p[:, IDX["brow_raise"]].std() > 0.05


def test_motion_normalisation_round_trips():
    m = np.stack([random_motion(s) for s in range(5)])
    z = normalize_motion(m)
    assert np.abs(z).max() <= 1.0 + 1e-6
    np.testing.assert_allclose(denormalize_motion(z), m, atol=1e-4)
