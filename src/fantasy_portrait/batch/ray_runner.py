"""Running jobs on a Ray cluster: one actor per GPU (or per CPU share), each with its pipeline loaded once.

The driver (``fantasy-portrait batch --ray``) hands each idle actor the next job and journals every
result as it arrives. An actor that dies (its node lost, the process killed) fails the job it held with
that reason and a new actor takes its place, so the batch goes on; a re-run does the failed jobs.
Inputs and outputs are paths: on a multi-node cluster they must be on a file system every node sees.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator

from ..errors import InputError
from .jobs import Job
from .worker import LoadOptions, PipelineWorker

logger = logging.getLogger(__name__)


class _Actor:
    """The Ray actor's class (made remote in :meth:`RayExecutor._actor_class`)."""

    def __init__(self, options: dict, name: str):
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        logging.basicConfig(level=logging.INFO, format=f"%(levelname)s {name} %(name)s: %(message)s")
        self.worker = PipelineWorker(LoadOptions(**options), name)

    def run(self, job: dict) -> dict:
        return self.worker.run(Job.from_dict(job))

    def pid(self) -> int:
        return os.getpid()


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise InputError(f"--ray needs Ray: pip install 'fantasy-portrait[batch]' ({exc})") from exc
    return ray


class RayExecutor:
    """Jobs over Ray actors.

    address: a cluster to join ("auto", "ray://host:10001", "host:6379"); None joins $RAY_ADDRESS if set,
    else starts a local Ray with ``workers`` CPUs. workers: actors (default: one per GPU of the
    cluster, else one per ``cpus_per_worker`` CPUs). gpus_per_worker: GPUs per actor (default 1 when the
    cluster has GPUs). restarts: replacement actors in all (default one per actor).
    """

    name = "ray"

    def __init__(
        self,
        options: LoadOptions,
        address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float | None = None,
        cpus_per_worker: float = 1,
        restarts: int | None = None,
    ):
        self.options = options
        self.address = address
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker
        self.cpus_per_worker = cpus_per_worker
        self.restarts = restarts
        self._actors: dict[int, object] = {}
        self._count = 0

    def _init(self):
        ray = _ray()
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            elif os.environ.get("RAY_ADDRESS"):
                ray.init(log_to_driver=False)
            else:
                ray.init(
                    num_cpus=int(max(1, (self.workers or 1) * self.cpus_per_worker)),
                    include_dashboard=False,
                    log_to_driver=False,
                )
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0))
        if self.gpus_per_worker is None:
            self.gpus_per_worker = 1.0 if gpus >= 1 else 0.0
        if self.workers is None:
            if self.gpus_per_worker:
                self.workers = max(1, int(gpus // self.gpus_per_worker))
            else:
                self.workers = max(1, int(float(resources.get("CPU", 1)) // self.cpus_per_worker))
        if self.restarts is None:
            self.restarts = self.workers
        return ray

    @property
    def slots(self) -> int:
        return self.workers or 1

    def _new_actor(self, ray, slot: int):
        self._count += 1
        cls = ray.remote(_Actor).options(
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker,
            max_restarts=0,
            name=None,
        )
        options = self.options.to_dict()
        if options.get("threads") is None and not self.gpus_per_worker:
            options["threads"] = max(1, int(self.cpus_per_worker))
        self._actors[slot] = cls.remote(options, f"ray-worker-{self._count - 1}")

    def pids(self) -> dict[int, int]:
        ray = _ray()
        return {slot: ray.get(actor.pid.remote()) for slot, actor in self._actors.items()}

    def run(self, jobs: list[Job]) -> Iterator[dict]:
        ray = self._init()
        for slot in range(self.workers):
            if slot not in self._actors:
                self._new_actor(ray, slot)
        pending = deque(jobs)
        in_flight: dict = {}  # object ref -> (slot, job)
        while pending or in_flight:
            busy = {slot for slot, _ in in_flight.values()}
            for slot, actor in self._actors.items():
                if slot not in busy and pending:
                    job = pending.popleft()
                    in_flight[actor.run.remote(job.to_dict())] = (slot, job)
            if not in_flight:
                logger.error("no Ray workers left; %d job(s) left for the next run", len(pending))
                return
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                slot, job = in_flight.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    reason = f"worker died ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
                    logger.warning("job %s: %s", job.id, reason)
                    yield {"job": job.id, "kind": "failed", "error": reason, "worker": f"ray slot {slot}"}
                    self._actors.pop(slot, None)
                    if self.restarts > 0:
                        self.restarts -= 1
                        self._new_actor(ray, slot)
                except ray.exceptions.RayError as exc:
                    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    yield {"job": job.id, "kind": "failed", "error": reason, "worker": f"ray slot {slot}"}

    def close(self) -> None:
        if not self._actors:
            return
        ray = _ray()
        for actor in self._actors.values():
            try:
                ray.kill(actor)
            except Exception:  # already gone
                pass
        self._actors.clear()
