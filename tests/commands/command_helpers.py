"""Helpers of the bad-input tests (a uniquely named module): a stub face backend, media built by code,
running the CLI and checking its one error line.

The stub backend ("stub") finds bright squares (the "faces" the media below draw) with a threshold
and a connected-component pass: exact, instant, and independent of any detector model, so these
tests are about the commands' handling of inputs, not about face detection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fantasy_portrait.faces.backend import FaceBackend
from fantasy_portrait.faces.types import FaceObservation

FACE = 24  # side of a stub face in pixels
BRIGHT, DARK = 230, 40
FIVE = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]], np.float32)


class StubFaceBackend(FaceBackend):
    """Bright squares (grey level > 170 on a dark background) are faces; five points at fixed places."""

    name = "stub"
    landmark_layout = "stub5"
    num_landmarks = 5

    def detect(self, image_rgb: np.ndarray) -> list[FaceObservation]:
        from scipy import ndimage

        grey = np.asarray(image_rgb, np.float32).mean(axis=2)
        labels, n = ndimage.label(grey > 170)
        faces = []
        for sl in ndimage.find_objects(labels):
            h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            if min(h, w) < 8:
                continue
            box = np.array([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop], np.float32)
            five = box[:2] + FIVE * np.array([w, h], np.float32)
            faces.append(FaceObservation(box=box, score=0.99, five_points=five, landmarks=five.copy()))
        return faces


def face_xs(n: int, width: int) -> list[int]:
    """Left edges of n faces spread over a frame of this width."""
    step = width / n
    return [int(step * i + (step - FACE) / 2) for i in range(n)]


def portrait_array(faces: int = 1, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    h, w = size
    img = np.full((h, w, 3), DARK, np.uint8)
    for x in face_xs(faces, w) if faces else []:
        img[36 : 36 + FACE, x : x + FACE] = BRIGHT
    return img


def make_portrait(
    path: Path, faces: int = 1, size: tuple[int, int] = (96, 128), mode: str | None = None
) -> Path:
    """A portrait with ``faces`` stub faces, saved in a PIL mode (None: RGB; "I;16": 16-bit grey)."""
    from PIL import Image

    img = portrait_array(faces, size)
    if mode == "I;16":
        Image.fromarray(img[..., 0].astype(np.uint16) * 257).save(path)
    elif mode is not None:
        Image.fromarray(img).convert(mode).save(path)
    else:
        Image.fromarray(img).save(path)
    return path


def make_driver(
    path: Path,
    faces: int = 1,
    frames: int = 9,
    fps: float = 25.0,
    size: tuple[int, int] = (96, 128),
    hidden: dict[int, range] | None = None,
    audio: bool = False,
) -> Path:
    """A driving video with ``faces`` stub faces moving a little; hidden = {face: frames without it}."""
    import av

    h, w = size
    xs = face_xs(faces, w) if faces else []
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "10"}
        astream = out.add_stream("aac", rate=16000) if audio else None
        for t in range(frames):
            img = np.full((h, w, 3), DARK, np.uint8)
            for k, x in enumerate(xs):
                if hidden and t in hidden.get(k, ()):
                    continue
                y = 36 + int(2 * np.sin(t / 3 + k))
                img[y : y + FACE, x : x + FACE] = BRIGHT
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = t
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            samples = int(16000 * frames / fps)
            tone = (0.1 * np.sin(np.arange(samples) * 0.05)).astype(np.float32)[None]
            af = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, 0
            for packet in astream.encode(af):
                out.mux(packet)
            for packet in astream.encode():
                out.mux(packet)
    return path


def huge_png(path: Path, width: int = 30_000, height: int = 30_000) -> Path:
    """A PNG whose header claims width x height pixels but holds almost no data (a decompression bomb
    as far as anything reading the header can tell)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def code_running_pickle(path: Path, marker: Path) -> Path:
    """A torch-style pickle that would create ``marker`` if it were ever unpickled unsafely."""
    import os

    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"weight": torch.zeros(2), "payload": Payload()}, path)
    assert not marker.exists()
    return path


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        """stderr lines as a terminal shows them (text after a progress bar's last carriage return)."""
        return [
            line.rsplit("\r", 1)[-1] for line in self.err.splitlines() if line.rsplit("\r", 1)[-1].strip()
        ]


def run(capsys, *argv) -> Result:
    from fantasy_portrait.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def assert_error(result: Result, *needles: str, code: int = 2) -> str:
    """Exit ``code``; exactly one ``error:`` line, the last line printed; it contains every needle."""
    assert result.code == code, (result.code, result.err)
    lines = result.lines
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.err
    assert lines[-1] == errors[0], result.err
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files (hidden ``.NAME.tmpPID...`` names) anywhere under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if re.match(r"\..*\.tmp\d+", p.name))


def audio_only(path: Path, seconds: float = 0.5) -> Path:
    """A media file with an audio stream and no video."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        samples = int(16000 * seconds)
        af = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = 16000, 0
        for packet in stream.encode(af):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def video_without_frames(path: Path) -> Path:
    import av

    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    container.start_encoding()
    container.close()
    return path
