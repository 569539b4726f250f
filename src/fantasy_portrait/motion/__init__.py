"""Motion features: the PD-FGC motion encoder and batched per-face extraction (SPEC §3).

- :class:`MotionEncoder` (``MotionEncoder.from_pretrained("pd_fpg.pth", device=...)``)
- :func:`extract_motion` (frames + five points or a FaceTrack -> :class:`MotionFeatures`)
- :func:`extract_plan_motion` (a ``faces.plan.FacePlan`` -> one MotionFeatures per driving face)
- :class:`MotionFeatures`: head (F, 6), eye (F, 6), emotion (F, 30), mouth (F, 512); ``.as_tensor()`` (F, 554)
"""

from .encoder import (
    MOTION_DIM,
    PART_DIMS,
    MotionEncoder,
    MotionFeatures,
    extract_motion,
    extract_tracks_motion,
)
from .fan import FanEncoder
from .plan import extract_plan_motion

__all__ = [
    "MOTION_DIM",
    "PART_DIMS",
    "FanEncoder",
    "MotionEncoder",
    "MotionFeatures",
    "extract_motion",
    "extract_plan_motion",
    "extract_tracks_motion",
]
