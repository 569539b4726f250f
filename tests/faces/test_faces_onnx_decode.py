"""Reference ONNX backend helpers that can be checked without the model files."""

from __future__ import annotations

import numpy as np

from fantasy_portrait.faces.onnx_backend import (
    DET_INPUT_HW,
    DET_REG_MAX,
    decode_nanodet,
    letterbox_matrix,
    nms,
)


def test_letterbox_keeps_aspect_and_centres():
    m = letterbox_matrix((1280, 720), (160, 272))  # wide frame into the tall detector input
    corners = np.array([[0, 0, 1], [1280, 720, 1]], np.float64) @ m.T
    assert corners[0, 0] == 0 and corners[1, 0] == 160  # fills the width
    assert corners[1, 1] - corners[0, 1] == 90  # 720 * 160/1280
    assert (corners[0, 1] + corners[1, 1]) / 2 == 136  # vertically centred


def test_decode_one_peak_gives_its_box():
    scores, dists = [], []
    for stride in (8, 16, 32):
        gh, gw = -(-DET_INPUT_HW[0] // stride), -(-DET_INPUT_HW[1] // stride)
        s = np.zeros(gh * gw)
        d = np.full((gh * gw, 4, DET_REG_MAX + 1), -20.0)
        d[..., 0] = 20.0  # zero distance everywhere by default
        if stride == 16:
            cell = 5 * gw + 4  # row 5, column 4 -> centre (64, 80)
            s[cell] = 0.9
            d[cell] = -20.0
            d[cell, :, 2] = 20.0  # distance 2 bins * 16 px = 32 px on every side
        scores.append(s)
        dists.append(d.reshape(gh * gw, -1))
    boxes, conf = decode_nanodet(scores, dists)
    assert len(boxes) == 1 and conf[0] == 0.9
    np.testing.assert_allclose(boxes[0], [32, 48, 96, 112], atol=1e-3)


def test_nms_drops_overlaps():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float64)
    assert nms(boxes, np.array([0.8, 0.9, 0.5]), 0.3) == [1, 2]
