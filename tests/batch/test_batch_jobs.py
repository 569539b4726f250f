"""Job lines: every line checked before any work, settings by the same rules as the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fantasy_portrait.batch import load_jobs, settings_from_dict
from fantasy_portrait.errors import InputError


@pytest.fixture
def media(tmp_path):
    (tmp_path / "p.png").write_bytes(b"x")
    (tmp_path / "d0.mp4").write_bytes(b"x")
    (tmp_path / "d1.mp4").write_bytes(b"x")
    return tmp_path


def _write(folder, *lines) -> str:
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return str(path)


def test_jobs_parse_with_relative_paths_settings_and_default_ids(media):
    path = _write(
        media,
        "# a comment",
        {"portrait": "p.png", "driving": "d0.mp4", "output": "out/a.mp4", "seed": 3, "num_steps": 4},
        "",
        {
            "id": "two",
            "portrait": "p.png",
            "driving": ["d0.mp4", "d1.mp4"],
            "output": "out/b.mp4",
            "face_boxes": "1,2,30,40;50,2,90,40",
            "window_frames": 0,
            "motion_guidance": 4,
        },
    )
    a, b = load_jobs(path)
    assert (a.id, a.line, a.portrait, a.output) == ("a", 2, media / "p.png", media / "out" / "a.mp4")
    assert a.driving == [media / "d0.mp4"]
    s = a.animation_settings()
    assert (s.seed, s.num_steps, s.progress) == (3, 4, True)
    assert b.id == "two" and b.driving == [media / "d0.mp4", media / "d1.mp4"]
    s = b.animation_settings()
    assert s.window_frames is None  # 0 = whole clip, as on the command line
    assert s.motion_guidance == 4.0 and isinstance(s.motion_guidance, float)
    assert np.asarray(s.face_boxes).shape == (2, 4)


def test_job_key_changes_with_settings_inputs_and_weights(media):
    (job,) = load_jobs(_write(media, {"portrait": "p.png", "driving": "d0.mp4", "output": "a.mp4"}))
    key = job.key("weights=A")
    assert job.key("weights=A") == key
    assert job.key("weights=B") != key
    job.settings["seed"] = 1
    assert job.key("weights=A") != key
    job.settings.pop("seed")
    (media / "d0.mp4").write_bytes(b"changed")
    assert job.key("weights=A") != key


@pytest.mark.parametrize(
    "line, message",
    [
        ({"driving": "d0.mp4", "output": "a.mp4"}, "missing portrait"),
        ({"portrait": "p.png", "driving": "nope.mp4", "output": "a.mp4"}, "nope.mp4: file not found"),
        ({"portrait": "p.png", "driving": "d0.mp4", "output": "a.avi"}, "must be an .mp4"),
        ({"portrait": "p.png", "driving": "d0.mp4", "output": "a.mp4", "steps": 3}, "unknown setting"),
        (
            {"portrait": "p.png", "driving": "d0.mp4", "output": "a.mp4", "num_steps": 0},
            "--steps must be >= 1",
        ),
        ({"portrait": "p.png", "driving": "d0.mp4", "output": "a.mp4", "num_steps": 2.5}, "whole number"),
        ({"portrait": "p.png", "driving": "d0.mp4", "output": "a.mp4", "seed": "1"}, "whole number"),
        ({"portrait": "p.png", "driving": "d0.mp4", "output": "a.mp4", "progress": 1}, "true or false"),
        ({"portrait": "p.png", "driving": "d0.mp4", "output": "a.mp4", "window_frames": 10}, "4k+1"),
        ({"portrait": "p.png", "driving": "d0.mp4", "output": "a.mp4", "memory_mode": "x"}, "--memory"),
        (
            {"portrait": "p.png", "driving": "d0.mp4", "output": "a.mp4", "parallel": "ulysses=2"},
            "not a batch",
        ),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_invalid_lines_stop_the_batch_before_any_work(media, line, message):
    good = {"portrait": "p.png", "driving": "d0.mp4", "output": "good.mp4"}
    path = _write(media, good, line)
    with pytest.raises(InputError, match="line 2") as info:
        load_jobs(path)
    assert message in str(info.value)
    assert "1 invalid job line" in str(info.value)


def test_duplicate_ids_and_outputs(media):
    line = {"id": "x", "portrait": "p.png", "driving": "d0.mp4", "output": "a.mp4"}
    with pytest.raises(InputError, match="id 'x' already used on line 1"):
        load_jobs(_write(media, line, {**line, "output": "b.mp4"}))
    with pytest.raises(InputError, match="already written by line 1"):
        load_jobs(_write(media, line, {**line, "id": "y"}))


def test_empty_and_missing_files(media):
    with pytest.raises(InputError, match="no jobs"):
        load_jobs(_write(media, "# nothing"))
    with pytest.raises(InputError, match="cannot read"):
        load_jobs(media / "absent.jsonl")


def test_settings_from_dict_names_the_field():
    assert settings_from_dict({}).num_steps == 30
    with pytest.raises(InputError, match="motion_guidance must be a number"):
        settings_from_dict({"motion_guidance": "high"})
