"""``fantasy-portrait batch JOBS.jsonl [--ray [ADDRESS]]``: many animations, resumable (see docs/scale.md)."""

from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch",
        help="animate many portraits from a JSONL job list (GPUs of this machine or a Ray cluster; resumable)",
        description="Run every job of JOBS.jsonl (one JSON object per line: portrait, driving, output and any "
        "animate setting under its Python name, e.g. seed, num_steps, max_frames). Every line is checked "
        "before any work. Each worker (one per GPU, or --workers CPU processes, or Ray actors with --ray) "
        "loads the models once. Finished jobs are recorded in a journal and skipped when the batch is run "
        "again; failed jobs are recorded with their reason and run again.",
    )
    p.add_argument("jobs", help="JSONL file, one job per line")
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run on Ray: join the cluster at ADDRESS ('auto', 'host:6379', 'ray://host:10001'), or with no "
        "address $RAY_ADDRESS, else a local Ray",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="workers: without Ray and GPUs, CPU worker processes (default 1); with Ray, actors (default one "
        "per GPU of the cluster); with GPUs, use the first N",
    )
    p.add_argument(
        "--devices", help="GPUs for the local workers, e.g. cuda:0,cuda:2 (default: every visible GPU)"
    )
    p.add_argument("--journal", help="journal file (default: JOBS.journal.jsonl beside the jobs file)")
    p.add_argument("--force", action="store_true", help="run every job again, even the finished ones")
    p.add_argument("--check", action="store_true", help="only check the job lines and say what would run")
    p.add_argument(
        "--weights",
        help="folder with the released weight files (default: $FANTASY_PORTRAIT_WEIGHTS); with --tiny-weights "
        "the folder to write tiny random weights to",
    )
    p.add_argument(
        "--tiny-weights",
        action="store_true",
        help="write tiny random weights into --weights and use them (they animate nothing: for trying the "
        "batch machinery offline)",
    )
    p.add_argument("--portrait-checkpoint", help="FantasyPortrait weights instead of the folder's")
    p.add_argument("--motion-checkpoint", help="PD-FGC weights instead of the folder's pd_fpg.pth")
    p.add_argument(
        "--dtype", choices=["bf16", "fp16", "fp32"], help="model dtype (default bf16 on GPU, fp32 on CPU)"
    )
    p.add_argument(
        "--memory", default="auto", choices=["auto", "gpu", "model-offload", "sequential"], help="memory mode"
    )
    p.add_argument("--face-backend", default="mediapipe", help="face detector backend (default mediapipe)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..batch import LoadOptions, default_journal, load_jobs, make_executor, prepare_options, run_batch
    from ..batch.runner import finished
    from ..data.journal import Journal
    from ..errors import InputError

    jobs = load_jobs(args.jobs)
    journal = args.journal or default_journal(args.jobs)
    if args.tiny_weights and not args.weights:
        raise InputError("--tiny-weights needs --weights DIR (where to write them)")
    options = LoadOptions(
        weights=args.weights,
        tiny=args.tiny_weights,
        portrait_checkpoint=args.portrait_checkpoint,
        motion_checkpoint=args.motion_checkpoint,
        dtype=args.dtype,
        memory_mode=args.memory,
        face_backend=args.face_backend,
    )
    if args.check:
        done = {} if args.force else finished(jobs, Journal(journal).read(), options.signature())
        todo = [j for j in jobs if j.id not in done]
        print(f"{len(jobs)} valid job(s); {len(todo)} to run, {len(jobs) - len(todo)} finished ({journal})")
        return 0
    options, signature = prepare_options(options, jobs)
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
    executor = make_executor(
        options, ray=args.ray is not None, address=args.ray or None, workers=args.workers, devices=devices
    )
    try:
        summary = run_batch(
            jobs, executor, journal, signature=signature, force=args.force, progress=not args.no_progress
        )
    finally:
        executor.close()
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(summary.table(), file=sys.stderr)
    return 0 if summary.ok else 1
