"""Typed data passed between the face stages (detection, tracking, alignment, regions).

Coordinates are pixels in the image they came from, x to the right, y down. "Left" and "right"
mean the image's left and right (not the subject's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Order of the five alignment points everywhere in the project (SPEC §3).
FIVE_POINT_NAMES = ("left_eye", "right_eye", "nose_tip", "left_mouth", "right_mouth")


@dataclass
class FaceObservation:
    """One face found in one image or frame.

    box: (4,) float32 x1, y1, x2, y2.
    five_points: (5, 2) float32 in FIVE_POINT_NAMES order, or None if the backend has no landmarks.
    landmarks: (K, 2) float32 dense landmarks in the backend's layout (``landmark_layout``), or None.
    landmarks_3d: (K, 3) float32 when the backend gives depth (MediaPipe mesh: x, y pixels, z relative).
    """

    box: np.ndarray
    score: float
    five_points: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    landmarks_3d: np.ndarray | None = None
    landmark_layout: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def center_x(self) -> float:
        return float(self.box[0] + self.box[2]) / 2.0
