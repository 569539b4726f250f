"""Many clips: a JSONL of jobs run over the GPUs of one machine or a Ray cluster, resumable from a journal.

``fantasy-portrait batch JOBS.jsonl [--ray [ADDRESS]]``; see :mod:`.jobs` for the job format and
docs/scale.md for launching.
"""

from .jobs import Job, load_jobs, parse_job, settings_from_dict
from .runner import BatchSummary, default_journal, make_executor, prepare_options, run_batch
from .worker import LoadOptions, PipelineWorker

__all__ = [
    "BatchSummary",
    "Job",
    "LoadOptions",
    "PipelineWorker",
    "default_journal",
    "load_jobs",
    "make_executor",
    "parse_job",
    "prepare_options",
    "run_batch",
    "settings_from_dict",
]
