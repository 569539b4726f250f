"""The trainer: the motion parts of FantasyPortrait on top of a frozen Wan2.1 I2V DiT (SPEC §9).

Runs on accelerate, so the same code is one CPU process, DDP, FSDP or DeepSpeed depending on how it
is launched (``accelerate launch --config_file configs/accelerate/<x>.yaml``). Per optimizer step it
takes one global batch (``micro_batch * processes * grad_accum`` samples, chosen by
:class:`~fantasy_portrait.training.dataset.GlobalBatchPlan`), draws each sample's time, noise and
condition dropout from a generator seeded by (seed, step, slot), and regresses the velocity. The
result depends on the global batch, not on how it is split, and a resumed run repeats exactly what
an uninterrupted run would have done.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, InputError
from ..pipeline import conditioning
from . import checkpoint as ckpt
from .config import ModelSection, TrainConfig
from .dataset import GlobalBatchPlan, MicroBatchSampler, PrecomputedDataset, collate_samples
from .objective import (
    draw_batch,
    flow_matching_loss,
    model_timestep,
    noisy_latents,
    velocity_target,
)

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PORTRAIT_FILE = "fantasyportrait_model.safetensors"
TRAINABLE_FILE = "trainable.safetensors"
EMA_FILE = "ema.safetensors"
LORA_FILE = "lora.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
LOSS_LOG = "losses.jsonl"
VAL_LOG = "val_losses.jsonl"


class MotionTrainingModel(nn.Module):
    """Expression encoder + FantasyPortrait transformer as one module (what DDP/FSDP wrap)."""

    def __init__(self, transformer: nn.Module, encoder: nn.Module, masked_motion: bool = True):
        super().__init__()
        self.transformer = transformer
        self.encoder = encoder
        self.masked_motion = masked_motion

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        clip: torch.Tensor,
        motion: torch.Tensor,
        labels: torch.Tensor | None,
        motion_scale: torch.Tensor,
    ) -> torch.Tensor:
        """hidden_states (B, 36, T, h, w); timestep (B,); text (B, L, D); clip (B, K, 1280);
        motion (B, N, F, 554); labels (B, h/2, w/2) or None; motion_scale (B,). Returns (B, 16, T, h, w)."""
        windows = conditioning.face_windows(self.encoder, motion)
        condition = conditioning.motion_condition(windows, labels, masked=self.masked_motion, cache_kv=False)
        out = self.transformer(
            hidden_states, timestep, text, clip, motion=condition, motion_scale=motion_scale
        )
        if not bool((motion_scale != 0).any()):
            # Every sample dropped its motion: the motion parts are unused. A zero-weighted touch keeps
            # them in the graph, so backward works and DDP reduces (zero) gradients for them.
            anchor = sum(p.reshape(-1)[0] for p in self.parameters() if p.requires_grad)
            out = out + 0.0 * anchor
        return out


def build_models(section: ModelSection) -> tuple[nn.Module, nn.Module]:
    """The transformer (frozen base in ``base_dtype``) and the expression encoder, per the config."""
    from ..models.config import PRESETS
    from ..models.expression_encoder import ExpressionEncoder
    from ..models.loading import build_from_preset, load_portrait_checkpoint, load_wan_transformer

    if section.preset not in PRESETS:
        raise InputError(f"unknown model.preset {section.preset!r}; choose from {', '.join(PRESETS)}")
    dtype = DTYPES[section.base_dtype]
    preset = PRESETS[section.preset]
    torch.manual_seed(section.init_seed)
    if section.wan:
        transformer = load_wan_transformer(section.wan, dtype=dtype, motion_dim=preset.encoder.token_dim)
        encoder = ExpressionEncoder(preset.encoder)
    else:
        transformer, encoder = build_from_preset(section.preset, device="cpu", dtype=dtype)
    if section.portrait_init:
        encoder = load_portrait_checkpoint(section.portrait_init, transformer, dtype=torch.float32)
    return transformer, encoder


def mark_trainable(model: MotionTrainingModel, section: ModelSection) -> list[tuple[str, nn.Parameter]]:
    """Freeze the base, add LoRA if asked, make the motion parts (and LoRA) trainable float32."""
    from ..models.loading import trainable_motion_parameters

    transformer, encoder = model.transformer, model.encoder
    model.requires_grad_(False)
    if section.lora_rank > 0:
        from peft import LoraConfig

        transformer.add_adapter(
            LoraConfig(
                r=section.lora_rank,
                lora_alpha=section.lora_alpha or section.lora_rank,
                target_modules=list(section.lora_targets),
                init_lora_weights=True,
            )
        )
        transformer.requires_grad_(False)
    encoder.float()
    for module in transformer.motion_modules():
        module.float()
    for p in trainable_motion_parameters(transformer, encoder):
        p.requires_grad_(True)
    for name, p in transformer.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()
            p.requires_grad_(True)
    if section.train_base:
        model.float().requires_grad_(True)
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _released_tensors(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Trainable tensors named as in MotionTrainingModel -> the released FantasyPortrait key names."""
    from ..models.loading import internal_to_released

    out = {}
    for name, tensor in weights.items():
        part, _, rest = name.partition(".")
        if part == "encoder":
            out[internal_to_released("encoder", rest)] = tensor.contiguous()
        elif part == "transformer" and ".motion_" in rest:
            out[internal_to_released("transformer", rest)] = tensor.contiguous()
    return out


class EMA:
    """Exponential moving average of the trainable weights (float32 shadow copies)."""

    def __init__(self, params: list[tuple[str, nn.Parameter]], decay: float):
        self.decay = decay
        self.shadow = {n: p.detach().float().clone() for n, p in params}

    @torch.no_grad()
    def update(self, params: list[tuple[str, nn.Parameter]]) -> None:
        for n, p in params:
            self.shadow[n].lerp_(p.detach().float(), 1.0 - self.decay)


@dataclass
class TrainResult:
    losses: dict[int, float] = field(default_factory=dict)  # step (1-based) -> global mean loss
    final_step: int = 0
    checkpoint: Path | None = None
    samples_per_second: float = 0.0


def _json_rng_states() -> dict:
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [
            np_state[0],
            np_state[1].tolist(),
            *[v if not isinstance(v, np.generic) else v.item() for v in np_state[2:]],
        ],
    }


def _restore_json_rng_states(states: dict) -> None:
    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = states["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))


class Trainer:
    """Train the motion parts per ``config``. ``transformer``/``encoder`` override the config's model."""

    def __init__(
        self, config: TrainConfig, *, transformer: nn.Module | None = None, encoder: nn.Module | None = None
    ):
        self.config = config
        self._models = (transformer, encoder)

    # ------------------------------------------------------------------------------------ setup
    def _accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

        cfg = self.config.train
        out = Path(cfg.output_dir)
        try:
            import tensorboard  # noqa: F401

            log_with = "tensorboard"
        except ImportError:
            log_with = None
        from accelerate.state import AcceleratorState

        # The accelerator state is a process-wide singleton; a second run in the same process (tests,
        # notebooks) may use another precision. The process group (PartialState) is kept.
        AcceleratorState._reset_state()
        # Without CUDA, cpu=True is what makes accelerate use gloo across torchrun's processes.
        return Accelerator(
            cpu=cfg.cpu or not torch.cuda.is_available(),
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=self.config.optim.grad_accum,
            log_with=log_with,
            project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
            # A micro-batch whose samples all dropped the motion leaves the motion parts unused.
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )

    def _sharded(self, acc) -> bool:
        from accelerate.utils import DistributedType

        return acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)

    # ------------------------------------------------------------------------------------- loss
    def _loss(
        self, model, batch: dict, step: int, slots: list[int], empty_prompt: torch.Tensor, device
    ) -> torch.Tensor:
        obj = self.config.objective
        latents = batch["latents"].to(device)
        bsz, _, frames, height, width = latents.shape
        draws = draw_batch(self.config.train.seed, step, slots, tuple(latents.shape[1:]), obj)
        noise, t = draws.noise.to(device), draws.t.to(device)
        keep_image = draws.keep_image.to(device=device, dtype=torch.float32)
        z_t = noisy_latents(latents, noise, t)
        target = velocity_target(latents, noise)
        image_latents = batch["image_latents"].to(device) * keep_image.view(-1, 1, 1, 1, 1)
        cond = conditioning.condition_y(image_latents)  # the inference pipeline's y
        clip = batch["clip"].to(device) * keep_image.view(-1, 1, 1)
        text = torch.where(
            draws.keep_prompt.to(device).view(-1, 1, 1), batch["text"].to(device), empty_prompt
        )
        labels = batch["labels"].to(device) if batch["num_faces"] > 1 else None
        prediction = model(
            torch.cat([z_t, cond], dim=1),
            model_timestep(t),
            text,
            clip,
            batch["motion"].to(device),
            labels,
            draws.keep_motion.to(device=device, dtype=torch.float32),
        )
        return flow_matching_loss(prediction, target)

    # ------------------------------------------------------------------------------- checkpoints
    def _save(
        self, acc, model, optimizer, scheduler, ema, params, step: int, plan: GlobalBatchPlan
    ) -> Path | None:
        from safetensors.torch import save_file

        from ..models.loading import save_portrait_checkpoint

        root = Path(self.config.train.output_dir) / "checkpoints"
        acc.wait_for_everyone()
        sharded = self._sharded(acc)
        full_state = acc.get_state_dict(model) if sharded else None  # collective: every rank calls it
        path = None
        if acc.is_main_process:
            inner = acc.unwrap_model(model)
            with ckpt.atomic_checkpoint(root, step) as tmp:
                if sharded:
                    weights = {n: full_state[n].float().cpu().contiguous() for n, _ in params}
                else:
                    weights = {n: p.detach().float().cpu().contiguous() for n, p in params}
                save_file(weights, str(tmp / TRAINABLE_FILE))
                if ema is not None:
                    save_file({n: t.contiguous() for n, t in ema.shadow.items()}, str(tmp / EMA_FILE))
                export = ema.shadow if ema is not None else weights
                if sharded:  # the module's parameters are shards here: export from the gathered tensors
                    save_file(_released_tensors(export), str(tmp / PORTRAIT_FILE), metadata={"format": "pt"})
                else:
                    self._export_portrait(inner, export, tmp / PORTRAIT_FILE, save_portrait_checkpoint)
                if self.config.model.lora_rank > 0:
                    # diffusers' LoRA file convention: transformer.<module>.lora_{A,B}.weight
                    lora = {n.replace(".default.", "."): t for n, t in export.items() if "lora_" in n}
                    save_file(lora, str(tmp / LORA_FILE), metadata={"rank": str(self.config.model.lora_rank)})
                if not sharded:
                    torch.save(
                        {
                            "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(),
                            "torch_rng": torch.get_rng_state(),
                        },
                        tmp / OPTIMIZER_FILE,
                    )
                state = {
                    "step": step,
                    "global_batch": plan.global_batch,
                    "world_size": acc.num_processes,
                    "seed": self.config.train.seed,
                    "sharded_state": sharded,
                    "rng": _json_rng_states(),
                    "config": self.config.to_dict(),
                }
                (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, default=str))
            path = root / ckpt.step_name(step)
            ckpt.prune_checkpoints(root, self.config.train.keep_last)
        if sharded:
            # Optimizer states are sharded over the processes: accelerate writes and reads them.
            acc.wait_for_everyone()
            acc.save_state(str(root / ckpt.step_name(step) / "accelerate"))
        acc.wait_for_everyone()
        return path

    @staticmethod
    def _export_portrait(inner: MotionTrainingModel, weights: dict, path: Path, save_fn) -> None:
        """Write the released-layout file with ``weights`` (e.g. the EMA) swapped in temporarily."""
        named = dict(inner.named_parameters())
        backup = {n: named[n].detach().clone() for n in weights if n in named}
        with torch.no_grad():
            for n, t in weights.items():
                if n in named:
                    named[n].copy_(t.to(named[n].dtype))
            try:
                save_fn(path, inner.encoder, inner.transformer)
            finally:
                for n, t in backup.items():
                    named[n].copy_(t)

    def _resume_path(self) -> Path | None:
        resume = self.config.train.resume
        if resume == "never":
            return None
        if resume == "auto":
            return ckpt.latest_checkpoint(Path(self.config.train.output_dir) / "checkpoints")
        path = Path(resume)
        if not ckpt.is_complete(path):
            raise CheckpointError(f"{path}: not a complete training checkpoint")
        return path

    def _load(self, path: Path, params, optimizer, scheduler, ema, plan: GlobalBatchPlan) -> int:
        from safetensors.torch import load_file

        state = json.loads((path / STATE_FILE).read_text())
        if state["global_batch"] != plan.global_batch:
            logger.warning(
                "%s: saved with global batch %d, now %d: the run will not repeat the original one exactly",
                path,
                state["global_batch"],
                plan.global_batch,
            )
        weights = load_file(str(path / TRAINABLE_FILE))
        named = dict(params)
        missing = sorted(set(named) - set(weights))
        if missing:
            raise CheckpointError(f"{path}: trainable tensor(s) missing: {missing[:4]}")
        with torch.no_grad():
            for n, p in named.items():
                p.copy_(weights[n].to(p.dtype))
        if ema is not None and (path / EMA_FILE).is_file():
            ema.shadow = {n: t.float() for n, t in load_file(str(path / EMA_FILE)).items()}
        if not state.get("sharded_state") and (path / OPTIMIZER_FILE).is_file():
            from ..io.weights import load_torch_file

            saved = load_torch_file(path / OPTIMIZER_FILE, what="optimizer state", mmap=False)
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            torch.set_rng_state(saved["torch_rng"])
        _restore_json_rng_states(state["rng"])
        logger.info("resumed from %s (step %d)", path, state["step"])
        return int(state["step"])

    # ------------------------------------------------------------------------------------- train
    def train(self) -> TrainResult:
        from tqdm import tqdm

        cfg = self.config
        acc = self._accelerator()
        out = Path(cfg.train.output_dir)
        dataset = PrecomputedDataset(cfg.data.root, cfg.data.text_len)
        world, rank = acc.num_processes, acc.process_index
        global_batch = cfg.data.micro_batch * world * cfg.optim.grad_accum
        plan = GlobalBatchPlan([rec.bucket for rec in dataset.samples], global_batch, cfg.train.seed)

        transformer, encoder = self._models
        if transformer is None or encoder is None:
            transformer, encoder = build_models(cfg.model)
        # The run folder appears only once the set and the models have loaded (bad inputs leave none).
        if acc.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1, default=str))
        model = MotionTrainingModel(transformer, encoder, masked_motion=cfg.model.masked_motion)
        params = mark_trainable(model, cfg.model)
        if cfg.train.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        model.train()
        n_train = sum(p.numel() for _, p in params)
        n_all = sum(p.numel() for p in model.parameters())
        logger.info("trainable parameters: %d of %d (%.2f%%)", n_train, n_all, 100 * n_train / max(1, n_all))

        optimizer = torch.optim.AdamW(
            [p for _, p in params],
            lr=cfg.optim.lr,
            betas=cfg.optim.betas,
            eps=cfg.optim.eps,
            weight_decay=cfg.optim.weight_decay,
        )
        warmup = max(0, cfg.optim.warmup_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
        )
        ema = EMA(params, cfg.train.ema_decay) if cfg.train.ema_decay else None

        start = 0
        resume_path = self._resume_path()
        if resume_path is not None:
            start = self._load(resume_path, params, optimizer, scheduler, ema, plan)
        # The scheduler is stepped by hand once per optimizer step (accelerate would step it once
        # per process), so the learning rate does not depend on the number of processes.
        model, optimizer = acc.prepare(model, optimizer)
        if resume_path is not None and self._sharded(acc) and (resume_path / "accelerate").is_dir():
            acc.load_state(str(resume_path / "accelerate"))
        device = acc.device
        trainable = [p for p in model.parameters() if p.requires_grad]

        if acc.is_main_process:
            acc.init_trackers("fantasy-portrait")
            self._truncate_loss_log(out / LOSS_LOG, start)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=MicroBatchSampler(
                plan, cfg.data.micro_batch, world, rank, cfg.optim.grad_accum, start, cfg.train.max_steps
            ),
            collate_fn=collate_samples,
            num_workers=cfg.data.num_workers,
            persistent_workers=False,
        )
        batches = iter(loader)
        val_set = None
        if cfg.train.eval_every > 0:
            val_full = PrecomputedDataset(cfg.data.val_root or cfg.data.root, cfg.data.text_len)
            val_set = torch.utils.data.Subset(val_full, range(min(len(val_full), cfg.train.eval_samples)))
            val_set.empty_prompt = val_full.empty_prompt
        empty_prompt = dataset.empty_prompt.to(device)
        result = TrainResult(final_step=start)
        bar = tqdm(
            total=cfg.train.max_steps,
            initial=start,
            desc="train",
            unit="step",
            disable=not (acc.is_main_process and cfg.train.progress),
        )
        step = start
        seen, clock = 0, time.perf_counter()
        while step < cfg.train.max_steps:
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            for a in range(cfg.optim.grad_accum):
                batch = next(batches)
                slots = plan.slots(cfg.data.micro_batch, world, rank, a)
                with acc.accumulate(model):
                    loss = self._loss(model, batch, step, slots, empty_prompt, device)
                    acc.backward(loss)
                    if acc.sync_gradients:
                        if cfg.optim.max_grad_norm:
                            acc.clip_grad_norm_(trainable, cfg.optim.max_grad_norm)
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.detach().float()
            step += 1
            if ema is not None:
                ema.update(params)
            mean_loss = acc.reduce(loss_sum / cfg.optim.grad_accum, reduction="mean").item()
            elapsed = time.perf_counter() - t0
            seen += global_batch
            rate = global_batch / max(elapsed, 1e-9)
            result.losses[step] = mean_loss
            result.final_step = step
            if acc.is_main_process:
                lr = scheduler.get_last_lr()[0]
                self._append_loss(out / LOSS_LOG, step, mean_loss, lr, rate)
                if step % max(1, cfg.train.log_every) == 0:
                    acc.log({"train/loss": mean_loss, "train/lr": lr, "train/samples_per_s": rate}, step=step)
                bar.set_postfix(loss=f"{mean_loss:.4f}", samples_s=f"{rate:.2f}")
                bar.update(1)
            if cfg.train.eval_every > 0 and (step % cfg.train.eval_every == 0 or step == cfg.train.max_steps):
                # Every process evaluates (sharded models need all of them in the forward pass).
                val_loss = fixed_set_loss(model, val_set, cfg, device=device)
                if acc.is_main_process:
                    with open(out / VAL_LOG, "a") as f:
                        f.write(json.dumps({"step": step, "val_loss": val_loss}) + "\n")
                    acc.log({"val/loss": val_loss}, step=step)
            if step % max(1, cfg.train.save_every) == 0 or step == cfg.train.max_steps:
                result.checkpoint = self._save(acc, model, optimizer, scheduler, ema, params, step, plan)
        bar.close()
        result.samples_per_second = seen / max(time.perf_counter() - clock, 1e-9)
        acc.end_training()
        return result

    @staticmethod
    def _append_loss(path: Path, step: int, loss: float, lr: float, rate: float) -> None:
        with open(path, "a") as f:
            f.write(json.dumps({"step": step, "loss": loss, "lr": lr, "samples_per_s": rate}) + "\n")
            f.flush()

    @staticmethod
    def _truncate_loss_log(path: Path, keep_through: int) -> None:
        """Drop log lines after the resumed step (and a torn last line from a crash)."""
        if not path.is_file():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= keep_through:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError):
                continue
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)


@torch.no_grad()
def fixed_set_loss(
    model: MotionTrainingModel,
    dataset: PrecomputedDataset,
    config: TrainConfig,
    *,
    seed: int = 12345,
    device="cpu",
) -> float:
    """Mean flow-matching loss over every sample of ``dataset`` with fixed draws and no dropout.

    Each sample gets its own time and noise from ``seed`` (the same every call), so the value moves
    only with the weights: a validation loss.
    """
    from dataclasses import replace

    trainer = Trainer(
        replace(config, objective=replace(config.objective, drop_image=0.0, drop_motion=0.0, drop_prompt=0.0))
    )
    trainer.config.train = replace(config.train, seed=seed)
    empty = dataset.empty_prompt.to(device)  # a Subset carries it as an attribute
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(len(dataset)):
        batch = collate_samples([dataset[i]])
        total += float(trainer._loss(model, batch, 0, [i], empty, device))
    model.train(was_training)
    return total / len(dataset)


def read_loss_log(output_dir: str | os.PathLike) -> dict[int, float]:
    """step -> loss from a run's losses.jsonl (the last entry wins for a repeated step)."""
    path = Path(output_dir) / LOSS_LOG
    losses: dict[int, float] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            losses[int(entry["step"])] = float(entry["loss"])
    return losses
