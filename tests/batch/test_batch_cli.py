"""``fantasy-portrait batch`` command line (checks only: the real runs are in test_batch_workers.py) and
``python -m fantasy_portrait`` (what torchrun -m runs)."""

from __future__ import annotations

import json
import subprocess
import sys

from fantasy_portrait.cli import main


def _jobs(tmp_path, *lines):
    (tmp_path / "p.png").write_bytes(b"x")
    (tmp_path / "d.mp4").write_bytes(b"x")
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return str(path)


def test_check_reports_what_would_run(tmp_path, capsys):
    path = _jobs(
        tmp_path,
        {"portrait": "p.png", "driving": "d.mp4", "output": "a.mp4"},
        {"portrait": "p.png", "driving": "d.mp4", "output": "b.mp4", "seed": 2},
    )
    assert main(["batch", path, "--check"]) == 0
    assert "2 valid job(s); 2 to run, 0 finished" in capsys.readouterr().out


def test_invalid_jobs_are_one_error_line_and_nothing_runs(tmp_path, capsys):
    path = _jobs(
        tmp_path,
        {"portrait": "p.png", "driving": "d.mp4", "output": "a.mp4"},
        {"portrait": "p.png", "driving": "d.mp4", "output": "b.mp4", "num_steps": -1},
    )
    assert main(["batch", path, "--weights", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "line 2: --steps must be >= 1" in err[-1]
    assert not (tmp_path / "a.mp4").exists() and not (tmp_path / "jobs.journal.jsonl").exists()


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "fantasy_portrait", "batch", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "--ray" in proc.stdout and "JSONL" in proc.stdout
