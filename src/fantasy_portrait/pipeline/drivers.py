"""Driving inputs -> motion per portrait face (SPEC §7), on top of ``fantasy_portrait.faces.plan``.

Forms accepted: one video with N faces; N videos with one face each; any N >= 1; an explicit
mapping ``--map D:P,...`` (driving face D drives portrait face P; faces numbered from 0, left to
right). Without a mapping the portrait and driving face counts must agree, otherwise a FaceError
lists what was found. With a mapping, portrait faces left without a driver keep their own
expression: they are driven by the PD-FGC features of their own portrait crop, held still.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import FaceError

logger = logging.getLogger(__name__)


@dataclass
class FaceMotion:
    """Per portrait face (left to right): the motion (F, 554) float32, the driving boxes (F, 4) (in the
    driving video's pixels, used for the region enlargement) and a label of its driver."""

    portrait_box: np.ndarray
    motion: torch.Tensor
    drive_boxes: np.ndarray
    driver: str


def _describe(plan) -> str:
    counts: dict[Path, int] = {}
    for d in plan.driving:
        counts[d.source] = counts.get(d.source, 0) + 1
    drivers = "; ".join(f"{p.name}: {n} face{'s' if n != 1 else ''}" for p, n in counts.items())
    boxes = ", ".join(f"[{', '.join(str(int(v)) for v in f.box)}]" for f in plan.portrait_faces)
    return f"portrait faces (left to right) {boxes}; driving faces: {drivers}"


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
    """The faces package's FacePlan, checked: without ``mapping`` the face counts must agree."""
    from ..faces.plan import plan_faces
    from ..faces.portrait import parse_mapping

    pairs = parse_mapping(mapping) if mapping else None
    plan = plan_faces(
        image,
        [str(v) for v in videos],
        fps=fps,
        max_frames=max_frames,
        face_boxes=face_boxes,
        mapping=pairs,
        backend=backend,
        image_name=image_name,
        progress=progress,
    )
    if pairs is None and len(plan.driving) != len(plan.portrait_faces):
        raise FaceError(
            f"the portrait has {len(plan.portrait_faces)} face(s) but the driving input has "
            f"{len(plan.driving)} ({_describe(plan)}): give one driving face per portrait face, pair them "
            "with --map DRIVING:PORTRAIT,... (unpaired portrait faces keep still), or fix the portrait "
            "faces with --face-boxes"
        )
    return plan


def face_motions(plan, image: np.ndarray, motion_encoder) -> list[FaceMotion]:
    """Motion of every portrait face, left to right (see the module docstring for undriven faces)."""
    from ..faces.align import align_faces
    from ..faces.plan import extract_plan_motion

    feats = extract_plan_motion(plan, motion_encoder)
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
