"""Motion controls beyond the reference: per-part and per-face strengths, relative motion, a driving
multiplier, temporal smoothing of the motion features and the range of denoising steps with motion.

Everything except the step range acts on the PD-FGC features of one portrait face, (F, 554) =
head 6, eye 6, emotion 30, mouth 512 (SPEC §3), before the expression encoder turns them into
tokens, so the model only ever sees features of the kind it was trained on. Per face and part,
with D the driver's features, P the portrait face's own features (from its aligned crop) and K the
reference frame:

1. smoothing (Gaussian over time, sigma in driving frames; 0 = off): D <- smooth(D);
2. driving change: A + m * (D - D[K]), where A = P for a *relative* part (the portrait keeps its
   own starting pose/expression and takes the driver's changes) and A = D[K] otherwise (absolute:
   with m = 1 this is D itself, and D is passed through untouched);
3. strength s: P + s * (f - P): 0 = the portrait's own value, 1 = unchanged.

A part whose controls are all neutral (s = 1, m = 1, smoothing 0, absolute) is returned bit for bit
as it came in, so default controls leave the pipeline exactly as the reference. Where this choice
of place comes from (features, not tokens or guidance) is measured in ``benchmarks/controls.md``.

Text forms (the CLI's; the Python API takes the same strings, lists of them, numbers or dicts):

- strength / multiplier / smoothing: items ``[FACE:][PART=]VALUE`` separated by commas or given
  repeatedly: ``mouth=0.5`` (every face), ``1:head=0`` (face 1 only), ``0.8`` (every part). Faces are
  numbered from 0, left to right, as everywhere else. A face's own items beat items for every face,
  a part's own items beat items for every part, and among equals the later one wins.
- animate: ``[FACE:]PRESET``, one of :data:`PRESETS` (``lips``: only the mouth moves; ``expression``:
  everything but the head; ...); presets set strengths, which explicit strength items then override.
- relative: ``[FACE:]WORD`` with WORD a part, ``expression`` (eye, emotion, mouth), ``all`` or
  ``none``; items of one scope add up (``none`` clears), a face's own items replace the global ones.
- motion steps: ``START:END``, fractions of the denoising steps that get motion (0:1 = all).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ..errors import InputError

PARTS = ("head", "eye", "emotion", "mouth")  # PD-FGC order (SPEC §3)
PART_DIMS = {"head": 6, "eye": 6, "emotion": 30, "mouth": 512}
PART_SLICES: dict[str, slice] = {}
_start = 0
for _name in PARTS:
    PART_SLICES[_name] = slice(_start, _start + PART_DIMS[_name])
    _start += PART_DIMS[_name]
MOTION_DIM = _start
ALIASES = {
    "eyes": "eye",
    "lips": "mouth",
    "lip": "mouth",
    "pose": "head",
    "emo": "emotion",
    "expr": "emotion",
}
PRESETS: dict[str, dict[str, float]] = {
    "all": {},
    "lips": {"head": 0.0, "eye": 0.0, "emotion": 0.0, "mouth": 1.0},
    "expression": {"head": 0.0},
    "head": {"eye": 0.0, "emotion": 0.0, "mouth": 0.0},
    "eyes": {"head": 0.0, "emotion": 0.0, "mouth": 0.0},
}
RELATIVE_WORDS = {
    "none": (),
    "all": PARTS,
    "expression": ("eye", "emotion", "mouth"),
    **{p: (p,) for p in PARTS},
}
_ITEM = re.compile(r"^(?:(?P<face>[^:=]*):)?(?:(?P<part>[^:=]*)=)?(?P<value>[^:=]*)$")


# ------------------------------------------------------------------------------------------ parsing
@dataclass(frozen=True)
class PartValue:
    """One item of a strength / multiplier / smoothing option: face None = every face, part None =
    every part."""

    face: int | None
    part: str | None
    value: float

    def text(self) -> str:
        face = "" if self.face is None else f"{self.face}:"
        part = "" if self.part is None else f"{self.part}="
        return f"{face}{part}{self.value:g}"


@dataclass(frozen=True)
class FaceWord:
    """One item of the animate / relative options: face None = every face."""

    face: int | None
    word: str

    def text(self) -> str:
        return self.word if self.face is None else f"{self.face}:{self.word}"


def _items(spec, option: str) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, str):
        spec = [spec]
    out = []
    for s in spec:
        if not isinstance(s, str):
            raise InputError(f"{option}: expected text such as 'mouth=0.5', got {s!r}")
        out += [p.strip() for p in s.split(",") if p.strip()]
    return out


def _face(text: str | None, item: str, option: str) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise InputError(f"{option} {item!r}: face {text!r} is not a face number (0, 1, ... from the left)")
    face = int(text)
    if face < 0:
        raise InputError(
            f"{option} {item!r}: face {face} is negative (faces are numbered 0, 1, ... from the left)"
        )
    return face


def canonical_part(name: str, item: str = "", option: str = "part") -> str:
    """'lips' -> 'mouth', 'eyes' -> 'eye', ...; InputError for anything else."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in PARTS:
        raise InputError(
            f"{option} {item or name!r}: unknown part {name.strip()!r} (parts: {', '.join(PARTS)}; "
            f"also {', '.join(sorted(ALIASES))})"
        )
    return key


def parse_part_values(
    spec, option: str = "--strength", *, maximum: float | None = None
) -> tuple[PartValue, ...]:
    """Items ``[FACE:][PART=]VALUE`` -> PartValues (InputError naming the item for anything wrong).

    spec: text (comma-separated items), a list of texts or numbers, a number (every face and part),
    PartValues, or a dict {part: value} / {face: {part: value}} / {face: value}.
    """
    if spec is None:
        return ()
    if isinstance(spec, PartValue):
        spec = [spec]
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return (PartValue(None, None, _value(spec, str(spec), option, maximum)),)
    if isinstance(spec, Mapping):
        return _from_mapping(spec, option, maximum)
    out: list[PartValue] = []
    raw = [spec] if isinstance(spec, str) else list(spec)
    for entry in raw:
        if isinstance(entry, PartValue):
            part = None if entry.part is None else canonical_part(entry.part, entry.text(), option)
            face = _face(None if entry.face is None else str(entry.face), entry.text(), option)
            out.append(PartValue(face, part, _value(entry.value, entry.text(), option, maximum)))
            continue
        if isinstance(entry, (int, float)) and not isinstance(entry, bool):
            out.append(PartValue(None, None, _value(entry, str(entry), option, maximum)))
            continue
        for item in _items(entry, option):
            m = _ITEM.match(item)
            if m is not None and m["part"] is None and m["value"].strip().lower() in (*PARTS, *ALIASES):
                raise InputError(f"{option} {item!r}: give the part a value, e.g. {m['value'].strip()}=0.5")
            if m is None:
                raise InputError(
                    f"{option} {item!r}: expected [FACE:][PART=]VALUE, e.g. mouth=0.5 or 1:head=0"
                )
            face = _face(m["face"], item, option)
            part = None if m["part"] is None else canonical_part(m["part"], item, option)
            out.append(PartValue(face, part, _value(m["value"], item, option, maximum)))
    return tuple(out)


def _from_mapping(spec: Mapping, option: str, maximum) -> tuple[PartValue, ...]:
    out = []
    for key, val in spec.items():
        if isinstance(val, Mapping):
            face = _face(str(key), f"{key}: {dict(val)}", option)
            for part, v in val.items():
                item = f"{key}:{part}={v}"
                out.append(
                    PartValue(face, canonical_part(str(part), item, option), _value(v, item, option, maximum))
                )
        elif (isinstance(key, int) and not isinstance(key, bool)) or (
            isinstance(key, str) and key.strip().isdigit()
        ):
            item = f"{key}:{val}"
            out.append(PartValue(_face(str(key), item, option), None, _value(val, item, option, maximum)))
        else:
            item = f"{key}={val}"
            out.append(
                PartValue(None, canonical_part(str(key), item, option), _value(val, item, option, maximum))
            )
    return tuple(out)


def _value(text, item: str, option: str, maximum: float | None) -> float:
    try:
        value = float(text.strip() if isinstance(text, str) else text)
    except (TypeError, ValueError):
        raise InputError(f"{option} {item!r}: {str(text).strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{option} {item!r}: the value must be a finite number, got {value}")
    if value < 0:
        raise InputError(f"{option} {item!r}: the value must be >= 0, got {value:g}")
    if maximum is not None and value > maximum:
        raise InputError(f"{option} {item!r}: the value must be <= {maximum:g}, got {value:g}")
    return value


def parse_face_words(spec, option: str, words: Iterable[str]) -> tuple[FaceWord, ...]:
    """Items ``[FACE:]WORD`` (WORD from ``words``; part aliases allowed where words are parts)."""
    allowed = tuple(words)
    if spec is None:
        return ()
    if isinstance(spec, FaceWord):
        spec = [spec]
    raw = [spec] if isinstance(spec, str) else list(spec)
    out = []
    for entry in raw:
        if isinstance(entry, FaceWord):
            entry = entry.text()
        for item in _items(entry, option):
            face_text, _, word = item.rpartition(":") if ":" in item else (None, "", item)
            face = _face(face_text, item, option)
            key = word.strip().lower()
            if key not in allowed and ALIASES.get(key) in allowed:
                key = ALIASES[key]
            if key not in allowed:
                raise InputError(
                    f"{option} {item!r}: unknown value {word.strip()!r} (one of: {', '.join(allowed)})"
                )
            out.append(FaceWord(face, key))
    return tuple(out)


def parse_motion_steps(spec) -> tuple[float, float]:
    """``"START:END"`` (or a pair) -> (start, end) fractions of the denoising steps, 0 <= start < end <= 1."""
    if spec is None:
        return (0.0, 1.0)
    if isinstance(spec, str):
        parts = spec.replace(" ", "").split(":")
        if len(parts) != 2:
            raise InputError(f"--motion-steps {spec!r}: expected START:END fractions, e.g. 0:0.6")
        values = parts
    else:
        values = list(spec)
        if len(values) != 2:
            raise InputError(f"--motion-steps {spec!r}: expected two fractions (start, end)")
    try:
        start, end = (float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"--motion-steps {spec!r}: expected START:END fractions, e.g. 0:0.6") from None
    if not (0.0 <= start < end <= 1.0):
        raise InputError(f"--motion-steps {spec!r}: need 0 <= START < END <= 1, got {start:g}:{end:g}")
    return (start, end)


def motion_step_mask(num_steps: int, steps: tuple[float, float]) -> list[bool]:
    """Which of ``num_steps`` denoising steps get motion: step i when round(start*S) <= i < round(end*S)."""
    start, end = steps
    first, last = round(start * num_steps), round(end * num_steps)
    if last <= first:
        raise InputError(
            f"--motion-steps {start:g}:{end:g} selects none of the {num_steps} denoising steps; widen the range"
        )
    return [first <= i < last for i in range(num_steps)]


# -------------------------------------------------------------------------------------- resolution
@dataclass(frozen=True)
class FaceControls:
    """The controls of one portrait face, resolved (values per part, PARTS order)."""

    strength: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 1.0))
    multiplier: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 1.0))
    smoothing: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))
    relative: frozenset[str] = frozenset()
    relative_frame: int = 0

    def part_is_identity(self, part: str) -> bool:
        return (
            self.strength[part] == 1.0
            and self.multiplier[part] == 1.0
            and self.smoothing[part] == 0.0
            and part not in self.relative
        )

    @property
    def is_identity(self) -> bool:
        return all(self.part_is_identity(p) for p in PARTS)

    @property
    def needs_portrait(self) -> bool:
        """Whether the portrait face's own features are needed (strength != 1 or relative parts)."""
        return bool(self.relative) or any(self.strength[p] != 1.0 for p in PARTS)

    def to_dict(self) -> dict:
        return {
            "strength": dict(self.strength),
            "multiplier": dict(self.multiplier),
            "smoothing": dict(self.smoothing),
            "relative": [p for p in PARTS if p in self.relative],
            "relative_frame": self.relative_frame,
        }


def _resolve_values(items: Sequence[PartValue], face: int, default: float) -> dict[str, float]:
    out = dict.fromkeys(PARTS, default)
    # Least specific first: (every face, every part), (every face, part), (face, every part), (face, part);
    # a stable sort keeps the given order among equals, so the later item wins.
    ranked = sorted(
        (it for it in items if it.face is None or it.face == face),
        key=lambda it: (it.face is not None, it.part is not None),
    )
    for it in ranked:
        for p in PARTS if it.part is None else (it.part,):
            out[p] = it.value
    return out


def _scope(items: Sequence[FaceWord], face: int) -> list[FaceWord]:
    own = [it for it in items if it.face == face]
    return own if own else [it for it in items if it.face is None]


@dataclass(frozen=True)
class MotionControls:
    """All motion controls of a run (see the module docstring). The defaults change nothing.

    strength, multiplier, smoothing: PartValue items; animate, relative: FaceWord items;
    relative_frame: K, the driving frame the driver's change is measured from; motion_steps: the
    (start, end) fractions of the denoising steps that get motion. Build with :meth:`create` from
    text, numbers or dicts.
    """

    strength: tuple[PartValue, ...] = ()
    animate: tuple[FaceWord, ...] = ()
    relative: tuple[FaceWord, ...] = ()
    relative_frame: int = 0
    multiplier: tuple[PartValue, ...] = ()
    smoothing: tuple[PartValue, ...] = ()
    motion_steps: tuple[float, float] = (0.0, 1.0)

    @classmethod
    def create(
        cls,
        strength=None,
        animate=None,
        relative=None,
        relative_frame: int = 0,
        multiplier=None,
        smoothing=None,
        motion_steps=None,
    ) -> MotionControls:
        """Parse every option (InputError, one line naming the option and item, for a bad value)."""
        if isinstance(relative_frame, bool) or not isinstance(relative_frame, int):
            try:
                as_float = float(relative_frame)
            except (TypeError, ValueError):
                raise InputError(f"--relative-frame {relative_frame!r}: not a frame number") from None
            if not as_float.is_integer():
                raise InputError(f"--relative-frame {relative_frame!r}: not a whole frame number")
            relative_frame = int(as_float)
        if relative_frame < 0:
            raise InputError(f"--relative-frame {relative_frame}: must be >= 0 (frames are counted from 0)")
        return cls(
            strength=parse_part_values(strength, "--strength"),
            animate=parse_face_words(animate, "--animate", PRESETS),
            relative=parse_face_words(relative, "--relative", RELATIVE_WORDS),
            relative_frame=relative_frame,
            multiplier=parse_part_values(multiplier, "--motion-multiplier"),
            smoothing=parse_part_values(smoothing, "--motion-smoothing"),
            motion_steps=parse_motion_steps(motion_steps),
        )

    def for_face(self, face: int) -> FaceControls:
        strength = dict.fromkeys(PARTS, 1.0)
        presets = _scope(self.animate, face)
        if presets:
            strength.update(PRESETS[presets[-1].word])
        explicit = _resolve_values(self.strength, face, math.nan)
        strength.update({p: v for p, v in explicit.items() if not math.isnan(v)})
        relative: set[str] = set()
        for it in _scope(self.relative, face):
            if it.word == "none":
                relative.clear()
            relative.update(RELATIVE_WORDS[it.word])
        return FaceControls(
            strength=strength,
            multiplier=_resolve_values(self.multiplier, face, 1.0),
            smoothing=_resolve_values(self.smoothing, face, 0.0),
            relative=frozenset(relative),
            relative_frame=self.relative_frame,
        )

    @property
    def schedule_is_identity(self) -> bool:
        return tuple(self.motion_steps) == (0.0, 1.0)

    def is_identity(self, num_faces: int) -> bool:
        return self.schedule_is_identity and all(self.for_face(i).is_identity for i in range(num_faces))

    def check(self, num_faces: int, num_frames: int | None = None) -> None:
        """InputError for a face index not in the portrait or a reference frame beyond the clip."""
        for option, items in (
            ("--strength", self.strength),
            ("--animate", self.animate),
            ("--relative", self.relative),
            ("--motion-multiplier", self.multiplier),
            ("--motion-smoothing", self.smoothing),
        ):
            for it in items:
                if it.face is not None and it.face >= num_faces:
                    raise InputError(
                        f"{option} {it.text()!r}: face {it.face} is out of range: the portrait has {num_faces} "
                        f"face{'s' if num_faces != 1 else ''} (0-{num_faces - 1}, left to right)"
                    )
        if num_frames is not None and self.relative_frame >= num_frames:
            raise InputError(
                f"--relative-frame {self.relative_frame}: the clip has {num_frames} driving frames "
                f"(0-{num_frames - 1})"
            )

    def options(self) -> dict:
        """The options as given, in text form (for records and ``--json``)."""
        return {
            "strength": [it.text() for it in self.strength],
            "animate": [it.text() for it in self.animate],
            "relative": [it.text() for it in self.relative],
            "relative_frame": self.relative_frame,
            "motion_multiplier": [it.text() for it in self.multiplier],
            "motion_smoothing": [it.text() for it in self.smoothing],
            "motion_steps": list(self.motion_steps),
        }

    def to_dict(self, num_faces: int) -> dict:
        """Options as given plus what every face resolved to."""
        return {**self.options(), "faces": [self.for_face(i).to_dict() for i in range(num_faces)]}


# --------------------------------------------------------------------------------------- transforms
def gaussian_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Zero-phase Gaussian smoothing of (F, D) along time (sigma in frames; edges held)."""
    if sigma <= 0 or x.shape[0] < 2:
        return x
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(torch.float64)
    padded = torch.cat([x[:1].expand(radius, -1), x, x[-1:].expand(radius, -1)]).to(torch.float64)
    out = torch.nn.functional.conv1d(padded.T[:, None], kernel.view(1, 1, -1))[:, 0].T
    return out.to(x.dtype)


def apply_face_controls(
    driver: torch.Tensor, controls: FaceControls, portrait: torch.Tensor | None = None
) -> torch.Tensor:
    """One face's driving features (F, 554) under its controls -> (F, 554).

    portrait: the face's own features (554,) or (1, 554) from its portrait crop; needed when
    ``controls.needs_portrait``. Parts whose controls are neutral are copied bit for bit; when every
    part is neutral ``driver`` itself is returned.
    """
    if driver.ndim != 2 or driver.shape[1] != MOTION_DIM:
        raise ValueError(f"expected (F, {MOTION_DIM}) motion features, got {tuple(driver.shape)}")
    if controls.is_identity:
        return driver
    if controls.needs_portrait:
        if portrait is None:
            raise ValueError("these controls need the portrait face's own motion features")
        portrait = portrait.reshape(-1).to(driver.device, driver.dtype)
        if portrait.shape[0] != MOTION_DIM:
            raise ValueError(f"portrait features must have {MOTION_DIM} values, got {portrait.shape[0]}")
    k = controls.relative_frame
    if not 0 <= k < driver.shape[0]:
        raise InputError(
            f"--relative-frame {k}: the clip has {driver.shape[0]} driving frames (0-{driver.shape[0] - 1})"
        )
    out = driver.clone()
    for part in PARTS:
        if controls.part_is_identity(part):
            continue
        sl = PART_SLICES[part]
        f = gaussian_smooth(driver[:, sl], controls.smoothing[part])
        m = controls.multiplier[part]
        if part in controls.relative or m != 1.0:
            ref = f[k : k + 1]
            anchor = portrait[sl] if part in controls.relative else ref
            f = anchor + m * (f - ref)
        s = controls.strength[part]
        if s != 1.0:
            f = portrait[sl] + s * (f - portrait[sl])
        out[:, sl] = f
    return out


def apply_controls(
    motions: Sequence[torch.Tensor],
    controls: MotionControls | None,
    portraits: Sequence[torch.Tensor | None] | None = None,
) -> list[torch.Tensor]:
    """Every face's (F, 554) driving features under the run's controls (faces in portrait order).

    portraits: per face its own features (554,) or None (needed only for faces whose controls use them).
    Faces with neutral controls are returned as the same tensor objects.
    """
    motions = list(motions)
    if controls is None:
        return motions
    controls.check(len(motions), motions[0].shape[0] if motions else None)
    portraits = list(portraits) if portraits is not None else [None] * len(motions)
    if len(portraits) != len(motions):
        raise ValueError(f"{len(motions)} faces but {len(portraits)} portrait features")
    return [
        apply_face_controls(m, controls.for_face(i), p) for i, (m, p) in enumerate(zip(motions, portraits))
    ]


def portrait_features(image, portrait_faces: Sequence, motion_encoder, faces: Iterable[int]) -> list:
    """The own features (554,) of the portrait faces numbered in ``faces`` (None for the others), from
    each face's aligned crop of the portrait (five points from the detector), through ``motion_encoder``.

    A face whose box was given by hand has no five points: InputError naming it.
    """
    import numpy as np

    from ..faces.align import align_faces

    wanted = set(faces)
    out: list = []
    for i, face in enumerate(portrait_faces):
        if i not in wanted:
            out.append(None)
            continue
        if face.five_points is None:
            raise InputError(
                f"portrait face {i}: --strength / --animate / --relative need its own motion features, which "
                "need its five landmarks, but its box was given by --face-boxes; let the detector find it or "
                "leave this face's controls at their defaults"
            )
        crop = align_faces(np.asarray(image)[None], np.asarray(face.five_points, np.float64)[None])
        out.append(motion_encoder.encode(crop).as_tensor()[0].float())
    return out
