"""Parameters of the synthetic portrait world: who a character is and what it does in one frame.

Identity parameters are fixed per character; motion parameters change per frame and are grouped
like PD-FGC's four feature parts (head, eyes, emotion, mouth). Conventions (see docs/synthetic.md):

- Angles are degrees. ``yaw > 0`` turns the face towards the image's right (the nose moves right),
  ``pitch > 0`` tilts it up (the nose moves up), ``roll > 0`` rotates it counter-clockwise as seen
  in the image.
- ``tx``/``ty`` shift the head in units of its half-height (``ty > 0`` moves it down the image);
  ``scale`` multiplies its size.
- "Left" and "right" are the image's left and right, as everywhere in the project, so
  ``blink_left`` closes the eye nearer to the image's left edge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

# Per-frame motion vector layout, in PD-FGC part order: head, eye, emotion, mouth.
MOTION_NAMES: tuple[str, ...] = (
    "yaw",
    "pitch",
    "roll",
    "tx",
    "ty",
    "scale",
    "blink_left",
    "blink_right",
    "gaze_x",
    "gaze_y",
    "brow_raise",
    "brow_furrow",
    "smile",
    "squint",
    "mouth_open",
    "mouth_width",
    "mouth_pucker",
)
MOTION_DIM = len(MOTION_NAMES)
# The part each parameter belongs to (every parameter in exactly one): head = yaw, pitch, roll, tx,
# ty, scale; eye = blinks and gaze; emotion = brow raise and furrow, smile, squint; mouth = opening,
# width, pucker. The part-disentangled motion encoder is trained on renders that change one part's
# slice at a time (motion_encoder.render_part_groups), every other part's features held still.
MOTION_PARTS: dict[str, slice] = {
    "head": slice(0, 6),
    "eye": slice(6, 10),
    "emotion": slice(10, 14),
    "mouth": slice(14, 17),
}
# Value ranges the renderer accepts and the performance generator stays inside.
MOTION_RANGES: dict[str, tuple[float, float]] = {
    "yaw": (-35.0, 35.0),
    "pitch": (-25.0, 25.0),
    "roll": (-25.0, 25.0),
    "tx": (-0.3, 0.3),
    "ty": (-0.3, 0.3),
    "scale": (0.8, 1.2),
    "blink_left": (0.0, 1.0),
    "blink_right": (0.0, 1.0),
    "gaze_x": (-1.0, 1.0),
    "gaze_y": (-1.0, 1.0),
    "brow_raise": (-1.0, 1.0),
    "brow_furrow": (0.0, 1.0),
    "smile": (-1.0, 1.0),
    "squint": (0.0, 1.0),
    "mouth_open": (0.0, 1.0),
    "mouth_width": (-1.0, 1.0),
    "mouth_pucker": (0.0, 1.0),
}
_LOW = np.array([MOTION_RANGES[n][0] for n in MOTION_NAMES], np.float32)
_HIGH = np.array([MOTION_RANGES[n][1] for n in MOTION_NAMES], np.float32)


def neutral_motion() -> np.ndarray:
    """(17,) float32: frontal, eyes open and centred, relaxed face, mouth closed, scale 1."""
    m = np.zeros(MOTION_DIM, np.float32)
    m[MOTION_NAMES.index("scale")] = 1.0
    return m


def clip_motion(motion: np.ndarray) -> np.ndarray:
    """Clip a (..., 17) motion array into MOTION_RANGES (returns float32)."""
    return np.clip(np.asarray(motion, np.float32), _LOW, _HIGH)


def normalize_motion(motion: np.ndarray) -> np.ndarray:
    """Map (..., 17) motion into [-1, 1] per parameter (for regression targets)."""
    return (2.0 * (np.asarray(motion, np.float32) - _LOW) / (_HIGH - _LOW) - 1.0).astype(np.float32)


def denormalize_motion(values: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize_motion`."""
    return ((np.asarray(values, np.float32) + 1.0) * 0.5 * (_HIGH - _LOW) + _LOW).astype(np.float32)


Color = tuple[float, float, float]  # RGB in [0, 1]

HAIR_STYLES = ("crop", "volume", "bob", "long")
GLASSES_STYLES = ("none", "round", "square")


@dataclass(frozen=True)
class Identity:
    """Everything that makes a character recognisable; lengths are in head half-heights."""

    face_width: float = 0.78  # ellipsoid x radius (y radius is 1)
    face_depth: float = 0.85  # ellipsoid z radius
    skin: Color = (0.87, 0.68, 0.55)
    hair_color: Color = (0.25, 0.16, 0.1)
    hair_style: int = 1  # index into HAIR_STYLES
    hairline: float = 0.55  # local y where the forehead hair starts
    eye_color: Color = (0.25, 0.4, 0.6)
    eye_spacing: float = 0.32  # half distance between eye centres
    eye_size: float = 0.15  # eye half width
    eye_height: float = 0.12  # local y of the eye centres
    nose_length: float = 0.17
    nose_size: float = 1.0
    mouth_size: float = 0.24  # mouth half width at rest
    lip_color: Color = (0.72, 0.36, 0.38)
    brow_thickness: float = 0.035
    glasses: int = 0  # index into GLASSES_STYLES
    glasses_color: Color = (0.1, 0.1, 0.12)
    clothes: Color = (0.2, 0.3, 0.55)
    background_top: Color = (0.75, 0.8, 0.85)
    background_bottom: Color = (0.45, 0.5, 0.6)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Identity:
        names = {f.name for f in fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
        return cls(**kwargs)


_SKINS = np.array(
    [
        (0.96, 0.8, 0.69),
        (0.9, 0.72, 0.6),
        (0.82, 0.62, 0.48),
        (0.7, 0.5, 0.36),
        (0.55, 0.38, 0.26),
        (0.4, 0.27, 0.18),
    ],
    np.float32,
)
_HAIRS = np.array(
    [
        (0.08, 0.06, 0.05),
        (0.25, 0.15, 0.08),
        (0.45, 0.3, 0.15),
        (0.8, 0.65, 0.35),
        (0.6, 0.25, 0.1),
        (0.7, 0.7, 0.72),
        (0.3, 0.3, 0.35),
    ],
    np.float32,
)
_EYES = np.array([(0.3, 0.2, 0.1), (0.2, 0.4, 0.65), (0.25, 0.5, 0.3), (0.45, 0.35, 0.2)], np.float32)


def _jitter(rng: np.random.Generator, color: np.ndarray, amount: float) -> Color:
    c = np.clip(color + rng.uniform(-amount, amount, 3), 0.0, 1.0)
    return tuple(float(v) for v in c)


def random_identity(rng: np.random.Generator | int) -> Identity:
    """Sample a character. ``rng`` may be a seed; the same seed gives the same identity."""
    rng = np.random.default_rng(rng)
    bg_base = rng.uniform(0.2, 0.9, 3)
    return Identity(
        face_width=float(rng.uniform(0.7, 0.84)),
        face_depth=float(rng.uniform(0.78, 0.92)),
        skin=_jitter(rng, _SKINS[rng.integers(len(_SKINS))], 0.04),
        hair_color=_jitter(rng, _HAIRS[rng.integers(len(_HAIRS))], 0.04),
        hair_style=int(rng.integers(len(HAIR_STYLES))),
        hairline=float(rng.uniform(0.45, 0.65)),
        eye_color=_jitter(rng, _EYES[rng.integers(len(_EYES))], 0.05),
        eye_spacing=float(rng.uniform(0.28, 0.36)),
        eye_size=float(rng.uniform(0.13, 0.17)),
        eye_height=float(rng.uniform(0.08, 0.18)),
        nose_length=float(rng.uniform(0.13, 0.21)),
        nose_size=float(rng.uniform(0.8, 1.25)),
        mouth_size=float(rng.uniform(0.19, 0.27)),
        lip_color=_jitter(rng, np.array((0.7, 0.35, 0.37), np.float32), 0.08),
        brow_thickness=float(rng.uniform(0.025, 0.045)),
        glasses=int(rng.choice(3, p=(0.7, 0.15, 0.15))),
        glasses_color=_jitter(rng, np.array((0.15, 0.12, 0.12), np.float32), 0.1),
        clothes=_jitter(rng, rng.uniform(0.1, 0.9, 3).astype(np.float32), 0.0),
        background_top=_jitter(rng, bg_base, 0.1),
        background_bottom=_jitter(rng, bg_base * 0.7, 0.1),
    )
