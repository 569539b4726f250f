"""Driving inputs -> motion per portrait face (SPEC §7), on top of ``fantasy_portrait.faces.plan``.

Forms accepted: one video with N faces; N videos with one face each; any N >= 1; an explicit
mapping ``--map D:P,...`` (driving face D drives portrait face P; faces numbered from 0, left to
right; ``D:-`` leaves driving face D unused). Without a mapping the portrait and driving face counts
must agree, otherwise a FaceError lists what was found. With a mapping, portrait faces left without
a driver keep their own expression: they are driven by the PD-FGC features of their own portrait
crop, held still.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)


@dataclass
class FaceMotion:
    """Per portrait face (left to right): the motion (F, 554) float32, the driving boxes (F, 4) (in the
    driving video's pixels, used for the region enlargement) and a label of its driver."""

    portrait_box: np.ndarray
    motion: torch.Tensor
    drive_boxes: np.ndarray
    driver: str


def plan_driving(
    image: np.ndarray,
    videos: list[Path],
    *,
    backend,
    fps: float,
    max_frames: int | None,
    face_boxes: np.ndarray | None,
    mapping: str | None,
    image_name: str,
    progress: bool,
):
    """The faces package's FacePlan (it does every check: counts, mapping; the same for ``inspect``)."""
    from ..faces.plan import plan_faces

    return plan_faces(
        image,
        [str(v) for v in videos],
        fps=fps,
        max_frames=max_frames,
        face_boxes=face_boxes,
        mapping=mapping or None,
        backend=backend,
        image_name=image_name,
        progress=progress,
    )


def face_motions(plan, image: np.ndarray, motion_encoder, progress: bool = False) -> list[FaceMotion]:
    """Motion of every portrait face, left to right (see the module docstring for undriven faces)."""
    from ..faces.align import align_faces
    from ..motion import extract_plan_motion

    feats = extract_plan_motion(plan, motion_encoder, progress=progress)
    n = plan.num_frames
    out = []
    for p, face in enumerate(plan.portrait_faces):
        drivers = [i for i, target in enumerate(plan.mapping) if target == p]
        if drivers:
            i = drivers[0]
            d = plan.driving[i]
            motion = feats[i].as_tensor()[:n].float()
            out.append(FaceMotion(face.box, motion, d.track.boxes[:n], f"{d.source.name}#{d.track.track_id}"))
            continue
        if face.five_points is not None:
            crop = align_faces(image[None], np.asarray(face.five_points, np.float64)[None])
            still = motion_encoder.encode(crop).as_tensor().float()
            label = "own expression (no driver)"
        else:
            still = motion_encoder.encode_blank().as_tensor().float()
            label = "neutral (no driver, no landmarks)"
        logger.info("portrait face %d has no driving face: %s", p, label)
        out.append(FaceMotion(face.box, still.expand(n, -1).clone(), np.repeat(face.box[None], n, 0), label))
    return out
