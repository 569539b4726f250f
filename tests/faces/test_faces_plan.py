"""plan_faces: one detection pass per video, the count and mapping checks every command shares, unused
drivers; inspect's drawings give a driver the colour of the portrait face it drives."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "commands"))
from command_helpers import StubFaceBackend, make_driver, portrait_array  # noqa: E402

from fantasy_portrait.errors import FaceError  # noqa: E402
from fantasy_portrait.faces.plan import plan_faces  # noqa: E402


class CountingStub(StubFaceBackend):
    def __init__(self):
        self.calls = 0

    def detect(self, image_rgb):
        self.calls += 1
        return super().detect(image_rgb)


def test_fewer_driving_faces_detect_once_and_explain(tmp_path):
    """The portrait has 2 faces, the video 1: refused (counts must agree without --map), and the video
    went through the detector once (it used to be tracked a second time)."""
    backend = CountingStub()
    video = make_driver(tmp_path / "one.mp4", 1, frames=6)
    with pytest.raises(
        FaceError, match=r"portrait has 2 face\(s\) but the driving input has 1 .*one.mp4: 1 face"
    ):
        plan_faces(portrait_array(2), [video], backend=backend, progress=False)
    assert backend.calls == 1 + 6  # the portrait, then each frame once
    plan = plan_faces(portrait_array(2), [video], backend=backend, mapping="0:1", progress=False)
    assert plan.mapping == [1] and [d.index for d in plan.driving] == [0]


def test_more_driving_faces_need_a_mapping_and_can_leave_some_unused(tmp_path):
    video = make_driver(tmp_path / "three.mp4", 3, frames=5, size=(96, 160))
    with pytest.raises(
        FaceError, match=r"driving input has 3 faces but the portrait has 2.*--map 0:0,1:1,2:-"
    ):
        plan_faces(portrait_array(2), [video], backend=StubFaceBackend(), progress=False)
    plan = plan_faces(
        portrait_array(2), [video], backend=StubFaceBackend(), mapping="0:1,1:-,2:0", progress=False
    )
    assert [d.index for d in plan.driving] == [0, 2] and [d.index for d in plan.unused] == [1]
    assert plan.mapping == [1, 0] and plan.regions.shape == (2, 4)
    data = plan.to_dict(with_frames=False)
    assert data["mapping"] == {"0": 1, "2": 0} and [d["index"] for d in data["unused_driving_faces"]] == [1]


def test_mapping_errors_before_decoding(tmp_path, monkeypatch):
    """What can be checked without the driving video is checked first: the portrait side of --map,
    and with one video per face, everything."""
    from fantasy_portrait.faces import plan as plan_module

    def decoded(*a, **k):
        raise AssertionError("decoded")

    monkeypatch.setattr(plan_module, "detect_video", decoded)
    monkeypatch.setattr(plan_module, "track_faces", decoded)
    video = tmp_path / "never_read.mp4"
    with pytest.raises(FaceError, match="portrait face 4, but the portrait has 2"):
        plan_faces(portrait_array(2), [video], backend=StubFaceBackend(), mapping="0:4")
    with pytest.raises(FaceError, match="3 faces but the portrait has 2.*--map 0:0,1:1,2:-"):
        plan_faces(portrait_array(2), [video, video, video], backend=StubFaceBackend())


def test_a_pair_has_one_colour_in_both_previews():
    from fantasy_portrait.faces.draw import color, draw_portrait, draw_tracks
    from fantasy_portrait.faces.portrait import PortraitFace
    from fantasy_portrait.faces.tracking import FaceTrack

    image = np.zeros((120, 200, 3), np.uint8)
    faces = [PortraitFace(i, np.array([20 + 100 * i, 30, 70 + 100 * i, 80], np.float32)) for i in range(2)]
    boxes = np.array([[[10, 10, 60, 60]], [[110, 10, 160, 60]]], np.float32)  # driver 0 left, driver 1 right
    tracks = [
        FaceTrack(b, np.zeros((1, 5, 2), np.float32), None, np.zeros(1, bool), np.ones(1, np.float32), 25.0)
        for b in boxes
    ]
    mapping = [1, 0]  # driver 0 -> portrait face 1, driver 1 -> portrait face 0
    portrait = draw_portrait(image, faces, None, mapping)
    driving = draw_tracks(np.zeros((120, 200, 3), np.uint8), tracks, 0, names=[0, 1], color_ids=mapping)
    for d, p in enumerate(mapping):
        x1, y1 = faces[p].box[:2].astype(int)
        assert tuple(portrait[y1 + 20, x1]) == color(p)
        bx, by = boxes[d, 0, :2].astype(int)
        assert tuple(driving[by + 20, bx]) == color(p)  # the driver has its portrait face's colour
