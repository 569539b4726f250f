"""Batch jobs: one JSON object per line of a ``.jsonl`` file, all checked before any work starts.

A line::

    {"id": "anna-01", "portrait": "anna.png", "driving": ["left.mp4", "right.mp4"],
     "output": "out/anna-01.mp4", "seed": 3, "num_steps": 30, "max_frames": 81}

``portrait``, ``driving`` (a path or a list of paths) and ``output`` (.mp4) are required; ``id`` is
optional (default: the output's file name without .mp4) and must be unique. Every other key is a
field of :class:`~fantasy_portrait.pipeline.settings.AnimationSettings` (the ``animate`` options
under their Python names), checked by the same rules as the command line. Relative paths are
relative to the jobs file's folder. Blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FantasyPortraitError, InputError

JOB_KEYS = ("id", "portrait", "driving", "output")
MAX_REPORTED = 5  # invalid lines named in the error message


@dataclass
class Job:
    """One animation: inputs, output and settings (the JSON values of the line, already checked)."""

    id: str
    portrait: Path
    driving: list[Path]
    output: Path
    settings: dict = field(default_factory=dict)
    line: int = 0

    def animation_settings(self):
        """The line's settings as an :class:`AnimationSettings` (validated, CLI texts parsed)."""
        return settings_from_dict(self.settings)

    def key(self, pipeline: str = "") -> str:
        """Changes whenever the output would: inputs (path, size, modification time), output path,
        settings and the pipeline's signature (weights, dtype)."""
        inputs = [_file_stamp(p) for p in (self.portrait, *self.driving)]
        data = [inputs, str(self.output), self.settings, pipeline]
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "portrait": str(self.portrait),
            "driving": [str(p) for p in self.driving],
            "output": str(self.output),
            "settings": dict(self.settings),
            "line": self.line,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        return cls(
            id=data["id"],
            portrait=Path(data["portrait"]),
            driving=[Path(p) for p in data["driving"]],
            output=Path(data["output"]),
            settings=dict(data.get("settings") or {}),
            line=int(data.get("line", 0)),
        )


def _file_stamp(path: Path) -> list:
    try:
        st = path.stat()
        return [str(path), st.st_size, st.st_mtime_ns]
    except OSError:
        return [str(path), None, None]


def settings_from_dict(values: dict):
    """An :class:`AnimationSettings` from JSON values (the Python API's values: ``pipe(..., **values)``):
    unknown names, wrong JSON types and out-of-range values raise InputError naming the field; texts
    the command line would parse (``face_boxes``, ``sigmas``) are parsed, and ``window_frames`` 0 means
    the whole clip as on the command line."""
    import numpy as np

    from ..pipeline.settings import AnimationSettings, resolve

    fields = {f.name: f for f in dataclasses.fields(AnimationSettings)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InputError(f"unknown setting(s) {', '.join(unknown)}")
    typed = {name: _typed(name, value, fields[name]) for name, value in values.items()}
    settings = resolve(None, typed)
    for name, value in typed.items():
        meta = fields[name].metadata
        parse = meta.get("parse")
        if value is None:
            continue
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            setattr(
                settings, name, np.asarray(value, dtype=np.float32)
            )  # e.g. face boxes as [[x1, y1, x2, y2]]
        elif parse is not None and (isinstance(value, str) or meta.get("type") is not str):
            setattr(settings, name, parse(value))
    return settings


def _typed(name: str, value, f: dataclasses.Field):
    """``value`` checked against the field's JSON type (JSON has no int/float distinction for whole floats)."""
    meta = f.metadata
    if value is None:
        return None
    kind = meta.get("type")
    if meta.get("invert") or meta.get("switch") or isinstance(f.default, bool):
        if not isinstance(value, bool):
            raise InputError(f"{name} must be true or false, got {value!r}")
        return value
    if meta.get("append"):  # repeatable on the command line: one text or a list of texts
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise InputError(f"{name} must be text or a list of texts, got {value!r}")
        return tuple(items)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise InputError(f"{name} must be a whole number, got {value!r}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{name} must be a number, got {value!r}")
        return float(value)
    if kind is str and not isinstance(value, (str, list)):
        raise InputError(f"{name} must be text, got {value!r}")
    return value


def parse_job(data, base: Path, line: int = 0) -> Job:
    """One job from a decoded JSON line (paths relative to ``base``); InputError says what is wrong."""
    if not isinstance(data, dict):
        raise InputError("a job must be a JSON object")
    missing = [k for k in ("portrait", "driving", "output") if not data.get(k)]
    if missing:
        raise InputError(f"missing {', '.join(missing)}")

    def path(value, what: str) -> Path:
        if not isinstance(value, str):
            raise InputError(f"{what} must be a path (text), got {value!r}")
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else base / p

    portrait = path(data["portrait"], "portrait")
    driving_values = data["driving"] if isinstance(data["driving"], list) else [data["driving"]]
    driving = [path(v, "driving") for v in driving_values]
    output = path(data["output"], "output")
    for p in (portrait, *driving):
        if not p.is_file():
            raise InputError(f"{p}: file not found")
    if output.suffix.lower() != ".mp4":
        raise InputError(f"{output}: output must be an .mp4 file")
    job_id = data.get("id", output.stem)
    if not isinstance(job_id, str) or not job_id.strip():
        raise InputError(f"id must be non-empty text, got {job_id!r}")
    settings = {k: v for k, v in data.items() if k not in JOB_KEYS}
    if settings.get("parallel"):
        raise InputError(
            "parallel is not a batch setting: each worker has one GPU (one clip over several: torchrun)"
        )
    settings_from_dict(settings)  # checked now, before any work
    return Job(job_id.strip(), portrait, driving, output, settings, line)


def load_jobs(path: str | os.PathLike) -> list[Job]:
    """Every job of a JSONL file, checked; one InputError lists the invalid lines (nothing runs)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the jobs file ({exc.strerror or exc})") from exc
    base = path.resolve().parent
    jobs, problems = [], []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            jobs.append(parse_job(json.loads(raw), base, number))
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON ({exc.msg})")
        except FantasyPortraitError as exc:
            problems.append(f"line {number}: {exc}")
    seen: dict[str, int] = {}
    outputs: dict[Path, int] = {}
    for job in jobs:
        if job.id in seen:
            problems.append(f"line {job.line}: id {job.id!r} already used on line {seen[job.id]}")
        seen.setdefault(job.id, job.line)
        out = job.output.resolve()
        if out in outputs:
            problems.append(f"line {job.line}: output {job.output} already written by line {outputs[out]}")
        outputs.setdefault(out, job.line)
    if problems:
        more = f" (and {len(problems) - MAX_REPORTED} more)" if len(problems) > MAX_REPORTED else ""
        raise InputError(
            f"{path}: {len(problems)} invalid job line(s): {'; '.join(problems[:MAX_REPORTED])}{more}"
        )
    if not jobs:
        raise InputError(f"{path}: no jobs")
    return jobs
