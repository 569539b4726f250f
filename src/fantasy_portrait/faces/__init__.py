"""Faces: detection backends, tracking through driving videos, PD-FGC alignment, portrait faces.

Public API (details in docs/faces.md):
- :func:`get_backend` -> :class:`FaceBackend` with ``.detect(image_rgb) -> list[FaceObservation]``
- :func:`track_faces` -> list[:class:`FaceTrack`] (left to right; boxes, five points, landmarks, filled)
- :func:`align_faces` -> (F, 224, 224, 3) PD-FGC crops; :func:`alignment_matrices`
- :func:`find_portrait_faces`, :func:`resolve_mapping`, :func:`portrait_regions` (portrait side)
"""

from .align import ALIGN_SIZE, PDFGC_TEMPLATE, align_faces, alignment_error, alignment_matrices, umeyama
from .backend import FaceBackend, available_backends, get_backend, register_backend
from .portrait import (
    FACE_BOXES_HINT,
    PortraitFace,
    find_portrait_faces,
    mapping_example,
    parse_face_boxes,
    parse_mapping,
    portrait_regions,
    resolve_mapping,
)
from .regions import face_region
from .smoothing import smooth_points
from .tracking import FaceTrack, detect_all, detect_video, track_faces
from .types import FIVE_POINT_NAMES, FaceObservation

__all__ = [
    "ALIGN_SIZE",
    "FACE_BOXES_HINT",
    "FIVE_POINT_NAMES",
    "PDFGC_TEMPLATE",
    "FaceBackend",
    "FaceObservation",
    "FaceTrack",
    "PortraitFace",
    "align_faces",
    "alignment_error",
    "alignment_matrices",
    "available_backends",
    "detect_all",
    "detect_video",
    "face_region",
    "find_portrait_faces",
    "get_backend",
    "parse_face_boxes",
    "mapping_example",
    "parse_mapping",
    "portrait_regions",
    "register_backend",
    "resolve_mapping",
    "smooth_points",
    "track_faces",
    "umeyama",
]
