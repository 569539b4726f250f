"""The curation stages: one function per unit of work, the same under every executor.

- :func:`scan_video` (per video): probe + shot boundaries -> clip tasks;
- :func:`curate_clip` (per clip): decode sampled frames, then the stages in order
  sharpness (frame) -> faces (count, tracks) -> sharpness (faces) -> aesthetic -> motion,
  then cut and caption the kept clips. Each returns a plain, JSON-serialisable dict (a manifest row).

With ``stop_at_first_rejection`` (default) a clip's later stages are skipped once one rejects it;
their scores stay null and ``stages_run`` lists what ran. Per-stage wall times go to ``time_*``.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import FantasyPortraitError
from .config import CurationConfig
from .measures import (
    face_sharpness,
    laplacian_variance,
    resize_short_side,
    sample_indices,
    summarise_track,
    track_sampled_faces,
)

logger = logging.getLogger(__name__)

STAGES = ("shots", "decode", "sharpness", "faces", "aesthetic", "motion", "cut", "caption")

# Per-process caches: a face backend or a CLIP model is built once per worker, not per clip.
_CACHE: dict = {}


def _cached(key, build):
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def clip_id(video_id: str, start: int, end: int) -> str:
    return f"{video_id}/{start:07d}-{end:07d}"


def scan_video(source: dict, config: CurationConfig) -> dict:
    """Probe a video and find its shots: {"video_id", "source", "fps", ..., "clips": [task, ...]}."""
    from ..io import keyframe_indices, probe_video
    from .shots import detect_shots, split_shots

    t0 = time.perf_counter()
    record = {"kind": "video", "video_id": source["video_id"], "source": source["path"], "clips": []}
    try:
        info = probe_video(source["path"])
        shots = detect_shots(source["path"], info.num_frames, config)
        keyframes = keyframe_indices(source["path"])
    except Exception as exc:  # one unreadable video must not stop the run; its row says why
        message = str(exc) if isinstance(exc, FantasyPortraitError) else f"{source['path']}: {exc!r}"
        record.update(error=message, time_shots_s=time.perf_counter() - t0)
        return record
    clips = split_shots(shots, info.fps, config, keyframes)
    record.update(
        fps=info.fps,
        num_frames=info.num_frames,
        width=info.width,
        height=info.height,
        num_shots=len(shots),
        shots=[list(s) for s in shots],
        time_shots_s=time.perf_counter() - t0,
    )
    record["clips"] = [
        {
            "clip_id": clip_id(source["video_id"], c.start, c.end),
            "video_id": source["video_id"],
            "source": source["path"],
            "start_frame": c.start,
            "end_frame": c.end,
            "shot_index": c.shot_index,
            "fps": info.fps,
            "width": info.width,
            "height": info.height,
            "video_frames": info.num_frames,
        }
        for c in clips
    ]
    return record


def _empty_row(task: dict) -> dict:
    fps = task["fps"]
    return {
        "clip_id": task["clip_id"],
        "video_id": task["video_id"],
        "source": task["source"],
        "shot_index": task["shot_index"],
        "start_frame": task["start_frame"],
        "end_frame": task["end_frame"],
        "num_frames": task["end_frame"] - task["start_frame"],
        "start_s": task["start_frame"] / fps,
        "end_s": task["end_frame"] / fps,
        "duration_s": (task["end_frame"] - task["start_frame"]) / fps,
        "fps": fps,
        "width": task["width"],
        "height": task["height"],
        "kept": False,
        "reject_reason": None,
        "reject_reasons": [],
        "stages_run": [],
        "error": None,
        "frames_sampled": 0,
        "sharpness_frame": None,
        "faces": None,
        "faces_per_frame_min": None,
        "faces_per_frame_median": None,
        "faces_per_frame_max": None,
        "people": None,
        "tracks": [],
        "sharpness_face": None,
        "aesthetic": None,
        "aesthetic_status": None,
        "head_range": None,
        "mouth_motion": None,
        "eye_motion": None,
        "moving_faces": None,
        "clip_path": None,
        "cut_mode": None,
        "caption": None,
        "caption_status": None,
        **{f"time_{stage}_s": 0.0 for stage in STAGES},
    }


def face_backend(config: CurationConfig):
    """The configured face backend, built once per process (MediaPipe gets the score threshold)."""
    from ..faces import get_backend

    kwargs = {}
    if config.face_backend == "mediapipe":
        # A few more faces than allowed, so "too many faces" can still be seen.
        kwargs = {"min_score": config.detection_confidence, "max_faces": config.max_faces + 4}
    return _cached(
        ("faces", config.face_backend, config.detection_confidence),
        lambda: get_backend(config.face_backend, cache=False, **kwargs),
    )


def curate_clip(task: dict, config: CurationConfig, out_dir: str) -> dict:
    """Run every stage on one clip task (from :func:`scan_video`); returns its manifest row."""
    row = _empty_row(task)
    try:
        _run_stages(task, config, out_dir, row)
    except Exception as exc:  # one broken clip must not stop a run over millions
        logger.warning("%s: %s", task["clip_id"], exc)
        logger.debug("%s", traceback.format_exc())
        row["error"] = f"{exc.__class__.__name__}: {exc}"
        row["reject_reasons"] = ["error", *row["reject_reasons"]]
    row["reject_reason"] = row["reject_reasons"][0] if row["reject_reasons"] else None
    row["kept"] = not row["reject_reasons"]
    if row["kept"] and (config.cut_clips or config.caption_command or config.caption_callable):
        try:
            _finish_kept(task, config, out_dir, row)
        except Exception as exc:
            logger.warning("%s: cutting or captioning failed: %s", task["clip_id"], exc)
            row["error"] = f"{exc.__class__.__name__}: {exc}"
            row["reject_reasons"] = ["error"]
            row["reject_reason"] = "error"
            row["kept"] = False
    return row


def _run_stages(task: dict, config: CurationConfig, out_dir: str, row: dict) -> None:
    reasons = row["reject_reasons"]
    fps = task["fps"]

    def stop() -> bool:
        return bool(reasons) and config.stop_at_first_rejection

    if row["duration_s"] < config.min_seconds - 1e-9:
        reasons.append("too_short")
        return

    # Decode the sampled frames.
    from ..io import read_frames

    t = time.perf_counter()
    wanted = sample_indices(
        task["start_frame"], task["end_frame"], fps, config.sample_fps, config.min_samples, config.max_samples
    )
    decoded = read_frames(task["source"], wanted, task["start_frame"], task["end_frame"])
    indices = [i for i in wanted if i in decoded]
    if len(indices) < 2:
        raise FantasyPortraitError(f"{task['source']}: only {len(indices)} frame(s) decoded in the clip")
    frames = [decoded[i] for i in indices]
    small = [resize_short_side(f, config.analysis_short_side) for f in frames]
    inverse_scale = 1.0 / small[0][1]
    row["frames_sampled"] = len(frames)
    row["time_decode_s"] = time.perf_counter() - t

    # Whole-frame sharpness (on the analysis size, so it does not depend on the source resolution).
    t = time.perf_counter()
    row["sharpness_frame"] = float(np.median([laplacian_variance(s) for s, _ in small]))
    row["stages_run"].append("sharpness")
    row["time_sharpness_s"] = time.perf_counter() - t
    if row["sharpness_frame"] < config.min_frame_sharpness:
        reasons.append("blurry")
    if stop():
        return

    # Faces: detection + mesh on every sampled frame, tracks over the samples, stable-face count.
    t = time.perf_counter()
    backend = face_backend(config)
    per_frame = [backend.detect(np.ascontiguousarray(s)) for s, _ in small]
    counts = [len(f) for f in per_frame]
    tracks = track_sampled_faces(per_frame)
    n = len(per_frame)
    stable = [tr for tr in tracks if len(set(tr.frames)) / n >= config.min_track_coverage - 1e-9]
    row["faces"] = len(stable)
    row["faces_per_frame_min"] = int(min(counts))
    row["faces_per_frame_median"] = float(np.median(counts))
    row["faces_per_frame_max"] = int(max(counts))
    row["stages_run"].append("faces")
    row["time_faces_s"] = time.perf_counter() - t
    if row["faces"] < config.min_faces:
        reasons.append("too_few_faces")
    elif row["faces"] > config.max_faces:
        reasons.append("too_many_faces")
    if config.person_callable and not stop():
        # People seen from behind or too small for a face still count as people in the shot.
        from .plugins import load_callable

        t = time.perf_counter()
        detect_people = _cached(
            ("people", config.person_callable), lambda: load_callable(config.person_callable)
        )
        per_frame_people = []
        for image, _ in small:
            found = detect_people(image)
            per_frame_people.append(int(found) if np.isscalar(found) else len(found))
        row["people"] = int(round(float(np.median(per_frame_people))))
        row["time_faces_s"] += time.perf_counter() - t
        if row["people"] < config.min_faces:
            reasons.append("too_few_people")
        elif row["people"] > config.max_faces:
            reasons.append("too_many_people")
    if stop():
        return

    # Face sharpness on the full-resolution frames; motion scores per stable track.
    t = time.perf_counter()
    summaries = []
    sharp_time = 0.0
    for track in stable:
        ts = time.perf_counter()
        sharp = [
            face_sharpness(frames[pos], obs.box * inverse_scale)
            for pos, obs in zip(track.frames, track.observations, strict=True)
        ]
        sharp_time += time.perf_counter() - ts
        summaries.append(summarise_track(track, n, sharp, inverse_scale))
    motion_time = time.perf_counter() - t - sharp_time
    row["time_sharpness_s"] += sharp_time
    row["sharpness_face"] = float(min(s.sharpness for s in summaries)) if summaries else None
    if summaries and row["sharpness_face"] < config.min_face_sharpness:
        reasons.append("blurry_face")
    for s in summaries:
        s.moving = bool(
            s.head_range >= config.min_head_range_deg
            or s.mouth_motion >= config.min_mouth_motion
            or s.eye_motion >= config.min_eye_motion
        )
    row["tracks"] = [asdict(s) for s in summaries]
    if stop():
        return

    # Aesthetic score on a few frames spread over the clip.
    t = time.perf_counter()
    scorer, status = _cached(("aesthetic", config.fingerprint()), lambda: _build_aesthetic(config))
    row["aesthetic_status"] = status
    if scorer is not None:
        picks = sorted({round(i * (len(frames) - 1) / 2) for i in range(3)})
        row["aesthetic"] = float(scorer([frames[i] for i in picks]))
        row["stages_run"].append("aesthetic")
        if row["aesthetic"] < config.min_aesthetic:
            reasons.append("low_aesthetic")
        row["time_aesthetic_s"] = time.perf_counter() - t
    if stop():
        return

    # Facial motion: the clip needs clearly moving faces.
    row["time_motion_s"] = motion_time
    row["stages_run"].append("motion")
    if summaries:
        row["head_range"] = float(max(s.head_range for s in summaries))
        row["mouth_motion"] = float(max(s.mouth_motion for s in summaries))
        row["eye_motion"] = float(max(s.eye_motion for s in summaries))
    moving = sum(s.moving for s in summaries)
    row["moving_faces"] = int(moving)
    enough = moving >= 1 if config.motion_faces == "any" else (bool(summaries) and moving == len(summaries))
    if not enough:
        reasons.append("static")


def _build_aesthetic(config: CurationConfig):
    from .plugins import build_aesthetic_scorer

    return build_aesthetic_scorer(config)


def clip_relpath(task: dict) -> str:
    return f"clips/{task['video_id']}/{task['start_frame']:07d}-{task['end_frame']:07d}.mp4"


def _finish_kept(task: dict, config: CurationConfig, out_dir: str, row: dict) -> None:
    target = task["source"]
    if config.cut_clips:
        from .cut import cut_clip

        t = time.perf_counter()
        rel = clip_relpath(task)
        row["cut_mode"] = cut_clip(
            task["source"],
            Path(out_dir) / rel,
            task["start_frame"],
            task["end_frame"],
            task["fps"],
            task["video_frames"],
        )
        row["clip_path"] = rel
        row["time_cut_s"] = time.perf_counter() - t
        target = str(Path(out_dir) / rel)
    if config.caption_command or config.caption_callable:
        from ..io import read_frames
        from .plugins import build_captioner

        t = time.perf_counter()
        captioner = _cached(("caption", config.fingerprint()), lambda: build_captioner(config))
        picks = sample_indices(task["start_frame"], task["end_frame"], task["fps"], 1.0, 2, 8)
        frames = read_frames(task["source"], picks, task["start_frame"], task["end_frame"])
        try:
            row["caption"] = captioner(
                target, task["source"], row["start_s"], row["end_s"], list(frames.values())
            )
            row["caption_status"] = "captioned"
        except Exception as exc:  # a failed caption keeps the clip, marked
            row["caption_status"] = f"error: {exc}"
        row["time_caption_s"] = time.perf_counter() - t
