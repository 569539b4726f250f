"""Benchmark manifests: which portraits are animated by which driving videos, and how they are scored.

A manifest is a JSON or TOML file (read with the standard library only)::

    {
      "name": "my-bench",
      "frames": 32,          # optional: first N frames of each driving video (default: all)
      "max_side": 512,       # optional: downscale inputs so the longer side is at most this
      "fps": 25,             # optional: resample driving videos to this rate (default: the video's own)
      "cases": [
        {"id": "self-jgz",  "mode": "self",  "video": "clips/jgz.mp4"},
        {"id": "self-pair", "mode": "self",  "video": "clips/two.mp4", "faces": 2,
         "max_side": 640},     # "frames" and "max_side" may be overridden per case
        {"id": "cross-man", "mode": "cross", "portrait": "img/man.jpg", "drivers": ["clips/d0.mp4"]},
        {"id": "cross-two", "mode": "cross", "portrait": "img/two.png", "drivers": ["d0.mp4", "d12.mp4"]}
      ]
    }

Self-reenactment ("self"): the video's first frame is the source portrait and the video itself is the
ground truth. Cross-reenactment ("cross"): a portrait driven by one video per face, faces taken from
left to right in the portrait. A case with more than one face belongs to the multi-face subset.
Relative paths are relative to the manifest's folder, or to "root" when the manifest gives one.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

MODES = ("self", "cross")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class BenchCase:
    """One benchmark case. ``video`` for self-reenactment; ``portrait`` + ``drivers`` for cross."""

    id: str
    mode: str
    video: Path | None = None
    portrait: Path | None = None
    drivers: list[Path] = field(default_factory=list)
    faces: int = 1
    frames: int | None = None  # per-case overrides of the manifest's settings
    max_side: int | None = None

    @property
    def subset(self) -> str:
        return "multi" if self.faces > 1 else "single"

    def inputs(self) -> list[Path]:
        """Every input file of the case."""
        return [self.video] if self.mode == "self" else [self.portrait, *self.drivers]

    def to_dict(self) -> dict:
        d = {"id": self.id, "mode": self.mode, "faces": self.faces}
        if self.mode == "self":
            d["video"] = str(self.video)
        else:
            d["portrait"] = str(self.portrait)
            d["drivers"] = [str(p) for p in self.drivers]
        for key in ("frames", "max_side"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d


@dataclass
class BenchManifest:
    """A parsed manifest with absolute input paths."""

    name: str
    cases: list[BenchCase]
    frames: int | None = None
    max_side: int | None = None
    fps: float | None = None
    path: Path | None = None

    def case(self, case_id: str) -> BenchCase:
        for c in self.cases:
            if c.id == case_id:
                return c
        raise InputError(f"manifest {self.name!r} has no case {case_id!r}")

    def to_dict(self) -> dict:
        d = {"name": self.name, "cases": [c.to_dict() for c in self.cases]}
        for key in ("frames", "max_side", "fps"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    def settings(self, case: BenchCase | None = None) -> dict:
        """The preparation settings, with ``case``'s overrides (part of every cache key)."""
        out = {"frames": self.frames, "max_side": self.max_side, "fps": self.fps}
        if case is not None:
            for key in ("frames", "max_side"):
                if getattr(case, key) is not None:
                    out[key] = getattr(case, key)
        return out


def _positive(value, what: str, where: str, kind=int):
    if value is None:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {what} must be a positive number, got {value!r}") from None
    if number <= 0:
        raise InputError(f"{where}: {what} must be positive, got {value!r}")
    return number


def manifest_from_dict(
    data: dict, base: Path, where: str = "manifest", check_files: bool = True
) -> BenchManifest:
    """Validate a manifest mapping; relative paths resolve against ``base`` (or data["root"])."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: top level must be an object")
    if "root" in data and not isinstance(data["root"], str):
        raise InputError(f"{where}: 'root' must be a folder path")
    root = Path(data["root"]) if "root" in data else base
    if not root.is_absolute():
        root = (base / root).resolve()
    raw_cases = data.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise InputError(f"{where}: needs a non-empty list 'cases'")

    def resolve(p, label: str) -> Path:
        if not isinstance(p, str) or not p:
            raise InputError(f"{where}: {label} must be a file path")
        path = Path(os.path.expanduser(p))
        path = path if path.is_absolute() else root / path
        if check_files and not path.is_file():
            raise InputError(f"{where}: {label} {path} not found")
        return path

    cases, seen = [], set()
    for i, raw in enumerate(raw_cases):
        label = f"case {i}"
        if not isinstance(raw, dict):
            raise InputError(f"{where}: {label} must be an object")
        case_id = str(raw.get("id", ""))
        if not _ID_RE.match(case_id):
            raise InputError(
                f"{where}: {label} needs an 'id' of letters, digits, '.', '_' or '-', got {case_id!r}"
            )
        if case_id in seen:
            raise InputError(f"{where}: duplicate case id {case_id!r}")
        seen.add(case_id)
        mode = raw.get("mode")
        if mode not in MODES:
            raise InputError(f"{where}: case {case_id!r}: mode must be 'self' or 'cross', got {mode!r}")
        if mode == "self":
            if "video" not in raw:
                raise InputError(f"{where}: self-reenactment case {case_id!r} needs 'video'")
            faces = _positive(raw.get("faces", 1), "faces", f"{where}: case {case_id!r}")
            case = BenchCase(
                case_id, mode, video=resolve(raw["video"], f"case {case_id!r} video"), faces=faces
            )
        else:
            drivers = raw.get("drivers")
            if isinstance(drivers, str):
                drivers = [drivers]
            if "portrait" not in raw or not isinstance(drivers, list) or not drivers:
                raise InputError(
                    f"{where}: cross-reenactment case {case_id!r} needs 'portrait' and 'drivers'"
                )
            if "faces" in raw and _positive(raw["faces"], "faces", f"{where}: case {case_id!r}") != len(
                drivers
            ):
                raise InputError(
                    f"{where}: case {case_id!r} has {len(drivers)} drivers but faces={raw['faces']}"
                )
            case = BenchCase(
                case_id,
                mode,
                portrait=resolve(raw["portrait"], f"case {case_id!r} portrait"),
                drivers=[resolve(d, f"case {case_id!r} driver") for d in drivers],
                faces=len(drivers),
            )
        case.frames = _positive(raw.get("frames"), "frames", f"{where}: case {case_id!r}")
        case.max_side = _positive(raw.get("max_side"), "max_side", f"{where}: case {case_id!r}")
        cases.append(case)
    return BenchManifest(
        name=str(data.get("name", "bench")),
        cases=cases,
        frames=_positive(data.get("frames"), "frames", where),
        max_side=_positive(data.get("max_side"), "max_side", where),
        fps=_positive(data.get("fps"), "fps", where, kind=float),
    )


def load_manifest(path: str | os.PathLike, check_files: bool = True) -> BenchManifest:
    """Read a .json or .toml manifest. Raises InputError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 text file (byte at position {exc.start})") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'} ({exc})") from exc
    manifest = manifest_from_dict(data, path.resolve().parent, where=str(path), check_files=check_files)
    manifest.path = path.resolve()
    return manifest


def save_manifest(manifest: BenchManifest, path: str | os.PathLike) -> Path:
    """Write a manifest as JSON with absolute paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


# The built-in example over the project's shared test media (../shared/assets beside the checkout).
EXAMPLE_CASES = [
    {"id": "self-jgz", "mode": "self", "video": "fp_jgz.mp4"},
    {"id": "self-d0", "mode": "self", "video": "lp_d0.mp4"},
    # Faces in the two-person media are small: keep them at 512 px so the face mesh stays reliable.
    {"id": "self-two-person", "mode": "self", "video": "fp_two_person.mp4", "faces": 2, "max_side": 512},
    {"id": "cross-man-d0", "mode": "cross", "portrait": "fp_man.jpeg", "drivers": ["lp_d0.mp4"]},
    {"id": "cross-monalisa-d12", "mode": "cross", "portrait": "lp_s9.jpg", "drivers": ["lp_d12.mp4"]},
    {
        "id": "cross-two-person",
        "mode": "cross",
        "portrait": "fp_two_person.png",
        "drivers": ["lp_d0.mp4", "lp_d12.mp4"],
        "max_side": 512,
    },
]


def default_assets_dir() -> Path:
    """``../shared/assets`` beside the repository checkout (where the project's test media live)."""
    return Path(__file__).resolve().parents[3] / ".." / "shared" / "assets"


def example_manifest(
    assets_dir: str | os.PathLike | None = None, frames: int = 16, max_side: int = 256
) -> BenchManifest:
    """The small built-in example manifest (3 self and 3 cross cases, 2 of them multi-face)."""
    assets = Path(assets_dir) if assets_dir is not None else default_assets_dir()
    if not assets.is_dir():
        raise InputError(f"{assets}: assets folder not found (give the folder holding fp_jgz.mp4 etc.)")
    data = {"name": "example", "frames": frames, "max_side": max_side, "cases": EXAMPLE_CASES}
    return manifest_from_dict(data, assets.resolve(), where=f"example manifest over {assets}")


__all__ = [
    "BenchCase",
    "BenchManifest",
    "example_manifest",
    "load_manifest",
    "manifest_from_dict",
    "save_manifest",
]
