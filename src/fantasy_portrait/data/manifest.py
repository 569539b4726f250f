"""The curation manifest: one Parquet row per clip, with an explicit schema.

Columns (null where a stage did not run):
- where: clip_id, video_id, source, shot_index, start_frame, end_frame (exclusive), num_frames,
  start_s, end_s, duration_s, fps, width, height;
- decision: kept, reject_reason (first failing stage), reject_reasons (all that failed),
  stages_run, error;
- scores: frames_sampled, sharpness_frame, faces (stable tracks), faces_per_frame_min/median/max,
  people (median per-frame count of the optional person detector),
  tracks (list of per-face structs: coverage, mean box, size, sharpness, yaw/pitch/roll/head
  ranges, mouth and eye motion, moving), sharpness_face (least sharp stable face), aesthetic,
  aesthetic_status, head_range, mouth_motion, eye_motion (maxima over faces), moving_faces;
- outputs: clip_path (relative to the output folder), cut_mode ("remux" or "reencode"),
  caption, caption_status;
- time_<stage>_s: wall seconds per stage (time_shots_s is the video's shot detection time shared
  over its clips by length). Timings differ between runs; everything else is deterministic.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .stages import STAGES

TRACK_TYPE = pa.struct(
    [
        ("track_id", pa.int32()),
        ("coverage", pa.float64()),
        ("box", pa.list_(pa.float64())),
        ("face_size", pa.float64()),
        ("sharpness", pa.float64()),
        ("yaw_range", pa.float64()),
        ("pitch_range", pa.float64()),
        ("roll_range", pa.float64()),
        ("head_range", pa.float64()),
        ("mouth_motion", pa.float64()),
        ("eye_motion", pa.float64()),
        ("moving", pa.bool_()),
    ]
)

SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("video_id", pa.string()),
        ("source", pa.string()),
        ("shot_index", pa.int32()),
        ("start_frame", pa.int64()),
        ("end_frame", pa.int64()),
        ("num_frames", pa.int64()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("fps", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("kept", pa.bool_()),
        ("reject_reason", pa.string()),
        ("reject_reasons", pa.list_(pa.string())),
        ("stages_run", pa.list_(pa.string())),
        ("error", pa.string()),
        ("frames_sampled", pa.int32()),
        ("sharpness_frame", pa.float64()),
        ("faces", pa.int32()),
        ("faces_per_frame_min", pa.int32()),
        ("faces_per_frame_median", pa.float64()),
        ("faces_per_frame_max", pa.int32()),
        ("people", pa.int32()),
        ("tracks", pa.list_(TRACK_TYPE)),
        ("sharpness_face", pa.float64()),
        ("aesthetic", pa.float64()),
        ("aesthetic_status", pa.string()),
        ("head_range", pa.float64()),
        ("mouth_motion", pa.float64()),
        ("eye_motion", pa.float64()),
        ("moving_faces", pa.int32()),
        ("clip_path", pa.string()),
        ("cut_mode", pa.string()),
        ("caption", pa.string()),
        ("caption_status", pa.string()),
        *[(f"time_{stage}_s", pa.float64()) for stage in STAGES],
    ]
)

TIMING_COLUMNS = tuple(f"time_{stage}_s" for stage in STAGES)


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts from :func:`stages.curate_clip`) sorted by clip_id -> a table with SCHEMA."""
    rows = sorted(rows, key=lambda r: r["clip_id"])
    columns = {name: [r.get(name) for r in rows] for name in SCHEMA.names}
    return pa.table(columns, schema=SCHEMA)


def write_manifest(rows: list[dict], path: str | Path) -> pa.Table:
    """Write the manifest atomically (temporary file, then rename); returns the table."""
    path = Path(path)
    table = rows_to_table(rows)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return table


def read_manifest(path: str | Path) -> pa.Table:
    return pq.read_table(path, schema=SCHEMA)
