"""Face backends on real shared images: counts, order, five points, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fantasy_portrait.errors import CheckpointError, InputError
from fantasy_portrait.faces import FaceObservation, get_backend
from fantasy_portrait.io import load_image

ASSETS = Path(__file__).parents[2] / ".." / "shared" / "assets"

# Five points of fp_man.jpeg chosen by eye in the golden fixtures (golden/README.md, case f).
MAN_FIVE_POINTS = np.array([[445, 405], [620, 421], [522, 522], [457, 575], [580, 587]], np.float32)


@pytest.fixture(scope="module")
def backend():
    return get_backend("mediapipe")


def test_one_face_in_fp_man_with_five_points_near_the_hand_marked_ones(backend):
    faces = backend.detect(load_image(ASSETS / "fp_man.jpeg"))
    assert len(faces) == 1
    face = faces[0]
    assert isinstance(face, FaceObservation)
    assert face.landmarks.shape == (478, 2) and face.five_points.shape == (5, 2)
    # Within 3 % of the inter-ocular distance... generous: within 12 px on a 1024 px image.
    err = np.linalg.norm(face.five_points - MAN_FIVE_POINTS, axis=1)
    assert err.max() < 12, err
    x1, y1, x2, y2 = face.box
    assert x1 < MAN_FIVE_POINTS[:, 0].min() and x2 > MAN_FIVE_POINTS[:, 0].max()
    assert y1 < MAN_FIVE_POINTS[:, 1].min() and y2 > MAN_FIVE_POINTS[:, 1].max()


def test_two_faces_in_fp_two_person(backend):
    faces = backend.detect(load_image(ASSETS / "fp_two_person.png"))
    assert len(faces) == 2
    for face in faces:
        assert face.five_points is not None
        left_eye, right_eye = face.five_points[0], face.five_points[1]
        assert left_eye[0] < right_eye[0]  # image-left eye first
        assert face.five_points[3, 0] < face.five_points[4, 0]


def test_blank_image_has_no_faces(backend):
    assert backend.detect(np.full((128, 128, 3), 127, np.uint8)) == []


def test_rejects_non_rgb_arrays(backend):
    with pytest.raises(ValueError):
        backend.detect(np.zeros((64, 64), np.uint8))


def test_unknown_backend_and_missing_onnx_files(tmp_path):
    with pytest.raises(InputError, match="unknown face backend"):
        get_backend("nope")
    with pytest.raises(CheckpointError, match="face_det.onnx"):
        get_backend("onnx", model_dir=tmp_path, cache=False)
