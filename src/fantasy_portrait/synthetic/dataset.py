"""Synthetic clips with cross-reenactment ground truth, written in the training manifest format.

A sample has N characters (1 to 4) and three renders:

- ``driver.mp4``: the driver identities performing a random performance;
- ``reference.png``: other (target) identities, in their own layout, in a reference pose;
- ``target.mp4``: the ground truth of cross-reenactment: the target identities performing exactly
  the driver's motion parameters (character i follows driver character i; head translation is
  relative to each character's own place).

Each video has a track file (safetensors, faces first, as :mod:`fantasy_portrait.training.precompute`
reads it): ``boxes`` (N, F, 4), ``landmarks`` (N, F, 35, 2), ``five_points`` (N, F, 5, 2),
``landmark_visible`` (N, F, 35) uint8 and ``synthetic_motion`` (N, F, 17) (the exact parameters), and, on request,
``motion`` (N, F, 554) from the tiny synthetic motion encoder (otherwise the precompute step's motion
encoder fills it). The dataset folder
gets ``manifest.jsonl`` (every video as a training clip) and ``pairs.jsonl`` (one line per
cross-reenactment sample). docs/synthetic.md describes the layout.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .params import MOTION_NAMES, MOTION_PARTS, Identity, random_identity
from .render import LANDMARK_LAYOUT, LANDMARK_NAMES, Character, RenderedFrame, Scene, render_frame
from .scenes import Clip, random_performances, random_scene, render_clip

logger = logging.getLogger(__name__)

FORMAT_NAME = "fantasy-portrait-synthetic"
FORMAT_VERSION = 1


@dataclass
class CrossSample:
    """One cross-reenactment sample, all in memory."""

    driver_scene: Scene
    target_scene: Scene
    driver: Clip
    target: Clip  # ground truth: target identities with the driver's motion
    reference: RenderedFrame
    reference_motion: np.ndarray  # (N, 17)
    # Optional: each driver character alone in its own square video (the "N driving videos" input).
    single_drivers: list[Clip] = field(default_factory=list)


def _distinct_identity(rng: np.random.Generator, other: Identity) -> Identity:
    """A random identity that differs visibly from ``other`` (hair style and hair or skin colour)."""
    for _ in range(50):
        idt = random_identity(rng)
        hair = np.abs(np.subtract(idt.hair_color, other.hair_color)).sum()
        skin = np.abs(np.subtract(idt.skin, other.skin)).sum()
        if idt.hair_style != other.hair_style and (hair > 0.3 or skin > 0.25):
            return idt
    return idt


def make_sample(
    seed: int,
    num_characters: int,
    num_frames: int,
    height: int,
    width: int,
    fps: float = 25.0,
    single_drivers: bool = False,
) -> CrossSample:
    """Render one cross-reenactment sample; deterministic in its arguments.

    single_drivers: also render each driver character alone (height x height), performing the same
    motion, as one driving video per face.
    """
    ss = np.random.SeedSequence([int(seed), int(num_characters)])
    s_driver, s_target, s_perf, s_ref = (np.random.default_rng(s) for s in ss.spawn(4))
    driver_scene = random_scene(s_driver, num_characters, height, width)
    target_ids = [_distinct_identity(s_target, ch.identity) for ch in driver_scene.characters]
    target_scene = random_scene(s_target, num_characters, height, width, identities=target_ids)
    motion = random_performances(num_frames, num_characters, int(s_perf.integers(2**31)), fps)
    reference_motion = random_performances(1, num_characters, int(s_ref.integers(2**31)), fps)[0]
    singles = []
    if single_drivers:
        for i, ch in enumerate(driver_scene.characters):
            idt = ch.identity
            alone = Scene(
                (Character(idt, (0.5, 0.45), 0.27),),
                height,
                height,
                idt.background_top,
                idt.background_bottom,
            )
            singles.append(render_clip(alone, motion[:, i : i + 1]))
    return CrossSample(
        single_drivers=singles,
        driver_scene=driver_scene,
        target_scene=target_scene,
        driver=render_clip(driver_scene, motion),
        target=render_clip(target_scene, motion),
        reference=render_frame(target_scene, reference_motion),
        reference_motion=reference_motion,
    )


def clip_tracks(clip: Clip) -> dict[str, np.ndarray]:
    """Track tensors of a clip, faces first: boxes (N, F, 4), landmarks (N, F, 35, 2), ..."""
    return {
        "boxes": np.ascontiguousarray(clip.boxes.transpose(1, 0, 2)),
        "landmarks": np.ascontiguousarray(clip.landmarks.transpose(1, 0, 2, 3)),
        "five_points": np.ascontiguousarray(clip.five_points.transpose(1, 0, 2, 3)),
        "landmark_visible": np.ascontiguousarray(clip.landmark_visible.transpose(1, 0, 2)).astype(np.uint8),
        "synthetic_motion": np.ascontiguousarray(clip.motion.transpose(1, 0, 2)),
    }


def frame_tracks(frame: RenderedFrame, motion: np.ndarray) -> dict[str, np.ndarray]:
    """Track tensors of a single frame (F = 1)."""
    clip = Clip(
        frames=frame.image[None],
        motion=np.asarray(motion, np.float32)[None],
        boxes=frame.boxes[None],
        five_points=frame.five_points[None],
        landmarks=frame.landmarks[None],
        landmark_visible=frame.landmark_visible[None],
    )
    return clip_tracks(clip)


def save_tracks(path: str | os.PathLike, tracks: dict[str, np.ndarray], metadata: dict | None = None) -> Path:
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"layout": LANDMARK_LAYOUT, "motion_names": ",".join(MOTION_NAMES)}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    save_file({k: np.ascontiguousarray(v) for k, v in tracks.items()}, str(path), metadata=meta)
    return path


def load_tracks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a track file written by :func:`save_tracks` (faces first)."""
    from safetensors.numpy import load_file

    from ..errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: track file not found")
    try:
        return load_file(str(path))
    except Exception as exc:
        raise InputError(f"{path}: unreadable track file ({exc})") from exc


def write_clip_video(path: str | os.PathLike, frames: np.ndarray, fps: float) -> Path:
    """Write (F, H, W, 3) uint8 RGB frames as H.264 mp4 with the project's writer."""
    from ..io.video import write_video

    return write_video(path, frames, fps)


def _scene_dict(scene: Scene) -> dict:
    return {
        "height": scene.height,
        "width": scene.width,
        "background_top": list(scene.background_top),
        "background_bottom": list(scene.background_bottom),
        "characters": [
            {"identity": c.identity.to_dict(), "center": list(c.center), "size": c.size}
            for c in scene.characters
        ],
    }


def add_motion_features(tracks: dict[str, np.ndarray], frames: np.ndarray, encoder) -> dict[str, np.ndarray]:
    """Add ``motion`` (N, F, D) from a tiny motion encoder (D = 554 with the default widths)."""
    from .motion_encoder import motion_features

    five = tracks["five_points"]
    tracks["motion"] = np.stack([motion_features(encoder, frames, five[i]) for i in range(len(five))]).astype(
        np.float32
    )
    return tracks


def write_sample(
    folder: str | os.PathLike, sample: CrossSample, fps: float, sample_id: str, motion_encoder=None
) -> dict:
    """Write one sample's videos, reference image, track files and meta.json; returns its pairs line.

    motion_encoder: a :class:`~fantasy_portrait.synthetic.motion_encoder.TinyMotionEncoder`; when
    given, every track file also gets the ``motion`` features the training precompute step reads.
    """
    from ..io.image import save_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_clip_video(folder / "driver.mp4", sample.driver.frames, fps)
    write_clip_video(folder / "target.mp4", sample.target.frames, fps)
    save_image(folder / "reference.png", sample.reference.image)
    tracks = {
        "driver": (clip_tracks(sample.driver), sample.driver.frames),
        "target": (clip_tracks(sample.target), sample.target.frames),
        "reference": (frame_tracks(sample.reference, sample.reference_motion), sample.reference.image[None]),
    }
    for i, clip in enumerate(sample.single_drivers):
        write_clip_video(folder / f"driver_{i}.mp4", clip.frames, fps)
        tracks[f"driver_{i}"] = (clip_tracks(clip), clip.frames)
    for name, (t, frames) in tracks.items():
        if motion_encoder is not None:
            add_motion_features(t, frames, motion_encoder)
        save_tracks(folder / f"{name}.safetensors", t)
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "id": sample_id,
        "fps": fps,
        "num_frames": int(sample.driver.frames.shape[0]),
        "num_characters": sample.driver_scene.num_characters,
        "motion_names": list(MOTION_NAMES),
        "motion_parts": {k: [v.start, v.stop] for k, v in MOTION_PARTS.items()},
        "landmark_layout": LANDMARK_LAYOUT,
        "landmark_names": list(LANDMARK_NAMES),
        "driver_scene": _scene_dict(sample.driver_scene),
        "target_scene": _scene_dict(sample.target_scene),
        "reference_motion": sample.reference_motion.tolist(),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return {
        "id": sample_id,
        "num_characters": meta["num_characters"],
        "num_frames": meta["num_frames"],
        "reference": f"{sample_id}/reference.png",
        "reference_tracks": f"{sample_id}/reference.safetensors",
        "driver": f"{sample_id}/driver.mp4",
        "driver_tracks": f"{sample_id}/driver.safetensors",
        "ground_truth": f"{sample_id}/target.mp4",
        "ground_truth_tracks": f"{sample_id}/target.safetensors",
        "meta": f"{sample_id}/meta.json",
        "single_drivers": [f"{sample_id}/driver_{i}.mp4" for i in range(len(sample.single_drivers))],
        "single_driver_tracks": [
            f"{sample_id}/driver_{i}.safetensors" for i in range(len(sample.single_drivers))
        ],
    }


@dataclass
class DatasetOptions:
    num_samples: int = 8
    num_frames: int = 33
    height: int = 256
    width: int = 256
    characters: tuple[int, ...] = (1, 2)  # character counts, used in turn
    fps: float = 25.0
    seed: int = 0
    motion_features: bool = False  # add ``motion`` from the shipped tiny motion encoder
    single_drivers: bool = False  # also write one single-face driving video per character

    def __post_init__(self) -> None:
        from ..errors import InputError

        if self.num_samples < 1 or self.num_frames < 1:
            raise InputError("a synthetic dataset needs at least one sample of at least one frame")
        if not self.characters or any(not 1 <= n <= 4 for n in self.characters):
            raise InputError(f"character counts must be between 1 and 4, got {self.characters}")
        if self.height < 32 or self.width < 32:
            raise InputError(f"image size {self.height}x{self.width} is too small (at least 32x32)")


def generate_dataset(output: str | os.PathLike, options: DatasetOptions) -> list[dict]:
    """Render ``options.num_samples`` samples into ``output``; returns the pairs lines.

    Writes ``output/<id>/...`` per sample, ``manifest.jsonl`` (training clips: every driver and
    ground-truth video with its track file) and ``pairs.jsonl``.
    """
    from tqdm import tqdm

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    pairs, manifest = [], []
    encoder = None
    if options.motion_features:
        from .motion_encoder import load_motion_encoder

        encoder = load_motion_encoder()
    for i in tqdm(range(options.num_samples), desc="synthetic samples", unit="sample"):
        n = options.characters[i % len(options.characters)]
        sample_id = f"synth_{options.seed:04d}_{i:05d}_{n}p"
        sample = make_sample(
            options.seed * 100003 + i,
            n,
            options.num_frames,
            options.height,
            options.width,
            options.fps,
            options.single_drivers,
        )
        line = write_sample(output / sample_id, sample, options.fps, sample_id, encoder)
        pairs.append(line)
        clips = [
            ("driver", line["driver"], line["driver_tracks"]),
            ("target", line["ground_truth"], line["ground_truth_tracks"]),
        ]
        for k, (video, tracks) in enumerate(zip(line["single_drivers"], line["single_driver_tracks"])):
            clips.append((f"driver_{k}", video, tracks))
        for role, video, tracks in clips:
            manifest.append({"id": f"{sample_id}_{role}", "video": video, "tracks": tracks, "caption": ""})
    (output / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    (output / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    (output / "options.json").write_text(json.dumps(asdict(options), indent=1))
    logger.info("wrote %d synthetic samples to %s", len(pairs), output)
    return pairs
