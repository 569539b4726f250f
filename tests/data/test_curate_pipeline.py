"""End-to-end curation on the shared two-person video and negatives made from it (issue 8's Show)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fantasy_portrait.data import CurationConfig, curate, read_manifest
from fantasy_portrait.data.journal import Journal
from fantasy_portrait.data.manifest import TIMING_COLUMNS
from fantasy_portrait.io import iter_video_frames
from fantasy_portrait.io import probe_video as probe


def rows_of(table, path) -> list[dict]:
    rows = [r for r in table.to_pylist() if Path(r["source"]) == Path(path).resolve()]
    return sorted(rows, key=lambda r: r["start_frame"])


def comparable(table):
    """The manifest without the wall-time columns (the only ones that differ between runs)."""
    return table.drop_columns(list(TIMING_COLUMNS)).to_pylist()


def test_two_person_video_kept_with_two_tracks(curate_inputs, pool_run):
    result, table = pool_run
    (row,) = rows_of(table, curate_inputs["two_person"])
    assert row["kept"], row["reject_reasons"]
    assert row["reject_reason"] is None and row["error"] is None
    assert row["faces"] == 2 and len(row["tracks"]) == 2
    left, right = row["tracks"]
    assert left["box"][0] < right["box"][0]  # numbered left to right
    assert all(t["coverage"] >= 0.5 for t in row["tracks"])
    assert row["moving_faces"] >= 1 and row["mouth_motion"] > 0
    assert (row["start_frame"], row["end_frame"]) == (0, 146)
    # The whole video starts on a keyframe: cut by packet copy, frame for frame identical.
    assert row["cut_mode"] == "remux"
    clip = result.out_dir / row["clip_path"]
    assert probe(str(clip)).num_frames == 146
    first_clip = next(iter_video_frames(clip, end=1))
    first_src = next(iter_video_frames(curate_inputs["two_person"], end=1))
    assert (first_clip == first_src).all()


@pytest.mark.parametrize(
    "name, reason",
    [("blurred", "blurry"), ("frozen", "static"), ("single", "too_few_faces")],
)
def test_negative_rejected_for_its_reason(curate_inputs, pool_run, name, reason):
    _, table = pool_run
    (row,) = rows_of(table, curate_inputs[name])
    assert not row["kept"]
    assert row["reject_reason"] == reason, row
    assert row["clip_path"] is None


def test_frozen_copy_has_faces_but_no_motion(curate_inputs, pool_run):
    _, table = pool_run
    (row,) = rows_of(table, curate_inputs["frozen"])
    assert row["faces"] == 2
    config = CurationConfig()
    assert row["head_range"] < config.min_head_range_deg
    assert row["mouth_motion"] < config.min_mouth_motion and row["eye_motion"] < config.min_eye_motion


def test_hard_cut_found_and_shots_scored_apart(curate_inputs, pool_run, cut_at):
    _, table = pool_run
    rows = rows_of(table, curate_inputs["cut"])
    assert [(r["start_frame"], r["end_frame"]) for r in rows] == [(0, cut_at), (cut_at, 2 * cut_at)]
    assert [r["shot_index"] for r in rows] == [0, 1]
    # The second shot shows one talking man: rejected for the face count, not for anything else.
    assert rows[1]["reject_reason"] == "too_few_faces" and rows[1]["faces"] == 1
    assert rows[0]["faces"] == 2


def test_report_and_counts(pool_run):
    result, table = pool_run
    assert result.num_clips == table.num_rows == 6
    assert result.counts == {"kept": 2, "blurry": 1, "static": 1, "too_few_faces": 2}
    text = result.report_path.read_text()
    assert "rejected: static | 1" in text
    for name in ("sharpness_frame", "faces", "mouth_motion", "head_range"):
        assert (result.out_dir / "report" / f"{name}.png").stat().st_size > 1000
    assert "aesthetic score\n\nnot scored" in text
    assert set(table.column("aesthetic_status").to_pylist()) <= {
        None,
        "skipped: no aesthetic predictor given",
    }


def test_single_face_mode_keeps_the_crop(curate_inputs, tmp_path):
    config = CurationConfig(min_faces=1, max_faces=1, cut_clips=False)
    result = curate(curate_inputs["single"], tmp_path / "single", config, executor="serial", progress=False)
    (row,) = read_manifest(result.manifest_path).to_pylist()
    assert row["kept"] and row["faces"] == 1 and row["clip_path"] is None


def test_resume_after_kill_gives_the_uninterrupted_manifest(curate_inputs, pool_run, tmp_path):
    out = tmp_path / "resumed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "fantasy_portrait.cli", "curate", str(curate_inputs["manifest"])]
    command += ["-o", str(out), "--executor", "serial", "--no-progress", "--no-report"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "journal.jsonl"
    clips_done = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists():
            clips_done = sum(r.get("kind") == "clip" for r in Journal(journal).read())
            if clips_done >= 2:
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 2 <= clips_done < 6, "the run was not stopped halfway"
    assert not (out / "manifest.parquet").exists()
    # Simulate a crash in the middle of writing a record: the torn line must be ignored.
    with journal.open("ab") as handle:
        handle.write(b'{"kind": "clip", "clip_id": "torn')

    result = curate(curate_inputs["manifest"], out, CurationConfig(), executor="serial", progress=False)
    _, reference = pool_run
    assert comparable(read_manifest(result.manifest_path)) == comparable(reference)
    records = Journal(journal).read()
    assert sum(r.get("kind") == "clip" for r in records) == 6  # nothing done twice


def test_rerun_with_other_settings_is_refused(curate_inputs, pool_run):
    from fantasy_portrait.errors import InputError

    result, _ = pool_run
    with pytest.raises(InputError, match="other settings"):
        curate(curate_inputs["manifest"], result.out_dir, CurationConfig(min_faces=1), executor="serial")


@pytest.mark.slow
def test_ray_data_gives_the_process_pool_manifest(curate_inputs, pool_run, tmp_path):
    ray = pytest.importorskip("ray", reason="ray[data] is not installed")
    try:
        result = curate(
            curate_inputs["manifest"],
            tmp_path / "ray",
            CurationConfig(),
            executor="ray",
            workers=2,
            progress=False,
        )
    finally:
        ray.shutdown()
    _, reference = pool_run
    assert comparable(read_manifest(result.manifest_path)) == comparable(reference)


@pytest.mark.slow
def test_training_manifest_feeds_the_precompute_step(curate_inputs, pool_run):
    from safetensors.numpy import load_file

    from fantasy_portrait.training.precompute import read_manifest as read_clip_manifest

    result, _ = pool_run
    again = curate(
        curate_inputs["manifest"],
        result.out_dir,
        CurationConfig(),
        "serial",
        progress=False,
        training_manifest=True,
    )
    entries = {e.id: e for e in read_clip_manifest(again.training_manifest)}
    assert len(entries) == again.num_kept == 2
    (two,) = [e for e in entries.values() if probe(str(e.video)).num_frames == 146]
    tracks = load_file(str(two.tracks))
    assert tracks["boxes"].shape == (2, 146, 4) and tracks["landmarks"].shape == (2, 146, 478, 2)
    boxes = tracks["boxes"]
    assert (boxes[..., 0] >= -1).all() and (boxes[..., 2] <= 1281).all() and (boxes[..., 3] <= 721).all()
    assert boxes[0, :, 0].mean() < boxes[1, :, 0].mean()  # left to right
    assert boxes[:, :, 2].mean() > 300  # source pixels, not analysis pixels
