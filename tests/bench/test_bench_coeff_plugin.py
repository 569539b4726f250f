"""The --coeff-extractor plug-in (3DMM-style AED / APD) with a stand-in extractor defined here."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fantasy_portrait import cli
from fantasy_portrait.bench import methods, report, runner, scoring
from fantasy_portrait.bench.coefficients import (
    coefficient_distances,
    face_boxes,
    load_coefficient_extractor,
)
from fantasy_portrait.bench.manifest import manifest_from_dict, save_manifest
from fantasy_portrait.errors import InputError

ASSETS = (Path(__file__).parents[2] / ".." / "shared" / "assets").resolve()
CASES = [
    {"id": "self-d0", "mode": "self", "video": "lp_d0.mp4"},
    {"id": "cross-man", "mode": "cross", "portrait": "fp_man.jpeg", "drivers": ["lp_d12.mp4"]},
]
SPEC = f"{__name__}:stand_in_extract"


def stand_in_extract(frames, boxes):
    """Stand-in for a 3DMM network: 'expression' = the face box as 8 x 8 grey levels (K = 64),
    'pose' = left-right and top-bottom brightness differences and the box's aspect ratio (x 90)."""
    pose = np.full((len(frames), 3), np.nan)
    expression = np.full((len(frames), 64), np.nan)
    for t, (frame, box) in enumerate(zip(frames, boxes)):
        if not np.isfinite(box).all():
            continue
        h, w = frame.shape[:2]
        x0, y0 = int(np.clip(box[0], 0, w - 2)), int(np.clip(box[1], 0, h - 2))
        x1, y1 = int(np.clip(np.ceil(box[2]), x0 + 2, w)), int(np.clip(np.ceil(box[3]), y0 + 2, h))
        grey = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
        small = cv2.resize(grey, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float64) / 255
        expression[t] = small.ravel()
        pose[t] = [
            90 * (small[:, :4].mean() - small[:, 4:].mean()),
            90 * (small[:4].mean() - small[4:].mean()),
            90 * (y1 - y0) / (x1 - x0),
        ]
    return {"pose": pose, "expression": expression}


def bad_shape_extract(frames, boxes):
    return {"pose": np.zeros((len(frames), 2)), "expression": np.zeros((len(frames), 5))}


def _manifest():
    return manifest_from_dict({"name": "coeff", "frames": 5, "max_side": 128, "cases": CASES}, ASSETS)


def _synthetic(seed):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (4, 48, 48, 3), dtype=np.uint8)
    boxes = np.tile([8.0, 6.0, 40.0, 44.0], (4, 1))
    return frames, boxes


def test_identical_videos_give_zero_and_different_ones_more():
    extractor = load_coefficient_extractor(SPEC)
    frames, boxes = _synthetic(0)
    aed, apd = coefficient_distances(extractor, frames, boxes, frames.copy(), boxes.copy())
    assert aed == [0.0] * 4 and apd == [0.0] * 4
    other, _ = _synthetic(1)
    aed, apd = coefficient_distances(extractor, frames, boxes, other, boxes)
    assert min(aed) > 0.01 and min(apd) > 0.01
    # A missing face in either video leaves that frame out (None), and frames beyond the shorter video too.
    missing = boxes.copy()
    missing[2] = np.nan
    aed, apd = coefficient_distances(extractor, frames, missing, other[:3], boxes)
    assert len(aed) == 3 and aed[2] is None and apd[2] is None and aed[0] > 0


def test_face_boxes_from_landmarks():
    points = np.full((3, 478, 3), np.nan, np.float32)
    points[0, :, 0], points[0, :, 1], points[0, :, 2] = np.linspace(5, 20, 478), np.linspace(7, 30, 478), 0
    boxes = face_boxes(points)
    assert boxes[0] == pytest.approx([5, 7, 20, 30]) and np.isnan(boxes[1:]).all()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_colon_here", "expected 'module:function'"),
        ("no_such_module_xyz:extract", "cannot import no_such_module_xyz"),
        (f"{__name__}:missing_function", "has no attribute"),
        (f"{__name__}:SPEC", "is not callable"),
    ],
)
def test_bad_specs_are_one_line_input_errors(spec, message):
    with pytest.raises(InputError, match=message) as info:
        load_coefficient_extractor(spec)
    assert "\n" not in str(info.value)


def test_bad_return_shape_is_an_input_error():
    extractor = load_coefficient_extractor(f"{__name__}:bad_shape_extract")
    frames, boxes = _synthetic(0)
    with pytest.raises(InputError, match=r"'pose' has shape \(4, 2\), expected \(4, 3\)"):
        extractor(frames, boxes)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """repeat-portrait and copy-driver outputs scored with the stand-in extractor (and one without)."""
    path = tmp_path_factory.mktemp("coeff_run")
    manifest = _manifest()
    coeff = load_coefficient_extractor(SPEC)
    for spec in ("repeat-portrait", "copy-driver"):
        runner.run_method(manifest, methods.make_method(spec), path)
        scoring.score_method(manifest, path, spec, coeff=coeff)
    return path


def test_scores_use_the_plugin_and_say_so(run_dir):
    copy = json.loads((run_dir / "scores" / "copy-driver" / "summary.json").read_text())
    still = json.loads((run_dir / "scores" / "repeat-portrait" / "summary.json").read_text())
    assert copy["extractors"]["aed_apd"] == f"coefficients {SPEC}"
    # The ground truth itself: identical frames and boxes, so exactly 0.
    for name in ("aed", "apd"):
        assert copy["subsets"]["single"]["self"][name] == 0.0
        assert still["subsets"]["single"]["self"][name] > 0  # the head moves in the ground truth
        # cross: a different person, still, against the driver; copy-driver is the (resized) driver.
        assert still["subsets"]["single"]["cross"][name] > copy["subsets"]["single"]["cross"][name]
    # The values are the stand-in's (K = 64 grey levels in 0..1), not the landmark ones.
    case = scoring.load_case_scores(run_dir, "repeat-portrait")["self-d0"]
    aed = [v for v in case["faces"][0]["aed"] if v is not None]
    assert aed and all(0 < v < 1 for v in aed)
    md = report.markdown(scoring.load_summaries(run_dir))
    assert f"AED/APD coefficients {SPEC}" in md and "mix extractors" not in md
    aed_rows = [r for r in report.rows(scoring.load_summaries(run_dir)) if r["metric"] == "aed"]
    assert aed_rows and all(r["extractor"] == f"coefficients {SPEC}" for r in aed_rows)


def test_landmark_and_plugin_scores_are_kept_apart(run_dir):
    manifest = _manifest()
    plugin = json.loads((run_dir / "scores" / "copy-driver" / "summary.json").read_text())
    # Scoring without the plug-in recomputes (different cache key) with the landmark AED/APD.
    landmark = scoring.score_method(manifest, run_dir, "copy-driver")
    assert landmark["extractors"]["aed_apd"] == scoring.LANDMARK_EXTRACTOR
    still = scoring.load_summaries(run_dir)
    md = report.markdown(still)
    assert "mix extractors" in md  # repeat-portrait still has plug-in values: the report warns
    assert plugin["extractors"]["aed_apd"] != landmark["extractors"]["aed_apd"]


def test_cli_option_and_bad_spec_exit_code(tmp_path, capsys):
    manifest = manifest_from_dict({"name": "cli", "frames": 3, "max_side": 96, "cases": CASES[:1]}, ASSETS)
    path = save_manifest(manifest, tmp_path / "m.json")
    out = tmp_path / "run"
    args = ["bench", "run", str(path), "-o", str(out), "-m", "copy-driver", "--score"]
    assert cli.main([*args, "--coeff-extractor", SPEC]) == 0
    md = (out / "report" / "report.md").read_text()
    assert f"AED/APD coefficients {SPEC}" in md
    capsys.readouterr()
    assert cli.main([*args, "--coeff-extractor", "nope_module_xyz:f"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nope_module_xyz" in err and "\n" not in err
    score = ["bench", "score", str(path), "-o", str(out), "-m", "copy-driver"]
    assert cli.main([*score, "--coeff-extractor", f"{__name__}:bad_shape_extract"]) == 2
    assert "'pose' has shape" in capsys.readouterr().err
