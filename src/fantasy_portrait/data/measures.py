"""Per-clip measurements: sampling, sharpness, face tracks on sampled frames, head angles, motion.

Everything here is pure numpy/OpenCV on arrays, so each measure can be tested alone.

Motion measures (per face track, on the MediaPipe 478-point mesh):
- head angles (yaw, pitch, roll in degrees) from the 3D mesh: the eye-corner axis and the
  chin-forehead axis span the face plane; ``head_range`` is the largest of the three angles'
  ranges (5th to 95th percentile over the sampled frames);
- ``mouth_motion`` / ``eye_motion``: each frame's landmarks are aligned onto the track's first
  frame with a similarity transform fitted on rigid points (eye corners, nose, forehead, temples),
  so head motion and zoom cancel; the measure is the RMS deviation of the lip (resp. eyelid and
  iris) points from their mean position over the clip, in units of the inter-ocular distance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..faces.types import FaceObservation

# MediaPipe face mesh rows (canonical topology).
LIPS = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191,
)  # fmt: skip
EYES = (
    33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246,
    263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466,
)  # fmt: skip
IRISES = tuple(range(468, 478))
RIGID = (33, 133, 362, 263, 168, 6, 1, 4, 10, 234, 454)
EYE_OUTER = (33, 263)
CHIN, FOREHEAD = 152, 10
FACE_CROP_SIZE = 128


def sample_indices(start: int, end: int, fps: float, sample_fps: float, min_samples: int, max_samples: int):
    """Evenly spaced frame indices in [start, end): about sample_fps per second, within the bounds."""
    length = end - start
    count = int(round(length / fps * sample_fps))
    count = max(min_samples, min(max_samples, count))
    count = min(count, length)
    if count <= 0:
        return []
    # Centres of ``count`` equal slices, so the first and last frames of a shot (often transition
    # frames) are not sampled.
    return sorted({start + int((i + 0.5) * length / count) for i in range(count)})


def resize_short_side(image: np.ndarray, short_side: int) -> tuple[np.ndarray, float]:
    """Downscale so min(H, W) <= short_side; returns (image, scale factor applied)."""
    h, w = image.shape[:2]
    scale = short_side / min(h, w)
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def laplacian_variance(image_rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: high for sharp detail, near 0 for blur."""
    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def face_sharpness(image_rgb: np.ndarray, box: np.ndarray) -> float:
    """Laplacian variance of the face box resized to 128x128 (comparable across face sizes)."""
    h, w = image_rgb.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < 4 or y2 - y1 < 4:
        return 0.0
    crop = image_rgb[y1:y2, x1:x2]
    interp = cv2.INTER_AREA if (x2 - x1) > FACE_CROP_SIZE else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (FACE_CROP_SIZE, FACE_CROP_SIZE), interpolation=interp)
    return laplacian_variance(crop)


@dataclass
class SampledTrack:
    """One face followed over the sampled frames.

    frames: sample positions (0..S-1) where it was seen; observations: the matching faces.
    """

    track_id: int
    frames: list[int] = field(default_factory=list)
    observations: list[FaceObservation] = field(default_factory=list)

    @property
    def last_box(self) -> np.ndarray:
        return self.observations[-1].box


def track_sampled_faces(per_frame: list[list[FaceObservation]], max_gap: int = 3) -> list[SampledTrack]:
    """Link faces across sampled frames: the face stack's association cost, solved optimally.

    Samples are a fraction of a second apart, so faces move a fraction of their size between them
    (:func:`fantasy_portrait.faces.tracking.pair_cost` gates the pairs); a track may miss up to
    ``max_gap`` samples (occlusion, a missed detection). Unlike ``track_faces`` (driving videos),
    nothing is required of the faces here: counting them is the point. Tracks are numbered left to
    right by their mean centre x, so numbering does not depend on detection order.
    """
    from scipy.optimize import linear_sum_assignment

    from ..faces.tracking import pair_cost

    tracks: list[SampledTrack] = []
    for position, faces in enumerate(per_frame):
        live = [t for t in tracks if position - t.frames[-1] <= max_gap]
        matched = set()
        if live and faces:
            cost = pair_cost(
                np.stack([t.last_box for t in live]).astype(np.float64),
                np.stack([f.box for f in faces]).astype(np.float64),
                np.array([position - t.frames[-1] for t in live], np.float64),
            )
            rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e6))
            for r, c in zip(rows, cols, strict=True):
                if np.isfinite(cost[r, c]):
                    live[r].frames.append(position)
                    live[r].observations.append(faces[c])
                    matched.add(int(c))
        for fi, face in enumerate(faces):
            if fi not in matched:
                tracks.append(SampledTrack(track_id=-1, frames=[position], observations=[face]))
    tracks.sort(key=lambda t: float(np.mean([o.center_x for o in t.observations])))
    for i, track in enumerate(tracks):
        track.track_id = i
    return tracks


def head_angles(landmarks_3d: np.ndarray) -> np.ndarray:
    """(478, 3) mesh points (x, y pixels, z same scale) -> (3,) yaw, pitch, roll in degrees."""
    p = np.asarray(landmarks_3d, np.float64)
    x_axis = p[EYE_OUTER[1]] - p[EYE_OUTER[0]]
    x_axis /= max(np.linalg.norm(x_axis), 1e-9)
    y_axis = p[CHIN] - p[FOREHEAD]
    y_axis -= x_axis * float(y_axis @ x_axis)
    y_axis /= max(np.linalg.norm(y_axis), 1e-9)
    yaw = np.degrees(np.arctan2(x_axis[2], x_axis[0]))
    pitch = np.degrees(np.arctan2(y_axis[2], y_axis[1]))
    roll = np.degrees(np.arctan2(x_axis[1], x_axis[0]))
    return np.array([yaw, pitch, roll])


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares scale s, rotation R, translation t with s * R @ src_i + t ~= dst_i (2D)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    fix = np.diag([1.0, d])
    rot = u @ fix @ vt
    scale = float((sig * np.diag(fix)).sum() / max((a**2).sum(), 1e-12))
    return scale, rot, mu_d - scale * rot @ mu_s


def landmark_motion(landmarks: list[np.ndarray], rows: tuple[int, ...]) -> float:
    """RMS deviation of ``rows`` from their mean after rigid alignment, in inter-ocular distances.

    landmarks: per frame (478, 2) pixel landmarks of one face. Returns 0.0 for fewer than 2 frames.
    """
    if len(landmarks) < 2:
        return 0.0
    ref = np.asarray(landmarks[0], np.float64)
    iod = max(float(np.linalg.norm(ref[EYE_OUTER[1]] - ref[EYE_OUTER[0]])), 1e-6)
    aligned = []
    for lm in landmarks:
        lm = np.asarray(lm, np.float64)
        scale, rot, shift = _similarity(lm[list(RIGID)], ref[list(RIGID)])
        aligned.append((scale * (rot @ lm[list(rows)].T)).T + shift)
    stack = np.stack(aligned)  # (F, R, 2)
    deviation = stack - stack.mean(axis=0, keepdims=True)
    return float(np.sqrt((deviation**2).sum(axis=2).mean()) / iod)


@dataclass
class TrackSummary:
    """Scores of one stable face track (a row of the manifest's ``tracks`` list)."""

    track_id: int
    coverage: float  # fraction of sampled frames where the face was seen
    box: list[float]  # mean x1, y1, x2, y2 in source-frame pixels
    face_size: float  # mean sqrt(box area) in source pixels
    sharpness: float  # median face Laplacian variance
    yaw_range: float
    pitch_range: float
    roll_range: float
    head_range: float
    mouth_motion: float
    eye_motion: float
    moving: bool = False


def summarise_track(
    track: SampledTrack, num_samples: int, sharpness: list[float], inverse_scale: float
) -> TrackSummary:
    """Scores of a track; ``inverse_scale`` maps analysis-frame pixels back to source pixels."""
    boxes = np.stack([o.box for o in track.observations]).astype(np.float64) * inverse_scale
    meshes = [o for o in track.observations if o.landmarks is not None and o.landmarks_3d is not None]
    if meshes:
        angles = np.stack([head_angles(o.landmarks_3d) for o in meshes])
        # 5th-95th percentile range: one bad mesh does not make a still head "move".
        ranges = np.percentile(angles, 95, axis=0) - np.percentile(angles, 5, axis=0)
        landmarks = [o.landmarks for o in meshes]
        mouth = landmark_motion(landmarks, LIPS)
        eye_rows = EYES + IRISES if meshes[0].landmarks.shape[0] >= 478 else EYES
        eyes = landmark_motion(landmarks, eye_rows)
    else:
        ranges = np.zeros(3)
        mouth = eyes = 0.0
    sizes = np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))
    return TrackSummary(
        track_id=track.track_id,
        coverage=len(set(track.frames)) / max(num_samples, 1),
        box=[float(v) for v in boxes.mean(0)],
        face_size=float(sizes.mean()),
        sharpness=float(np.median(sharpness)) if sharpness else 0.0,
        yaw_range=float(ranges[0]),
        pitch_range=float(ranges[1]),
        roll_range=float(ranges[2]),
        head_range=float(ranges.max()),
        mouth_motion=float(mouth),
        eye_motion=float(eyes),
    )
