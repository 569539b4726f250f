"""Cross-reenactment dataset: ground truth semantics, files in the training manifest format, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fantasy_portrait.cli import main
from fantasy_portrait.synthetic.dataset import DatasetOptions, generate_dataset, load_tracks, make_sample


def _eye_angle(five_points: np.ndarray) -> np.ndarray:
    d = five_points[..., 1, :] - five_points[..., 0, :]
    return np.arctan2(d[..., 1], d[..., 0])


def test_cross_sample_target_follows_the_driver_motion_with_other_identities():
    s = make_sample(seed=3, num_characters=2, num_frames=5, height=96, width=160)
    np.testing.assert_array_equal(s.driver.motion, s.target.motion)
    for d, t in zip(s.driver_scene.characters, s.target_scene.characters):
        assert d.identity.hair_style != t.identity.hair_style
    # Same motion, other faces: pixels differ, but the pose-driven geometry (eye-line angle) agrees.
    assert np.abs(s.driver.frames.astype(int) - s.target.frames.astype(int)).mean() > 5
    np.testing.assert_allclose(_eye_angle(s.driver.five_points), _eye_angle(s.target.five_points), atol=1e-4)
    again = make_sample(seed=3, num_characters=2, num_frames=5, height=96, width=160)
    np.testing.assert_array_equal(again.target.frames, s.target.frames)


def test_dataset_files_match_the_training_manifest_format(tmp_path):
    from fantasy_portrait.io.video import read_video
    from fantasy_portrait.training.precompute import read_manifest

    pairs = generate_dataset(
        tmp_path, DatasetOptions(num_samples=2, num_frames=5, height=64, width=96, characters=(1, 3))
    )
    assert [p["num_characters"] for p in pairs] == [1, 3]
    entries = read_manifest(tmp_path / "manifest.jsonl")
    assert len(entries) == 4
    for entry in entries:
        tracks = load_tracks(entry.tracks)
        video = read_video(entry.video)
        n = tracks["boxes"].shape[0]
        assert tracks["boxes"].shape == (n, 5, 4)
        assert tracks["five_points"].shape == (n, 5, 5, 2)
        assert tracks["synthetic_motion"].shape == (n, 5, 17)
        assert video.frames.shape == (5, 64, 96, 3)
    line = json.loads((tmp_path / "pairs.jsonl").read_text().splitlines()[1])
    meta = json.loads((tmp_path / line["meta"]).read_text())
    assert meta["num_characters"] == 3 and len(meta["target_scene"]["characters"]) == 3
    ref = load_tracks(tmp_path / line["reference_tracks"])
    assert ref["boxes"].shape == (3, 1, 4)


def test_synth_cli_renders_a_clip_and_rejects_bad_arguments(tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    assert main(["synth", "render", str(out), "--characters", "2", "--frames", "3", "--size", "64x128"]) == 0
    tracks = load_tracks(out.with_suffix(".safetensors"))
    assert tracks["boxes"].shape == (2, 3, 4)
    assert main(["synth", "render", str(tmp_path / "x.mp4"), "--characters", "5"]) == 2
    assert "characters" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", "render", str(out), "--size", "big"])


def test_dataset_can_carry_tiny_encoder_motion_features(tmp_path):
    pairs = generate_dataset(
        tmp_path,
        DatasetOptions(
            num_samples=1, num_frames=3, height=80, width=160, characters=(2,), motion_features=True
        ),
    )
    tracks = load_tracks(tmp_path / pairs[0]["driver_tracks"])
    assert tracks["motion"].shape == (2, 3, 554) and np.isfinite(tracks["motion"]).all()
    # Different faces, frames: different features.
    assert np.abs(tracks["motion"][0] - tracks["motion"][1]).mean() > 1e-3


def test_single_drivers_show_each_driver_alone_with_the_same_motion(tmp_path):
    s = make_sample(seed=1, num_characters=2, num_frames=4, height=80, width=160, single_drivers=True)
    assert len(s.single_drivers) == 2
    for i, clip in enumerate(s.single_drivers):
        assert clip.frames.shape == (4, 80, 80, 3)
        np.testing.assert_array_equal(clip.motion[:, 0], s.driver.motion[:, i])
    assert (
        main(
            [
                "synth",
                "dataset",
                str(tmp_path),
                "--samples",
                "1",
                "--frames",
                "2",
                "--size",
                "64x128",
                "--characters",
                "2",
                "--single-drivers",
            ]
        )
        == 0
    )
    line = json.loads((tmp_path / "pairs.jsonl").read_text())
    assert len(line["single_drivers"]) == 2
    assert all((tmp_path / p).is_file() for p in line["single_drivers"] + line["single_driver_tracks"])
    assert len((tmp_path / "manifest.jsonl").read_text().splitlines()) == 4
