"""The batch driver: jobs -> executor -> journal, resumable, with a progress bar and a summary table.

The journal (JSONL, one record per finished job, written with one ``write`` + ``fsync`` by this process
only; see :class:`fantasy_portrait.data.journal.Journal`) is what makes a batch resumable: a job whose
last "done" record carries the job's current key (inputs, settings, output path, weights) and whose
output exists is skipped; every other job (new, changed, failed, cut short) runs. Stopping the driver
at any moment loses at most the jobs in flight. A lock file keeps two drivers off one journal.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..data.journal import Journal
from ..errors import FantasyPortraitError, InputError
from .jobs import Job
from .worker import LoadOptions, write_tiny

logger = logging.getLogger(__name__)

STATUSES = ("done", "skipped", "failed", "not run")
TABLE_ROWS = 40  # rows of the printed table (failures first); the journal has them all


def default_journal(jobs_path: str | os.PathLike) -> Path:
    path = Path(jobs_path)
    return path.with_name(path.stem + ".journal.jsonl")


@dataclass
class BatchSummary:
    """One row per job: id, status (done / skipped / failed / not run), seconds, output, error, worker."""

    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    journal: Path | None = None
    executor: str = ""

    def counts(self) -> dict[str, int]:
        return {s: sum(r["status"] == s for r in self.rows) for s in STATUSES}

    @property
    def ok(self) -> bool:
        return all(r["status"] in ("done", "skipped") for r in self.rows)

    def to_dict(self) -> dict:
        return {
            "counts": self.counts(),
            "seconds": round(self.seconds, 3),
            "journal": str(self.journal) if self.journal else None,
            "executor": self.executor,
            "jobs": self.rows,
        }

    def table(self, max_rows: int = TABLE_ROWS) -> str:
        """Plain-text table: failures first, then the rest in job order."""
        order = {"failed": 0, "not run": 1, "done": 2, "skipped": 3}
        rows = sorted(self.rows, key=lambda r: order[r["status"]])
        shown = rows[:max_rows]
        cells = [
            [
                r["id"],
                r["status"],
                f"{r['seconds']:.1f}" if r.get("seconds") is not None else "",
                r.get("error") or r.get("output") or "",
            ]
            for r in shown
        ]
        head = ["job", "status", "s", "output / reason"]
        widths = [max(len(head[i]), *(len(c[i]) for c in cells)) if cells else len(head[i]) for i in range(3)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)) + "  " + head[3]]
        lines += ["  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3] for c in cells]
        if len(rows) > max_rows:
            lines.append(f"... {len(rows) - max_rows} more (see {self.journal})")
        counts = self.counts()
        lines.append(
            ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s]) + f" of {len(self.rows)} jobs"
            f" in {self.seconds:.1f} s ({self.executor})"
        )
        return "\n".join(lines)


class _Lock:
    """An exclusive lock on ``journal.lock`` for the life of a run (one driver per journal)."""

    def __init__(self, journal: Path):
        self.path = journal.with_name(journal.name + ".lock")
        self._fd = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise InputError(f"{self.path}: another batch run is using this journal") from None
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def finished(jobs: list[Job], records: list[dict], signature: str = "") -> dict[str, dict]:
    """The jobs that need not run again: {job id: its last "done" record}, for those whose record has the
    job's current key and whose output file exists."""
    done = {r["job"]: r for r in records if r.get("kind") == "done"}
    return {
        job.id: done[job.id]
        for job in jobs
        if job.id in done and done[job.id].get("key") == job.key(signature) and job.output.is_file()
    }


def prepare_options(options: LoadOptions, jobs: list[Job]) -> tuple[LoadOptions, str]:
    """Options for the workers and the pipeline signature that goes into every job key. Tiny weights are
    written here, once, before any worker starts; umT5 is loaded only if some job needs it."""
    needs_text = any(
        bool(str(j.settings.get("prompt", "")).strip()) or float(j.settings.get("text_guidance", 1.0)) != 1.0
        for j in jobs
    )
    options = dataclasses.replace(options, text_encoder=options.text_encoder or needs_text)
    signature = options.signature()
    if options.tiny:
        write_tiny(options)
        options = dataclasses.replace(options, tiny=False)
    return options, signature


def run_batch(
    jobs: list[Job],
    executor,
    journal_path: str | os.PathLike,
    *,
    signature: str = "",
    force: bool = False,
    progress: bool = True,
) -> BatchSummary:
    """Run the jobs not finished yet through ``executor``; journal every result as it arrives.

    signature: the pipeline's signature (:func:`prepare_options`), part of every job's key.
    force: run every job again. Raises FantasyPortraitError when a worker cannot load the pipeline
    (every job would fail); the jobs finished until then stay journaled.
    """
    from tqdm.auto import tqdm

    journal_path = Path(journal_path)
    started = time.perf_counter()
    keys = {job.id: job.key(signature) for job in jobs}
    rows = {
        job.id: {"id": job.id, "status": "not run", "seconds": None, "output": str(job.output)}
        for job in jobs
    }
    with _Lock(journal_path), Journal(journal_path) as journal:
        done = {} if force else finished(jobs, journal.read(), signature)
        todo = [job for job in jobs if job.id not in done]
        for job_id, record in done.items():
            rows[job_id].update(status="skipped", seconds=record.get("seconds"))
        journal.append(
            {
                "kind": "batch",
                "time": time.time(),
                "jobs": len(jobs),
                "todo": len(todo),
                "executor": executor.name,
            }
        )
        logger.info(
            "batch: %d job(s), %d to run, %d already done (%s)",
            len(jobs),
            len(todo),
            len(jobs) - len(todo),
            journal_path,
        )
        bar = tqdm(
            total=len(jobs), initial=len(jobs) - len(todo), desc="batch", unit="job", disable=not progress
        )
        failed = 0
        try:
            for record in executor.run(todo):
                if record.get("kind") == "load_failed":
                    raise FantasyPortraitError(
                        f"{record.get('worker')}: cannot load the pipeline: {record['error']}"
                    )
                record["key"] = keys[record["job"]]
                record["time"] = time.time()
                journal.append(record)
                row = rows[record["job"]]
                row.update(status=record["kind"], seconds=record.get("seconds"), worker=record.get("worker"))
                if record["kind"] == "failed":
                    failed += 1
                    row["error"] = record.get("error")
                    logger.warning("job %s failed: %s", record["job"], record.get("error"))
                bar.set_postfix_str(f"failed {failed}" if failed else "", refresh=False)
                bar.update(1)
        finally:
            bar.close()
    return BatchSummary(
        rows=[rows[job.id] for job in jobs],
        seconds=time.perf_counter() - started,
        journal=journal_path,
        executor=executor.name,
    )


def make_executor(
    options: LoadOptions,
    *,
    ray: bool = False,
    address: str | None = None,
    workers: int | None = None,
    devices: list[str] | None = None,
    restarts: int | None = None,
):
    """The executor for a batch: Ray actors (``ray``), else one worker process per GPU of this machine
    (or ``devices``), else ``workers`` CPU processes; a single worker runs in this process."""
    from .local import ProcessExecutor, SerialExecutor

    if ray:
        from .ray_runner import RayExecutor

        return RayExecutor(options, address=address, workers=workers, restarts=restarts)
    if devices is None:
        devices = _local_gpus()
        if devices and workers:
            devices = devices[:workers]
    if devices:
        return (
            SerialExecutor(options, devices[0])
            if len(devices) == 1
            else ProcessExecutor(options, devices, restarts)
        )
    count = max(1, workers or 1)
    if count == 1:
        return SerialExecutor(options, "cpu")
    threads = options.threads or max(1, (os.cpu_count() or 1) // count)
    return ProcessExecutor(dataclasses.replace(options, threads=threads), [None] * count, restarts)


def _local_gpus() -> list[str]:
    try:
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    except Exception:  # no usable CUDA
        return []
