"""Score a method's outputs on a manifest: per-case, per-face, per-frame metrics and subset means.

Self-reenactment cases compare the output with the ground-truth video: SSIM (whole frame), LMD, gaze
MAE (and APD, AED for completeness). Cross-reenactment cases compare each face of the output with
its own driving video: AED, APD, gaze MAE. The output is read at the case's frame rate and the first
min(output, reference) frames are compared; an output of another size is resized to the reference
size for SSIM, and its landmarks are scaled into the reference's pixel frame.

Faces: face k of the output (k-th from the left where the output first shows all its faces) is
matched to face k of the ground truth, or to driver k. Each face is scored on the frames where both
show it; the case value is the mean over faces; a subset value (single / multi x self / cross) is
the mean over its cases. ``face_rate`` is the fraction of reference frames where the output's face
was found too: a low value means the landmark metrics cover only part of the video.

FID (frames) and FVD (16-frame clips) compare all outputs of a subset's self-reenactment cases with
their ground truths, when the user gives the extractor weights.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import metrics
from .coefficients import coefficient_distances, face_boxes
from .extractors import FVD_CLIP_FRAMES
from .frechet import frechet_distance_of_features
from .landmarks import FaceTracks, cached_tracks, default_backend, file_digest
from .manifest import BenchManifest
from .methods import PreparedCase
from .runner import _key, _read_json, _write_json, output_path, prepare_case

logger = logging.getLogger(__name__)

SCORE_VERSION = 2  # bump whenever a metric definition changes (invalidates cached scores)
SELF_METRICS = ("ssim", "lmd", "mae", "apd", "aed")
CROSS_METRICS = ("aed", "apd", "mae")
# What produced the landmark-based numbers (stated in every report).
LANDMARK_EXTRACTOR = "mediapipe-facemesh-478 (geometric pose/gaze/shape, fantasy_portrait.bench.geometry)"
LOWER_IS_BETTER = {
    "fid": True,
    "fvd": True,
    "ssim": False,
    "lmd": True,
    "mae": True,
    "aed": True,
    "apd": True,
}


def _nanmean(values) -> float | None:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def _resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if frames.shape[1:3] == tuple(size):
        return frames
    h, w = size
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


def _face_metrics(gen: np.ndarray, ref: np.ndarray, names) -> dict[str, list]:
    out = {}
    for name in names:
        if name == "ssim":
            continue
        values = metrics.LANDMARK_METRICS[name](gen, ref)
        out[name] = [None if not np.isfinite(v) else float(v) for v in values]
    return out


def score_case(
    prepared: PreparedCase, output: Path, cache_dir: Path | None, backend=None, coeff=None
) -> dict:
    """Metrics of one output against its case's references (see the module docstring).

    coeff: a :class:`~fantasy_portrait.bench.coefficients.CoefficientExtractor` or None; when given,
    AED and APD are its coefficient distances instead of the landmark-geometric ones.

    Returns {"case", "mode", "subset", "frames", "faces": [{metric: per-frame list, "face_rate"}],
    "means": {metric: value}, "frames_ssim": per-frame list (self only)}.
    """
    from ..io import read_video

    case = prepared.case
    if not Path(output).is_file():
        raise InputError(f"{output}: output of case {case.id} not found (run `bench run` first)")
    gen = read_video(output, fps=prepared.fps, max_frames=prepared.num_frames).frames
    landmark_cache = Path(cache_dir) / "landmarks" if cache_dir is not None else None
    gen_tracks = cached_tracks(
        Path(output), gen, case.faces, landmark_cache, backend, tag=f"fps{prepared.fps}"
    )
    result = {"case": case.id, "mode": case.mode, "subset": case.subset, "faces": []}
    if case.mode == "self":
        ref = read_video(prepared.ground_truth).frames
        count = min(len(gen), len(ref))
        ref, gen = ref[:count], gen[:count]
        ref_tracks = cached_tracks(prepared.ground_truth, ref, case.faces, landmark_cache, backend)
        ssim = metrics.ssim_frames(_resize_frames(gen, ref.shape[1:3]), ref)
        result["frames_ssim"] = [float(v) for v in ssim]
        scaled = gen_tracks.scaled_to(ref.shape[1:3])
        refs = [(ref_tracks.face(k)[:count], ref_tracks.found[:count, k]) for k in range(case.faces)]
        gens = [scaled.face(k)[:count] for k in range(case.faces)]
        coeff_refs = [(ref, ref_tracks.face(k)[:count]) for k in range(case.faces)]
        names = SELF_METRICS
    else:
        refs, gens = [], []
        count = len(gen)
        driver_tracks: list[FaceTracks] = []
        driver_frames = []
        for driver in prepared.drivers:
            frames = read_video(driver).frames
            count = min(count, len(frames))
            driver_frames.append(frames)
            driver_tracks.append(cached_tracks(driver, frames, 1, landmark_cache, backend))
        for k, tracks in enumerate(driver_tracks):
            refs.append((tracks.face(0)[:count], tracks.found[:count, 0]))
            gens.append(gen_tracks.face(k)[:count])
        coeff_refs = [(f[:count], t.face(0)[:count]) for f, t in zip(driver_frames, driver_tracks)]
        names = CROSS_METRICS
    result["frames"] = int(count)
    for k, ((ref_pts, ref_found), gen_pts) in enumerate(zip(refs, gens)):
        face = _face_metrics(gen_pts, ref_pts, names)
        if coeff is not None:  # AED / APD from the user's 3DMM coefficients, same faces and frames
            ref_frames, ref_face = coeff_refs[k]
            face["aed"], face["apd"] = coefficient_distances(
                coeff, gen[:count], face_boxes(gen_tracks.face(k)[:count]), ref_frames, face_boxes(ref_face)
            )
        gen_found = np.isfinite(gen_pts).all(axis=(-1, -2))
        face["face_rate"] = float((gen_found & ref_found).sum() / max(1, ref_found.sum()))
        face["reference_face_rate"] = float(ref_found.mean()) if count else 0.0
        result["faces"].append(face)
    means = {}
    for name in names:
        if name == "ssim":
            means[name] = _nanmean(result["frames_ssim"])
        else:
            per_face = [_nanmean([v if v is not None else np.nan for v in f[name]]) for f in result["faces"]]
            means[name] = _nanmean([p if p is not None else np.nan for p in per_face])
    means["face_rate"] = _nanmean([f["face_rate"] for f in result["faces"]])
    result["means"] = means
    return result


# ------------------------------------------------------------------------------------------ FID / FVD


def _cached_features(
    extractor, kind: str, video: Path, frames: np.ndarray, cache_dir: Path | None
) -> np.ndarray:
    from .extractors import video_clips

    path = None
    if cache_dir is not None:
        ext_id = hashlib.sha256(f"{extractor.name}|{file_digest(extractor.path)}".encode()).hexdigest()[:12]
        path = Path(cache_dir) / "features" / f"{kind}-{ext_id}-{file_digest(video)}-{len(frames)}.npy"
        if path.is_file():
            return np.load(path)
    feats = extractor(frames) if kind == "fid" else extractor(video_clips(frames))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, feats)
    return feats


def distribution_metrics(
    pairs: list[tuple[Path, Path, float, int]], fid=None, fvd=None, cache_dir: Path | None = None
) -> dict:
    """FID and FVD between outputs and ground truths.

    pairs: (output video, ground-truth video, fps, frames). fid / fvd: extractor objects or None.
    Returns {"fid": value or None, "fvd": ..., "fid_samples": n, "fvd_samples": n, "notes": [...]}.
    """
    from ..io import read_video

    out = {"fid": None, "fvd": None, "fid_samples": 0, "fvd_samples": 0, "notes": []}
    if not pairs:
        return out
    for kind, extractor in (("fid", fid), ("fvd", fvd)):
        if extractor is None:
            out["notes"].append(f"{kind.upper()} not computed: no {kind} extractor weights given")
            continue
        gen_feats, ref_feats = [], []
        for output, gt, fps, frames in pairs:
            ref = read_video(gt).frames[:frames]
            gen = read_video(output, fps=fps, max_frames=len(ref)).frames
            gen = _resize_frames(gen, ref.shape[1:3])
            n = min(len(gen), len(ref))
            if kind == "fvd" and n < FVD_CLIP_FRAMES:
                continue  # no complete clip in this video
            gen_feats.append(_cached_features(extractor, kind, output, gen[:n], cache_dir))
            ref_feats.append(_cached_features(extractor, kind, gt, ref[:n], cache_dir))
        if not gen_feats:
            out["notes"].append(
                f"{kind.upper()} not computed: no video has {FVD_CLIP_FRAMES} frames for a clip"
            )
            continue
        g, r = np.concatenate(gen_feats), np.concatenate(ref_feats)
        out[f"{kind}_samples"] = int(len(g))
        if len(g) < 2 or len(r) < 2:
            out["notes"].append(f"{kind.upper()} not computed: fewer than 2 samples ({len(g)})")
            continue
        out[kind] = frechet_distance_of_features(g, r)
        if len(g) <= g.shape[1]:
            out["notes"].append(
                f"{kind.upper()} from {len(g)} samples of {g.shape[1]}-d features: covariance is rank-deficient, "
                "the value is only comparable at equal sample counts"
            )
    return out


# ------------------------------------------------------------------------------------------ whole method


def score_method(
    manifest: BenchManifest,
    run_dir: Path,
    method_name: str,
    fid=None,
    fvd=None,
    backend=None,
    force: bool = False,
    coeff=None,
) -> dict:
    """Score every case of ``method_name`` in ``run_dir``; write RUN/scores/<method>/ and return the summary.

    coeff: an optional coefficient extractor (:mod:`fantasy_portrait.bench.coefficients`); when given,
    every AED / APD of this scoring comes from it and ``extractors["aed_apd"]`` names its spec.
    """
    from tqdm import tqdm

    run_dir = Path(run_dir)
    cache_dir = run_dir / "cache"
    score_dir = run_dir / "scores" / method_name
    score_dir.mkdir(parents=True, exist_ok=True)
    backend = backend or default_backend()
    cases, self_pairs = {}, {"single": [], "multi": []}
    for case in tqdm(manifest.cases, desc=f"bench score {method_name}", unit="case", disable=None):
        prepared = prepare_case(manifest, case, run_dir)
        out = output_path(run_dir, method_name, case.id)
        if not out.is_file():
            raise InputError(
                f"{out}: no output of method {method_name!r} for case {case.id} (run `bench run` first)"
            )
        parts = (prepared.key, file_digest(out), SCORE_VERSION)
        if coeff is not None:
            parts += (coeff.spec, coeff.version)
        key = _key(*parts)
        path = score_dir / f"{case.id}.json"
        cached = _read_json(path)
        if not force and cached and cached.get("key") == key:
            result = cached
        else:
            result = score_case(prepared, out, cache_dir, backend, coeff)
            result["key"] = key
            _write_json(path, result)
        cases[case.id] = result
        if case.mode == "self":
            self_pairs[case.subset].append((out, prepared.ground_truth, prepared.fps, prepared.num_frames))
    subsets = {}
    for subset in ("single", "multi"):
        entry = {}
        for mode, names in (("self", SELF_METRICS), ("cross", CROSS_METRICS)):
            chosen = [c for c in cases.values() if c["subset"] == subset and c["mode"] == mode]
            if not chosen:
                continue
            values = {}
            for name in (*names, "face_rate"):
                case_values = [c["means"].get(name) for c in chosen]
                values[name] = _nanmean([v if v is not None else np.nan for v in case_values])
            values["cases"] = len(chosen)
            if mode == "self":
                values.update(distribution_metrics(self_pairs[subset], fid, fvd, cache_dir))
            entry[mode] = values
        if entry:
            subsets[subset] = entry
    summary = {
        "method": method_name,
        "manifest": manifest.name,
        "manifest_settings": manifest.settings(),
        "extractors": {
            "landmarks": LANDMARK_EXTRACTOR,
            "aed_apd": f"coefficients {coeff.spec}" if coeff is not None else LANDMARK_EXTRACTOR,
            "fid": fid.name if fid is not None else None,
            "fvd": fvd.name if fvd is not None else None,
        },
        "subsets": subsets,
        "cases": {
            cid: {"mode": c["mode"], "subset": c["subset"], "frames": c["frames"], **c["means"]}
            for cid, c in cases.items()
        },
    }
    _write_json(score_dir / "summary.json", summary)
    return summary


def load_summaries(run_dir: Path) -> list[dict]:
    """Every RUN/scores/<method>/summary.json, in method-name order."""
    out = []
    for path in sorted((Path(run_dir) / "scores").glob("*/summary.json")):
        data = _read_json(path)
        if data:
            out.append(data)
    if not out:
        raise InputError(f"{run_dir}: no scores found (run `bench score` first)")
    return out


def load_case_scores(run_dir: Path, method_name: str) -> dict[str, dict]:
    """Per-case score files of one method: {case id: score dict}."""
    out = {}
    for path in sorted((Path(run_dir) / "scores" / method_name).glob("*.json")):
        if path.name != "summary.json":
            data = _read_json(path)
            if data:
                out[data["case"]] = data
    return out


__all__ = ["score_case", "score_method", "distribution_metrics", "load_summaries", "load_case_scores"]
