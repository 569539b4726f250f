"""Motion features per face: PD-FGC encoder loading, batched extraction, typed results.

``MotionEncoder`` wraps :class:`FanEncoder` with weight loading (``pd_fpg.pth`` or the ``pd_fpg.``
section of a single-file checkpoint), preprocessing and batching. ``extract_motion`` goes from video
frames and five points (or a ``FaceTrack``) to :class:`MotionFeatures`, streaming in chunks so memory
does not grow with the clip length.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from .fan import FanEncoder

logger = logging.getLogger(__name__)

MOTION_DIM = 554
PART_DIMS = {"head": 6, "eye": 6, "emotion": 30, "mouth": 512}
CHECKPOINT_PREFIX = "pd_fpg."


@dataclass
class MotionFeatures:
    """PD-FGC features of one face over F frames (float32 tensors on any device).

    head (F, 6), eye (F, 6), emotion (F, 30), mouth (F, 512). ``as_tensor()`` -> (F, 554) in that order
    (the order the expression encoder and the released weights expect).
    """

    head: torch.Tensor
    eye: torch.Tensor
    emotion: torch.Tensor
    mouth: torch.Tensor

    def __post_init__(self):
        n = self.head.shape[0]
        for name, dim in PART_DIMS.items():
            t = getattr(self, name)
            if t.ndim != 2 or t.shape != (n, dim):
                raise ValueError(f"MotionFeatures.{name} must be ({n}, {dim}), got {tuple(t.shape)}")

    @property
    def num_frames(self) -> int:
        return int(self.head.shape[0])

    def __len__(self) -> int:
        return self.num_frames

    def as_tensor(self) -> torch.Tensor:
        """(F, 554): head, eye, emotion, mouth."""
        return torch.cat([self.head, self.eye, self.emotion, self.mouth], dim=1)

    @classmethod
    def from_tensor(cls, motion: torch.Tensor | np.ndarray) -> MotionFeatures:
        """Split an (F, 554) array back into parts."""
        motion = torch.as_tensor(motion)
        if motion.ndim != 2 or motion.shape[1] != MOTION_DIM:
            raise ValueError(f"expected (F, {MOTION_DIM}) motion features, got {tuple(motion.shape)}")
        head, eye, emotion, mouth = torch.split(motion, list(PART_DIMS.values()), dim=1)
        return cls(head, eye, emotion, mouth)

    @classmethod
    def concat(cls, parts: Iterable[MotionFeatures]) -> MotionFeatures:
        parts = list(parts)
        return cls(*(torch.cat([getattr(p, n) for p in parts]) for n in PART_DIMS))

    def to(self, *args, **kwargs) -> MotionFeatures:
        return MotionFeatures(*(getattr(self, n).to(*args, **kwargs) for n in PART_DIMS))

    def __getitem__(self, index) -> MotionFeatures:
        """Frame slicing: ``features[10:30]``."""
        return MotionFeatures(*(getattr(self, n)[index] for n in PART_DIMS))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.is_dir():
        candidates = [path / "pd_fpg.pth", path / "pd_fpg.safetensors"]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise CheckpointError(f"{path}: folder has no pd_fpg.pth")
        path = found[0]
    if not path.is_file():
        raise CheckpointError(f"{path}: PD-FGC weights not found (pd_fpg.pth)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:
            raise CheckpointError(f"{path}: cannot read weights ({exc.__class__.__name__}: {exc})") from exc
    else:
        from ..io.weights import load_torch_file

        state = load_torch_file(path, what="PD-FGC weights", mmap=False)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, dict) and isinstance(state.get(CHECKPOINT_PREFIX[:-1]), dict):
        state = state[CHECKPOINT_PREFIX[:-1]]  # nested {"pd_fpg": {...}} checkpoints
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a state dict")
    if any(k.startswith(CHECKPOINT_PREFIX) for k in state):
        state = {k[len(CHECKPOINT_PREFIX) :]: v for k, v in state.items() if k.startswith(CHECKPOINT_PREFIX)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _check_keys(model: torch.nn.Module, state: dict, path: Path) -> None:
    expected = set(model.state_dict())
    got = set(state)
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: not PD-FGC motion encoder weights ({len(missing)} missing e.g. {missing[:2]}, "
            f"{len(unexpected)} unexpected e.g. {unexpected[:2]})"
        )
    for k, v in model.state_dict().items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{path}: {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")


class MotionEncoder:
    """PD-FGC motion encoder ready to run: ``encode(crops) -> MotionFeatures``.

    Build with :meth:`from_pretrained` (weights file) or wrap a FanEncoder. device/dtype come from
    the caller (``"cpu"`` default). batch_size: crops per forward pass (default 4 on a CPU, where
    larger batches are not faster and cost about 28 MB of activations per crop; 32 elsewhere).
    """

    def __init__(
        self,
        network: FanEncoder | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
    ):
        if batch_size is None:
            batch_size = 4 if torch.device(device).type == "cpu" else 32
        self.network = (network or FanEncoder()).eval().to(device=device, dtype=dtype)
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = int(batch_size)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
    ) -> MotionEncoder:
        """Load ``pd_fpg.pth`` (plain state dict), a folder holding it, or the ``pd_fpg.`` section of a
        single-file checkpoint (.pth/.ckpt/.safetensors). Key matching is strict; CheckpointError otherwise."""
        path = Path(path)
        state = _read_state_dict(path)
        network = FanEncoder()
        _check_keys(network, state, path)
        network.load_state_dict(state, strict=True)
        logger.info("loaded PD-FGC motion encoder from %s", path)
        return cls(network, device=device, dtype=dtype, batch_size=batch_size)

    @staticmethod
    def preprocess(crops_rgb: np.ndarray) -> torch.Tensor:
        """(B, 224, 224, 3) uint8 RGB -> (B, 3, 224, 224) float32 in [-1, 1] (pixel/255*2-1 in float64)."""
        crops = np.asarray(crops_rgb)
        if crops.ndim == 3:
            crops = crops[None]
        x = (crops.astype(np.float64) / 255.0 * 2.0 - 1.0).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    @torch.inference_mode()
    def encode_tensor(self, x: torch.Tensor) -> MotionFeatures:
        """(B, 3, 224, 224) float in [-1, 1] -> MotionFeatures (float32, on CPU), in batches."""
        parts = []
        for start in range(0, x.shape[0], self.batch_size):
            chunk = x[start : start + self.batch_size].to(device=self.device, dtype=self.dtype)
            out = self.network(chunk)
            parts.append(MotionFeatures(*(o.float().cpu() for o in out)))
        if not parts:
            z = {n: torch.zeros(0, d) for n, d in PART_DIMS.items()}
            return MotionFeatures(**z)
        return MotionFeatures.concat(parts)

    def encode(self, crops_rgb: np.ndarray) -> MotionFeatures:
        """(B, 224, 224, 3) uint8 RGB aligned crops -> MotionFeatures."""
        return self.encode_tensor(self.preprocess(crops_rgb))

    def encode_blank(self) -> MotionFeatures:
        """Features of an all-black crop (input -1 everywhere): the reference's "negative" motion."""
        return self.encode_tensor(-torch.ones(1, 3, 224, 224))


def extract_motion(
    frames: np.ndarray | Iterable[np.ndarray],
    five_points: np.ndarray | None = None,
    encoder: MotionEncoder | None = None,
    *,
    track=None,
    chunk: int = 32,
    return_crops: bool = False,
) -> MotionFeatures | tuple[MotionFeatures, np.ndarray]:
    """Motion features of one face through a clip.

    frames: (F, H, W, 3) uint8 RGB array or an iterable of frames (streamed in chunks of ``chunk``).
    five_points: (F, 5, 2) image points, or pass ``track=FaceTrack`` instead (its smoothed points).
    encoder: a MotionEncoder (required). Returns MotionFeatures with F rows (and the (F, 224, 224, 3)
    crops if return_crops).
    """
    from ..faces.align import align_faces

    if encoder is None:
        raise ValueError("extract_motion needs a MotionEncoder (MotionEncoder.from_pretrained('pd_fpg.pth'))")
    if five_points is None:
        if track is None:
            raise ValueError("give five_points (F, 5, 2) or track=FaceTrack")
        five_points = track.five_points
    points = np.asarray(five_points, np.float64)
    results, crops_all = [], []
    buffer: list[np.ndarray] = []
    done = 0

    def flush():
        nonlocal done, buffer
        if not buffer:
            return
        n = len(buffer)
        if done + n > len(points):
            raise ValueError(f"more frames than five-point rows ({len(points)})")
        crops = align_faces(np.stack(buffer), points[done : done + n])
        results.append(encoder.encode(crops))
        if return_crops:
            crops_all.append(crops)
        done += n
        buffer = []

    for frame in frames:
        buffer.append(np.asarray(frame))
        if len(buffer) >= chunk:
            flush()
    flush()
    if done != len(points):
        raise ValueError(f"{done} frames but {len(points)} rows of five points")
    features = (
        MotionFeatures.concat(results) if results else encoder.encode_tensor(torch.zeros(0, 3, 224, 224))
    )
    if return_crops:
        return features, (np.concatenate(crops_all) if crops_all else np.zeros((0, 224, 224, 3), np.uint8))
    return features


def extract_tracks_motion(
    frames_or_video,
    tracks: list,
    encoder: MotionEncoder,
    *,
    fps: float | None = None,
    chunk: int = 32,
    progress: bool | str = False,
) -> list[MotionFeatures]:
    """Motion features of every tracked face in one decoding pass (memory bounded by ``chunk`` frames).

    frames_or_video: a video path (decoded again, resampled to ``fps`` exactly as for tracking),
    VideoFrames, an (F, H, W, 3) array or an iterable of frames. tracks: FaceTracks of that clip.
    progress: show a bar over the frames (a string: its label). Returns one MotionFeatures per track,
    each with the track's F frames.
    """
    from tqdm.auto import tqdm

    from ..faces.align import align_faces
    from ..io import VideoFrames, iter_video_frames

    if isinstance(frames_or_video, (str, os.PathLike)):
        frames = iter_video_frames(frames_or_video, fps=fps)
    elif isinstance(frames_or_video, VideoFrames):
        frames = frames_or_video.frames
    else:
        frames = frames_or_video
    if not tracks:
        return []
    n = tracks[0].num_frames
    results: list[list[MotionFeatures]] = [[] for _ in tracks]
    buffer: list[np.ndarray] = []
    done = 0
    label = progress if isinstance(progress, str) else "motion"
    bar = tqdm(total=n, desc=label, unit="frame", disable=not progress, leave=False)

    def flush():
        nonlocal done, buffer
        if not buffer:
            return
        batch = np.stack(buffer)
        for i, tr in enumerate(tracks):
            results[i].append(encoder.encode(align_faces(batch, tr.five_points[done : done + len(buffer)])))
        done += len(buffer)
        bar.update(len(buffer))
        buffer = []

    try:
        for frame in frames:
            if done + len(buffer) >= n:
                break
            buffer.append(np.asarray(frame))
            if len(buffer) >= chunk:
                flush()
        flush()
    finally:
        bar.close()
    if done != n:
        raise ValueError(f"the clip gave {done} frames but the tracks have {n}")
    return [MotionFeatures.concat(parts) for parts in results]
