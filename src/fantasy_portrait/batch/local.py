"""Running jobs on one machine: in this process, or one worker process per GPU (or per CPU share).

Every executor has ``run(jobs) -> iterator of records`` (in finishing order) and ``close()``. A worker
keeps its pipeline loaded from job to job. A worker process that dies (killed, out of host memory)
fails the job it held with that reason and is replaced, so the rest of the batch goes on.
"""

from __future__ import annotations

import logging
import os
import queue
from collections import deque
from collections.abc import Iterator

from .jobs import Job
from .worker import LoadOptions, PipelineWorker

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5


class SerialExecutor:
    """One worker in this process (one GPU, or the CPU)."""

    name = "serial"

    def __init__(self, options: LoadOptions, device: str | None = None):
        self.worker = PipelineWorker(options, "worker-0", device)

    @property
    def slots(self) -> int:
        return 1

    def run(self, jobs: list[Job]) -> Iterator[dict]:
        for job in jobs:
            yield self.worker.run(job)

    def close(self) -> None:
        self.worker = None


def _process_main(slot: int, options: dict, device: str | None, tasks, results) -> None:
    """A worker process: load once, then run what the parent sends until it sends None."""
    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s worker-{slot} %(name)s: %(message)s")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    worker = PipelineWorker(LoadOptions(**options), f"worker-{slot}", device)
    while True:
        item = tasks.get()
        if item is None:
            return
        results.put((slot, worker.run(Job.from_dict(item))))


class ProcessExecutor:
    """One worker process per device: ``devices`` like ["cuda:0", "cuda:1"], or [None] * N for N CPU
    workers (each with ``options.threads`` torch threads). Dead workers are replaced up to
    ``restarts`` times in all (default: once per worker)."""

    name = "processes"

    def __init__(self, options: LoadOptions, devices: list[str | None], restarts: int | None = None):
        if not devices:
            raise ValueError("no devices for the worker processes")
        self.options = options
        self.devices = list(devices)
        self.restarts = len(devices) if restarts is None else restarts
        self._workers: dict[int, tuple] = {}  # slot -> (process, task queue)
        self._context = None
        self._results = None

    @property
    def slots(self) -> int:
        return len(self.devices)

    def _start(self, slot: int) -> None:
        tasks = self._context.Queue()
        process = self._context.Process(
            target=_process_main,
            args=(slot, self.options.to_dict(), self.devices[slot], tasks, self._results),
            name=f"fantasy-portrait-worker-{slot}",
            daemon=True,
        )
        process.start()
        self._workers[slot] = (process, tasks)

    def pids(self) -> dict[int, int]:
        return {slot: p.pid for slot, (p, _) in self._workers.items()}

    def run(self, jobs: list[Job]) -> Iterator[dict]:
        import multiprocessing

        if self._context is None:
            self._context = multiprocessing.get_context("spawn")
            self._results = self._context.Queue()
        for slot in range(len(self.devices)):
            if slot not in self._workers or not self._workers[slot][0].is_alive():
                self._start(slot)
        pending = deque(jobs)
        busy: dict[int, Job] = {}
        while pending or busy:
            for slot, (_, tasks) in list(self._workers.items()):
                if slot not in busy and pending:
                    busy[slot] = pending.popleft()
                    tasks.put(busy[slot].to_dict())
            try:
                slot, record = self._results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                yield from self._reap(busy)
                if not self._workers:
                    logger.error("every worker process died; %d job(s) left for the next run", len(pending))
                    return
                continue
            busy.pop(slot, None)
            yield record

    def _reap(self, busy: dict[int, Job]) -> Iterator[dict]:
        """Failed records for the jobs of dead workers; start replacements while restarts last."""
        for slot, (process, _) in list(self._workers.items()):
            if process.is_alive():
                continue
            del self._workers[slot]
            job = busy.pop(slot, None)
            reason = f"worker process died (exit code {process.exitcode})"
            logger.warning("worker-%d: %s", slot, reason)
            if job is not None:
                yield {"job": job.id, "kind": "failed", "error": reason, "worker": f"worker-{slot}"}
            if self.restarts > 0:
                self.restarts -= 1
                self._start(slot)

    def close(self) -> None:
        for process, tasks in self._workers.values():
            if process.is_alive():
                tasks.put(None)
        for process, _ in self._workers.values():
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        self._workers.clear()
