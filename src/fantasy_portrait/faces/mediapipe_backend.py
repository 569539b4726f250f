"""Default face backend: MediaPipe 0.10.21 legacy solutions, fully offline.

Two stages per image, because face mesh alone on a whole frame loses small or secondary faces:
1. full-range face detection (BlazeFace full range) on the whole image -> boxes and scores;
2. face mesh with refined landmarks (478 points incl. irises) on a square crop around each box
   (2x the box, resized to at most 384 px), mapped back to image pixels.

Five alignment points from the mesh (image-left first for a frontal face): iris centres 468 and 473,
nose tip 1, mouth corners 61 and 291.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from ..console import native_quiet
from ..errors import FantasyPortraitError
from .backend import FaceBackend, check_image
from .types import FaceObservation

logger = logging.getLogger(__name__)

MESH_FIVE_POINT_ROWS = (468, 473, 1, 61, 291)
# Eye contour rows, used instead of the iris centres when the mesh has no iris points.
MESH_EYE_CONTOURS = (
    (33, 133, 159, 145, 158, 153, 160, 144),
    (362, 263, 386, 374, 385, 380, 387, 373),
)
CROP_SCALE = 2.0
CROP_MAX_SIDE = 384


def _import_mediapipe():
    try:
        with native_quiet():
            from mediapipe.python.solutions import face_detection, face_mesh
    except Exception as exc:  # ImportError, or protobuf/numpy mismatches raised at import
        raise FantasyPortraitError(
            "the MediaPipe face backend needs mediapipe 0.10.21: "
            "pip install absl-py attrs flatbuffers 'protobuf>=4.25.3,<5' && "
            f"pip install --no-deps mediapipe==0.10.21 ({exc.__class__.__name__}: {exc})"
        ) from exc
    return face_detection, face_mesh


def mesh_five_points(landmarks: np.ndarray) -> np.ndarray:
    """(478 or 468, 2) mesh landmarks -> (5, 2) float32 alignment points (iris centres or eye means)."""
    if landmarks.shape[0] >= 478:
        return landmarks[list(MESH_FIVE_POINT_ROWS)].astype(np.float32)
    eyes = [landmarks[list(rows)].mean(axis=0) for rows in MESH_EYE_CONTOURS]
    return np.stack([eyes[0], eyes[1], landmarks[1], landmarks[61], landmarks[291]]).astype(np.float32)


class MediaPipeBackend(FaceBackend):
    """MediaPipe full-range detection + 478-point face mesh per face crop.

    min_score: detection confidence threshold. mesh_min_score: the mesh's own detector threshold on
    the crop. max_faces: keep at most this many faces (highest scores).
    """

    name = "mediapipe"
    landmark_layout = "mediapipe478"
    num_landmarks = 478

    def __init__(self, min_score: float = 0.5, mesh_min_score: float = 0.3, max_faces: int = 16):
        face_detection, face_mesh = _import_mediapipe()
        self.min_score = float(min_score)
        self.max_faces = int(max_faces)
        with native_quiet():  # the graphs print absl/TFLite lines (W0000 ...) while starting
            self._detector = face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=min_score
            )
            self._mesh = face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=mesh_min_score,
            )
            # The graphs start their calculators on their own threads and log while doing so; one
            # call each waits for that to finish inside the quiet block.
            blank = np.zeros((64, 64, 3), np.uint8)
            self._detector.process(blank)
            self._mesh.process(blank)

    def detect_boxes(self, image_rgb: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Detector stage only: [(box (4,), score, keypoints (6, 2))] in pixels."""
        image = check_image(image_rgb)
        h, w = image.shape[:2]
        with native_quiet():
            result = self._detector.process(image)
        found = []
        for det in result.detections or []:
            rb = det.location_data.relative_bounding_box
            box = np.array(
                [rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w, (rb.ymin + rb.height) * h], np.float32
            )
            kps = np.array([[k.x * w, k.y * h] for k in det.location_data.relative_keypoints], np.float32)
            found.append((box, float(det.score[0]), kps))
        found.sort(key=lambda f: -f[1])
        return found[: self.max_faces]

    def landmarks_in_box(self, image_rgb: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """Mesh stage on a square crop around ``box``: (478, 3) float32 (x, y pixels, z) or None."""
        image = check_image(image_rgb)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = float(max(box[2] - box[0], box[3] - box[1])) * CROP_SCALE
        if side < 4:
            return None
        out = int(min(CROP_MAX_SIDE, max(64, round(side))))
        scale = out / side
        x0, y0 = cx - side / 2, cy - side / 2
        matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float64)
        crop = cv2.warpAffine(
            image, matrix, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        with native_quiet():
            result = self._mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        pts = np.array([[p.x * out, p.y * out, p.z * out] for p in lm], np.float64)
        pts[:, 0] = pts[:, 0] / scale + x0
        pts[:, 1] = pts[:, 1] / scale + y0
        pts[:, 2] = pts[:, 2] / scale
        return pts.astype(np.float32)

    def detect(self, image_rgb: np.ndarray) -> list[FaceObservation]:
        image = check_image(image_rgb)
        faces = []
        for box, score, kps in self.detect_boxes(image):
            pts3 = self.landmarks_in_box(image, box)
            obs = FaceObservation(box=box, score=score, landmark_layout=self.landmark_layout)
            obs.extra["detector_keypoints"] = kps
            if pts3 is not None:
                obs.landmarks_3d = pts3
                obs.landmarks = np.ascontiguousarray(pts3[:, :2])
                obs.five_points = mesh_five_points(obs.landmarks)
                obs.extra["mesh_box"] = np.concatenate([pts3[:, :2].min(0), pts3[:, :2].max(0)])
            faces.append(obs)
        return faces

    def close(self) -> None:
        with native_quiet():
            self._detector.close()
            self._mesh.close()
