"""Where the weight files of a run live: the released file names (SPEC §2) and one clear error.

A weight folder (``--weights DIR`` or ``$FANTASY_PORTRAIT_WEIGHTS``) holds the Wan2.1 I2V files in
the original layout, either directly or in a sub-folder named ``Wan2.1-I2V-14B-720P`` /
``Wan2.1-I2V-14B-480P`` (as downloaded), plus the FantasyPortrait files (``fantasyportrait_model``
and ``pd_fpg.pth``) in the folder itself or beside the Wan files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError

WEIGHTS_ENV = "FANTASY_PORTRAIT_WEIGHTS"

WAN_CONFIG = "config.json"
WAN_SINGLE = "diffusion_pytorch_model.safetensors"  # the same names as models.loading's (one DiT search)
WAN_INDEX = "diffusion_pytorch_model.safetensors.index.json"
VAE_FILE = "Wan2.1_VAE.pth"
CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
T5_TOKENIZER = "google/umt5-xxl"
PORTRAIT_FILES = ("fantasyportrait_model.safetensors", "fantasyportrait_model.ckpt")
MOTION_FILE = "pd_fpg.pth"
# Ours: the umT5 embedding of the empty prompt, so the default run never loads the 11 GB encoder.
EMPTY_PROMPT_FILE = "fantasy_portrait_empty_prompt.safetensors"

WAN_SUBFOLDERS = ("Wan2.1-I2V-14B-720P", "Wan2.1-I2V-14B-480P", "Wan2.1-I2V-14B", "wan")


@dataclass
class WeightFiles:
    """Resolved paths of every file a run may need. Optional ones are None when absent."""

    root: Path
    wan_dir: Path
    dit_files: list[Path]
    vae: Path | None
    clip: Path | None
    portrait: Path | None
    motion: Path | None
    empty_prompt: Path | None
    t5: Path | None
    t5_tokenizer: Path | None

    @property
    def has_text_encoder(self) -> bool:
        return self.t5 is not None and self.t5_tokenizer is not None

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "wan_dir": str(self.wan_dir),
            "dit": [str(p) for p in self.dit_files],
            "vae": str(self.vae) if self.vae else None,
            "clip": str(self.clip) if self.clip else None,
            "portrait": str(self.portrait) if self.portrait else None,
            "motion": str(self.motion) if self.motion else None,
            "empty_prompt": str(self.empty_prompt) if self.empty_prompt else None,
            "t5": str(self.t5) if self.t5 else None,
        }


def resolve_weights_dir(weights: str | os.PathLike | None) -> Path:
    """The weight folder from the argument, else from ``$FANTASY_PORTRAIT_WEIGHTS``; CheckpointError if neither."""
    if weights is None:
        weights = os.environ.get(WEIGHTS_ENV) or None
    if weights is None:
        raise CheckpointError(
            f"no weight folder given: pass --weights DIR or set {WEIGHTS_ENV} "
            "(`fantasy-portrait make-tiny-weights DIR` writes a tiny random one for trying the tool)"
        )
    path = Path(weights).expanduser()
    if not path.is_dir():
        raise CheckpointError(f"{path}: weight folder not found")
    return path


def find_wan_dir(root: Path) -> Path:
    if (root / WAN_CONFIG).is_file():
        return root
    for name in WAN_SUBFOLDERS:
        if (root / name / WAN_CONFIG).is_file():
            return root / name
    return root


def _dit_files(wan_dir: Path, missing: list[str]) -> list[Path]:
    from ..models.loading import dit_weight_files

    files, absent = dit_weight_files(wan_dir)
    missing.extend(absent)
    return files


RUN_PARTS = ("dit", "vae", "clip", "portrait", "motion")  # what ``animate`` needs


def find_weight_files(
    weights: str | os.PathLike | None,
    *,
    need_text_encoder: bool = False,
    portrait: str | os.PathLike | None = None,
    motion: str | os.PathLike | None = None,
    require: tuple[str, ...] = RUN_PARTS,
    need_text: bool = True,
) -> WeightFiles:
    """Resolve every file of a run, or raise one CheckpointError that lists exactly what is missing where.

    The one weight-folder search: every command finds its files here.
    need_text_encoder: a prompt or text guidance != 1 was asked for, so umT5 and its tokenizer are required.
    The empty-prompt cache is required only when umT5 is absent (otherwise it is computed on first use).
    portrait / motion: explicit paths of the FantasyPortrait checkpoint and ``pd_fpg.pth`` (instead of
    looking for them in the folder).
    require: which of ``RUN_PARTS`` must exist (the others are found when present, else None; e.g.
    ``("vae", "clip")`` for precompute). need_text: False when no text embedding is needed at all.
    """
    unknown = set(require) - set(RUN_PARTS)
    if unknown:
        raise ValueError(f"unknown weight parts {sorted(unknown)}; choose from {RUN_PARTS}")
    root = resolve_weights_dir(weights)
    wan_dir = find_wan_dir(root)
    missing: list[str] = []

    def need(part: str, folder_list: list[Path], names: tuple[str, ...]) -> Path | None:
        for folder in folder_list:
            for name in names:
                if (folder / name).is_file():
                    return folder / name
        if part in require:
            missing.append(str(folder_list[0] / names[0]))
        return None

    dit: list[Path] = []
    if "dit" in require:
        if not (wan_dir / WAN_CONFIG).is_file():
            missing.append(str(wan_dir / WAN_CONFIG))
        dit = _dit_files(wan_dir, missing)
    vae = need("vae", [wan_dir], (VAE_FILE,))
    clip = need("clip", [wan_dir], (CLIP_FILE,))
    portrait_dirs = [root] if root == wan_dir else [root, wan_dir]
    if portrait is None:
        portrait = need("portrait", portrait_dirs, PORTRAIT_FILES)
    elif not Path(portrait).is_file():
        missing.append(str(portrait))
    if motion is None:
        motion = need("motion", portrait_dirs, (MOTION_FILE,))
    elif not Path(motion).is_file():
        missing.append(str(motion))
    t5 = wan_dir / T5_FILE if (wan_dir / T5_FILE).is_file() else None
    tok = wan_dir / T5_TOKENIZER if (wan_dir / T5_TOKENIZER).is_dir() else None
    cache = wan_dir / EMPTY_PROMPT_FILE if (wan_dir / EMPTY_PROMPT_FILE).is_file() else None
    if need_text_encoder or (need_text and cache is None):
        if t5 is None:
            missing.append(
                str(wan_dir / T5_FILE) + ("" if need_text_encoder else f" (or {EMPTY_PROMPT_FILE})")
            )
        if tok is None:
            missing.append(str(wan_dir / T5_TOKENIZER) + "/")
    if missing:
        raise CheckpointError(f"weight files missing: {', '.join(missing)}")
    as_path = lambda p: Path(p) if p is not None else None  # noqa: E731
    return WeightFiles(root, wan_dir, dit, vae, clip, as_path(portrait), as_path(motion), cache, t5, tok)
