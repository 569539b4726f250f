"""Optional backend: the reference's ``face_det.onnx`` + ``face_landmark.onnx`` through onnxruntime.

What we know of the two models (from the public HelloMeme tooling the reference reuses):
- ``face_det.onnx``: a NanoDet-style one-class detector. Input (1, 3, 272, 160) float32 (H=272,
  W=160), the BGR image letterboxed into that size (aspect kept, centred) and normalised per channel
  with mean (103.53, 116.28, 123.675) and std (57.375, 57.12, 58.395). Outputs: three score maps
  (one per stride 8, 16, 32, flattened cells) then three box-distribution maps (4 x 8 bins per cell,
  softmax-expectation times stride = distances to the cell corner point). Score threshold 0.4,
  hard NMS at IoU 0.3.
- ``face_landmark.onnx``: input (1, 3, 128, 128) float32 in [0, 1] (the image channels as given, BGR
  in the reference), a crop where the face box fills 85 % of the side; outputs landmarks (1, 444) =
  x coordinates then y coordinates of 222 points in [0, 1] of the crop, Euler angles and a score.
  The crop is refined twice from the previous landmarks, rotated so the eye corners (rows 74, 96)
  are level.
- Five alignment points: rows 182, 202, 36, 149, 133 (left eye, right eye, nose, mouth corners).

We could not run these files here (they are not redistributable with the project); the code checks
the I/O shapes it relies on and says clearly when they do not match.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from ..console import native_logs_enabled
from ..errors import CheckpointError, FantasyPortraitError
from .backend import FaceBackend, check_image
from .types import FaceObservation

logger = logging.getLogger(__name__)

ONNX_FIVE_POINT_ROWS = (182, 202, 36, 149, 133)
DET_INPUT_HW = (272, 160)
DET_STRIDES = (8, 16, 32)
DET_REG_MAX = 7
DET_MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
DET_STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
LMK_SIZE = 128
LMK_EXPAND = 0.15


def _session(path: Path):
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise FantasyPortraitError(
            "the onnx face backend needs onnxruntime: pip install onnxruntime"
        ) from exc
    if not path.is_file():
        raise CheckpointError(
            f"{path}: file not found (the onnx face backend needs the reference's face_det.onnx and "
            "face_landmark.onnx; use the default 'mediapipe' backend otherwise)"
        )
    try:
        threads = int(os.environ.get("FP_ONNX_THREADS", "0"))
        opts = ort.SessionOptions()
        if not native_logs_enabled():
            opts.log_severity_level = 3  # errors only (its warnings are printed natively to stderr)
        if threads:
            opts.intra_op_num_threads = threads
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise CheckpointError(f"{path}: not a loadable ONNX model ({exc})") from exc


def letterbox_matrix(src_wh: tuple[int, int], dst_wh: tuple[int, int]) -> np.ndarray:
    """3x3 matrix that scales (aspect kept) and centres an image of src_wh into dst_wh."""
    sw, sh = src_wh
    dw, dh = dst_wh
    ratio = dh / sh if sw / sh < dw / dh else dw / sw
    return np.array([[ratio, 0, dw / 2 - ratio * sw / 2], [0, ratio, dh / 2 - ratio * sh / 2], [0, 0, 1]])


def decode_nanodet(
    scores: list[np.ndarray],
    boxes: list[np.ndarray],
    input_hw: tuple[int, int] = DET_INPUT_HW,
    threshold: float = 0.4,
    iou: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode NanoDet outputs (per stride: scores (cells,), distributions (cells, 4*(reg_max+1))).

    Returns boxes (N, 4) in input pixels and scores (N,), after NMS, best first.
    """
    all_boxes, all_scores = [], []
    for stride, score, dist in zip(DET_STRIDES, scores, boxes):
        gh, gw = int(np.ceil(input_hw[0] / stride)), int(np.ceil(input_hw[1] / stride))
        yy, xx = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        centre = np.stack([xx.ravel() * stride, yy.ravel() * stride], axis=1).astype(np.float64)
        score = np.asarray(score, np.float64).reshape(-1)
        if score.size != centre.shape[0]:
            raise CheckpointError(
                f"face_det.onnx output has {score.size} cells at stride {stride}, expected {centre.shape[0]}"
            )
        logits = np.asarray(dist, np.float64).reshape(-1, DET_REG_MAX + 1)
        prob = np.exp(logits - logits.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        distance = (prob @ np.arange(DET_REG_MAX + 1)).reshape(-1, 4) * stride
        keep = score > threshold
        box = np.concatenate([centre - distance[:, :2], centre + distance[:, 2:]], axis=1)
        all_boxes.append(box[keep])
        all_scores.append(score[keep])
    boxes_ = np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4))
    scores_ = np.concatenate(all_scores) if all_scores else np.zeros(0)
    picked = nms(boxes_, scores_, iou)
    return boxes_[picked], scores_[picked]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression, highest score first."""
    from .geometry import box_iou

    order = list(np.argsort(-scores))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if order:
            ious = box_iou(boxes[[i]], boxes[order])[0]
            order = [j for j, v in zip(order, ious) if v <= iou_threshold]
    return keep


def _crop_matrix_from_box(box: np.ndarray) -> np.ndarray:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    scale = LMK_SIZE / max(box[2] - box[0], box[3] - box[1]) * (1 - LMK_EXPAND)
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), 0.0, float(scale))
    m[:, 2] += [LMK_SIZE / 2 - cx, LMK_SIZE / 2 - cy]
    return m


def _crop_matrix_from_points(points: np.ndarray, angle_deg: float) -> np.ndarray:
    """Crop around landmarks, rotated by angle_deg, the rotated point set filling 85 % of the side."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre = (lo + hi) / 2
    rot = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle_deg, 1.0)
    rotated = points @ rot[:, :2].T + rot[:, 2]
    size = (rotated.max(axis=0) - rotated.min(axis=0)).max()
    scale = LMK_SIZE / max(size, 1e-6) * (1 - LMK_EXPAND)
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle_deg, float(scale))
    moved = points @ m[:, :2].T + m[:, 2]
    mid = (moved.min(axis=0) + moved.max(axis=0)) / 2
    m[:, 2] += LMK_SIZE / 2 - mid
    return m


class OnnxFaceBackend(FaceBackend):
    """Reference face stack: NanoDet face detector + 222-point landmark model (onnxruntime, CPU).

    model_dir: folder holding face_det.onnx and face_landmark.onnx (or give both paths).
    """

    name = "onnx"
    landmark_layout = "hello222"
    num_landmarks = 222

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        det_path: str | os.PathLike | None = None,
        landmark_path: str | os.PathLike | None = None,
        min_score: float = 0.4,
        refine_iterations: int = 3,
    ):
        if det_path is None or landmark_path is None:
            if model_dir is None:
                raise CheckpointError(
                    "the onnx face backend needs model_dir=<folder with face_det.onnx and face_landmark.onnx>"
                )
            det_path = det_path or Path(model_dir) / "face_det.onnx"
            landmark_path = landmark_path or Path(model_dir) / "face_landmark.onnx"
        self.min_score = float(min_score)
        self.refine_iterations = int(refine_iterations)
        self._det = _session(Path(det_path))
        self._lmk = _session(Path(landmark_path))
        self._det_in = self._det.get_inputs()[0].name
        self._lmk_in = self._lmk.get_inputs()[0].name

    def detect_boxes(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image = check_image(image_rgb)
        h, w = image.shape[:2]
        bgr = image[:, :, ::-1]
        m = letterbox_matrix((w, h), (DET_INPUT_HW[1], DET_INPUT_HW[0]))
        resized = cv2.warpPerspective(np.ascontiguousarray(bgr), m, (DET_INPUT_HW[1], DET_INPUT_HW[0]))
        x = ((resized.astype(np.float32) - DET_MEAN_BGR) / DET_STD_BGR).transpose(2, 0, 1)[None]
        outputs = self._det.run(None, {self._det_in: x})
        if len(outputs) != 6:
            raise CheckpointError(f"face_det.onnx gave {len(outputs)} outputs, expected 6 (NanoDet layout)")
        boxes, scores = decode_nanodet(
            [np.squeeze(o) for o in outputs[:3]],
            [np.squeeze(o) for o in outputs[3:]],
            threshold=self.min_score,
        )
        if len(boxes):
            inv = np.linalg.inv(m)
            corners = np.concatenate([boxes[:, :2], boxes[:, 2:]], axis=0)
            corners = corners @ inv[:2, :2].T + inv[:2, 2]
            n = len(boxes)
            boxes = np.concatenate([corners[:n], corners[n:]], axis=1)
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return boxes.astype(np.float32), scores.astype(np.float32)

    def _landmarks_once(self, bgr: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, float]:
        crop = cv2.warpAffine(bgr, m, (LMK_SIZE, LMK_SIZE))
        x = (crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        outputs = self._lmk.run(None, {self._lmk_in: x})
        flat = np.asarray(outputs[0]).reshape(-1)
        if flat.size != 2 * self.num_landmarks:
            raise CheckpointError(f"face_landmark.onnx gave {flat.size} values, expected 444 (222 points)")
        pts = flat.reshape(2, -1).T * LMK_SIZE
        inv = cv2.invertAffineTransform(m)
        pts = pts @ inv[:, :2].T + inv[:, 2]
        score = float(np.asarray(outputs[-1]).reshape(-1)[0]) if len(outputs) > 2 else 1.0
        return pts, score

    def landmarks_in_box(self, image_rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(222, 2) float32 landmarks for the face in ``box``."""
        bgr = np.ascontiguousarray(check_image(image_rgb)[:, :, ::-1])
        pts, _ = self._landmarks_once(bgr, _crop_matrix_from_box(box))
        for _ in range(self.refine_iterations - 1):
            d = pts[96] - pts[74]
            angle = np.degrees(np.arctan2(d[1], d[0] + 1e-8))
            pts, _ = self._landmarks_once(bgr, _crop_matrix_from_points(pts, angle))
        return pts.astype(np.float32)

    def detect(self, image_rgb: np.ndarray) -> list[FaceObservation]:
        boxes, scores = self.detect_boxes(image_rgb)
        faces = []
        for box, score in zip(boxes, scores):
            pts = self.landmarks_in_box(image_rgb, box)
            faces.append(
                FaceObservation(
                    box=box,
                    score=float(score),
                    five_points=pts[list(ONNX_FIVE_POINT_ROWS)].astype(np.float32),
                    landmarks=pts,
                    landmark_layout=self.landmark_layout,
                )
            )
        return faces
