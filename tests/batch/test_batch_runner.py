"""The batch driver with a stand-in executor: resume from the journal, failures with their reason,
the lock, the summary (the real pipeline runs in test_batch_workers.py)."""

from __future__ import annotations

import json

import pytest

from fantasy_portrait.batch import load_jobs, run_batch
from fantasy_portrait.batch.runner import _Lock, finished
from fantasy_portrait.errors import FantasyPortraitError, InputError


class FakeExecutor:
    """Writes each output; fails the jobs named in ``fail`` (with the reason), records what it ran."""

    name = "fake"

    def __init__(self, fail=(), load_error=None):
        self.fail = set(fail)
        self.load_error = load_error
        self.ran = []

    def run(self, jobs):
        for job in jobs:
            self.ran.append(job.id)
            if self.load_error:
                yield {"job": job.id, "kind": "load_failed", "error": self.load_error, "worker": "w0"}
                continue
            if job.id in self.fail:
                yield {
                    "job": job.id,
                    "kind": "failed",
                    "error": "FaceError: no face in p.png",
                    "worker": "w0",
                }
                continue
            job.output.parent.mkdir(parents=True, exist_ok=True)
            job.output.write_bytes(b"video")
            yield {"job": job.id, "kind": "done", "output": str(job.output), "seconds": 0.5, "worker": "w0"}


@pytest.fixture
def jobs_file(tmp_path):
    (tmp_path / "p.png").write_bytes(b"x")
    (tmp_path / "d.mp4").write_bytes(b"x")
    lines = [
        {"id": f"j{i}", "portrait": "p.png", "driving": "d.mp4", "output": f"out/j{i}.mp4", "seed": i}
        for i in range(4)
    ]
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def _records(journal):
    return [json.loads(line) for line in journal.read_text().splitlines()]


def test_resume_skips_done_jobs_and_reruns_failed_ones(jobs_file, tmp_path):
    journal = tmp_path / "journal.jsonl"
    jobs = load_jobs(jobs_file)
    first = FakeExecutor(fail={"j2"})
    summary = run_batch(jobs, first, journal, signature="w", progress=False)
    assert first.ran == ["j0", "j1", "j2", "j3"]
    assert summary.counts() == {"done": 3, "skipped": 0, "failed": 1, "not run": 0}
    assert not summary.ok
    failed = [r for r in _records(journal) if r.get("kind") == "failed"]
    assert failed == [{**failed[0], "job": "j2", "error": "FaceError: no face in p.png"}]
    table = summary.table()
    assert table.splitlines()[1].split()[:2] == ["j2", "failed"]  # failures first, with the reason
    assert "FaceError: no face in p.png" in table and "3 done, 1 failed of 4 jobs" in table

    second = FakeExecutor()
    summary = run_batch(load_jobs(jobs_file), second, journal, signature="w", progress=False)
    assert second.ran == ["j2"]  # only the failed one runs again
    assert summary.counts() == {"done": 1, "skipped": 3, "failed": 0, "not run": 0} and summary.ok
    assert set(finished(load_jobs(jobs_file), _records(journal), "w")) == {"j0", "j1", "j2", "j3"}


def test_changed_settings_weights_or_missing_outputs_run_again(jobs_file, tmp_path):
    journal = tmp_path / "journal.jsonl"
    run_batch(load_jobs(jobs_file), FakeExecutor(), journal, signature="w", progress=False)
    lines = jobs_file.read_text().splitlines()
    changed = json.loads(lines[1])
    changed["num_steps"] = 3
    lines[1] = json.dumps(changed)
    jobs_file.write_text("\n".join(lines) + "\n")
    (tmp_path / "out" / "j3.mp4").unlink()
    again = FakeExecutor()
    run_batch(load_jobs(jobs_file), again, journal, signature="w", progress=False)
    assert again.ran == ["j1", "j3"]
    other_weights = FakeExecutor()
    run_batch(load_jobs(jobs_file), other_weights, journal, signature="other", progress=False)
    assert other_weights.ran == ["j0", "j1", "j2", "j3"]
    forced = FakeExecutor()
    run_batch(load_jobs(jobs_file), forced, journal, signature="other", force=True, progress=False)
    assert forced.ran == ["j0", "j1", "j2", "j3"]


def test_a_pipeline_that_cannot_load_stops_the_batch(jobs_file, tmp_path):
    journal = tmp_path / "journal.jsonl"
    with pytest.raises(FantasyPortraitError, match="cannot load the pipeline: CheckpointError: missing"):
        run_batch(
            load_jobs(jobs_file), FakeExecutor(load_error="CheckpointError: missing"), journal, progress=False
        )
    assert not [r for r in _records(journal) if r.get("kind") in ("done", "failed")]


def test_one_driver_per_journal(jobs_file, tmp_path):
    journal = tmp_path / "journal.jsonl"
    with _Lock(journal), pytest.raises(InputError, match="another batch run"):
        run_batch(load_jobs(jobs_file), FakeExecutor(), journal, progress=False)
    run_batch(load_jobs(jobs_file), FakeExecutor(), journal, progress=False)  # free again


def test_a_record_cut_short_by_a_crash_is_ignored(jobs_file, tmp_path):
    journal = tmp_path / "journal.jsonl"
    run_batch(load_jobs(jobs_file), FakeExecutor(), journal, signature="w", progress=False)
    text = journal.read_text().splitlines()
    journal.write_text("\n".join(text[:-1]) + "\n" + text[-1][:20])  # j3's record half written
    again = FakeExecutor()
    run_batch(load_jobs(jobs_file), again, journal, signature="w", progress=False)
    assert again.ran == ["j3"]
