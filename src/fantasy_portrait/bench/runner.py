"""Prepare benchmark inputs and run methods over a manifest, caching and resuming.

A run folder holds everything::

    RUN/inputs/<case>/       source.png, driver_<k>.mp4, ground_truth.mp4 (self), prepared.json
    RUN/outputs/<method>/    <case>.mp4 and <case>.json (cache key, seconds taken)
    RUN/cache/               landmark tracks and FID/FVD features, keyed by file content
    RUN/scores/<method>/     per-case scores and summary.json (see scoring.py)
    RUN/report/              report.md, report.csv, report.json, plots (see report.py)

Each step writes its result atomically next to a key made from everything it depends on (inputs'
content, manifest settings, method signature); an interrupted run resumes where it stopped, and a
changed input or method redoes only what it affects.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..errors import FantasyPortraitError
from .landmarks import cached_tracks, file_digest
from .manifest import BenchCase, BenchManifest
from .methods import Method, OursMethod, PreparedCase

logger = logging.getLogger(__name__)

PREP_VERSION = 1
GT_CRF = 10  # near-lossless ground truth: what methods see and what they are scored against
# Per-face driver crop of a multi-face self-reenactment video: square of this many face sizes.
DRIVER_CROP_SCALE = 1.8


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _even(frames: np.ndarray) -> np.ndarray:
    """Crop one row/column if needed so yuv420p keeps the exact size."""
    h, w = frames.shape[-3:-1]
    return frames[..., : h - h % 2, : w - w % 2, :]


def _load_prepared(case: BenchCase, folder: Path, key: str) -> PreparedCase | None:
    data = _read_json(folder / "prepared.json")
    if not data or data.get("key") != key:
        return None
    prepared = PreparedCase(
        case=case,
        dir=folder,
        source=folder / data["source"],
        drivers=[folder / d for d in data["drivers"]],
        ground_truth=folder / data["ground_truth"] if data["ground_truth"] else None,
        fps=float(data["fps"]),
        num_frames=int(data["num_frames"]),
        width=int(data["width"]),
        height=int(data["height"]),
        key=key,
    )
    files = [prepared.source, *prepared.drivers] + ([prepared.ground_truth] if prepared.ground_truth else [])
    return prepared if all(p.is_file() for p in files) else None


def _driver_crops(frames: np.ndarray, tracks, size: int = 256) -> list[np.ndarray]:
    """One fixed square crop per tracked face (median centre, DRIVER_CROP_SCALE x face size)."""
    import cv2

    crops = []
    for k in range(tracks.num_faces):
        pts = tracks.face(k)[:, :, :2]
        ok = tracks.found[:, k]
        if not ok.any():
            raise FantasyPortraitError(
                f"face {k} of the ground-truth video was never found; cannot cut its driver"
            )
        lo, hi = np.nanmin(pts[ok], axis=1), np.nanmax(pts[ok], axis=1)
        centre = np.median((lo + hi) / 2, axis=0)
        side = DRIVER_CROP_SCALE * float(np.max(hi - lo))
        scale = size / side
        m = np.array([[scale, 0, size / 2 - centre[0] * scale], [0, scale, size / 2 - centre[1] * scale]])
        crops.append(
            np.stack(
                [
                    cv2.warpAffine(f, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
                    for f in frames
                ]
            )
        )
    return crops


def prepare_case(manifest: BenchManifest, case: BenchCase, run_dir: Path) -> PreparedCase:
    """Cut, resample and resize a case's inputs into RUN/inputs/<case>/ (cached)."""
    from ..io import load_image, read_video, save_image, write_video

    folder = Path(run_dir) / "inputs" / case.id
    settings = manifest.settings(case)
    frames_max, max_side, fps_target = settings["frames"], settings["max_side"], settings["fps"]
    key = _key(case.to_dict(), settings, [file_digest(p) for p in case.inputs()], PREP_VERSION)
    cached = _load_prepared(case, folder, key)
    if cached is not None:
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    if case.mode == "self":
        video = read_video(case.video, fps=fps_target, max_frames=frames_max, max_side=max_side)
        frames = _even(video.frames)
        gt = write_video(folder / "ground_truth.mp4", frames, video.fps, crf=GT_CRF)
        decoded = read_video(gt).frames  # what scoring will compare against
        source = save_image(folder / "source.png", decoded[0])
        if case.faces == 1:
            drivers = [gt]
        else:
            tracks = cached_tracks(gt, decoded, case.faces, Path(run_dir) / "cache" / "landmarks")
            drivers = [
                write_video(folder / f"driver_{k}.mp4", crop, video.fps, crf=GT_CRF)
                for k, crop in enumerate(_driver_crops(decoded, tracks))
            ]
        fps, count, (h, w) = video.fps, len(decoded), decoded.shape[1:3]
    else:
        image = load_image(case.portrait, max_side=max_side)
        image = _even(image)
        source = save_image(folder / "source.png", image)
        first = read_video(case.drivers[0], fps=fps_target, max_frames=frames_max, max_side=max_side)
        fps = first.fps
        clips = [first.frames] + [
            read_video(d, fps=fps, max_frames=frames_max, max_side=max_side).frames for d in case.drivers[1:]
        ]
        count = min(len(c) for c in clips)
        drivers = [
            write_video(folder / f"driver_{k}.mp4", _even(c[:count]), fps, crf=GT_CRF)
            for k, c in enumerate(clips)
        ]
        gt = None
        h, w = image.shape[:2]
    prepared = PreparedCase(
        case,
        folder,
        source,
        drivers,
        gt if case.mode == "self" else None,
        float(fps),
        int(count),
        int(w),
        int(h),
        key,
    )
    _write_json(folder / "prepared.json", prepared.to_dict())
    return prepared


def prepare_all(manifest: BenchManifest, run_dir: Path) -> list[PreparedCase]:
    return [prepare_case(manifest, c, run_dir) for c in manifest.cases]


def output_path(run_dir: Path, method_name: str, case_id: str) -> Path:
    return Path(run_dir) / "outputs" / method_name / f"{case_id}.mp4"


def run_method(
    manifest: BenchManifest, method: Method, run_dir: Path, force: bool = False
) -> dict[str, Path]:
    """Produce every case's output for ``method``; reuse outputs whose key still matches.

    Returns {case id: output path}. A failing case raises after the finished ones are kept. ``ours``
    runs through the batch machinery (fantasy_portrait.batch): one pipeline per worker, loaded once,
    over the GPUs of this machine or a Ray cluster (options "workers", "devices", "ray").
    """
    from tqdm import tqdm

    run_dir = Path(run_dir)
    results = {}
    pending = []  # (case id, prepared case, output, temporary output, meta path, key)
    for case in tqdm(manifest.cases, desc=f"bench prepare {method.name}", unit="case", disable=None):
        prepared = prepare_case(manifest, case, run_dir)
        out = output_path(run_dir, method.name, case.id)
        meta_path = out.with_suffix(".json")
        key = _key(prepared.key, method.signature())
        meta = _read_json(meta_path)
        if not force and out.is_file() and meta and meta.get("key") == key:
            results[case.id] = out
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
        tmp.unlink(missing_ok=True)
        pending.append((case.id, prepared, out, tmp, meta_path, key))

    def finish(item, seconds: float) -> None:
        case_id, _, out, tmp, meta_path, key = item
        if not tmp.is_file():
            raise FantasyPortraitError(f"method {method.name!r} wrote nothing for case {case_id}")
        os.replace(tmp, out)
        _write_json(
            meta_path,
            {"key": key, "method": method.name, "signature": method.signature(), "seconds": seconds},
        )
        results[case_id] = out

    if isinstance(method, OursMethod):
        _run_ours(method, pending, run_dir, finish)
    else:
        for item in tqdm(pending, desc=f"bench run {method.name}", unit="case", disable=None):
            start = time.perf_counter()
            method.generate(item[1], item[3])
            finish(item, time.perf_counter() - start)
    done = len(pending)
    logger.info("%s: %d cases generated, %d reused from %s", method.name, done, len(results) - done, run_dir)
    return results


def _run_ours(method: OursMethod, pending: list, run_dir: Path, finish) -> None:
    """This project's pipeline over the pending cases through the batch executors (one pipeline per
    worker, loaded once); every case is tried, failures are listed together at the end."""
    from ..batch import Job, LoadOptions, make_executor, prepare_options
    from ..batch.jobs import settings_from_dict
    from .methods import EXECUTOR_KEYS

    if not pending:
        return
    opts = method.options
    weights = opts.get("weights")
    if opts.get("tiny"):
        weights = str(run_dir / "cache" / f"tiny_weights_seed{int(opts.get('seed_weights', 0))}")
    load = LoadOptions(
        weights=weights,
        tiny=bool(opts.get("tiny")),
        seed_weights=int(opts.get("seed_weights", 0)),
        portrait_checkpoint=opts.get("portrait_checkpoint"),
        motion_checkpoint=opts.get("motion_checkpoint"),
        device=opts.get("device"),
        dtype=str(opts.get("dtype", "float32")),
        memory_mode=opts.get("memory_mode", "auto"),
    )
    call = {k: v for k, v in opts.items() if k not in method.LOAD_KEYS and k not in EXECUTOR_KEYS}
    jobs, items = [], {}
    for item in pending:
        case_id, prepared, _, tmp, _, _ = item
        settings = dict(call)
        settings.setdefault("max_size", max(prepared.width, prepared.height))
        settings.update(fps=prepared.fps, max_frames=prepared.num_frames, progress=False)
        settings_from_dict(settings)  # every case's settings are checked before any work
        jobs.append(Job(case_id, prepared.source, list(prepared.drivers), tmp, settings))
        items[case_id] = item
    load, _ = prepare_options(load, jobs)
    ray = opts.get("ray")
    executor = make_executor(
        load,
        ray=bool(ray) or ray == "",
        address=ray if isinstance(ray, str) and ray else None,
        workers=opts.get("workers"),
        devices=opts.get("devices") or ([opts["device"]] if opts.get("device") else None),
    )
    failures = []
    try:
        for record in executor.run(jobs):
            if record["kind"] == "done":
                finish(items[record["job"]], float(record.get("seconds") or 0.0))
            elif record["kind"] == "load_failed":
                raise FantasyPortraitError(
                    f"method {method.name!r}: cannot load the pipeline: {record['error']}"
                )
            else:
                failures.append(f"{record['job']}: {record.get('error')}")
    finally:
        executor.close()
    if failures:
        raise FantasyPortraitError(
            f"method {method.name!r} failed on {len(failures)} case(s) (the others are kept): "
            + "; ".join(failures)
        )
