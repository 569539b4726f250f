"""Running a curation: inputs -> journal -> manifest, clips and report, on one machine or a Ray cluster.

Work happens in two passes, both through the same executor:
1. one task per video: probe and shot boundaries (:func:`stages.scan_video`);
2. one task per clip: every stage, then cutting and captioning (:func:`stages.curate_clip`).
The parent process writes each result to the journal as it arrives, so stopping the run (crash,
Ctrl-C, a killed job) loses at most the tasks in flight, and a re-run with the same settings skips
everything already journaled. Executors: ``serial`` (in process), ``process`` (a local process
pool), ``ray`` (Ray Data over a local or remote Ray cluster). They run the very same functions,
so they produce the same manifest.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .config import CurationConfig
from .journal import Journal
from .sources import list_sources

logger = logging.getLogger(__name__)

EXECUTORS = ("serial", "process", "ray")
JOURNAL_NAME = "journal.jsonl"
MANIFEST_NAME = "manifest.parquet"
RAY_CHUNK = 20_000  # items per Ray Data dataset


@dataclass
class CurationResult:
    """What a run produced. ``counts`` maps "kept" and each rejection reason to a clip count."""

    out_dir: Path
    manifest_path: Path
    report_path: Path | None
    num_clips: int
    num_kept: int
    counts: dict = field(default_factory=dict)
    seconds: float = 0.0
    training_manifest: Path | None = None


# ---- work functions (top level, so process pools and Ray can pickle them by reference) ----


def _init_worker() -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _scan_job(payload: tuple[dict, dict, str]) -> dict:
    from .stages import scan_video

    _init_worker()
    source, config, _ = payload
    return scan_video(source, CurationConfig.from_dict(config))


def _clip_job(payload: tuple[dict, dict, str]) -> dict:
    from .stages import curate_clip

    _init_worker()
    task, config, out_dir = payload
    record = curate_clip(task, CurationConfig.from_dict(config), out_dir)
    record["kind"] = "clip"
    return record


def _export_job(payload: tuple[dict, dict, str]) -> dict:
    from .export import export_clip

    _init_worker()
    row, config, out_dir = payload
    return export_clip(row, CurationConfig.from_dict(config), out_dir)


# ---- executors ----


def _map_serial(fn: Callable, items: list, workers: int) -> Iterator[dict]:
    for item in items:
        yield fn(item)


def _map_process(fn: Callable, items: list, workers: int) -> Iterator[dict]:
    import concurrent.futures as cf
    import multiprocessing

    if not items:
        return
    context = multiprocessing.get_context("spawn")  # no fork of a parent holding threads/native state
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker)
    pending = iter(items)
    in_flight: set = set()
    try:
        # A bounded window of submitted tasks keeps memory flat for millions of clips.
        for item in pending:
            in_flight.add(pool.submit(fn, item))
            if len(in_flight) >= 2 * workers:
                break
        while in_flight:
            done, in_flight = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            for future in done:
                yield future.result()
                item = next(pending, None)
                if item is not None:
                    in_flight.add(pool.submit(fn, item))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ray_row(row: dict, fn: Callable) -> dict:
    """Ray Data row function: {"payload": json} -> {"result": json}. JSON keeps Arrow out of the rows."""
    return {"result": json.dumps(fn(tuple(json.loads(row["payload"]))))}


def _map_ray(fn: Callable, items: list, workers: int, address: str | None = None) -> Iterator[dict]:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise InputError(f"--executor ray needs Ray Data: pip install 'ray[data]' ({exc})") from exc
    if not items:
        return
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # One item per block: a finished clip is handed back (and journaled) as soon as it is done.
    # Items go in chunks so that a run over millions of clips never holds millions of blocks.
    for first in range(0, len(items), RAY_CHUNK):
        chunk = items[first : first + RAY_CHUNK]
        dataset = ray.data.from_items(
            [{"payload": json.dumps(list(item))} for item in chunk], override_num_blocks=len(chunk)
        )
        for row in dataset.map(functools.partial(_ray_row, fn=fn), num_cpus=1).iter_rows():
            yield json.loads(row["result"])


def _mapper(executor: str, workers: int, ray_address: str | None) -> Callable[[Callable, list], Iterable]:
    if executor == "serial":
        return lambda fn, items: _map_serial(fn, items, workers)
    if executor == "process":
        return lambda fn, items: _map_process(fn, items, workers)
    if executor == "ray":
        return lambda fn, items: _map_ray(fn, items, workers, ray_address)
    raise InputError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")


# ---- the run ----


def _check_settings(journal: Journal, records: list[dict], config: CurationConfig, overwrite: bool) -> list:
    settings = [r for r in records if r.get("kind") == "config"]
    if settings and settings[0]["fingerprint"] != config.fingerprint():
        if not overwrite:
            raise InputError(
                f"{journal.path.parent}: was curated with other settings; use another output folder "
                "or --overwrite to start again"
            )
        records = []
    if overwrite or not settings:
        for name in (JOURNAL_NAME, MANIFEST_NAME):
            (journal.path.parent / name).unlink(missing_ok=True)
        if overwrite:
            shutil.rmtree(journal.path.parent / "clips", ignore_errors=True)
        journal.append({"kind": "config", "fingerprint": config.fingerprint(), "config": config.to_dict()})
        records = []
    return records


def _error_row(video: dict) -> dict:
    from .stages import _empty_row

    task = {
        "clip_id": f"{video['video_id']}/error",
        "video_id": video["video_id"],
        "source": video["source"],
        "shot_index": -1,
        "start_frame": 0,
        "end_frame": 0,
        "fps": 1.0,
        "width": 0,
        "height": 0,
    }
    row = _empty_row(task)
    row.update(error=video["error"], reject_reason="error", reject_reasons=["error"])
    return row


def _progress_postfix(counts: Counter) -> str:
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "kept")
    return f"kept {counts.get('kept', 0)}" + (f" | rejected: {rejected}" if rejected else "")


def curate(
    input_path: str | Path,
    out_dir: str | Path,
    config: CurationConfig | None = None,
    executor: str = "process",
    workers: int | None = None,
    ray_address: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    report: bool = True,
    max_clips: int | None = None,
    training_manifest: bool = False,
) -> CurationResult:
    """Curate the videos of ``input_path`` (folder or manifest) into ``out_dir``.

    Writes out_dir/journal.jsonl (progress), out_dir/manifest.parquet (one row per clip),
    out_dir/clips/... (kept clips) and out_dir/report.md + report/*.png. Resumes from the journal.
    max_clips: stop after this many new clips (for trials); the manifest then covers what is done.
    training_manifest: also track the kept clips' faces on every frame and write
    out_dir/training/clips.jsonl, the input of the training precompute step (see export.py).
    """
    from tqdm import tqdm

    from .manifest import write_manifest

    config = config or CurationConfig()
    config.validate()
    workers = max(1, workers or (os.cpu_count() or 1))
    run = _mapper(executor, workers, ray_address)
    sources = list_sources(input_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    config_dict = config.to_dict()

    with Journal(out_dir / JOURNAL_NAME) as journal:
        records = _check_settings(journal, journal.read(), config, overwrite)
        videos = {r["video_id"]: r for r in records if r.get("kind") == "video"}
        done = {r["clip_id"]: r for r in records if r.get("kind") == "clip"}

        todo = [{"path": s.path, "video_id": s.video_id} for s in sources if s.video_id not in videos]
        if todo:
            bar = tqdm(total=len(todo), desc="shots", unit="video", disable=not progress)
            for record in run(_scan_job, [(s, config_dict, str(out_dir)) for s in todo]):
                journal.append(record)
                videos[record["video_id"]] = record
                bar.update(1)
            bar.close()

        current = [videos[s.video_id] for s in sources]
        tasks = [c for v in current for c in v.get("clips", [])]
        pending = [t for t in tasks if t["clip_id"] not in done]
        if max_clips is not None:
            pending = pending[:max_clips]
        counts = Counter("kept" if r["kept"] else r["reject_reason"] for r in done.values())
        bar = tqdm(
            total=len(tasks),
            initial=len(tasks) - len(pending),
            desc="clips",
            unit="clip",
            disable=not progress,
        )
        clips_started, finished = time.perf_counter(), 0
        for record in run(_clip_job, [(t, config_dict, str(out_dir)) for t in pending]):
            journal.append(record)
            done[record["clip_id"]] = record
            counts["kept" if record["kept"] else record["reject_reason"]] += 1
            finished += 1
            rate = finished / max(time.perf_counter() - clips_started, 1e-9)
            bar.set_postfix_str(f"{rate:.2f} clips/s | {_progress_postfix(counts)}", refresh=False)
            bar.update(1)
        bar.close()

    rows = []
    for video in current:
        if video.get("error"):
            rows.append(_error_row(video))
            continue
        total = max(video["num_frames"], 1)
        for task in video["clips"]:
            if task["clip_id"] in done:
                row = {k: v for k, v in done[task["clip_id"]].items() if k != "kind"}
                row["time_shots_s"] = (
                    video["time_shots_s"] * (task["end_frame"] - task["start_frame"]) / total
                )
                rows.append(row)
    manifest_path = out_dir / MANIFEST_NAME
    write_manifest(rows, manifest_path)
    training_path = None
    if training_manifest:
        from .export import write_training_manifest

        kept = [r for r in rows if r["kept"] and r["clip_path"]]
        if len(kept) < sum(r["kept"] for r in rows):
            logger.warning("training manifest: kept clips that were not cut (--no-cut) are left out")
        bar = tqdm(total=len(kept), desc="training tracks", unit="clip", disable=not progress)
        results = {}
        for item in run(_export_job, [(r, config_dict, str(out_dir)) for r in kept]):
            results[item["id"]] = item
            bar.update(1)
        bar.close()
        training_path = write_training_manifest(kept, results, out_dir)
    report_path = None
    if report:
        from .report import write_report

        report_path = write_report(rows, config, out_dir)
    counts = Counter("kept" if r["kept"] else r["reject_reason"] for r in rows)
    result = CurationResult(
        out_dir=out_dir,
        manifest_path=manifest_path,
        report_path=report_path,
        num_clips=len(rows),
        num_kept=counts.get("kept", 0),
        counts=dict(counts),
        seconds=time.perf_counter() - started,
        training_manifest=training_path,
    )
    logger.info("%d clips, %s; manifest %s", result.num_clips, _progress_postfix(counts), manifest_path)
    return result
