"""Curation test inputs: synthetic negatives made from the shared assets in a temporary folder."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

ASSETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "assets"
TWO_PERSON = ASSETS / "fp_two_person.mp4"
TALKER = ASSETS / "lp_d12.mp4"
SIZE = (640, 360)
FRAMES = 64  # 2.8 s at 23 fps: above the default 2 s minimum
CUT_AT = 56  # the hard cut of cut.mp4 (56 + 56 frames)


def _read(path: Path, count: int) -> list[np.ndarray]:
    from fantasy_portrait.io import iter_video_frames

    return list(iter_video_frames(path, end=count))


def _fit(frame: np.ndarray) -> np.ndarray:
    """Letterbox a frame into SIZE (keeps faces undistorted)."""
    h, w = frame.shape[:2]
    scale = min(SIZE[0] / w, SIZE[1] / h)
    resized = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    y, x = (SIZE[1] - resized.shape[0]) // 2, (SIZE[0] - resized.shape[1]) // 2
    canvas[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
    return canvas


def build_inputs(folder: Path) -> dict[str, Path]:
    """Write the negatives and a CSV manifest listing them plus the real two-person asset."""
    from fantasy_portrait.io import write_video

    folder.mkdir(parents=True, exist_ok=True)
    two = [_fit(f) for f in _read(TWO_PERSON, FRAMES)]
    fps = 23.0
    videos = {
        "blurred": [cv2.GaussianBlur(f, (0, 0), 2.5) for f in two],
        "frozen": [two[0]] * FRAMES,
        # The right half of the frame holds only the woman's face.
        "single": [np.ascontiguousarray(f[:, SIZE[0] // 2 :]) for f in two],
        "cut": two[:CUT_AT] + [_fit(f) for f in _read(TALKER, CUT_AT)],
    }
    paths = {"two_person": TWO_PERSON.resolve()}
    for name, frames in videos.items():
        paths[name] = write_video(folder / f"{name}.mp4", np.stack(frames), fps)
    manifest = folder / "inputs.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "note"])
        for name, path in paths.items():
            # Relative paths are resolved against the manifest's folder.
            writer.writerow([path.name if path.parent == folder else str(path), name])
    paths["manifest"] = manifest
    return paths


@pytest.fixture(scope="session")
def cut_at() -> int:
    return CUT_AT


@pytest.fixture(scope="session")
def curate_inputs(tmp_path_factory) -> dict[str, Path]:
    return build_inputs(tmp_path_factory.mktemp("curate_inputs"))


@pytest.fixture(scope="session")
def pool_run(curate_inputs, tmp_path_factory):
    """The reference run: process pool with 2 workers over every input. -> (result, rows by name)."""
    from fantasy_portrait.data import CurationConfig, curate, read_manifest

    out = tmp_path_factory.mktemp("curate_pool")
    result = curate(
        curate_inputs["manifest"], out, CurationConfig(), executor="process", workers=2, progress=False
    )
    table = read_manifest(result.manifest_path)
    return result, table
