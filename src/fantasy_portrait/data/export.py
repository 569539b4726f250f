"""Kept clips -> the training precompute step's clip manifest (docs/training.md).

For every kept, cut clip this tracks its faces on every frame (``faces.track_faces``, at the clip's
own frame rate, on frames downscaled like the curation's analysis frames) and writes:
- ``OUT/training/tracks/<id>.safetensors``: ``boxes`` (faces, frames, 4) and, when every face has
  a mesh, ``landmarks`` (faces, frames, 478, 2), float32 source pixels, faces left to right;
- ``OUT/training/clips.jsonl``: one line per clip, ``{"id", "video", "tracks", "caption"}`` with
  paths relative to that folder, the input of ``fantasy_portrait.training.precompute``.
Precompute the set with its frame rate left at the source rate (``fps`` unset): the boxes follow
the clip's own frames. A clip whose faces cannot be followed through every frame (a face leaves
for longer than the tracker fills) is left out and listed in ``OUT/training/skipped.jsonl``.
Resumable like the curation itself: a clip with a track file is not tracked again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from ..errors import FantasyPortraitError
from .config import CurationConfig

logger = logging.getLogger(__name__)

TRAINING_DIR = "training"
CLIPS_NAME = "clips.jsonl"


def training_id(clip_id: str) -> str:
    return clip_id.replace("/", "_")


def export_clip(row: dict, config: CurationConfig, out_dir: str) -> dict:
    """Track the faces of one kept clip and write its track file: {"id", "ok", "why"?}."""
    from safetensors.numpy import save_file

    from ..faces.tracking import track_faces
    from ..io import iter_video_frames, probe_video
    from .measures import resize_short_side
    from .stages import face_backend

    key = training_id(row["clip_id"])
    target = Path(out_dir) / TRAINING_DIR / "tracks" / f"{key}.safetensors"
    if target.exists():
        return {"id": key, "ok": True}
    clip = str(Path(out_dir) / row["clip_path"])
    info = probe_video(clip)
    small, scale = [], 1.0
    for frame in iter_video_frames(clip):
        image, scale = resize_short_side(frame, config.analysis_short_side)
        small.append(np.ascontiguousarray(image))
    backend = face_backend(config)
    try:
        tracks = track_faces(
            np.stack(small), num_faces=row["faces"], backend=backend, fps=info.fps, progress=False
        )
    except FantasyPortraitError as exc:
        return {"id": key, "ok": False, "why": str(exc)}
    tensors = {"boxes": np.stack([t.boxes for t in tracks]).astype(np.float32) / scale}
    if all(t.landmarks is not None for t in tracks):
        tensors["landmarks"] = np.stack([t.landmarks for t in tracks]).astype(np.float32) / scale
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    save_file(tensors, str(tmp))
    os.replace(tmp, target)
    return {"id": key, "ok": True}


def write_training_manifest(rows: list[dict], results: dict[str, dict], out_dir: str | Path) -> Path:
    """Write training/clips.jsonl (and skipped.jsonl) for the kept rows whose tracks were written."""
    folder = Path(out_dir) / TRAINING_DIR
    folder.mkdir(parents=True, exist_ok=True)
    lines, skipped = [], []
    for row in sorted(rows, key=lambda r: r["clip_id"]):
        key = training_id(row["clip_id"])
        result = results.get(key, {})
        if result.get("ok"):
            lines.append(
                {
                    "id": key,
                    "video": os.path.relpath(Path(out_dir) / row["clip_path"], folder),
                    "tracks": f"tracks/{key}.safetensors",
                    "caption": row.get("caption") or "",
                }
            )
        else:
            skipped.append({"id": key, "why": result.get("why", "not tracked")})
    for name, items in ((CLIPS_NAME, lines), ("skipped.jsonl", skipped)):
        tmp = folder / f".{name}.tmp"
        tmp.write_text("".join(json.dumps(item, sort_keys=True) + "\n" for item in items))
        tmp.replace(folder / name)
    logger.info("training manifest: %d clips, %d skipped", len(lines), len(skipped))
    return folder / CLIPS_NAME
