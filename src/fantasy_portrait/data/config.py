"""Settings of a curation run: one place for every default and threshold (SPEC §10).

The defaults select Multi-Expr style clips: single shots of 2-10 s showing two or more sharp faces
with visible facial motion. ``CurationConfig.fingerprint`` identifies the settings that change
results, so a resumed run refuses to mix clips scored under different thresholds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

# Rejection reasons, in the order the stages check them; a clip's ``reject_reason`` is the first.
REASONS = (
    "error",  # the clip could not be decoded or analysed
    "too_short",  # the shot is shorter than min_seconds
    "blurry",  # whole-frame sharpness below min_frame_sharpness
    "too_few_faces",
    "too_many_faces",
    "too_few_people",  # only with a person detector (person_callable)
    "too_many_people",
    "blurry_face",  # the least sharp stable face is below min_face_sharpness
    "low_aesthetic",
    "static",  # no face (or not every face, with motion_faces="all") moves clearly
)


@dataclass
class CurationConfig:
    """Every knob of ``fantasy-portrait curate``; the CLI flags map one to one onto these fields."""

    # Shot boundaries (PySceneDetect ContentDetector) and clip length.
    shot_threshold: float = 27.0
    min_seconds: float = 2.0
    max_seconds: float = 10.0
    # Frames analysed per clip: sample_fps frames per second, at least min_samples, at most max_samples.
    sample_fps: float = 5.0
    min_samples: int = 8
    max_samples: int = 48
    # Frames are resized so their short side is at most this before detection and frame sharpness,
    # which makes sharpness comparable across resolutions.
    analysis_short_side: int = 360
    # Face count: tracks seen in at least min_track_coverage of the sampled frames count as faces.
    min_faces: int = 2
    max_faces: int = 8
    min_track_coverage: float = 0.5
    detection_confidence: float = 0.5
    face_backend: str = "mediapipe"
    # Sharpness: variance of the Laplacian (grey levels squared). Calibrated on the shared assets:
    # sharp footage scores 35-130 (frames) and 11-300 (faces); a Gaussian blur of sigma 1 px at 360p
    # brings both below 14 and 4. Tune on your data with the report's histograms.
    min_frame_sharpness: float = 15.0
    min_face_sharpness: float = 8.0
    # Aesthetic score (LAION scale, about 1-10); only used when a scorer is configured.
    min_aesthetic: float = 4.5
    # Facial motion: a face moves clearly if any of its measures reaches its threshold.
    min_head_range_deg: float = 8.0
    min_mouth_motion: float = 0.02
    min_eye_motion: float = 0.015
    motion_faces: str = "any"  # "any": at least one stable face moves; "all": every one does
    # Behaviour.
    stop_at_first_rejection: bool = True
    cut_clips: bool = True
    # Pluggable scorers and captioners (see aesthetic.py and captions.py); empty means none.
    aesthetic_weights: str = ""
    aesthetic_clip: str = ""
    aesthetic_callable: str = ""
    person_callable: str = ""
    caption_command: str = ""
    caption_callable: str = ""
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        from ..errors import InputError

        if not 0 < self.min_seconds <= self.max_seconds:
            raise InputError(
                f"clip length range is empty: min_seconds={self.min_seconds}, max_seconds={self.max_seconds}"
            )
        if not 0 <= self.min_faces <= self.max_faces:
            raise InputError(
                f"face count range is empty: min_faces={self.min_faces}, max_faces={self.max_faces}"
            )
        if self.motion_faces not in ("any", "all"):
            raise InputError(f"motion_faces must be 'any' or 'all', got {self.motion_faces!r}")
        if self.sample_fps <= 0 or self.min_samples < 2 or self.max_samples < self.min_samples:
            raise InputError("sampling needs sample_fps > 0 and 2 <= min_samples <= max_samples")
        if self.aesthetic_weights and not self.aesthetic_clip:
            raise InputError("--aesthetic-weights needs --aesthetic-clip (a local CLIP model folder)")

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self) -> str:
        """Hash of the settings that change a clip's row (all of them)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict) -> CurationConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
