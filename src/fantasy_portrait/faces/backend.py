"""Face backend interface: one image in, faces (box, score, five points, dense landmarks) out.

Backends are registered by name; :func:`get_backend` builds (and caches) one. The default,
``"mediapipe"``, works offline from what pip installs; ``"onnx"`` runs the reference's own
``face_det.onnx`` + ``face_landmark.onnx`` through onnxruntime for users who have those files.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import InputError
from .types import FaceObservation

logger = logging.getLogger(__name__)


class FaceBackend(ABC):
    """Detects faces and their landmarks in one RGB image.

    Subclasses set ``name``, ``landmark_layout`` (e.g. ``"mediapipe478"``) and ``num_landmarks``.
    """

    name: str = ""
    landmark_layout: str = ""
    num_landmarks: int = 0

    @abstractmethod
    def detect(self, image_rgb: np.ndarray) -> list[FaceObservation]:
        """Faces in an (H, W, 3) uint8 RGB image, in no particular order.

        Each observation has box (4,) float32 x1,y1,x2,y2, score, five_points (5, 2) float32 in
        FIVE_POINT_NAMES order (None when the landmark stage failed on that face) and landmarks (K, 2).
        """

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[FaceObservation]]:
        """:meth:`detect` on each image (backends may override with a batched version)."""
        return [self.detect(image) for image in images]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release native resources (graphs, sessions)."""


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an (H, W, 3) uint8 RGB array (a programming error otherwise, hence ValueError)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image)


_FACTORIES: dict[str, Callable[..., FaceBackend]] = {}
_CACHE: dict[tuple, FaceBackend] = {}


def register_backend(name: str, factory: Callable[..., FaceBackend]) -> None:
    """Make ``get_backend(name)`` build backends with ``factory(**kwargs)``."""
    _FACTORIES[name] = factory


def available_backends() -> list[str]:
    _register_builtin()
    return sorted(_FACTORIES)


def get_backend(name: str = "mediapipe", cache: bool = True, **kwargs) -> FaceBackend:
    """Build the face backend ``name`` ("mediapipe" default, "onnx": model_dir=... or det_path/landmark_path).

    With cache=True the same instance is returned for the same name and arguments (backends are not
    thread-safe: use one per thread, cache=False).
    """
    if isinstance(name, FaceBackend):
        return name
    _register_builtin()
    if name not in _FACTORIES:
        raise InputError(f"unknown face backend {name!r}; available: {', '.join(sorted(_FACTORIES))}")
    key = (name, tuple(sorted((k, str(v)) for k, v in kwargs.items())))
    if cache and key in _CACHE:
        return _CACHE[key]
    backend = _FACTORIES[name](**kwargs)
    if cache:
        _CACHE[key] = backend
    return backend


def _register_builtin() -> None:
    if "mediapipe" not in _FACTORIES:
        from .mediapipe_backend import MediaPipeBackend

        register_backend("mediapipe", MediaPipeBackend)
    if "onnx" not in _FACTORIES:
        from .onnx_backend import OnnxFaceBackend

        register_backend("onnx", OnnxFaceBackend)
