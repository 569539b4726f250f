"""`fantasy-portrait curate` with bad inputs: one `error:` line (the last), exit 2, no output folder."""

from __future__ import annotations

import pytest
from command_helpers import assert_error, make_driver, run


def _inputs(tmp_path, case):
    """(input path, expected text in the error) for each kind of bad input."""
    folder = tmp_path / "in"
    folder.mkdir()
    if case == "missing":
        return tmp_path / "nothing", "input does not exist"
    if case == "empty folder":
        (folder / "notes.txt").write_text("no videos here")
        return folder, "no video files"
    manifest = {
        "no path column": ("m.csv", "name\nclip.mp4\n", "no path column"),
        "jsonl line not an object": (
            "m.jsonl",
            '{"path": "a.mp4"}\n["a.mp4"]\n',
            "line 2 is not a JSON object",
        ),
        "jsonl not json": ("m.jsonl", "path: a.mp4\n", "cannot read manifest"),
        "not utf-8": ("m.csv", b"path\ncaf\xe9.mp4\n", "cannot read manifest"),
        "unknown type": ("m.txt", "a.mp4\n", "unknown manifest type"),
        "remote url": ("m.csv", "path\nhttps://example.com/a.mp4\n", "remote URL"),
        "listed video missing": ("m.csv", "path\nmissing.mp4\n", "listed video(s) missing"),
        "lists nothing": ("m.csv", "path\n", "no path column"),
    }[case]
    path = tmp_path / manifest[0]
    text = manifest[1]
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path, manifest[2]


CASES = [
    "missing",
    "empty folder",
    "no path column",
    "jsonl line not an object",
    "jsonl not json",
    "not utf-8",
    "unknown type",
    "remote url",
    "listed video missing",
    "lists nothing",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_inputs(case, tmp_path, capsys):
    source, needle = _inputs(tmp_path, case)
    line = assert_error(run(capsys, "curate", source, "-o", tmp_path / "out", "--no-progress"), needle)
    assert source.name in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "options,needle",
    [
        (["--min-seconds", "5", "--max-seconds", "2"], "clip length range is empty"),
        (["--min-faces", "3", "--max-faces", "2"], "face count range is empty"),
        (["--sample-fps", "0"], "sample_fps > 0"),
        (["--motion-faces", "some"], "motion_faces must be"),
        (["--aesthetic-weights", "head.pth"], "--aesthetic-clip"),
        (["--sample-fps", "fast"], "--sample-fps"),
        (["--executor", "cluster"], "--executor"),
    ],
)
def test_options_out_of_range(options, needle, tmp_path, capsys):
    video = make_driver(tmp_path / "a.mp4", frames=3)
    assert_error(run(capsys, "curate", video, "-o", tmp_path / "out", *options), needle)
    assert not (tmp_path / "out").exists()


def test_output_that_is_a_file(tmp_path, capsys):
    video = make_driver(tmp_path / "a.mp4", frames=3)
    (tmp_path / "out").write_text("a file")
    assert_error(run(capsys, "curate", video, "-o", tmp_path / "out"), "out: exists and is not a folder")
    assert (tmp_path / "out").read_text() == "a file"


def test_unreadable_video_is_a_row_not_a_crash(tmp_path, capsys):
    """One broken video among the inputs must not stop a batch: it is reported in the manifest."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.mp4").write_bytes(b"\x00garbage" * 100)
    result = run(
        capsys,
        "curate",
        folder,
        "-o",
        tmp_path / "out",
        "--executor",
        "serial",
        "--no-progress",
        "--no-report",
    )
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    assert "0 kept" in result.out
