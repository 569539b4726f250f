"""Built-in examples of the app.

- The synthetic example: a case of the synthetic portrait world (``synthetic/cases.py``, the demo's
  case), rendered once into the app's work folder, animated by the tiny model shipped in the
  package. It runs on any CPU and comes with its exact ground truth (shown in the side-by-side).
- Examples from a folder (``--examples DIR`` or ``$FANTASY_PORTRAIT_EXAMPLES``), offered only when
  real weights are configured (the tiny model has learned nothing but the synthetic world). The
  folder holds portraits and driving videos; ``examples.json`` (a list of ``{"name", "portrait",
  "driving": [...], "settings": {...}}``, paths relative to the folder) says which go together, else
  every image is paired with the videos whose names start with the image's stem.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

SYNTHETIC = "synthetic"  # model key of the shipped tiny model
WEIGHTS = "weights"  # model key of the released weights (--weights)
EXAMPLES_ENV = "FANTASY_PORTRAIT_EXAMPLES"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")


@dataclass
class Example:
    """name: shown in the page; model: SYNTHETIC or WEIGHTS; settings: overrides of the settings'
    defaults; truth: a ground-truth video shown in the side-by-side (synthetic only)."""

    name: str
    model: str
    portrait: Path
    driving: list[Path]
    settings: dict = field(default_factory=dict)
    truth: Path | None = None


def synthetic_example(folder: str | os.PathLike, seed: int = 0) -> Example:
    """The demo's synthetic case ``seed`` as files in ``folder/synthetic_<seed>`` (rendered once)."""
    from ..synthetic.demo import DEFAULT_GUIDANCE, DEFAULT_STEPS, DEMO_SEED_BASE
    from ..synthetic.tiny_model import RECORD_PATH

    out = Path(folder) / f"synthetic_{seed}"
    portrait, truth = out / "portrait.png", out / "ground_truth.mp4"
    driving = [out / "driver_1.mp4", out / "driver_2.mp4"]
    meta = out / "example.json"
    if not meta.is_file():
        from ..io import save_image, write_video
        from ..synthetic.cases import FPS, make_case

        out.mkdir(parents=True, exist_ok=True)
        case = make_case(DEMO_SEED_BASE + seed)
        save_image(portrait, case.portrait)
        for path, drv in zip(driving, case.drivers):
            write_video(path, drv.frames, fps=FPS)
        write_video(truth, case.truth.frames, fps=FPS)
        h, w = case.portrait.shape[:2]
        meta.write_text(json.dumps({"size": max(h, w), "fps": FPS}))
    info = json.loads(meta.read_text())
    steps, guidance = DEFAULT_STEPS, DEFAULT_GUIDANCE
    if RECORD_PATH.is_file():
        record = json.loads(RECORD_PATH.read_text())
        steps, guidance = record.get("num_steps", steps), record.get("motion_guidance", guidance)
    settings = {
        "max_size": info["size"],
        "fps": info["fps"],
        "num_steps": steps,
        "motion_guidance": guidance,
        "seed": seed,
        "window_frames": 0,
    }
    return Example(
        f"synthetic two-character portrait (seed {seed}, tiny model, CPU)",
        SYNTHETIC,
        portrait,
        driving,
        settings,
        truth,
    )


def folder_examples(folder: str | os.PathLike) -> list[Example]:
    """The examples in ``folder`` (see the module docstring), for the released weights."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: examples folder not found")
    manifest = root / "examples.json"
    if manifest.is_file():
        try:
            items = json.loads(manifest.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{manifest}: not valid JSON ({exc})") from None
        out = []
        for k, item in enumerate(items):
            try:
                portrait = root / item["portrait"]
                driving = [root / d for d in item["driving"]]
            except (KeyError, TypeError):
                raise InputError(f"{manifest}: entry {k} needs 'portrait' and 'driving'") from None
            missing = [str(p) for p in [portrait, *driving] if not p.is_file()]
            if missing:
                raise InputError(f"{manifest}: entry {k}: file(s) not found: {', '.join(missing)}")
            name = item.get("name") or f"{portrait.name} + {', '.join(d.name for d in driving)}"
            out.append(Example(name, WEIGHTS, portrait, driving, dict(item.get("settings") or {})))
        return out
    files = sorted(p for p in root.iterdir() if p.is_file())
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    out = []
    for image in (p for p in files if p.suffix.lower() in IMAGE_SUFFIXES):
        driving = [v for v in videos if v.stem == image.stem or v.stem.startswith(image.stem + "_")]
        if driving:
            out.append(
                Example(f"{image.name} + {', '.join(d.name for d in driving)}", WEIGHTS, image, driving)
            )
    return out
