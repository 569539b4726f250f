"""User plug-in for 3DMM-coefficient AED / APD (e.g. Deep3DFaceRecon), loaded from ``module:function``.

Portrait-animation papers commonly measure AED and APD as the mean L1 distance between the expression
and pose coefficients that a face-reconstruction network predicts for the output and for the driver.
Those networks and the face model they need (BFM) cannot be shipped or downloaded here, so the
benchmark calls a function the user provides instead (``--coeff-extractor mypkg.recon:extract``).

The contract of that function::

    extract(frames, boxes) -> {"pose": (F, 3) array, "expression": (F, K) array}

- ``frames``: (F, H, W, 3) uint8 RGB frames of one video (the output, the ground truth or a driver).
- ``boxes``: (F, 4) float64 face boxes ``(x0, y0, x1, y1)`` in pixels of ``frames`` (the extent of
  the face-mesh landmarks of the face being scored), a row of NaN where that face is not found; the
  function may return anything (NaN is fine) for such rows, they are ignored.
- ``pose``: three rotation angles per frame (yaw, pitch, roll in any fixed order; degrees or radians,
  as the function documents: the report states the function, not the unit). ``expression``: K
  expression coefficients per frame (64 for Deep3DFaceRecon), K the same for every call.

The function is called once per video and face; frames are cropped / aligned by the function itself.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass
class CoefficientExtractor:
    """A loaded ``module:function`` coefficient extractor (see the module docstring for the contract)."""

    spec: str
    function: Callable
    version: str  # changes when the function's source file changes (invalidates cached scores)

    def __call__(self, frames: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pose (F, 3), expression (F, K)) float64 for ``frames`` and ``boxes``; InputError on a bad return."""
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        boxes = np.asarray(boxes, np.float64)
        result = self.function(frames, boxes)
        count = len(frames)
        if not isinstance(result, dict) or "pose" not in result or "expression" not in result:
            raise InputError(
                f"coefficient extractor {self.spec}: must return a dict with 'pose' and 'expression', "
                f"got {type(result).__name__}"
            )
        try:
            pose = np.asarray(result["pose"], np.float64)
            expression = np.asarray(result["expression"], np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"coefficient extractor {self.spec}: non-numeric coefficients ({exc})") from None
        if pose.shape != (count, 3):
            raise InputError(
                f"coefficient extractor {self.spec}: 'pose' has shape {pose.shape}, expected ({count}, 3)"
            )
        if expression.ndim != 2 or expression.shape[0] != count or expression.shape[1] < 1:
            raise InputError(
                f"coefficient extractor {self.spec}: 'expression' has shape {expression.shape}, "
                f"expected ({count}, K)"
            )
        return pose, expression


def load_coefficient_extractor(spec: str) -> CoefficientExtractor:
    """Import ``module:function`` (module on ``sys.path``); InputError with one line if it cannot be used."""
    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name or not attr:
        raise InputError(
            f"coefficient extractor {spec!r}: expected 'module:function' (e.g. mypkg.recon:extract)"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any failure while importing the user's module
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise InputError(
            f"coefficient extractor {spec!r}: cannot import {module_name} ({type(exc).__name__}: {first})"
        ) from None
    function = module
    for part in attr.split("."):
        function = getattr(function, part, None)
        if function is None:
            raise InputError(f"coefficient extractor {spec!r}: {module_name} has no attribute {attr!r}")
    if not callable(function):
        raise InputError(f"coefficient extractor {spec!r}: {attr} is not callable")
    try:
        source = inspect.getsourcefile(function) or ""
        with open(source, "rb") as f:
            version = hashlib.sha256(f.read()).hexdigest()[:16]
    except (TypeError, OSError):
        version = ""
    return CoefficientExtractor(str(spec), function, version)


def face_boxes(points: np.ndarray) -> np.ndarray:
    """(T, 4) boxes (x0, y0, x1, y1) around (T, N, 3) landmarks; NaN rows where the face is missing."""
    points = np.asarray(points, np.float64)
    boxes = np.full((points.shape[0], 4), np.nan)
    found = np.isfinite(points).all(axis=(-1, -2))
    if found.any():
        xy = points[found, :, :2]
        boxes[found] = np.concatenate([xy.min(1), xy.max(1)], axis=1)
    return boxes


def coefficient_distances(
    extractor: CoefficientExtractor,
    gen_frames: np.ndarray,
    gen_boxes: np.ndarray,
    ref_frames: np.ndarray,
    ref_boxes: np.ndarray,
) -> tuple[list, list]:
    """Per-frame AED and APD of one face: mean |Δ expression| over K and mean |Δ angle| over 3.

    The first min(len(gen), len(ref)) frames are compared; frames where either box is NaN, or either
    coefficient vector is not finite, are None.
    """
    count = min(len(gen_frames), len(ref_frames))
    gen_boxes, ref_boxes = np.asarray(gen_boxes)[:count], np.asarray(ref_boxes)[:count]
    valid = np.isfinite(gen_boxes).all(1) & np.isfinite(ref_boxes).all(1)
    if not valid.any():
        return [None] * count, [None] * count
    g_pose, g_exp = extractor(gen_frames[:count], gen_boxes)
    r_pose, r_exp = extractor(ref_frames[:count], ref_boxes)
    if g_exp.shape[1] != r_exp.shape[1]:
        raise InputError(
            f"coefficient extractor {extractor.spec}: {g_exp.shape[1]} and {r_exp.shape[1]} expression "
            "coefficients for two videos (K must not change)"
        )
    aed = np.abs(g_exp - r_exp).mean(1)
    apd = np.abs(g_pose - r_pose).mean(1)
    ok = valid & np.isfinite(aed) & np.isfinite(apd)
    return (
        [float(v) if k else None for v, k in zip(aed, ok)],
        [float(v) if k else None for v, k in zip(apd, ok)],
    )


__all__ = ["CoefficientExtractor", "load_coefficient_extractor", "face_boxes", "coefficient_distances"]
