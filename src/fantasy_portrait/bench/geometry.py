"""Head pose, pose-normalised shape and eye gaze from MediaPipe face-mesh landmarks.

All functions take the 478-point MediaPipe mesh (468 face points + 10 iris points) in camera
coordinates as the face backend gives them: x right and y down in pixels, z away from the camera in
the same pixel units (OpenCV convention, right-handed). "Image-left" means the left of the picture.

Head axes come from the mesh's own 3D coordinates (no generic 3D face is needed): the x axis is the
mean of vectors between rigid left/right landmark pairs, the y axis runs from the forehead down to
the base of the nose, orthogonalised against x, and z = x cross y points from the face into the head.
A frontal, upright face looking at the camera has the identity rotation.
"""

from __future__ import annotations

import numpy as np

NUM_MESH_POINTS = 468
NUM_WITH_IRIS = 478

# Rigid image-left -> image-right pairs (for a frontal face): eye corners, cheekbones, temples, nose wings.
RIGID_PAIRS = ((33, 263), (133, 362), (234, 454), (127, 356), (98, 327), (116, 345))
FOREHEAD = (10, 151, 9)
NOSE_BASE = (2, 98, 327)
RIGID_POINTS = tuple(
    sorted({i for p in RIGID_PAIRS for i in p} | set(FOREHEAD) | set(NOSE_BASE) | {168, 6, 197})
)

# Eyes, image-left first: (outer corner, inner corner, iris centre).
EYES = ((33, 133, 468), (263, 362, 473))
OUTER_EYE_CORNERS = (33, 263)

# Eyeball radius in units of the eye's corner-to-corner width (about 12 mm / 28 mm in adults).
EYEBALL_RADIUS = 0.43


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def head_rotation(points: np.ndarray) -> np.ndarray:
    """Head rotation from mesh landmarks.

    points: (..., >=468, 3) float. Returns (..., 3, 3) float64 whose columns are the head's x (image
    right for a frontal face), y (down) and z (into the head) axes in camera coordinates.
    """
    p = np.asarray(points, dtype=np.float64)
    pairs = np.asarray(RIGID_PAIRS)
    ex = _unit((p[..., pairs[:, 1], :] - p[..., pairs[:, 0], :]).mean(axis=-2))
    down = p[..., list(NOSE_BASE), :].mean(axis=-2) - p[..., list(FOREHEAD), :].mean(axis=-2)
    ey = _unit(down - (down * ex).sum(-1, keepdims=True) * ex)
    ez = np.cross(ex, ey)
    return np.stack([ex, ey, ez], axis=-1)


def rotation_to_euler(rotation: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation -> (..., 3) float64 (yaw, pitch, roll) in degrees.

    Convention R = Rz(roll) @ Ry(yaw) @ Rx(pitch) in camera axes (x right, y down, z forward). Yaw is the
    turn about the vertical axis, so a horizontally mirrored head has the opposite yaw (and roll).
    """
    r = np.asarray(rotation, dtype=np.float64)
    yaw = np.arcsin(np.clip(-r[..., 2, 0], -1.0, 1.0))
    pitch = np.arctan2(r[..., 2, 1], r[..., 2, 2])
    roll = np.arctan2(r[..., 1, 0], r[..., 0, 0])
    return np.degrees(np.stack([yaw, pitch, roll], axis=-1))


def head_pose(points: np.ndarray) -> np.ndarray:
    """(..., 478, 3) mesh -> (..., 3) float64 (yaw, pitch, roll) in degrees."""
    return rotation_to_euler(head_rotation(points))


def interocular_3d(points: np.ndarray) -> np.ndarray:
    """(..., 478, 3) -> (...,) distance between the outer eye corners, in the points' units."""
    p = np.asarray(points, dtype=np.float64)
    return np.linalg.norm(p[..., OUTER_EYE_CORNERS[1], :] - p[..., OUTER_EYE_CORNERS[0], :], axis=-1)


def interocular_2d(points: np.ndarray) -> np.ndarray:
    """(..., K, >=2) -> (...,) image-plane distance between the outer eye corners."""
    p = np.asarray(points, dtype=np.float64)[..., :2]
    return np.linalg.norm(p[..., OUTER_EYE_CORNERS[1], :] - p[..., OUTER_EYE_CORNERS[0], :], axis=-1)


def normalized_shape(points: np.ndarray) -> np.ndarray:
    """Pose-normalised face shape.

    points: (..., 478, 3). Returns (..., 468, 3) float64: the 468 face points with the rigid-point
    centroid removed, rotated into the head's own axes and divided by the 3D inter-ocular distance, so
    position, rotation and scale in the image no longer matter; only the face's shape remains.
    """
    p = np.asarray(points, dtype=np.float64)[..., :NUM_MESH_POINTS, :]
    rot = head_rotation(points)
    centre = p[..., list(RIGID_POINTS), :].mean(axis=-2, keepdims=True)
    local = np.einsum("...ki,...ij->...kj", p - centre, rot)  # coordinates along the head axes
    return local / interocular_3d(points)[..., None, None]


def gaze_directions(points: np.ndarray) -> np.ndarray:
    """Eye-gaze unit vectors in camera coordinates.

    points: (..., 478, 3). Returns (..., 2, 3) float64, image-left eye first. For each eye the iris
    centre's offset from the midpoint of the eye corners is measured along the head's x and y axes in
    units of the eye width; the eyeball is a sphere of radius EYEBALL_RADIUS eye widths whose front
    point is the corner midpoint, so an offset (dx, dy) means the eye-in-head direction
    (dx, dy, -sqrt(r^2 - dx^2 - dy^2)) / r. Rotating it by the head pose gives the gaze in camera
    coordinates (head turn and eye turn together, as a gaze estimator on the image would see it).
    """
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-2] < NUM_WITH_IRIS:
        raise ValueError(f"gaze needs the 478-point mesh with irises, got {p.shape[-2]} points")
    rot = head_rotation(p)
    out = []
    for outer, inner, iris in EYES:
        mid = (p[..., outer, :] + p[..., inner, :]) / 2
        width = np.linalg.norm(p[..., outer, :] - p[..., inner, :], axis=-1)
        offset = p[..., iris, :] - mid
        dx = (offset * rot[..., :, 0]).sum(-1) / width
        dy = (offset * rot[..., :, 1]).sum(-1) / width
        r = EYEBALL_RADIUS
        planar = np.minimum(dx * dx + dy * dy, 0.95 * r * r)
        scale = np.sqrt(planar / np.maximum(dx * dx + dy * dy, 1e-12))
        dx, dy = dx * scale, dy * scale
        local = np.stack([dx, dy, -np.sqrt(r * r - dx * dx - dy * dy)], axis=-1) / r
        out.append(np.einsum("...ij,...j->...i", rot, local))
    return np.stack(out, axis=-2)


def angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between unit vectors along the last axis (numerically safe near 0 and 180)."""
    a = _unit(np.asarray(a, dtype=np.float64))
    b = _unit(np.asarray(b, dtype=np.float64))
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    dot = (a * b).sum(-1)
    return np.degrees(np.arctan2(cross, dot))


def wrap_degrees(d: np.ndarray) -> np.ndarray:
    """Angle differences wrapped into [-180, 180)."""
    return (np.asarray(d, dtype=np.float64) + 180.0) % 360.0 - 180.0
