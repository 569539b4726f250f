"""``fantasy-portrait inspect``: JSON facts, preview files and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fantasy_portrait.cli import main
from fantasy_portrait.io import probe_video

ASSETS = Path(__file__).parents[2] / ".." / "shared" / "assets"
GOLDEN = Path(__file__).parents[2] / ".." / "shared" / "golden"


def test_json_plan_single_face(capsys):
    code = main(
        ["inspect", str(ASSETS / "fp_man.jpeg"), str(ASSETS / "lp_d0.mp4"), "--json", "--max-frames", "11"]
    )
    assert code == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["portrait_faces"]) == 1 and plan["portrait_faces"][0]["source"] == "detected"
    (drive,) = plan["driving_faces"]
    assert drive["num_frames"] == 11 and len(drive["boxes"]) == 11 and drive["portrait_face"] == 0
    assert plan["num_frames"] == 9  # largest 4k+1 <= 11
    x1, y1, x2, y2 = plan["regions"][0]
    px1, py1, px2, py2 = plan["portrait_faces"][0]["box"]
    assert x1 <= px1 + 1 and y1 <= py1 + 1 and x2 >= px2 - 1 and y2 >= py2 - 1  # region contains the face


@pytest.mark.slow
def test_preview_files_with_two_driving_videos_and_mapping(tmp_path, capsys):
    out = tmp_path / "preview"
    boxes = "100,100,300,300;600,100,800,300"
    code = main([
        "inspect", str(ASSETS / "fp_man.jpeg"), str(ASSETS / "lp_d0.mp4"), str(ASSETS / "lp_d12.mp4"),
        "--face-boxes", boxes, "--map", "0:1,1:0", "--max-frames", "5", "-o", str(out),
        "--pd-fgc", str(GOLDEN / "pd_fgc_random.pth"),
    ])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "driver 0: lp_d0.mp4" in text and "-> portrait face 1" in text
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "driving_0.mp4",
        "driving_1.mp4",
        "motion_0.png",
        "motion_1.png",
        "plan.json",
        "portrait.png",
    ]
    assert probe_video(out / "driving_1.mp4").num_frames == 5
    plan = json.loads((out / "plan.json").read_text())
    assert plan["mapping"] == {"0": 1, "1": 0}
    assert np.asarray(plan["regions"]).shape == (2, 4)


def test_errors_are_one_line(tmp_path, capsys):
    code = main(["inspect", str(ASSETS / "lp_s23.jpg"), str(ASSETS / "lp_d0.mp4"), "--max-frames", "3"])
    err = capsys.readouterr().err
    if code != 0:  # the detector misses the cartoon alpaca: the message says what to do
        assert code == 2 and err.startswith("error: ") and "lp_s23.jpg: no face found" in err and "--face-boxes" in err
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    assert main(["inspect", str(ASSETS / "fp_man.jpeg"), str(bad)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    code = main(["inspect", str(ASSETS / "fp_man.jpeg"), str(ASSETS / "lp_d0.mp4"), str(ASSETS / "lp_d12.mp4"),
                 "--max-frames", "3"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "driving input has 2 faces but the portrait has 1 face(s)" in err
    assert "--map 0:0,1:-" in err and "faces:" not in err  # refused before any video is decoded
    blank = tmp_path / "blank.mp4"
    from fantasy_portrait.io import write_video

    write_video(blank, np.full((6, 64, 64, 3), 90, np.uint8), fps=25)
    assert main(["inspect", str(ASSETS / "fp_man.jpeg"), str(blank)]) == 2
    assert "no face found in any of its 6 frames" in capsys.readouterr().err
