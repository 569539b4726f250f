"""Faces: detection backends, tracking through driving videos, PD-FGC alignment, portrait faces.

Public API (see docs/faces.md):
- :func:`get_backend` -> :class:`FaceBackend` with ``.detect(image_rgb) -> list[FaceObservation]``.
"""

from .backend import FaceBackend, available_backends, get_backend, register_backend
from .types import FIVE_POINT_NAMES, FaceObservation

__all__ = [
    "FIVE_POINT_NAMES",
    "FaceBackend",
    "FaceObservation",
    "available_backends",
    "get_backend",
    "register_backend",
]
