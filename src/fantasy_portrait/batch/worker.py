"""One batch worker: a pipeline loaded once (on one device) that runs job after job.

A job's failure (bad input, no face found, out of memory, a bug) becomes a "failed" record with the
reason; the worker stays usable for the next job. Outputs are written atomically by the pipeline, so
a job that did not finish leaves no output file behind.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import asdict, dataclass

from ..errors import FantasyPortraitError
from .jobs import Job

logger = logging.getLogger(__name__)

DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16"}
DTYPES.update({"fp16": "float16", "float16": "float16"})


@dataclass(frozen=True)
class LoadOptions:
    """How every worker loads its pipeline (the same for all jobs of a batch).

    weights: weight folder (None: $FANTASY_PORTRAIT_WEIGHTS). tiny: write and use tiny random weights in
    ``weights`` (tests, demos: they animate nothing). device: None = the worker's own (its GPU, else
    the CPU). dtype: fp32 / bf16 / fp16 (None: bf16 on GPU, fp32 on CPU). threads: torch CPU threads.
    """

    weights: str | None = None
    tiny: bool = False
    seed_weights: int = 0
    portrait_checkpoint: str | None = None
    motion_checkpoint: str | None = None
    device: str | None = None
    dtype: str | None = None
    memory_mode: str = "auto"
    face_backend: str = "mediapipe"
    text_encoder: bool = False
    threads: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def signature(self) -> str:
        """What of these options changes outputs (part of every job's key)."""
        keep = ("weights", "tiny", "seed_weights", "portrait_checkpoint", "motion_checkpoint", "dtype")
        return " ".join(f"{k}={getattr(self, k)}" for k in keep)


class PipelineWorker:
    """Loads the pipeline on first use and keeps it for every following job."""

    def __init__(self, options: LoadOptions, name: str = "worker", device: str | None = None):
        self.options = options
        self.name = name
        self.device = device or options.device
        self._pipe = None
        self.jobs_done = 0

    def pipeline(self):
        if self._pipe is not None:
            return self._pipe
        import torch

        from ..pipeline.pipeline import FantasyPortraitPipeline

        opts = self.options
        if opts.threads:
            torch.set_num_threads(opts.threads)
        device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        name = DTYPES.get(opts.dtype or ("bf16" if device.type != "cpu" else "fp32"))
        if name is None:
            raise FantasyPortraitError(f"dtype must be fp32, bf16 or fp16, got {opts.dtype!r}")
        weights = opts.weights
        if opts.tiny:
            weights = write_tiny(opts)
        start = time.perf_counter()
        self._pipe = FantasyPortraitPipeline.from_pretrained(
            weights,
            portrait_checkpoint=opts.portrait_checkpoint,
            motion_checkpoint=opts.motion_checkpoint,
            torch_dtype=getattr(torch, name),
            device=device,
            memory_mode=opts.memory_mode,
            face_backend=opts.face_backend,
            need_text_encoder=opts.text_encoder,
        )
        logger.info("%s: pipeline loaded on %s in %.1f s", self.name, device, time.perf_counter() - start)
        return self._pipe

    def run(self, job: Job) -> dict:
        """Animate one job; returns its journal record: "done", "failed" with the reason, or
        "load_failed" when the pipeline itself cannot be loaded (the batch stops: every job would fail)."""
        base = {"job": job.id, "worker": self.name, "pid": os.getpid()}
        try:
            self.pipeline()
        except FantasyPortraitError as exc:
            return {**base, "kind": "load_failed", "error": f"{type(exc).__name__}: {exc}"}
        start = time.perf_counter()
        try:
            settings = job.animation_settings().replace(progress=False)
            job.output.parent.mkdir(parents=True, exist_ok=True)
            result = self.pipeline()(
                str(job.portrait), [str(p) for p in job.driving], settings, output=str(job.output)
            )
        except FantasyPortraitError as exc:
            return {
                **base,
                "kind": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "seconds": _since(start),
            }
        except Exception as exc:  # a bug or the device: record it, keep the worker for the next job
            logger.error("%s: job %s failed:\n%s", self.name, job.id, traceback.format_exc())
            _free_device_memory()
            return {
                **base,
                "kind": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "seconds": _since(start),
            }
        self.jobs_done += 1
        summary = result.summary()
        return {
            **base,
            "kind": "done",
            "output": str(job.output),
            "seconds": _since(start),
            "frames": summary.get("num_frames"),
            "size": [summary.get("width"), summary.get("height")],
            "faces": len(summary.get("faces") or []),
        }


def write_tiny(options: LoadOptions) -> str:
    """Write the tiny random weights of ``options`` (once, before workers start: they share the folder)."""
    from ..pipeline.tiny import write_tiny_weights

    if not options.weights:
        raise FantasyPortraitError("tiny weights need a folder to be written to (weights)")
    write_tiny_weights(options.weights, seed=options.seed_weights, text_encoder=options.text_encoder)
    return options.weights


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 3)


def _free_device_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # nothing more to do
        pass
