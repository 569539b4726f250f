"""Inputs of a curation run: a folder of videos, a manifest (CSV, JSONL, Parquet) of local paths, or
one video file.

A manifest needs a column named ``path`` (or ``video``, ``file``, ``url``); relative paths are taken
relative to the manifest's folder and ``file://`` URLs are accepted. Remote URLs are refused: the
curation reads videos already on disk (download them first, e.g. with the dataset's own tools).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
PATH_COLUMNS = ("path", "video", "file", "url")


@dataclass(frozen=True)
class VideoSource:
    """One input video. ``video_id`` is stable across runs (hash of the resolved path)."""

    path: str
    video_id: str


def _video_id(path: Path) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in path.stem)[:40]
    return f"{stem}-{digest}"


def _resolve(entry: str, base: Path, manifest: Path) -> Path:
    entry = entry.strip()
    if "://" in entry:
        url = urlparse(entry)
        if url.scheme != "file":
            raise InputError(
                f"{manifest}: {entry!r} is a remote URL; curation reads local files, download it first"
            )
        entry = unquote(url.path)
    path = Path(entry).expanduser()
    if not path.is_absolute():
        path = base / path
    return path.resolve()


def _manifest_entries(manifest: Path) -> list[str]:
    suffix = manifest.suffix.lower()
    try:
        if suffix == ".csv":
            with manifest.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
            columns = list(rows[0].keys()) if rows else []
        elif suffix in (".jsonl", ".ndjson"):
            rows = []
            for n, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError(f"line {n} is not a JSON object {{...}}")
                    rows.append(row)
            columns = list(rows[0].keys()) if rows else []
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(manifest)
            rows = table.to_pylist()
            columns = table.column_names
        else:
            raise InputError(f"{manifest}: unknown manifest type {suffix!r} (use .csv, .jsonl or .parquet)")
    except (OSError, ValueError) as exc:
        raise InputError(f"{manifest}: cannot read manifest ({exc})") from exc
    column = next((c for c in PATH_COLUMNS if c in columns), None)
    if column is None:
        raise InputError(f"{manifest}: no path column; expected one of {', '.join(PATH_COLUMNS)}")
    return [str(row[column]) for row in rows if row.get(column)]


def list_sources(input_path: str | Path) -> list[VideoSource]:
    """Videos to curate, sorted by path, duplicates removed.

    input_path: a folder (searched recursively for video files), a manifest file or one video.
    """
    root = Path(input_path).expanduser()
    if not root.exists():
        raise InputError(f"{root}: input does not exist")
    if root.is_dir():
        paths = sorted(p.resolve() for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        if not paths:
            raise InputError(f"{root}: folder has no video files ({', '.join(VIDEO_SUFFIXES)})")
    elif root.suffix.lower() in VIDEO_SUFFIXES:
        paths = [root.resolve()]
    else:
        paths = [_resolve(e, root.parent, root) for e in _manifest_entries(root)]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise InputError(f"{root}: {len(missing)} listed video(s) missing, first: {missing[0]}")
        if not paths:
            raise InputError(f"{root}: manifest lists no videos")
    unique = sorted(set(paths))
    return [VideoSource(path=str(p), video_id=_video_id(p)) for p in unique]
