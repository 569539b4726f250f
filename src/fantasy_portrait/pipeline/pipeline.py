"""``FantasyPortraitPipeline``: a portrait and driving video(s) in, an animated video out (SPEC §8).

``__call__`` reads top to bottom as the algorithm: check inputs, faces and motion, image
conditioning, text conditioning, noise, sampling with motion guidance, decode, write.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import CheckpointError, FantasyPortraitError
from ..motion.controls import motion_step_mask, portrait_features
from . import acceleration, conditioning, layout
from .components import check_components
from .conditioning import first_frame_mask, target_size  # noqa: F401  (re-exported: the public names)
from .drivers import face_motions, plan_driving
from .memory import Placement, check_fits, estimate_for_transformer, pick_mode
from .sampler import Conditions, GuidedDenoiser, motion_cache_bytes, motion_timestep_range, sample
from .schedule import sampling_sigmas
from .settings import DEFAULT_FPS, MAX_IMAGE_PIXELS, AnimationSettings  # noqa: F401
from .settings import resolve as resolve_settings

logger = logging.getLogger(__name__)

MOTION_CACHE_BYTES = 2 * 1024**3  # above this the motion keys/values are recomputed per call


class Cancelled(FantasyPortraitError):
    """The run was cancelled by its step callback (``pipe.interrupt = True``); nothing was written."""


@dataclass
class AnimationResult:
    """What a run produced. frames: (F, H, W, 3) uint8 when no output file was asked for, else None."""

    output: Path | None
    frames: np.ndarray | None
    num_frames: int
    fps: float
    size: tuple[int, int]  # (width, height)
    faces: list[dict]
    mapping: list[int]
    seconds: dict[str, float] = field(default_factory=dict)
    memory_mode: str = "cpu"
    windows: int = 1
    transformer_calls: int = 0
    acceleration: dict = field(default_factory=dict)  # steps, sigmas, precision, memory plan, cache counts
    controls: dict = field(default_factory=dict)  # motion controls as given and as resolved per face

    def summary(self) -> dict:
        return {
            "output": str(self.output) if self.output else None,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "width": self.size[0],
            "height": self.size[1],
            "faces": self.faces,
            "mapping": self.mapping,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "memory_mode": self.memory_mode,
            "windows": self.windows,
            "transformer_calls": self.transformer_calls,
            "acceleration": self.acceleration,
            "controls": self.controls,
        }


class _Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    def stage(self, name: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t = time.perf_counter()
                logger.info("stage: %s", name)

            def __exit__(self, *exc):
                timer.seconds[name] = timer.seconds.get(name, 0.0) + time.perf_counter() - self.t

        return _Ctx()


class FantasyPortraitPipeline:
    """The FantasyPortrait models plus the frozen Wan encoders, ready to animate portraits."""

    def __init__(
        self,
        transformer,
        expression_encoder,
        motion_encoder,
        vae,
        clip,
        files: layout.WeightFiles,
        *,
        dtype=torch.float32,
        device="cpu",
        memory_mode="auto",
        face_backend="mediapipe",
        masked_motion=True,
    ):
        check_components(vae, clip, motion_encoder)  # the declared interfaces (components.py)
        self.transformer = transformer
        self.expression_encoder = expression_encoder
        self.motion_encoder = motion_encoder
        self.vae = vae
        self.clip = clip
        self.files = files
        self.dtype = dtype
        self.device = torch.device(device)
        self.memory_mode = memory_mode
        self.face_backend = face_backend
        # False only for models trained without masked motion attention (the synthetic ablation).
        self.masked_motion = masked_motion
        self._text_encoder = None
        self._empty_prompt = None
        self.interrupt = False  # set True (e.g. in a step callback) to cancel the running call

    @property
    def geometry(self):
        """Pixel/latent/token geometry (:class:`~fantasy_portrait.models.config.LatentGeometry`)."""
        from ..models.config import LatentGeometry

        return LatentGeometry.from_transformer(self.transformer)

    # ---------------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(
        cls,
        wan_dir: str | os.PathLike | None = None,
        *,
        portrait_checkpoint: str | os.PathLike | None = None,
        motion_checkpoint: str | os.PathLike | None = None,
        torch_dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        memory_mode: str = "auto",
        face_backend: str = "mediapipe",
        need_text_encoder: bool = False,
        dit: str | os.PathLike | None = None,
    ) -> FantasyPortraitPipeline:
        """Load everything from a weight folder (released layout; see ``layout``).

        wan_dir: the folder (None: ``$FANTASY_PORTRAIT_WEIGHTS``). portrait_checkpoint /
        motion_checkpoint override where ``fantasyportrait_model.*`` and ``pd_fpg.pth`` are found.
        dit: a single-file Wan2.1 I2V DiT used instead of the folder's (ComfyUI fp8 / fp8-scaled
        .safetensors, city96 .gguf; ``models.quantization``).
        Models are loaded to the CPU and placed on ``device`` per the memory mode at run time.
        """
        from ..models.loading import load_portrait_checkpoint, load_wan_transformer
        from ..motion import MotionEncoder
        from .encoders import load_clip_image_encoder, load_vae

        files = layout.find_weight_files(
            wan_dir,
            need_text_encoder=need_text_encoder,
            portrait=portrait_checkpoint,
            motion=motion_checkpoint,
            require=tuple(p for p in layout.RUN_PARTS if not (dit and p == "dit")),
        )

        token_dim = _portrait_token_dim(files.portrait)
        if dit:
            from ..models.quantization import load_wan_single_file

            transformer = load_wan_single_file(
                dit, dtype=torch_dtype, device="cpu", motion_dim=token_dim or 2048
            )
        else:
            transformer = load_wan_transformer(
                files.wan_dir, dtype=torch_dtype, device="cpu", motion_dim=token_dim or 2048
            )
        encoder = load_portrait_checkpoint(files.portrait, transformer, dtype=torch_dtype, device="cpu")
        motion = MotionEncoder.from_pretrained(files.motion, device=device)  # 36 MB: always on the device
        vae = load_vae(files.vae, dtype=torch_dtype, device="cpu")
        clip = load_clip_image_encoder(files.clip, dtype=torch_dtype, device="cpu")
        return cls(
            transformer,
            encoder,
            motion,
            vae,
            clip,
            files,
            dtype=torch_dtype,
            device=device,
            memory_mode=memory_mode,
            face_backend=face_backend,
        )

    def _face_backend(self, get_backend):
        """The face backend; the reference's ONNX models are looked up in the weight folder (SPEC §2)."""
        if self.face_backend == "onnx":
            return get_backend("onnx", model_dir=self.files.root)
        return get_backend(self.face_backend)

    # ------------------------------------------------------------------------------ text

    def encode_text(self, prompt: str) -> torch.Tensor:
        """(1, 512, text_dim) umT5 embedding. The empty prompt comes from the cache beside the weights
        (computed once with the real encoder when the cache is absent); any other prompt loads umT5."""
        from .encoders import load_empty_prompt, load_text_encoder, save_empty_prompt

        if not prompt.strip() and self._empty_prompt is not None:
            return self._empty_prompt
        if not prompt.strip() and self.files.empty_prompt is not None:
            self._empty_prompt = load_empty_prompt(self.files.empty_prompt)
            return self._empty_prompt
        if self._text_encoder is None:
            if not self.files.has_text_encoder:
                raise CheckpointError(
                    f"weight files missing: {self.files.wan_dir / layout.T5_FILE}, "
                    f"{self.files.wan_dir / layout.T5_TOKENIZER}/ (needed for a prompt or text guidance != 1)"
                )
            self._text_encoder = load_text_encoder(self.files.t5, self.files.t5_tokenizer, dtype=self.dtype)
        emb = self._text_encoder([prompt])
        if not prompt.strip():
            self._empty_prompt = emb
            cache = self.files.wan_dir / layout.EMPTY_PROMPT_FILE
            try:
                save_empty_prompt(cache, emb)
                logger.info("cached the empty-prompt embedding in %s", cache)
            except OSError as exc:
                logger.warning("could not cache the empty prompt in %s (%s)", cache, exc)
        return emb

    # ------------------------------------------------------------------------------- main

    def estimate(
        self,
        width: int,
        height: int,
        num_frames: int,
        *,
        window_frames: int | None,
        batch_branches: bool = True,
        text: bool = False,
    ):
        """Memory estimate (:class:`~.memory.MemoryEstimate`) of a run with these sizes."""
        return estimate_for_transformer(
            self.transformer,
            width=width,
            height=height,
            num_frames=num_frames,
            window_frames=window_frames,
            batch_branches=batch_branches,
            text=text,
            dtype_bytes=torch.finfo(self.dtype).bits // 8,
            encoder_params=sum(p.numel() for p in self.expression_encoder.parameters()),
            vae_base_dim=_vae_base_dim(self.vae),
            **self._model_sizes(text),
        )

    def _model_sizes(self, text: bool) -> dict:
        """Parameter counts of the loaded CLIP and VAE (and umT5 when a prompt needs it: loaded, or
        counted from its file), for the memory estimate; released sizes for what is unknown."""
        from .memory import UMT5_PARAMS, file_parameters

        sizes = {
            "clip_params": sum(p.numel() for p in self.clip.parameters()),
            "vae_params": sum(p.numel() for p in self.vae.parameters()),
        }
        if text:
            if self._text_encoder is not None:
                sizes["umt5_params"] = sum(p.numel() for p in self._text_encoder.parameters())
            else:
                sizes["umt5_params"] = file_parameters(self.files.t5) or UMT5_PARAMS
        return sizes

    def check_memory(self, image_hw: tuple[int, int], num_frames: int, s: AnimationSettings) -> None:
        """Refuse (ResourceError with the numbers) a run that cannot fit where it runs: the same
        estimate as the run's, made from the portrait's size and the driving frames before any work."""
        width, height = conditioning.target_size(image_hw[1], image_hw[0], s.max_size, self.geometry)
        estimate = self._settings_estimate(width, height, num_frames, s)
        check_fits(estimate, self.device, f"a {width}x{height} video of {num_frames} frames")

    def _settings_estimate(self, width: int, height: int, num_frames: int, s: AnimationSettings):
        """:meth:`estimate` of a run with settings ``s`` at this output size (one definition for the
        pre-flight memory check and the run's own plan)."""
        return self.estimate(
            width,
            height,
            num_frames,
            window_frames=s.window_frames,
            batch_branches=s.batch_branches,
            text=_uses_text(s),
        )

    @torch.no_grad()
    def __call__(
        self,
        image: str | os.PathLike,
        driving: list[str | os.PathLike] | str | os.PathLike,
        settings: AnimationSettings | None = None,
        *,
        output: str | os.PathLike | None = None,
        callback_on_step_end: Callable | None = None,
        **overrides,
    ) -> AnimationResult:
        """Animate every face of ``image`` with the driving video(s).

        image: a path, PIL image, numpy array or torch tensor; driving: one video (N faces) or a list
        of N single-face videos, each a path, an (F, H, W, 3) array or a list of frames
        (``pipeline/inputs.py``; in-memory frames are at ``settings.fps``). settings: an
        :class:`~.settings.AnimationSettings` (defaults when None); keyword arguments override its
        fields (``pipe(img, vid, num_steps=4, seed=1)``), see that class for every option.
        output: an .mp4 path (written atomically with the driving audio) or None to return the frames.

        callback_on_step_end(pipe, step_index, timestep, callback_kwargs) -> dict: diffusers'
        convention, called after every denoising step with ``callback_kwargs = {"latents": ...}``;
        a returned ``"latents"`` replaces the latents. To cancel, set ``pipe.interrupt = True`` in the
        callback (or raise :class:`Cancelled`): the run stops after that step, raises
        :class:`Cancelled`, and writes nothing.
        """
        from ..faces import get_backend
        from ..io import frame_count_4k1, probe_video, write_video
        from .inputs import prepare_inputs

        s = resolve_settings(settings, overrides)
        self.interrupt = False
        timer = _Timer()
        runtime = self._parallel_runtime(s)  # None unless --parallel (a torchrun launch)
        main = runtime is None or runtime.is_main  # the process that shows progress, decodes and writes
        bar = dict(disable=not s.progress or not main, leave=False)
        fps = s.fps

        # 1. check inputs ----------------------------------------------------------------------------
        with timer.stage("inputs"):
            # paths, PIL images, arrays or frame lists -> portrait array + driver files (pipeline/inputs.py)
            inputs = prepare_inputs(image, driving, fps=fps, max_image_pixels=s.max_image_pixels)
            videos, portrait, image_name = inputs.videos, inputs.portrait, inputs.portrait_name
            infos = [probe_video(v) for v in videos]
            if not fps:  # keep the first driver's own rate (the reference's single-face behaviour)
                fps = infos[0].fps
            if output is not None:
                output = Path(output)
                _check_writable(output)
            # Refuse what cannot fit before any face or model work (frames: what every driver gives).
            available = min(info.frames_at(fps) for info in infos)
            self.check_memory(portrait.shape[:2], frame_count_4k1(available, s.max_frames), s)

        # 2. faces and motion ---------------------------------------------------------------------------
        with timer.stage("faces"):
            plan = plan_driving(
                portrait,
                videos,
                backend=self._face_backend(get_backend),
                fps=fps,
                max_frames=s.max_frames,
                face_boxes=s.face_boxes,
                mapping=s.mapping,
                image_name=image_name,
                progress=s.progress,
            )
            num_frames = plan.num_frames
            n = len(plan.portrait_faces)
            controls = s.motion_controls()
            controls.check(n, num_frames)  # face numbers and the reference frame, before any model work
        with timer.stage("motion"):
            faces = face_motions(plan, portrait, self.motion_encoder, progress=s.progress)
            # the portrait faces' own features, for strengths below 1 and relative motion
            need = [i for i in range(n) if controls.for_face(i).needs_portrait]
            own = (
                portrait_features(portrait, plan.portrait_faces, self.motion_encoder, need) if need else None
            )

        # sizes and memory plan
        geo = self.geometry
        width, height = conditioning.target_size(portrait.shape[1], portrait.shape[0], s.max_size, geo)
        scale = np.array([width / portrait.shape[1], height / portrait.shape[0]] * 2, np.float32)
        latent_frames = geo.latent_frames(num_frames)
        h, w = geo.latent_size(height, width)
        window = None if not s.window_frames else max(3, geo.latent_frames(s.window_frames))
        overlap = max(1, s.overlap_frames // geo.temporal)
        use_text = _uses_text(s)
        estimate = self._settings_estimate(width, height, num_frames, s)
        run = acceleration.plan_run(
            self,
            s,
            estimate,
            pick_mode,
            width=width,
            height=height,
            num_frames=num_frames,
            faces=n,
            text=use_text,
        )
        mode, tiling, reason = run.mode, run.vae_tiling, run.reason
        acceleration.prepare_model(self, s, run)
        logger.info("memory mode: %s", reason)
        dev = self.device
        others = [self.clip, self.vae, self.expression_encoder]
        with Placement(mode, dev, self.transformer, others, vae=self.vae, vae_tiling=tiling) as placement:
            # motion tokens -> per-face windows in portrait order, and the face label map
            with timer.stage("motion tokens"), placement.use(self.expression_encoder):
                motions = [f.motion.to(dev, self.dtype) for f in faces]
                windows = conditioning.face_windows(
                    self.expression_encoder, motions, num_frames, controls=controls, portrait_motion=own
                )
                labels = None
                if n > 1:
                    boxes = np.stack([f.portrait_box for f in faces]) * scale
                    regions = conditioning.face_regions(
                        boxes, [f.drive_boxes for f in faces], (height, width)
                    )
                    labels = conditioning.label_map(regions, (height, width), geo)
                # Cache the per-block motion keys/values across steps and branches unless that takes
                # more than MOTION_CACHE_BYTES (14B: about 80 MB per latent frame and face); recomputing
                # costs a few percent of the transformer time.
                cache_bytes = motion_cache_bytes(self.transformer, latent_frames, n)
                motion = conditioning.motion_condition(
                    windows, labels, masked=self.masked_motion, cache_kv=cache_bytes <= MOTION_CACHE_BYTES
                )
                logger.info(
                    "motion keys/values: %s (%.2f GiB for the clip)",
                    "cached" if motion.cache_kv else "recomputed per call",
                    cache_bytes / 2**30,
                )

            # 3. image conditioning: CLIP features, first-frame mask + VAE latents of [image, black...]
            with timer.stage("encode"):
                ref = conditioning.image_tensor(conditioning.resize_image(portrait, width, height)).to(dev)
                with placement.use(self.clip):
                    image_features = conditioning.clip_features(self.clip, ref).to(self.dtype)
                with placement.use(self.vae):
                    progress = partial(tqdm, desc="encode", total=latent_frames, **bar)
                    latents_ref = conditioning.image_latents(self.vae, ref, num_frames, geo, wrap=progress)
                y = conditioning.condition_y(latents_ref).to(self.dtype)

            # 4. text conditioning -------------------------------------------------------------------------
            with timer.stage("text"):
                text = self.encode_text(s.prompt).to(dev, self.dtype)
                negative = (
                    self.encode_text(s.negative_prompt).to(dev, self.dtype)
                    if s.text_guidance != 1.0
                    else None
                )

            # 5. noise: float32 on the CPU from the seed, whatever the device -------------------------------
            generator = torch.Generator("cpu").manual_seed(int(s.seed))
            channels = int(self.transformer.config.out_channels)  # 16 for Wan
            noise = torch.randn(
                (1, channels, latent_frames, h, w), generator=generator, dtype=torch.float32
            ).to(dev)

            # 6. sampling with motion guidance -------------------------------------------------------------
            transformer = self.transformer
            if runtime is not None:  # every rank denoises rank 0's inputs; cfg groups share the branches
                y, image_features, text, negative, noise, motion = runtime.share(
                    (y, image_features, text, negative, noise, motion)
                )
                transformer = runtime.denoiser_model(self.transformer)
            with (
                timer.stage("denoise"),
                placement.use(self.transformer),
                acceleration.denoising(self, s, run, height=height, width=width),
            ):
                # the motion step range (--motion-steps) as the noise levels of the steps it covers
                step_sigmas = sampling_sigmas(run.num_steps, sigmas=run.sigmas)
                motion_range = motion_timestep_range(
                    step_sigmas, motion_step_mask(len(step_sigmas), controls.motion_steps)
                )
                denoiser = GuidedDenoiser(
                    transformer,
                    Conditions(y, image_features, text, motion, negative),
                    motion_guidance=run.motion_guidance,
                    text_guidance=s.text_guidance,
                    batch_branches=run.batch_branches,
                    window=window,
                    overlap=overlap,
                    motion_range=motion_range,
                )
                if runtime is not None:
                    runtime.check_run(denoiser.windows, geo.token_grid(height, width), run.batch_branches)
                steps = tqdm(total=run.num_steps, desc="denoise", unit="step", **bar)
                try:
                    latents = sample(
                        denoiser,
                        noise,
                        run.num_steps,
                        sigmas=run.sigmas,
                        callback=lambda i, x: steps.update(1),
                        on_step_end=partial(self._step_end, callback_on_step_end),
                    )
                finally:
                    steps.close()
                    motion.clear_cache()

            # 7. decode and 8. write ------------------------------------------------------------------------
            audio = next((v for v, info in zip(videos, infos) if info.has_audio), None)
            frames_out = None
            if not main:  # context/cfg parallel: rank 0 alone decodes and writes
                output = None
            else:
                with timer.stage("decode+write"), placement.use(self.vae):
                    pixels = _frames_from_latents(self.vae.decode_stream(latents), num_frames)
                    pixels = tqdm(pixels, desc="decode", total=num_frames, unit="frame", **bar)
                    if output is not None:
                        write_video(output, pixels, fps=fps, audio_from=audio)
                    else:
                        frames_out = np.stack(list(pixels))

        faces_info = [
            {
                "portrait_face": p,
                "box": [round(float(v), 1) for v in f.portrait_box],
                "driver": f.driver,
            }
            for p, f in enumerate(faces)
        ]
        return AnimationResult(
            output=output,
            frames=frames_out,
            num_frames=num_frames,
            fps=fps,
            size=(width, height),
            faces=faces_info,
            mapping=list(plan.mapping),
            seconds=timer.seconds,
            memory_mode=reason,
            windows=len(denoiser.windows),
            transformer_calls=denoiser.calls,
            acceleration=run.summary(),
            controls=controls.to_dict(n),
        )

    def _parallel_runtime(self, s):
        """The parallel runtime of a torchrun launch (``--parallel``), set up by the first such call:
        process group, this rank's GPU, diffusers' context parallelism on the transformer."""
        runtime = getattr(self, "_parallel", None)
        if not s.parallel:
            return runtime
        from ..errors import InputError
        from ..parallel.context import init_runtime
        from ..parallel.spec import ParallelSpec

        spec = s.parallel if isinstance(s.parallel, ParallelSpec) else ParallelSpec.parse(s.parallel)
        if runtime is not None:
            if spec is not None and spec != runtime.spec:
                raise InputError(
                    f"--parallel {spec}: this pipeline already runs with --parallel {runtime.spec}"
                )
            return runtime
        if spec is None:
            return None
        runtime = init_runtime(spec, self.device)
        self.device = runtime.device
        runtime.enable(self.transformer)
        self._parallel = runtime
        return runtime

    def _step_end(self, callback, step: int, timestep: torch.Tensor, latents: torch.Tensor):
        """Run the user's step callback (diffusers' convention); stop when it asked to interrupt."""
        if callback is not None:
            out = callback(self, step, timestep, {"latents": latents}) or {}
            latents = out.get("latents", latents)
        if self.interrupt:
            raise Cancelled(f"cancelled after denoising step {step + 1}")
        return latents


def _portrait_token_dim(path: Path) -> int | None:
    """Motion-token width of a portrait checkpoint (2048 released), read from the projector's norm."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                return (
                    f.get_slice("proj_model.norm.weight").get_shape()[0]
                    if "proj_model.norm.weight" in f.keys()
                    else None
                )
        from ..io.weights import load_torch_file

        state = load_torch_file(path, what="FantasyPortrait weights")
        return int(state["proj_model"]["norm.weight"].shape[0])
    except Exception:  # the loader reports unreadable files with a proper message
        return None


def _uses_text(s: AnimationSettings) -> bool:
    """Whether a run needs text embeddings beyond the cached empty prompt (a prompt or text guidance)."""
    return bool(s.prompt.strip()) or s.text_guidance != 1.0


def _vae_base_dim(vae) -> int:
    """Width of the VAE (96 released; the tiny test VAE is narrower), for the memory estimate."""
    config = getattr(getattr(vae, "model", None), "config", None)
    return int(getattr(config, "base_dim", None) or 96)


def _check_writable(output: Path) -> None:
    from ..io import check_output_file

    check_output_file(output, ".mp4")


def _frames_from_latents(chunks, num_frames: int) -> Iterator[np.ndarray]:
    count = 0
    for chunk in chunks:
        video = (
            ((chunk[0].permute(1, 2, 3, 0) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        )
        for frame in video:
            if count < num_frames:
                yield frame
                count += 1
