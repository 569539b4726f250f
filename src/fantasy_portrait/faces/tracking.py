"""Follow N faces through a driving video with stable identities; every frame keeps its motion.

1. Detect faces in every frame with the backend (full-range detection + mesh per face).
2. Associate detections to tracks frame by frame: each track predicts its box from a constant
   velocity; the cost of a pair is (1 - IoU) + centre distance / face size + |log size ratio|, gated,
   and solved as an assignment problem (Hungarian, scipy) so two faces never swap greedily.
3. Tracks interrupted for longer than the association window are merged afterwards when the face
   reappears where (and as large as) it was lost.
4. The ``num_faces`` longest tracks are kept (or, without num_faces, every track seen in at least
   ``min_coverage`` of the frames). Missing frames are filled by linear interpolation (held at the
   clip's ends) up to ``max_gap`` frames; longer gaps raise FaceError naming the frames.
5. Boxes, five points and landmarks are smoothed with a zero-lag One-Euro filter (see smoothing.py).
6. Tracks are returned ordered left to right (median box centre x).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FaceError, InputError
from .backend import FaceBackend, get_backend
from .geometry import box_centers, box_iou, box_sizes
from .smoothing import smooth_points
from .types import FaceObservation

logger = logging.getLogger(__name__)

DEFAULT_MAX_GAP_S = 0.5  # longest gap (seconds) filled by interpolation
DEFAULT_MIN_COVERAGE = 0.5  # a face must be found in at least this share of frames


@dataclass
class FaceTrack:
    """One face followed through F frames (after gap filling and smoothing).

    boxes (F, 4) float32 x1,y1,x2,y2; five_points (F, 5, 2) float32; landmarks (F, K, 2) float32 or None;
    filled (F,) bool, True where the frame had no detection and values were interpolated;
    scores (F,) float32 detector scores (0 where filled); raw_five_points (F, 5, 2) before smoothing.
    track_id: position in left-to-right order (0 = leftmost).
    """

    boxes: np.ndarray
    five_points: np.ndarray
    landmarks: np.ndarray | None
    filled: np.ndarray
    scores: np.ndarray
    fps: float
    track_id: int = 0
    landmark_layout: str = ""
    raw_five_points: np.ndarray | None = None
    raw_boxes: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.boxes.shape[0])

    def __len__(self) -> int:
        return self.num_frames

    @property
    def observed(self) -> np.ndarray:
        return ~self.filled

    @property
    def coverage(self) -> float:
        return float(self.observed.mean()) if self.num_frames else 0.0

    @property
    def center_x(self) -> float:
        return float(np.median(box_centers(self.boxes)[:, 0]))

    def gaps(self) -> list[tuple[int, int]]:
        """Inclusive (first, last) frame ranges that were filled."""
        return _runs(self.filled)

    def to_dict(self, with_frames: bool = True) -> dict:
        """JSON-ready summary (boxes rounded to 0.1 px)."""
        d = {
            "track_id": self.track_id,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "coverage": round(self.coverage, 4),
            "filled_frames": _format_runs(self.gaps()),
            "median_box": np.round(np.median(self.boxes, axis=0), 1).tolist(),
        }
        if with_frames:
            d["boxes"] = np.round(self.boxes, 1).tolist()
            d["filled"] = self.filled.astype(int).tolist()
        return d


@dataclass
class _RawTrack:
    frames: list[int] = field(default_factory=list)
    obs: list[FaceObservation] = field(default_factory=list)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))

    @property
    def last_frame(self) -> int:
        return self.frames[-1]

    @property
    def last_box(self) -> np.ndarray:
        return np.asarray(self.obs[-1].box, np.float64)

    def predict(self, t: int) -> np.ndarray:
        return self.last_box + self.velocity * (t - self.last_frame)

    def add(self, t: int, obs: FaceObservation) -> None:
        if self.frames:
            step = (np.asarray(obs.box, np.float64) - self.last_box) / (t - self.last_frame)
            self.velocity = step if len(self.frames) == 1 else 0.5 * self.velocity + 0.5 * step
        self.frames.append(t)
        self.obs.append(obs)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, m in enumerate(np.asarray(mask, bool)):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(mask) - 1))
    return runs


def _format_runs(runs: list[tuple[int, int]]) -> list[str]:
    return [f"{a}" if a == b else f"{a}-{b}" for a, b in runs]


def pair_cost(
    pred_boxes: np.ndarray, det_boxes: np.ndarray, gaps: np.ndarray, gate: float = 1.0
) -> np.ndarray:
    """(T, D) association cost; np.inf where the pair is implausible.

    cost = (1 - IoU) + centre distance / track size + |log(size ratio)|; a pair is allowed if the
    centre moved less than ``gate * (1 + 0.25 * (gap - 1))`` face sizes and the size changed < 2x.
    """
    iou = box_iou(pred_boxes, det_boxes)
    ct, cd = box_centers(pred_boxes), box_centers(det_boxes)
    st, sd = np.maximum(box_sizes(pred_boxes), 1.0), np.maximum(box_sizes(det_boxes), 1.0)
    dist = np.linalg.norm(ct[:, None] - cd[None], axis=-1) / st[:, None]
    size = np.abs(np.log(sd[None] / st[:, None]))
    cost = (1 - iou) + dist + size
    allowed = (dist < gate * (1 + 0.25 * (gaps[:, None] - 1))) & (size < np.log(2.0))
    return np.where(allowed, cost, np.inf)


def _associate(detections: list[list[FaceObservation]], max_age: int) -> list[_RawTrack]:
    from scipy.optimize import linear_sum_assignment

    tracks: list[_RawTrack] = []
    for t, dets in enumerate(detections):
        active = [tr for tr in tracks if t - tr.last_frame <= max_age]
        unmatched = list(range(len(dets)))
        if active and dets:
            pred = np.stack([tr.predict(t) for tr in active])
            gaps = np.array([t - tr.last_frame for tr in active], np.float64)
            cost = pair_cost(pred, np.stack([np.asarray(d.box, np.float64) for d in dets]), gaps)
            finite = np.where(np.isfinite(cost), cost, 1e6)
            rows, cols = linear_sum_assignment(finite)
            for r, c in zip(rows, cols):
                if np.isfinite(cost[r, c]):
                    active[r].add(t, dets[c])
                    unmatched.remove(c)
        for c in unmatched:
            tr = _RawTrack()
            tr.add(t, dets[c])
            tracks.append(tr)
    return tracks


def _merge_fragments(tracks: list[_RawTrack]) -> list[_RawTrack]:
    """Join a track that ends with a later one that starts near its last position (long occlusions)."""
    tracks = sorted(tracks, key=lambda tr: tr.frames[0])
    merged = True
    while merged:
        merged = False
        best = None
        for i, a in enumerate(tracks):
            for j, b in enumerate(tracks):
                if i == j or b.frames[0] <= a.last_frame:
                    continue
                cost = pair_cost(
                    a.last_box[None], np.asarray(b.obs[0].box, np.float64)[None], np.ones(1), gate=1.5
                )[0, 0]
                if np.isfinite(cost) and (best is None or cost < best[0]):
                    best = (cost, i, j)
        if best is not None:
            _, i, j = best
            a, b = tracks[i], tracks[j]
            a.frames += b.frames
            a.obs += b.obs
            a.velocity = b.velocity
            del tracks[j]
            merged = True
    return tracks


def _interpolate(values: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Fill rows of (F, ...) where observed is False: linear between neighbours, held at the ends."""
    f = values.shape[0]
    idx = np.flatnonzero(observed)
    flat = values.reshape(f, -1)
    out = np.empty_like(flat)
    for col in range(flat.shape[1]):
        out[:, col] = np.interp(np.arange(f), idx, flat[idx, col])
    return out.reshape(values.shape)


def _build_track(raw: _RawTrack, num_frames: int, fps: float, smooth: bool) -> FaceTrack:
    observed = np.zeros(num_frames, bool)
    observed[raw.frames] = True
    boxes = np.zeros((num_frames, 4), np.float64)
    five = np.zeros((num_frames, 5, 2), np.float64)
    scores = np.zeros(num_frames, np.float32)
    ks = {None if o.landmarks is None else o.landmarks.shape for o in raw.obs}
    has_lmk = len(ks) == 1 and None not in ks
    lmk = np.zeros((num_frames, *next(iter(ks))), np.float64) if has_lmk else None
    for t, o in zip(raw.frames, raw.obs):
        boxes[t] = o.box
        five[t] = o.five_points
        scores[t] = o.score
        if lmk is not None:
            lmk[t] = o.landmarks
    boxes, five = _interpolate(boxes, observed), _interpolate(five, observed)
    if lmk is not None:
        lmk = _interpolate(lmk, observed)
    raw_five, raw_boxes = five.astype(np.float32), boxes.astype(np.float32)
    if smooth:
        size = box_sizes(boxes)
        five = smooth_points(five, fps, size)
        boxes = smooth_points(boxes, fps, size)
        if lmk is not None:
            lmk = smooth_points(lmk, fps, size)
    return FaceTrack(
        boxes=np.asarray(boxes, np.float32),
        five_points=np.asarray(five, np.float32),
        landmarks=None if lmk is None else np.asarray(lmk, np.float32),
        filled=~observed,
        scores=scores,
        fps=fps,
        landmark_layout=raw.obs[0].landmark_layout,
        raw_five_points=raw_five,
        raw_boxes=raw_boxes,
    )


def _frame_source(frames_or_video, fps: float | None, max_frames: int | None):
    """-> (iterable of frames, fps, total or None, name)."""
    from ..io import VideoFrames, iter_video_frames, probe_video

    if isinstance(frames_or_video, (str, os.PathLike)):
        path = Path(frames_or_video)
        info = probe_video(path)
        rate = fps or info.fps
        total = info.frames_at(fps)  # exactly what the reader will yield
        if max_frames is not None:
            total = min(total, max_frames)
        return iter_video_frames(path, fps=fps, max_frames=max_frames), rate, total, str(path)
    if isinstance(frames_or_video, VideoFrames):
        frames = frames_or_video.frames[:max_frames]
        name = str(frames_or_video.path) if frames_or_video.path else "video"
        return frames, frames_or_video.fps, len(frames), name
    if isinstance(frames_or_video, np.ndarray):
        if frames_or_video.ndim != 4:
            raise ValueError(f"frames must be (F, H, W, 3), got {frames_or_video.shape}")
        frames = frames_or_video[:max_frames]
        return frames, fps or 25.0, len(frames), "frames"
    return frames_or_video, fps or 25.0, None, "frames"


def detect_all(
    frames: Iterable[np.ndarray], backend: FaceBackend, total: int | None = None, progress: bool = True
) -> list[list[FaceObservation]]:
    """Backend detections for every frame (faces without five points are dropped; 3D landmarks and
    backend extras are discarded to keep memory at ~4 KB per face and frame)."""
    from tqdm.auto import tqdm

    out = []
    for frame in tqdm(frames, total=total, desc="faces", unit="frame", disable=not progress, leave=False):
        faces = [f for f in backend.detect(frame) if f.five_points is not None]
        for f in faces:  # keep per-frame memory small on long clips: 2D landmarks are all tracking uses
            f.landmarks_3d = None
            f.extra = {}
        out.append(faces)
    return out


def detect_video(
    video: str | os.PathLike,
    backend: FaceBackend | str | None = None,
    *,
    fps: float | None = None,
    max_frames: int | None = None,
    progress: bool = True,
) -> list[list[FaceObservation]]:
    """Backend detections for every frame of a video (resampled to ``fps``): what :func:`track_faces`
    takes as ``detections=`` to track the same clip several ways without detecting twice."""
    frames, _, total, _ = _frame_source(video, fps, max_frames)
    backend = get_backend(backend or "mediapipe") if not isinstance(backend, FaceBackend) else backend
    return detect_all(frames, backend, total, progress)


def track_faces(
    frames_or_video,
    num_faces: int | None = None,
    backend: FaceBackend | str | None = None,
    *,
    fps: float | None = None,
    max_frames: int | None = None,
    max_gap: int | None = None,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    smooth: bool = True,
    progress: bool = True,
    detections: list[list[FaceObservation]] | None = None,
) -> list[FaceTrack]:
    """Track faces through a clip; returns FaceTracks ordered left to right, each with F frames.

    frames_or_video: a video path (decoded lazily, resampled to ``fps`` if given), VideoFrames,
    an (F, H, W, 3) uint8 RGB array or an iterable of frames. num_faces: how many faces to return
    (None: every face found in at least ``min_coverage`` of the frames). backend: FaceBackend or its
    name (default "mediapipe"). max_gap: longest run of missing frames filled by interpolation
    (default 0.5 s). detections: precomputed per-frame observations (skips the backend).
    Raises FaceError: no face at all, fewer faces than num_faces, a face found in too few frames,
    or a gap longer than max_gap (the message names the frames).
    """
    frames, rate, total, name = _frame_source(frames_or_video, fps, max_frames)
    if detections is not None and max_frames is not None:
        detections = detections[:max_frames]
    if detections is None:
        backend = get_backend(backend or "mediapipe") if not isinstance(backend, FaceBackend) else backend
        detections = detect_all(frames, backend, total, progress)
    n = len(detections)
    if n == 0:
        raise InputError(f"{name}: video has no frames")
    if max_gap is None:
        max_gap = max(2, int(round(DEFAULT_MAX_GAP_S * rate)))
    found = sum(1 for d in detections if d)
    if found == 0:
        raise FaceError(f"{name}: no face found in any of its {n} frames")
    raw = _associate(detections, max_age=max(max_gap, int(round(rate))))
    # Tracks seen in only a handful of frames are false detections or passers-by; dropping them
    # before merging keeps the merge step small on long clips.
    min_len = min(max(3, int(0.01 * n)), max(1, n // 2))
    kept = [tr for tr in raw if len(tr.frames) >= min_len]
    raw = _merge_fragments(kept) if kept else sorted(raw, key=lambda tr: -len(tr.frames))[:1]
    raw.sort(key=lambda tr: (-len(tr.frames), -float(np.mean([o.score for o in tr.obs]))))
    if num_faces is not None:
        if num_faces < 1:
            raise ValueError("num_faces must be >= 1")
        if len(raw) < num_faces:
            raise FaceError(f"{name}: found {len(raw)} face(s), expected {num_faces}")
        chosen = raw[:num_faces]
    else:
        chosen = [tr for tr in raw if len(tr.frames) >= min_coverage * n] or raw[:1]
    problems = []
    for tr in chosen:
        cov = len(tr.frames) / n
        if cov < min_coverage:
            problems.append(
                f"a face is found in only {len(tr.frames)} of {n} frames ({cov:.0%}, need {min_coverage:.0%})"
            )
            continue
        missing = np.ones(n, bool)
        missing[tr.frames] = False
        long = [(a, b) for a, b in _runs(missing) if b - a + 1 > max_gap]
        if long:
            x = float(np.median(box_centers(np.stack([o.box for o in tr.obs]))[:, 0]))
            problems.append(
                f"the face at x~{x:.0f} is missing in frames {', '.join(_format_runs(long))} "
                f"(longer than {max_gap} frames)"
            )
    if problems:
        raise FaceError(f"{name}: " + "; ".join(problems))
    tracks = [_build_track(tr, n, rate, smooth) for tr in chosen]
    tracks.sort(key=lambda t: t.center_x)
    for i, t in enumerate(tracks):
        t.track_id = i
        logger.info(
            "%s: face %d tracked over %d frames (%d filled)", name, i, t.num_frames, int(t.filled.sum())
        )
    return tracks
