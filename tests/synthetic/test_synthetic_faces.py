"""Synthetic faces through the project's face stack: PD-FGC alignment and the MediaPipe backend."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fantasy_portrait.faces.align import PDFGC_TEMPLATE, align_faces, alignment_error
from fantasy_portrait.synthetic.params import MOTION_NAMES, neutral_motion, random_identity
from fantasy_portrait.synthetic.performance import random_motion
from fantasy_portrait.synthetic.render import Character, Scene, render_frame

# Stated bounds (pixels in the 224 crop) for the residual of the similarity fit of exact five points.
FRONTAL_BOUND_224 = 5.0
ANY_POSE_BOUND_224 = 10.0


def _portrait(seed: int, size: int = 256, glasses: bool = True) -> Scene:
    idt = random_identity(seed)
    if not glasses:
        idt = dataclasses.replace(idt, glasses=0)
    return Scene((Character(idt, (0.5, 0.45), 0.27),), size, size, idt.background_top, idt.background_bottom)


def test_alignment_puts_the_exact_five_points_on_the_template():
    frontal, posed = [], []
    for seed in range(12):
        scene = _portrait(seed)
        frontal.append(render_frame(scene, neutral_motion()[None]).five_points[0])
        posed.append(render_frame(scene, random_motion(seed)[None]).five_points[0])
    err_frontal = alignment_error(np.stack(frontal))
    err_posed = alignment_error(np.stack(posed))
    assert err_frontal.mean() < FRONTAL_BOUND_224
    assert err_posed.mean() < ANY_POSE_BOUND_224


def test_aligned_crop_shows_the_pupils_at_the_template_eyes():
    scene = _portrait(7, glasses=False)
    m = neutral_motion()
    m[MOTION_NAMES.index("roll")] = 15.0
    m[MOTION_NAMES.index("tx")] = 0.1
    f = render_frame(scene, m[None])
    crop = align_faces(f.image, f.five_points[0][None], 224)[0].astype(int)
    for x, y in (PDFGC_TEMPLATE[:2] * 224).round().astype(int):
        # Pupil (dark) within 3 px of each template eye centre.
        patch = crop[y - 3 : y + 4, x - 3 : x + 4]
        assert patch.max(-1).min() < 60
    # Between the eyes is skin, not pupil.
    xm, ym = (PDFGC_TEMPLATE[:2].mean(0) * 224).round().astype(int)
    assert crop[ym, xm].max() > 80


def test_mediapipe_detects_rendered_portraits_and_finds_the_five_points():
    pytest.importorskip("mediapipe", reason="the MediaPipe face backend is an optional dependency")
    from fantasy_portrait.faces.backend import get_backend

    backend = get_backend("mediapipe")
    found, errors = 0, []
    for seed in range(8):
        f = render_frame(_portrait(seed), random_motion(seed)[None])
        faces = backend.detect(f.image)
        if not faces:
            continue
        found += 1
        obs = max(faces, key=lambda o: o.score)
        if obs.five_points is not None:
            eye_dist = np.linalg.norm(f.five_points[0, 1] - f.five_points[0, 0])
            errors.append(np.linalg.norm(obs.five_points - f.five_points[0], axis=1).mean() / eye_dist)
    assert found >= 7
    assert len(errors) >= 6 and np.median(errors) < 0.2
