"""What the app does, without the page: previews, runs, cancellation (no gradio import here).

:class:`AppEngine` keeps the loaded pipelines between runs (the tiny synthetic model always, the
released weights when configured), lets one run at a time use them (a lock: a cancelled run that is
still unwinding finishes before the next one starts), and writes every preview and result into a
fresh folder under its work folder. Every run gets fresh settings and fresh inputs; nothing of one
run is kept for the next but the loaded models.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FaceError, FantasyPortraitError, InputError
from .examples import EXAMPLES_ENV, SYNTHETIC, WEIGHTS, Example, folder_examples, synthetic_example

logger = logging.getLogger(__name__)

PREVIEW_MIN_SIDE = 512  # portraits with a shorter side below this are enlarged (nearest) for the preview
PREVIEW_CACHE = 8
Report = Callable[[float | tuple[int, int] | None, str], None]


class RunCancelled(FantasyPortraitError):
    """The user cancelled the run."""


@dataclass
class Preview:
    """The face plan of a portrait and driver(s) and its pictures."""

    plan: object  # faces.plan.FacePlan
    image: object  # (H, W, 3) uint8 portrait
    portrait_png: Path
    drivers_mp4: Path
    folder: Path
    mapping_text: str
    summary: str
    max_frames: int | None = None  # as asked for (the frame count follows the drivers in use)


@dataclass
class RunOutput:
    result: Path
    side_by_side: Path
    summary: dict
    folder: Path
    files: list[Path] = field(default_factory=list)


def mapping_text(plan) -> str:
    """The plan's pairs in the ``--map`` form: 'D:P,...' by driving face number, 'D:-' for unused."""
    pairs = {d.index: str(p) for d, p in zip(plan.driving, plan.mapping)}
    pairs.update({d.index: "-" for d in plan.unused})
    return ",".join(f"{d}:{pairs[d]}" for d in sorted(pairs))


def all_driving(plan) -> list:
    """Every driving face of a plan, used or not, in driving order."""
    return sorted([*plan.driving, *plan.unused], key=lambda d: d.index)


def _noop(_fraction, _desc) -> None:
    return None


class AppEngine:
    """Loaded pipelines, examples and the run lock of one app process.

    weights: folder of the released weights (None: ``$FANTASY_PORTRAIT_WEIGHTS``, else only the tiny
    synthetic model). examples: folder of examples for the released weights (None:
    ``$FANTASY_PORTRAIT_EXAMPLES``). workdir: where previews and results go (default: a new temporary
    folder). device / dtype / memory_mode / face_backend: as ``animate``'s flags.
    """

    def __init__(
        self,
        *,
        weights: str | os.PathLike | None = None,
        examples: str | os.PathLike | None = None,
        workdir: str | os.PathLike | None = None,
        device: str | None = None,
        dtype: str | None = None,
        memory_mode: str = "auto",
        face_backend: str = "mediapipe",
        synthetic_weights: str | os.PathLike | None = None,
    ):
        from ..pipeline import layout

        weights = weights or os.environ.get(layout.WEIGHTS_ENV) or None
        self.weights = Path(weights) if weights else None
        if self.weights is not None and not self.weights.is_dir():
            raise InputError(f"{self.weights}: weight folder not found")
        examples = examples or os.environ.get(EXAMPLES_ENV) or None
        self.examples_dir = Path(examples) if examples else None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="fantasy_portrait_app_"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.device, self.dtype, self.memory_mode = device, dtype, memory_mode
        self.face_backend = face_backend
        self.synthetic_weights = synthetic_weights
        self._pipes: dict[str, object] = {}
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()  # one run at a time on the device
        self._face_lock = threading.Lock()  # face backends are not thread-safe
        self._cancel: dict[str, threading.Event] = {}
        self._previews: dict[tuple, Preview] = {}  # the last few previews, by files and choices
        self._counter = 0
        self._counter_lock = threading.Lock()

    # ------------------------------------------------------------------------------------ models
    def models(self) -> dict[str, str]:
        """Model key -> label, the default first."""
        out = {}
        if self.weights is not None:
            out[WEIGHTS] = f"FantasyPortrait ({self.weights})"
        out[SYNTHETIC] = "tiny synthetic model (any CPU; it only knows the synthetic portrait world)"
        return out

    def pipeline(self, model: str, report: Report = _noop):
        """The loaded pipeline of ``model`` (loaded on first use, then kept)."""
        with self._load_lock:
            if model in self._pipes:
                return self._pipes[model]
            if model not in self.models():
                raise InputError(f"unknown model {model!r}; available: {', '.join(self.models())}")
            report(None, f"loading the {model} model")
            t0 = time.perf_counter()
            if model == SYNTHETIC:
                from ..synthetic.tiny_model import build_pipeline

                pipe = build_pipeline(self.synthetic_weights, face_backend=self.face_backend)
            else:
                import torch

                from ..pipeline.pipeline import FantasyPortraitPipeline

                device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
                name = self.dtype or ("bf16" if device.type != "cpu" else "fp32")
                dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]
                pipe = FantasyPortraitPipeline.from_pretrained(
                    self.weights,
                    torch_dtype=dtype,
                    device=device,
                    memory_mode=self.memory_mode,
                    face_backend=self.face_backend,
                )
            logger.info("loaded the %s model in %.1f s", model, time.perf_counter() - t0)
            self._pipes[model] = pipe
            return pipe

    # ---------------------------------------------------------------------------------- examples
    def examples(self) -> list[Example]:
        """The synthetic example, then the folder's examples when real weights are configured."""
        out = [synthetic_example(self.workdir / "examples", seed=0)]
        if self.weights is not None and self.examples_dir is not None:
            out += folder_examples(self.examples_dir)
        return out

    def example_names(self) -> list[str]:
        """Names without rendering anything (the synthetic example is rendered when first loaded)."""
        names = ["synthetic two-character portrait (seed 0, tiny model, CPU)"]
        if self.weights is not None and self.examples_dir is not None:
            names += [e.name for e in folder_examples(self.examples_dir)]
        return names

    def example(self, name: str) -> Example:
        if name == self.example_names()[0]:
            return synthetic_example(self.workdir / "examples", seed=0)
        for e in folder_examples(self.examples_dir) if self.examples_dir else []:
            if e.name == name:
                return e
        raise InputError(f"unknown example {name!r}")

    def allowed_paths(self) -> list[str]:
        """Folders the page may serve files from: the work folder and the examples' folders."""
        folders = {str(self.workdir)}
        if self.weights is not None and self.examples_dir is not None:
            folders.add(str(self.examples_dir))
            for e in folder_examples(self.examples_dir):
                folders.update(str(p.parent) for p in [e.portrait, *e.driving])
        return sorted(folders)

    # ----------------------------------------------------------------------------------- folders
    def _folder(self, kind: str) -> Path:
        with self._counter_lock:
            self._counter += 1
            k = self._counter
        folder = self.workdir / f"{kind}_{k:04d}_{int(time.time())}"
        folder.mkdir(parents=True)
        return folder

    # ----------------------------------------------------------------------------------- preview
    def _backend(self):
        from ..faces import get_backend

        if self.face_backend == "onnx":
            if self.weights is None:
                raise InputError("the onnx face backend needs --weights (face_det.onnx, face_landmark.onnx)")
            return get_backend("onnx", model_dir=self.weights)
        return get_backend(self.face_backend)

    def preview(
        self,
        portrait,
        driving: list,
        *,
        mapping: str | None = None,
        face_boxes=None,
        fps: float | None = 25.0,
        max_frames: int | None = None,
        report: Report = _noop,
    ) -> Preview:
        """Find the portrait faces, track the driving faces, map them; draw the numbered faces and
        the tracks (as ``fantasy-portrait inspect`` does)."""
        from ..faces.plan import plan_faces
        from ..faces.portrait import parse_face_boxes, parse_mapping
        from ..io import probe_video
        from ..pipeline.inputs import prepare_inputs

        if portrait is None:
            raise InputError("upload a portrait first")
        if not driving:
            raise InputError("upload one or more driving videos first")
        key = _preview_key(portrait, driving, mapping, face_boxes, fps, max_frames)
        if key is not None and key in self._previews:  # the same files and choices: nothing to redo
            return self._previews[key]
        if isinstance(face_boxes, str):
            face_boxes = parse_face_boxes(face_boxes) if face_boxes.strip() else None
        report(0.0, "reading the inputs")
        inputs = prepare_inputs(portrait, driving, fps=fps)
        if not fps:
            fps = probe_video(inputs.videos[0]).fps
        pairs = parse_mapping(mapping) if mapping and mapping.strip() else None
        report(0.1, "finding and tracking faces")
        with self._face_lock:
            plan = plan_faces(
                inputs.portrait,
                [str(v) for v in inputs.videos],
                fps=fps,
                max_frames=max_frames,
                face_boxes=face_boxes,
                mapping=pairs,
                backend=self._backend(),
                image_name=Path(inputs.portrait_name).name,
                progress=False,
            )
        report(0.8, "drawing the preview")
        preview = self._draw(
            plan, inputs.portrait, self._folder("preview"), keep=inputs, max_frames=max_frames
        )
        if key is not None:
            self._previews[key] = preview
            while len(self._previews) > PREVIEW_CACHE:
                self._previews.pop(next(iter(self._previews)))
        return preview

    def remap(self, preview: Preview, mapping: str | None) -> Preview:
        """The same preview with another mapping (no detection or tracking again): the pairing,
        frame count and regions decided as ``faces.plan.plan_faces`` decides them."""
        from ..faces.plan import describe_faces
        from ..faces.portrait import parse_mapping, portrait_regions, resolve_mapping
        from ..io import frame_count_4k1

        plan = preview.plan
        faces, driving = plan.portrait_faces, all_driving(plan)
        pairs = parse_mapping(mapping) if mapping and mapping.strip() else None
        order = resolve_mapping(len(driving), len(faces), pairs, found=describe_faces(faces, driving))
        used = [d for d, p in zip(driving, order) if p is not None]
        if not used:
            raise FaceError("the mapping leaves every driving face unused")
        targets = [p for p in order if p is not None]
        n = frame_count_4k1(min(d.track.num_frames for d in used), preview.max_frames)
        regions = portrait_regions(faces, [d.track.boxes[:n] for d in used], targets, plan.image_hw)
        unused = [d for d, p in zip(driving, order) if p is None]
        plan = dataclasses.replace(
            plan, driving=used, mapping=targets, regions=regions, num_frames=n, unused=unused
        )
        return self._draw(plan, preview.image, self._folder("preview"), max_frames=preview.max_frames)

    def _draw(self, plan, image, folder: Path, keep=None, max_frames: int | None = None) -> Preview:
        from ..commands.inspect import _write_preview
        from .media import driving_preview, scaled_plan

        _write_preview(folder, image, plan, None, videos=False)  # plan.json (and portrait.png, replaced:)
        h, w = image.shape[:2]
        s = min(int(np.ceil(PREVIEW_MIN_SIDE / min(h, w))), max(1, 2048 // max(h, w)))
        if s > 1:  # small portraits are drawn enlarged, so the numbers can be read
            import cv2

            big = cv2.resize(image, (w * s, h * s), interpolation=cv2.INTER_NEAREST)
            tmp = folder / "enlarged"
            _write_preview(tmp, big, scaled_plan(plan, s), None, videos=False)
            (tmp / "portrait.png").replace(folder / "portrait.png")
            shutil.rmtree(tmp)
        drivers = driving_preview(plan, folder / "drivers.mp4")  # colours follow the mapping
        if keep is not None:
            keep.close()
        return Preview(
            plan,
            image,
            folder / "portrait.png",
            drivers,
            folder,
            mapping_text(plan),
            describe_plan(plan),
            max_frames,
        )

    # --------------------------------------------------------------------------------------- run
    def cancel(self, session: str) -> bool:
        """Ask the run of ``session`` to stop at its next step; False when it has none."""
        event = self._cancel.get(session)
        if event is None:
            return False
        event.set()
        return True

    def run(
        self,
        model: str,
        portrait,
        driving: list,
        settings,
        *,
        session: str = "",
        report: Report = _noop,
        truth: Path | None = None,
    ) -> RunOutput:
        """Animate ``portrait`` with ``driving`` using ``settings``; write result.mp4, side_by_side.mp4
        and summary.json into a new folder. Raises RunCancelled when ``cancel(session)`` was called."""
        from ..io import read_video
        from .media import side_by_side

        if portrait is None:
            raise InputError("upload a portrait first (or load an example)")
        if not driving:
            raise InputError("upload one or more driving videos first (or load an example)")
        event = threading.Event()
        self._cancel[session] = event
        try:
            report(None, "waiting for the device" if self._run_lock.locked() else "starting")
            with self._run_lock:
                if event.is_set():
                    raise RunCancelled("run cancelled before it started")
                pipe = self.pipeline(model, report)
                folder = self._folder("run")
                out = folder / "result.mp4"
                t0 = time.perf_counter()
                result = self._call(pipe, portrait, driving, settings, out, report, event)
                report(0.97, "writing the side-by-side")
                frames = read_video(out).frames
                sbs = side_by_side(
                    [Path(p) for p in _paths(driving)] or [out],
                    frames,
                    result.fps,
                    folder / "side_by_side.mp4",
                    truth=truth,
                )
                summary = result.summary()
                summary.update(
                    model=model,
                    settings=_jsonable(settings),
                    wall_seconds=round(time.perf_counter() - t0, 2),
                )
                (folder / "summary.json").write_text(json.dumps(summary, indent=1))
                return RunOutput(out, sbs, summary, folder, [out, sbs, folder / "summary.json"])
        finally:
            if self._cancel.get(session) is event:
                del self._cancel[session]

    def _call(self, pipe, portrait, driving, settings, out: Path, report: Report, event: threading.Event):
        """One pipeline call with progress per stage and per denoising step; ``event`` cancels it
        (diffusers' convention: the step callback sets ``pipe.interrupt``)."""
        from ..pipeline.pipeline import Cancelled

        steps = int(settings.num_steps)
        done = [0]

        def on_step_end(pipe_, step, _timestep, kwargs):
            done[0] = step + 1
            report((step + 1, steps), "denoise")
            if event.is_set():
                pipe_.interrupt = True
            return kwargs

        # The pipeline logs "stage: NAME" as each stage starts; a filter on its logger turns those
        # records into progress (and lets through only what the log would have shown anyway).
        pipeline_logger = logging.getLogger("fantasy_portrait.pipeline.pipeline")
        stage_filter = _StageFilter(report, event, pipeline_logger.getEffectiveLevel())
        old_level = pipeline_logger.level
        pipeline_logger.addFilter(stage_filter)
        pipeline_logger.setLevel(min(logging.INFO, stage_filter.floor))
        try:
            return pipe(portrait, driving, settings, output=out, callback_on_step_end=on_step_end)
        except Cancelled:
            raise RunCancelled(f"run cancelled at step {done[0]} of {steps}") from None
        finally:
            pipeline_logger.removeFilter(stage_filter)
            pipeline_logger.setLevel(old_level)


STAGES = ("inputs", "faces", "motion", "motion tokens", "encode", "text", "denoise", "decode+write")


class _StageFilter(logging.Filter):
    """Turns the pipeline's 'stage: NAME' records into progress reports and stops a cancelled run
    between stages; drops records below ``floor`` (the level the log had before)."""

    def __init__(self, report: Report, event: threading.Event, floor: int):
        super().__init__()
        self.report, self.event, self.floor = report, event, floor

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "stage: %s" and record.args:
            name = str(record.args[0])
            if self.event.is_set():
                raise RunCancelled(f"run cancelled before the stage '{name}'")
            k = STAGES.index(name) if name in STAGES else len(STAGES) - 1
            self.report(k / len(STAGES), f"stage {k + 1}/{len(STAGES)}: {name}")
        return record.levelno >= self.floor


def _preview_key(portrait, driving, *choices) -> tuple | None:
    """Files (path, size, modification time) and choices of a preview; None for inputs in memory."""
    files = [portrait, *(driving if isinstance(driving, (list, tuple)) else [driving])]
    if not all(isinstance(f, (str, os.PathLike)) for f in files):
        return None
    try:
        stats = tuple((str(f), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files)
    except OSError:
        return None
    return stats + tuple(c if isinstance(c, (str, int, float, type(None))) else repr(c) for c in choices)


def _paths(driving) -> list:
    return [
        d
        for d in (driving if isinstance(driving, (list, tuple)) else [driving])
        if isinstance(d, (str, os.PathLike))
    ]


def _jsonable(settings) -> dict:
    if hasattr(settings, "to_dict"):
        return settings.to_dict()
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


def describe_plan(plan) -> str:
    """A few lines on the faces and the mapping (what ``inspect`` prints)."""
    h, w = plan.image_hw
    lines = [f"portrait {w}x{h}: {len(plan.portrait_faces)} face(s), numbered left to right"]
    for f in plan.portrait_faces:
        box = ", ".join(f"{v:.0f}" for v in f.box)
        lines.append(f"  face {f.index}: [{box}] ({f.source})")
    n = len(plan.driving) + len(plan.unused)
    lines.append(f"driving: {n} face(s), {plan.num_frames} frames at {plan.fps:g} fps")
    target = {d.index: p for d, p in zip(plan.driving, plan.mapping)}
    for d in all_driving(plan):
        to = f"portrait face {target[d.index]}" if d.index in target else "unused"
        lines.append(
            f"  driver {d.index}: {d.source.name}, found in {d.track.coverage:.0%} of frames -> {to}"
        )
    still = sorted(set(range(len(plan.portrait_faces))) - set(plan.mapping))
    if still:
        lines.append(f"  portrait face(s) {', '.join(map(str, still))} keep still (no driver)")
    return "\n".join(lines)
