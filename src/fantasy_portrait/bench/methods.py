"""Animation methods the benchmark can run, by name.

A method turns one prepared case (a source portrait PNG and one driving MP4 per face) into one output
MP4. Method specs on the command line:

- ``repeat-portrait``: the source portrait repeated for every driving frame (trivial lower bound).
- ``copy-driver``: the ground-truth video for self-reenactment (the exact upper bound), else the
  first driving video, resized to the portrait's size.
- ``ours``, ``ours:OPTIONS.json`` or ``ours:tiny``: this project's pipeline (imported only when used);
  the JSON file gives weights and call options (see :class:`OursMethod`); ``tiny`` uses tiny random
  weights (runs the whole program, animates nothing: for tests and demos).
- ``command:TEMPLATE``: any external tool (LivePortrait, ...). The template is split like a shell
  line and each word formatted with {source} {driver} {output} {fps} {num_frames} {width} {height}
  {num_faces} {case_id} {workdir}; a word that is exactly ``{drivers}`` becomes one word per driver.
  It runs without a shell; it must write {output} (any video format PyAV reads).

Prefix ``NAME=`` to any spec to name the method in outputs and reports (e.g. ``lp=command:...``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import shutil
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FantasyPortraitError, InputError
from .manifest import BenchCase

logger = logging.getLogger(__name__)

_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass
class PreparedCase:
    """A case's inputs as every method receives them.

    source: (H, W) RGB PNG portrait. drivers: one MP4 per face, left to right, ``num_frames`` frames at
    ``fps``. ground_truth: the reference video for self-reenactment (None for cross).
    """

    case: BenchCase
    dir: Path
    source: Path
    drivers: list[Path]
    ground_truth: Path | None
    fps: float
    num_frames: int
    width: int
    height: int
    key: str

    def to_dict(self) -> dict:
        return {
            "case": self.case.to_dict(),
            "source": self.source.name,
            "drivers": [p.name for p in self.drivers],
            "ground_truth": self.ground_truth.name if self.ground_truth else None,
            "fps": self.fps,
            "num_frames": self.num_frames,
            "width": self.width,
            "height": self.height,
            "key": self.key,
        }


class Method(ABC):
    """One way to animate a prepared case."""

    def __init__(self, name: str):
        self.name = name

    @abstractmethod
    def signature(self) -> str:
        """Text that changes whenever the method's outputs would change (part of the cache key)."""

    @abstractmethod
    def generate(self, case: PreparedCase, output: Path) -> None:
        """Write the animation of ``case`` to ``output`` (an .mp4 path)."""


class RepeatPortrait(Method):
    """The still portrait for every frame."""

    def signature(self) -> str:
        return "repeat-portrait/1"

    def generate(self, case: PreparedCase, output: Path) -> None:
        from ..io import load_image, write_video

        image = load_image(case.source)
        write_video(output, np.broadcast_to(image, (case.num_frames, *image.shape)), case.fps, crf=12)


class CopyDriver(Method):
    """The ground truth (self-reenactment) or the first driving video (cross), resized to the portrait's
    size (copied as is when the size matches)."""

    def signature(self) -> str:
        return "copy-driver/3"

    def generate(self, case: PreparedCase, output: Path) -> None:
        import cv2

        from ..io import read_video, write_video

        # Self-reenactment: the whole ground-truth video (all faces), the exact upper bound.
        source = case.ground_truth or case.drivers[0]
        frames = read_video(source).frames
        if frames.shape[1:3] == (case.height, case.width):
            shutil.copyfile(source, output)  # no re-encoding: exactly the reference frames
            return
        frames = np.stack(
            [cv2.resize(f, (case.width, case.height), interpolation=cv2.INTER_AREA) for f in frames]
        )
        write_video(output, frames, case.fps, crf=12)


class CommandMethod(Method):
    """An external program run once per case from a command template (see the module docstring)."""

    def __init__(self, name: str, template: str, timeout: float | None = None):
        super().__init__(name)
        try:
            self.words = shlex.split(template)
        except ValueError as exc:
            raise InputError(f"method {name!r}: cannot parse command template ({exc})") from exc
        if not self.words:
            raise InputError(f"method {name!r}: empty command template")
        if not any("{output}" in w for w in self.words):
            raise InputError(f"method {name!r}: command template must contain {{output}}")
        self.template = template
        self.timeout = timeout

    def signature(self) -> str:
        return f"command/1 {self.template}"

    def argv(self, case: PreparedCase, output: Path) -> list[str]:
        values = {
            "source": str(case.source),
            "driver": str(case.drivers[0]),
            "output": str(output),
            "fps": f"{case.fps:g}",
            "num_frames": str(case.num_frames),
            "width": str(case.width),
            "height": str(case.height),
            "num_faces": str(len(case.drivers)),
            "case_id": case.case.id,
            "workdir": str(case.dir),
            "python": sys.executable,
        }
        argv = []
        for word in self.words:
            if word == "{drivers}":
                argv.extend(str(p) for p in case.drivers)
                continue
            try:
                argv.append(word.format(**values))
            except (KeyError, IndexError, ValueError) as exc:
                raise InputError(f"method {self.name!r}: bad placeholder in {word!r} ({exc})") from exc
        return argv

    def generate(self, case: PreparedCase, output: Path) -> None:
        argv = self.argv(case, output)
        logger.debug("running %s", shlex.join(argv))
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout, check=False)
        except FileNotFoundError as exc:
            raise FantasyPortraitError(f"method {self.name!r}: program not found: {argv[0]}") from exc
        except subprocess.TimeoutExpired as exc:
            raise FantasyPortraitError(
                f"method {self.name!r}: timed out after {self.timeout} s on {case.case.id}"
            ) from exc
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            raise FantasyPortraitError(
                f"method {self.name!r} failed on case {case.case.id} (exit {proc.returncode}): {tail[0]}"
            )
        if not output.is_file():
            raise FantasyPortraitError(f"method {self.name!r}: command exited 0 but wrote no {output}")


EXECUTOR_KEYS = ("workers", "devices", "ray")  # how the bench runs "ours" (not pipeline settings)


class OursMethod(Method):
    """This project's pipeline (:class:`FantasyPortraitPipeline`), imported and loaded only when run.

    Options (``ours:OPTIONS.json``, or ``ours:tiny`` for tiny random weights) go to the pipeline:
    "weights" (the weight folder; default ``$FANTASY_PORTRAIT_WEIGHTS``), "tiny" (true: write and use
    tiny random weights, which exercise the program but animate nothing), "seed_weights",
    "portrait_checkpoint", "motion_checkpoint", "device", "dtype" ("float32"/"bfloat16"/"float16"),
    "memory_mode"; how the bench runs the cases (``EXECUTOR_KEYS``, through fantasy_portrait.batch):
    "workers" (worker processes, or Ray actors), "devices" (GPUs, e.g. ["cuda:0", "cuda:1"]), "ray"
    (true, or a cluster address); every other key is a keyword of the pipeline call (num_steps,
    max_size, seed, motion_guidance, window_frames, ...). The portrait's size is kept unless max_size
    is given.
    """

    LOAD_KEYS = (
        "weights",
        "tiny",
        "seed_weights",
        "portrait_checkpoint",
        "motion_checkpoint",
        "device",
        "dtype",
        "memory_mode",
    )

    def __init__(self, name: str, options: str | None = None):
        super().__init__(name)
        self.options: dict = {}
        if options == "tiny":
            self.options = {"tiny": True, "num_steps": 2}
        elif options:
            path = Path(options)
            if not path.is_file():
                raise InputError(f"{path}: options file for method {name!r} not found")
            try:
                self.options = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise InputError(f"{path}: not valid JSON ({exc})") from exc
            if not isinstance(self.options, dict):
                raise InputError(f"{path}: options must be a JSON object")
        self._pipe = None

    def signature(self) -> str:
        return "ours/1 " + json.dumps(self.options, sort_keys=True, default=str)

    def _pipeline(self, cache_root: Path):
        if self._pipe is not None:
            return self._pipe
        import torch

        try:
            from ..pipeline.pipeline import FantasyPortraitPipeline
        except ImportError as exc:
            raise FantasyPortraitError(
                f"method {self.name!r}: the pipeline cannot be imported ({exc})"
            ) from exc
        opts = self.options
        weights = opts.get("weights")
        if opts.get("tiny"):
            from ..pipeline.tiny import write_tiny_weights

            seed = int(opts.get("seed_weights", 0))
            weights = cache_root / f"tiny_weights_seed{seed}"
            write_tiny_weights(weights, seed=seed)
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
            str(opts.get("dtype", "float32"))
        )
        if dtype is None:
            raise InputError(f"method {self.name!r}: dtype must be float32, bfloat16 or float16")
        self._pipe = FantasyPortraitPipeline.from_pretrained(
            weights,
            portrait_checkpoint=opts.get("portrait_checkpoint"),
            motion_checkpoint=opts.get("motion_checkpoint"),
            torch_dtype=dtype,
            device=opts.get("device", "cpu"),
            memory_mode=opts.get("memory_mode", "auto"),
        )
        return self._pipe

    def generate(self, case: PreparedCase, output: Path) -> None:
        pipe = self._pipeline(case.dir.parent.parent / "cache")
        call = {k: v for k, v in self.options.items() if k not in self.LOAD_KEYS and k not in EXECUTOR_KEYS}
        call.setdefault("max_size", max(case.width, case.height))
        pipe(
            case.source,
            [str(p) for p in case.drivers],
            output=output,
            fps=case.fps,
            max_frames=case.num_frames,
            progress=False,
            **call,
        )
        if not output.is_file():
            raise FantasyPortraitError(f"method {self.name!r} wrote no {output}")


BUILTIN = {"repeat-portrait": RepeatPortrait, "copy-driver": CopyDriver}


def make_method(spec: str) -> Method:
    """A Method from a command-line spec (see the module docstring)."""
    spec = spec.strip()
    name = None
    head = spec.split(":", 1)[0]
    if "=" in head:
        name, spec = spec.split("=", 1)
        name = name.strip()
        if not name or not set(name) <= _NAME_OK:
            raise InputError(f"method name {name!r} must use letters, digits, '.', '_' or '-'")
    kind, _, arg = spec.partition(":")
    if kind in BUILTIN:
        if arg:
            raise InputError(f"method {kind!r} takes no argument, got {arg!r}")
        return BUILTIN[kind](name or kind)
    if kind == "ours":
        return OursMethod(name or "ours", arg or None)
    if kind == "command":
        if not arg:
            raise InputError(
                "method 'command:' needs a template, e.g. command:mytool {source} {driver} {output}"
            )
        digest = hashlib.sha256(arg.encode()).hexdigest()[:8]
        return CommandMethod(name or f"command-{digest}", arg)
    raise InputError(
        f"unknown method {spec!r}; use one of {', '.join([*BUILTIN, 'ours', 'ours:OPTIONS.json', 'ours:tiny', 'command:TEMPLATE'])}"
    )


def copy_video_command() -> str:
    """A command template that copies the first driving video (used by the example report and tests)."""
    code = "import shutil,sys; shutil.copyfile(sys.argv[1], sys.argv[2])"
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} {{driver}} {{output}}"


def method_names(specs: list[str]) -> list[str]:
    return [make_method(s).name for s in specs]
