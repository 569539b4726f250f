"""Every inference setting in one place: :class:`AnimationSettings`.

The CLI (``animate``), the Python API (``FantasyPortraitPipeline.__call__``) and any front end (an
app generating its controls) read the same fields, defaults, help texts and bounds from here.

Adding a setting is a one-place change: add one field with :func:`option` (default, flag, help,
group, bounds/choices) to :class:`AnimationSettings`. The CLI flag, ``validate()``, ``to_dict()``
and :func:`describe` follow from the metadata; the pipeline reads ``settings.<name>``.

Metadata keys (all optional except ``help``): ``flag`` (CLI flag; None = Python only), ``help``,
``group`` (CLI/app section), ``type`` (the CLI's value type), ``choices``, ``min``, ``max``
(inclusive bounds, checked by ``validate``), ``invert`` (a boolean shown as a negative switch, e.g.
``--no-progress`` sets ``progress=False``), ``parse`` (CLI text -> value, e.g. ``--face-boxes``),
``metavar``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

MAX_IMAGE_PIXELS = 40_000_000
DEFAULT_FPS = 25.0
MEMORY_MODES = ("auto", "gpu", "model-offload", "group-offload", "sequential")  # sequential = group-offload
CACHE_KINDS = ("none", "teacache", "fbc", "magcache", "taylorseer")  # pipeline.caching
PRECISIONS = ("auto", "bf16", "fp8")
ATTENTION_BACKENDS = ("native", "flash", "sage")
PRESET_FIELDS = ("num_steps", "motion_guidance")  # what a sampling preset (--preset) sets


def option(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    group: str = "sampling",
    type: Callable | None = None,
    choices: Iterable | None = None,
    min: float | None = None,
    max: float | None = None,
    invert: bool = False,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    append: bool = False,
) -> Any:
    """A settings field: its default plus the metadata the CLI, ``validate`` and front ends read."""
    meta = dict(
        help=help,
        flag=flag,
        group=group,
        type=type,
        choices=tuple(choices) if choices is not None else None,
        min=min,
        max=max,
        invert=invert,
        parse=parse,
        metavar=metavar,
        append=append,
    )
    return field(default=default, metadata=meta)


def _parse_face_boxes(text: str):
    from ..faces.portrait import parse_face_boxes

    return parse_face_boxes(text)


def _window(value):
    return value or None


def _parse_sigmas(text: str) -> tuple[float, ...]:
    from .schedule import check_sigmas

    try:
        values = tuple(float(t) for t in text.split(","))
        check_sigmas(values)
        return values
    except ValueError as exc:
        raise InputError(f"--sigmas {text!r}: {exc}") from exc


def preset_values(name: str) -> dict:
    """The fields a sampling preset sets (``PRESET_FIELDS``)."""
    from .schedule import SAMPLING_PRESETS

    if name not in SAMPLING_PRESETS:
        raise InputError(f"--preset must be one of {', '.join(SAMPLING_PRESETS)}, got {name!r}")
    p = SAMPLING_PRESETS[name]
    return {"num_steps": p.num_steps, "motion_guidance": p.motion_guidance}


def _with(f, **extra):
    """A settings field with extra metadata (``append``: repeatable flag; ``switch``: on/off flag)."""
    f.metadata = {**f.metadata, **extra}
    return f


MOTION_CONTROLS_HELP = " (see docs/controls.md; faces are numbered from 0, left to right)"


@dataclass
class AnimationSettings:
    """What one animation run does (everything ``FantasyPortraitPipeline.__call__`` takes)."""

    # --- input ------------------------------------------------------------------------------------
    mapping: str | None = option(
        None,
        "driving face -> portrait face pairs, e.g. 0:1,1:0; D:- leaves driving face D unused (default: in "
        "order; the face counts must then agree)",
        flag="--map",
        group="faces",
        type=str,
        metavar="D:P,...",
    )
    face_boxes: Any = option(
        None,
        "portrait face boxes by hand, 'x1,y1,x2,y2;x1,y1,x2,y2' in image pixels (for faces the detector "
        "misses: cartoons, animals); in Python an (N, 4) array",
        flag="--face-boxes",
        group="faces",
        type=str,
        parse=_parse_face_boxes,
    )
    max_frames: int | None = option(
        None,
        "use at most this many driving frames (after --fps resampling); the count used is the largest "
        "4k+1 not above it",
        flag="--max-frames",
        group="video",
        type=int,
        min=1,
    )
    max_size: int = option(
        720, "longer side of the output in pixels", flag="--max-size", group="video", type=int, min=16
    )
    fps: float | None = option(
        DEFAULT_FPS,
        "working and output frame rate; drivers are resampled to it, audio stays in sync "
        "(as the reference; 0 = the first driving video's own rate)",
        flag="--fps",
        group="video",
        type=float,
        min=0,
    )
    max_image_pixels: int = option(
        MAX_IMAGE_PIXELS, "refuse larger portraits", flag="--max-image-pixels", group="video", type=int, min=1
    )
    # --- sampling ---------------------------------------------------------------------------------
    num_steps: int = option(30, "denoising steps", flag="--steps", type=int, min=1)
    motion_guidance: float = option(4.0, "motion guidance scale", flag="--motion-guidance", type=float)
    text_guidance: float = option(
        1.0, "text guidance scale; != 1 loads umT5", flag="--text-guidance", type=float
    )
    prompt: str = option("", "text prompt (default empty: umT5 is not loaded)", flag="--prompt", type=str)
    negative_prompt: str = option(
        "", "negative prompt (used when --text-guidance != 1)", flag="--negative-prompt", type=str
    )
    seed: int = option(0, "noise seed; the same seed gives the same video", flag="--seed", type=int)
    # --- motion controls (fantasy_portrait.motion.controls) ------------------------------------------
    strength: Any = option(
        (),
        "how much of the driver's motion each part takes, [FACE:][PART=]S: 0 = the portrait's own, "
        "1 = the driver's; parts head, eye, emotion, mouth (lips); e.g. mouth=0.5 or 1:head=0; repeatable"
        + MOTION_CONTROLS_HELP,
        flag="--strength",
        group="motion controls",
        type=str,
        append=True,
        metavar="[FACE:][PART=]S",
    )
    animate: Any = option(
        (),
        "which parts move, [FACE:]PRESET: all, lips (only the mouth), expression (all but the head: "
        "keep the portrait's head), head, eyes; --strength overrides; repeatable" + MOTION_CONTROLS_HELP,
        flag="--animate",
        group="motion controls",
        type=str,
        append=True,
        metavar="[FACE:]PRESET",
    )
    relative: Any = option(
        "none",
        "relative motion, [FACE:]PARTS: the portrait keeps its own pose/expression and takes the driver's "
        "change from --relative-frame; head, eye, emotion, mouth, expression, all or none; repeatable"
        + MOTION_CONTROLS_HELP,
        flag="--relative",
        group="motion controls",
        type=str,
        append=True,
        metavar="[FACE:]PARTS",
    )
    relative_frame: int = option(
        0,
        "driving frame the driver's change is measured from (relative motion and --motion-multiplier)",
        flag="--relative-frame",
        group="motion controls",
        type=int,
        min=0,
    )
    motion_multiplier: Any = option(
        (),
        "scale the driver's change from --relative-frame, [FACE:][PART=]M (1 = as driven); repeatable"
        + MOTION_CONTROLS_HELP,
        flag="--motion-multiplier",
        group="motion controls",
        type=str,
        append=True,
        metavar="[FACE:][PART=]M",
    )
    motion_smoothing: Any = option(
        (),
        "smooth the motion features over time: Gaussian sigma in driving frames, [FACE:][PART=]SIGMA "
        "(0 = off); repeatable" + MOTION_CONTROLS_HELP,
        flag="--motion-smoothing",
        group="motion controls",
        type=str,
        append=True,
        metavar="[FACE:][PART=]SIGMA",
    )
    motion_steps: Any = option(
        "0:1",
        "fractions of the denoising steps that get motion, START:END (outside: motion scale 0)",
        flag="--motion-steps",
        group="motion controls",
        type=str,
        metavar="START:END",
    )
    # --- long clips and memory --------------------------------------------------------------------
    window_frames: int | None = option(
        81,
        "frames per temporal window for long clips (4k+1 >= 9; 0 = whole clip in one pass)",
        flag="--window-frames",
        group="memory",
        type=int,
        min=0,
        parse=_window,
    )
    overlap_frames: int = option(
        20, "frames shared by neighbouring windows", flag="--overlap-frames", group="memory", type=int, min=0
    )
    batch_branches: bool = option(
        True,
        "run the guidance branches one after the other instead of as one batch (less memory, slower)",
        flag="--sequential-branches",
        group="memory",
        invert=True,
    )
    memory_mode: str | None = option(
        None,
        "where models live on an accelerator: all on it, moved per stage, or DiT block by block "
        "(default: the pipeline's, auto = chosen from free memory; on the CPU this does not apply)",
        flag="--memory",
        group="memory",
        type=str,
        choices=MEMORY_MODES,
    )
    # --- speed and memory (docs/acceleration.md) ----------------------------------------------------
    preset: str | None = option(
        None,
        "sampling preset: quality (the reference: 30 steps, motion guidance 4) or fast (4 steps of the "
        "step-distilled schedule, for a distilled LoRA given with --lora); --steps / --motion-guidance "
        "given as well override it",
        flag="--preset",
        group="speed",
        type=str,
        choices=("quality", "fast"),
    )
    sigmas: tuple | None = option(
        None,
        "explicit noise levels, already shifted, decreasing, the final 0 implied (e.g. "
        "1,0.9375,0.8333,0.625); their count is the step count",
        flag="--sigmas",
        group="speed",
        type=str,
        parse=_parse_sigmas,
        metavar="S1,S2,...",
    )
    loras: tuple = _with(
        option(
            (),
            "LoRA to apply, FILE or FILE:SCALE (repeatable): LightX2V/ComfyUI (lora_down/up, diff, "
            "diff_b, diff_m) or diffusers/peft layout; fused into the weights",
            flag="--lora",
            group="speed",
            type=str,
            metavar="FILE[:SCALE]",
        ),
        append=True,
    )
    cache: str = option(
        "none",
        "feature cache skipping DiT work between steps: teacache, fbc (first-block), magcache, "
        "taylorseer, or none",
        flag="--cache",
        group="speed",
        type=str,
        choices=CACHE_KINDS,
    )
    cache_threshold: float | None = option(
        None,
        "cache threshold (taylorseer: its interval in steps); 0 never skips; default per cache "
        "(teacache 0.2, fbc 0.05, magcache 0.12, taylorseer 3)",
        flag="--cache-threshold",
        group="speed",
        type=float,
        min=0,
    )
    cache_ratios: str | None = option(
        None,
        "MagCache ratio file: read if it exists, else written by this run (calibration: nothing skipped)",
        flag="--cache-ratios",
        group="speed",
        type=str,
        metavar="FILE",
    )
    precision: str = option(
        "auto",
        "DiT weight storage: bf16, fp8 (e4m3 storage, compute in the model dtype; motion parts kept) "
        "or auto (as loaded; fp8 only when --vram needs it)",
        flag="--precision",
        group="speed",
        type=str,
        choices=PRECISIONS,
    )
    vram: float | None = option(
        None,
        "accelerator memory budget in GiB: the planner picks precision and offloading to fit it and "
        "prints its choice (default: from free memory)",
        flag="--vram",
        group="memory",
        type=float,
        min=0.01,
    )
    compile: bool = _with(
        option(
            False,
            "torch.compile the repeated DiT block (regional; the first step pays the compile time)",
            flag="--compile",
            group="speed",
        ),
        switch=True,
    )
    attention: str = option(
        "native",
        "attention backend through diffusers: native (torch SDPA), flash (flash-attn), sage (SageAttention)",
        flag="--attention",
        group="speed",
        type=str,
        choices=ATTENTION_BACKENDS,
    )
    parallel: str | None = option(
        None,
        "spread one clip over the GPUs of a torchrun launch: ulysses=N or ring=N (sequence parallel), "
        "both (ulysses=4,ring=2), and/or cfg=2 (guidance branches on separate GPUs); the product must be "
        "the process count (docs/scale.md)",
        flag="--parallel",
        group="speed",
        type=str,
        metavar="KIND=N,...",
    )
    # --- output -------------------------------------------------------------------------------------
    progress: bool = option(True, "no progress bars", flag="--no-progress", group="output", invert=True)

    # ------------------------------------------------------------------------------------- methods
    def __post_init__(self):
        # A preset fills the sampling fields still at their defaults; explicit values win (from_args and
        # replace() also let a value equal to the default win when it was given explicitly).
        if self.preset:
            defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in PRESET_FIELDS}
            for name, value in preset_values(self.preset).items():
                if getattr(self, name) == defaults[name]:
                    setattr(self, name, value)
        if self.loras is None:
            self.loras = ()
        elif isinstance(self.loras, (str, bytes, os.PathLike)):
            self.loras = (self.loras,)
        else:
            self.loras = tuple(self.loras)
        if self.sigmas is not None and not isinstance(self.sigmas, str):
            self.sigmas = tuple(float(v) for v in self.sigmas)

    def validate(self) -> AnimationSettings:
        """Check every field against its metadata; raise InputError naming the option. Returns self."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            name = meta.get("flag") or f.name
            if value is None:
                continue
            if meta.get("choices") and value not in meta["choices"]:
                raise InputError(f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}")
            if meta.get("min") is not None and value < meta["min"]:
                raise InputError(f"{name} must be >= {meta['min']:g}, got {value}")
            if meta.get("max") is not None and value > meta["max"]:
                raise InputError(f"{name} must be <= {meta['max']:g}, got {value}")
        if self.window_frames and (self.window_frames < 9 or (self.window_frames - 1) % 4):
            raise InputError(f"--window-frames must be 0 or 4k+1 >= 9, got {self.window_frames}")
        # Texts parsed later are checked now: a malformed --map or --face-boxes fails before any loading.
        from ..faces.portrait import parse_face_boxes, parse_mapping

        if isinstance(self.mapping, str) and self.mapping.strip():
            parse_mapping(self.mapping)
        if isinstance(self.face_boxes, str):
            parse_face_boxes(self.face_boxes)
        self.motion_controls()  # one-line InputError for a bad part, face number, value or range
        if isinstance(self.parallel, str):
            from ..parallel.spec import ParallelSpec

            ParallelSpec.parse(self.parallel)
        return self

    def motion_controls(self):
        """The run's :class:`~fantasy_portrait.motion.controls.MotionControls` (parsed from the motion
        control fields; face numbers are checked against the portrait by the pipeline)."""
        from ..motion.controls import MotionControls

        return MotionControls.create(
            strength=self.strength,
            animate=self.animate,
            relative=self.relative,
            relative_frame=self.relative_frame,
            multiplier=self.motion_multiplier,
            smoothing=self.motion_smoothing,
            motion_steps=self.motion_steps,
        )

    def replace(self, **overrides) -> AnimationSettings:
        """A copy with some fields changed (unknown names raise InputError)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InputError(f"unknown animation setting(s): {', '.join(unknown)}")
        if overrides.get("preset"):  # a new preset sets its fields, except those given here
            overrides = {**preset_values(overrides["preset"]), **overrides}
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        """JSON-ready values (arrays as lists)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.tolist() if hasattr(value, "tolist") else value
        return out

    # ------------------------------------------------------------------------------- CLI helpers
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, exclude: Iterable[str] = ()) -> None:
        """Add one flag per field with a ``flag`` (grouped by ``group``) to ``parser``."""
        groups: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            meta = f.metadata
            if not meta.get("flag") or f.name in exclude:
                continue
            group = groups.get(meta["group"])
            if group is None:
                group = groups[meta["group"]] = parser.add_argument_group(meta["group"])
            if meta.get("invert") or meta.get("switch"):
                group.add_argument(meta["flag"], dest=f.name, action="store_true", help=meta["help"])
                continue
            if meta.get("append"):  # repeatable: the values given, in order (none given: the default)
                group.add_argument(
                    meta["flag"],
                    dest=f.name,
                    action="append",
                    default=None,
                    metavar=meta.get("metavar"),
                    help=meta["help"],
                )
                continue
            default = f.default
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            text = meta["help"] + (f" (default {shown})" if isinstance(default, (int, float)) else "")
            group.add_argument(
                meta["flag"],
                dest=f.name,
                type=meta.get("type") or str,
                default=None,
                choices=meta.get("choices"),
                metavar=meta.get("metavar")
                or (None if meta.get("choices") else meta["flag"].lstrip("-").replace("-", "_").upper()),
                help=text,
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> AnimationSettings:
        """Settings from parsed arguments (flags not given keep the defaults), validated."""
        values = {}
        for f in dataclasses.fields(cls):
            meta = f.metadata
            if not meta.get("flag") or not hasattr(args, f.name):
                continue
            value = getattr(args, f.name)
            if meta.get("invert"):
                values[f.name] = not value
                continue
            if value is None:
                continue
            values[f.name] = value
        settings = cls(**values).validate()
        for name in PRESET_FIELDS:  # given explicitly: wins over --preset even when equal to the default
            if name in values:
                setattr(settings, name, values[name])
        for f in dataclasses.fields(cls):  # CLI text -> Python value after the bounds were checked
            parse = f.metadata.get("parse")
            if parse is not None and f.name in values:
                setattr(settings, f.name, parse(values[f.name]))
        return settings


def describe() -> list[dict]:
    """Every setting as a plain dict (name, default, help, flag, group, choices, bounds): what a front
    end needs to build its controls."""
    out = []
    for f in dataclasses.fields(AnimationSettings):
        meta = dict(f.metadata)
        meta.pop("parse", None)
        type_ = meta.pop("type", None)
        out.append(
            dict(
                name=f.name,
                default=f.default,
                type=type_.__name__ if type_ is not None else ("bool" if meta.get("invert") else str(f.type)),
                **meta,
            )
        )
    return out


def resolve(settings: AnimationSettings | None, overrides: dict) -> AnimationSettings:
    """The settings of one call: ``settings`` (or the defaults) with keyword overrides, validated."""
    base = settings if settings is not None else AnimationSettings()
    if not isinstance(base, AnimationSettings):
        raise InputError(f"settings must be an AnimationSettings, got {type(base).__name__}")
    return (base.replace(**overrides) if overrides else dataclasses.replace(base)).validate()
