"""Training configuration: one YAML file, read into dataclasses (the same names as the file's keys).

Relative paths in the file are relative to the file's folder. Every key has a default, so a config
can be as short as ``data: {root: ...}`` plus ``train: {output_dir: ...}``; see configs/*.yaml.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .objective import ObjectiveConfig


@dataclass
class ModelSection:
    preset: str = "tiny"  # sizes of a randomly initialised model when `wan` is not given
    wan: str | None = None  # Wan2.1 I2V folder (original or diffusers layout); frozen base
    portrait_init: str | None = None  # FantasyPortrait checkpoint to start the motion parts from
    init_seed: int = 0  # seed of the random initialisation (preset models, new encoder)
    base_dtype: str = "float32"  # storage type of the frozen base ("bfloat16" on GPUs)
    lora_rank: int = 0  # > 0 adds LoRA adapters (peft) to the base's attention projections
    lora_alpha: float | None = None  # default: rank
    lora_targets: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    # Train the whole DiT, not just the motion parts: only for worlds with no pretrained base (the
    # synthetic demo model); the released recipe keeps the base frozen.
    train_base: bool = False
    # False trains without the face masks in motion attention (every video token sees every face's
    # motion): the paper's ablation. The released model is trained masked.
    masked_motion: bool = True


@dataclass
class DataSection:
    root: str = ""  # precomputed set (folder with index.json)
    micro_batch: int = 1  # samples per process per forward pass
    num_workers: int = 0
    text_len: int | None = None  # default: the set's text_len (512)
    val_root: str | None = None  # optional precomputed validation set (default: the training set)


@dataclass
class OptimSection:
    lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    max_grad_norm: float | None = 1.0
    grad_accum: int = 1


@dataclass
class TrainSection:
    output_dir: str = "runs/train"
    max_steps: int = 1000  # optimizer steps
    seed: int = 0
    mixed_precision: str = "no"  # "no" or "bf16" (autocast; trainable weights stay float32)
    gradient_checkpointing: bool = False
    ema_decay: float | None = None  # e.g. 0.999; the exported checkpoint then holds the EMA weights
    log_every: int = 1
    save_every: int = 500
    eval_every: int = 0  # > 0: fixed-draw validation loss every this many steps (val_losses.jsonl)
    eval_samples: int = 8  # first samples of the validation set used for it
    keep_last: int = 2
    resume: str = "auto"  # "auto" (latest complete checkpoint in output_dir), "never", or a path
    cpu: bool = False  # force CPU even where an accelerator is present
    progress: bool = True


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(
        cls, data: dict, base_dir: str | os.PathLike | None = None, source: str = "config"
    ) -> TrainConfig:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InputError(f"{source}: expected a mapping of sections, got {_kind(data)}")
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = set(data) - set(sections)
        if unknown:
            raise InputError(
                f"{source}: unknown section(s) {sorted(map(str, unknown))}; expected {sorted(sections)}"
            )
        kwargs = {}
        for f in dataclasses.fields(cls):
            kind = f.default_factory
            raw = data.get(f.name)
            if raw is None:
                raw = {}
            if not isinstance(raw, dict):
                raise InputError(
                    f"{source}: section '{f.name}' must be a mapping of keys (key: value), got {_kind(raw)}"
                )
            known = {g.name for g in dataclasses.fields(kind)}
            bad = set(raw) - known
            if bad:
                raise InputError(f"{source}: unknown key(s) {sorted(map(str, bad))} in section '{f.name}'")
            types = {g.name: g.type for g in dataclasses.fields(kind)}
            values = {
                key: _coerce(value, types[key], f"{source}: {f.name}.{key}") for key, value in raw.items()
            }
            kwargs[f.name] = kind(**values)
        cfg = cls(**kwargs)
        cfg.optim.betas = tuple(cfg.optim.betas)
        if base_dir is not None:
            base = Path(base_dir)

            def resolve(p):
                return None if p in (None, "") else str((base / Path(p).expanduser()).resolve())

            cfg.model.wan = resolve(cfg.model.wan)
            cfg.model.portrait_init = resolve(cfg.model.portrait_init)
            cfg.data.root = resolve(cfg.data.root) or ""
            cfg.data.val_root = resolve(cfg.data.val_root)
            cfg.train.output_dir = resolve(cfg.train.output_dir)
            if cfg.train.resume not in ("auto", "never"):
                cfg.train.resume = resolve(cfg.train.resume)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "config") -> None:
        problems = []
        if not self.data.root:
            problems.append("data.root (the precomputed set) is required")
        if self.data.micro_batch < 1 or self.optim.grad_accum < 1:
            problems.append("data.micro_batch and optim.grad_accum must be >= 1")
        if self.train.max_steps < 1:
            problems.append("train.max_steps must be >= 1")
        if self.train.mixed_precision not in ("no", "bf16", "fp16"):
            problems.append("train.mixed_precision must be 'no', 'bf16' or 'fp16'")
        if self.model.base_dtype not in ("float32", "bfloat16", "float16"):
            problems.append("model.base_dtype must be float32, bfloat16 or float16")
        for name in ("drop_image", "drop_motion", "drop_prompt"):
            if not 0.0 <= getattr(self.objective, name) <= 1.0:
                problems.append(f"objective.{name} must be in [0, 1]")
        if self.objective.logit_std <= 0:
            problems.append("objective.logit_std must be > 0")
        if self.train.ema_decay is not None and not 0.0 < self.train.ema_decay < 1.0:
            problems.append("train.ema_decay must be in (0, 1)")
        if problems:
            raise InputError(f"{source}: " + "; ".join(problems))


def _kind(value) -> str:
    if value is None:
        return "nothing"
    names = {
        dict: "a mapping",
        list: "a list",
        str: "text",
        bool: "true/false",
        int: "a number",
        float: "a number",
    }
    return names.get(type(value), type(value).__name__)


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        number = float(text)
        if not number.is_integer():
            raise
        return int(number)


def _coerce(value, annotation, where: str):
    """Check a config value against its field's type (the annotation text, e.g. ``float | None``) and
    convert what is unambiguous: YAML reads 2e-3 as text, so numbers given as text are numbers; an int
    for a float; a whole float (1e3) for an int; numbers for text (paths such as 2024)."""
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    kinds = [k.strip() for k in text.split("|")]
    if value is None:
        if "None" in kinds:
            return None
        raise InputError(f"{where}: a value is required")
    for kind in kinds:
        if kind == "None":
            continue
        if kind == "bool":
            if isinstance(value, bool):
                return value
            continue
        if kind in ("int", "float"):
            if isinstance(value, bool):
                continue
            if isinstance(value, str):
                try:
                    value = float(value) if kind == "float" else _whole(value)
                except ValueError:
                    continue
            if kind == "float" and isinstance(value, (int, float)):
                return float(value)
            if kind == "int" and isinstance(value, int):
                return value
            if kind == "int" and isinstance(value, float) and value.is_integer():
                return int(value)
            continue
        if kind == "str":
            if isinstance(value, str):
                return value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            continue
        if kind.startswith("list["):
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return list(value)
            continue
        if kind.startswith("tuple["):
            size = kind.count(",") + 1
            if isinstance(value, (list, tuple)) and len(value) == size:
                try:
                    return tuple(_coerce(v, "float", where) for v in value)
                except InputError:
                    continue
            continue
    wanted = {
        "bool": "true or false",
        "int": "a whole number",
        "float": "a number",
        "str": "text",
        "None": "nothing (null)",
    }
    expected = " or ".join(
        wanted.get(k, "a list of text" if k.startswith("list[") else "a list of numbers") for k in kinds
    )
    raise InputError(f"{where}: expected {expected}, got {_kind(value)} {value!r}"[:300])


def _yaml_error(exc) -> str:
    """One line for a YAML error: what is wrong and where (line, column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def read_yaml(path: str | os.PathLike, what: str = "file"):
    """A YAML file's content, or an InputError in one line (missing, not UTF-8, not valid YAML)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found" if not path.is_dir() else f"{path}: is a folder")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} at position {exc.start})"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {_yaml_error(exc)}") from None


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML training config; ``overrides`` are ``section.key=value`` strings (YAML values)."""
    import yaml

    path = Path(path)
    data = read_yaml(path, "training config")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: expected a mapping of sections (model:, data:, train: ...), got {_kind(data)}"
        )
    for item in overrides or []:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not section or not name:
            raise InputError(f"--set {item!r} must look like section.key=value")
        if data.get(section) is None:
            data[section] = {}
        if not isinstance(data[section], dict):
            raise InputError(
                f"{path}: section '{section}' must be a mapping of keys, got {_kind(data[section])}"
            )
        try:
            data[section][name] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise InputError(f"--set {item!r}: not a valid YAML value: {_yaml_error(exc)}") from None
    return TrainConfig.from_dict(data, base_dir=path.parent, source=str(path))
