"""Several processes on one clip: the process group, the device mesh, diffusers' context parallelism on
the transformer, guidance branches shared out (CFG parallel), and rank 0 as the only writer.

Started by ``torchrun`` (one process per GPU; it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)::

    torchrun --nproc-per-node 8 -m fantasy_portrait animate portrait.png drive.mp4 --parallel ulysses=8

The device mesh is (cfg, ring, ulysses). The ring x Ulysses sub-mesh of a rank is handed to diffusers'
``ContextParallelConfig``; ``transformer.enable_parallelism`` then splits the video tokens by the
transformer's ``_cp_plan`` and runs every self-attention through diffusers' Ulysses / ring kernels.
Only the transformer is parallel: faces, motion tokens and the VAE encode run on rank 0 and their
results are shared (so every rank denoises exactly the same inputs); rank 0 alone decodes and writes.
"""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..errors import InputError
from .sharding import shard_bounds
from .spec import ParallelSpec

logger = logging.getLogger(__name__)

# Ring attention merges partial results with the log-sum-exp, which diffusers' "native" backend does not
# return; on CUDA these torch kernels do (half precision).
RING_BACKENDS_CUDA = ("_native_flash", "_native_cudnn", "flash")


@dataclass
class ParallelRuntime:
    """This process's place in a parallel run."""

    spec: ParallelSpec
    rank: int
    world_size: int
    device: torch.device
    mesh: object = field(repr=False)  # torch DeviceMesh (cfg, ring, ulysses)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def context_mesh(self):
        """This rank's ring x Ulysses sub-mesh (the ranks that share one transformer call's tokens)."""
        return self.mesh["ring", "ulysses"]

    @property
    def cfg_group(self):
        return self.mesh.get_group("cfg")

    @property
    def cfg_rank(self) -> int:
        return self.mesh.get_local_rank("cfg")

    # ------------------------------------------------------------------ the transformer

    def enable(self, transformer, attention_backend: str | None = None) -> None:
        """Apply diffusers' context parallelism to ``transformer`` (nothing to do without ring/Ulysses).

        attention_backend: diffusers backend name for every attention; by default the model's own, or
        for ring on CUDA a kernel that returns the log-sum-exp (``_native_flash``).
        """
        spec = self.spec
        if spec.context_degree == 1:
            return
        from diffusers import ContextParallelConfig

        spec.check_heads(int(transformer.config.num_attention_heads))
        if attention_backend is None and spec.ring > 1:
            current = _current_backend(transformer)
            if current not in RING_BACKENDS_CUDA:
                if self.device.type != "cuda":
                    raise InputError(
                        f"--parallel {spec}: ring attention needs an attention kernel that returns the "
                        "log-sum-exp; torch has one on CUDA only (on CPU use ulysses=N)"
                    )
                attention_backend = "_native_flash"
                logger.info("ring attention: attention backend %s (was %s)", attention_backend, current)
        if attention_backend is not None:
            transformer.set_attention_backend(attention_backend)
        if self.device.type == "cpu" and _accelerator_count() == 0:
            raise InputError(
                f"--parallel {spec}: diffusers' context parallelism needs an accelerator (it places rank r on "
                "device r % device_count); run it on GPUs"
            )
        config = ContextParallelConfig(
            ring_degree=spec.ring, ulysses_degree=spec.ulysses, mesh=self.context_mesh
        )
        transformer.enable_parallelism(config=config)
        logger.info("rank %d/%d: context parallel %s on %s", self.rank, self.world_size, spec, self.device)

    def check_run(self, windows: list[list[int]], token_grid: tuple[int, int], batch_branches: bool) -> None:
        """Before sampling: every transformer call's video tokens split evenly over the context-parallel
        ranks, and cfg parallel has the guidance branches as one batch to share out."""
        per_frame = token_grid[0] * token_grid[1]
        for length in sorted({len(w) for w in windows}):
            self.spec.check_tokens(
                length * per_frame, f"a window of {length} latent frames ({per_frame} tokens each)"
            )
        if self.spec.cfg > 1 and not batch_branches:
            raise InputError(
                f"--parallel {self.spec}: cfg parallel shares out the guidance branches of one batch; "
                "leave out --sequential-branches"
            )

    def denoiser_model(self, transformer):
        """What the sampler should call: ``transformer`` itself, or with cfg > 1 a wrapper that gives each
        cfg group its share of the guidance branches and gathers the predictions."""
        if self.spec.cfg == 1:
            return transformer
        return CfgParallel(transformer, self.cfg_group, self.spec.cfg, self.cfg_rank)

    # ------------------------------------------------------------------ sharing

    def share(self, obj):
        """Rank 0's ``obj`` on every rank (tensors travel through the CPU and land on this rank's device)."""
        payload = [_to_device(obj, torch.device("cpu")) if self.is_main else None]
        dist.broadcast_object_list(payload, src=0, device=_collective_device(self.device))
        return _to_device(payload[0], self.device)


def _accelerator_count() -> int:
    try:
        return int(torch.accelerator.device_count())
    except (AttributeError, RuntimeError):
        return int(torch.cuda.device_count())


def _collective_device(device: torch.device) -> torch.device | None:
    return device if device.type == "cuda" else None


def _current_backend(transformer) -> str:
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    for module in transformer.modules():
        processor = getattr(module, "processor", None)
        if processor is not None and hasattr(processor, "_attention_backend"):
            backend = processor._attention_backend
            if backend is not None:
                return str(getattr(backend, "value", backend))
            break
    return str(_AttentionBackendRegistry.get_active_backend()[0].value)


def _to_device(obj, device: torch.device):
    """``obj`` with every tensor (in lists, tuples, dicts and dataclasses) moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(x, device) for x in obj)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if hasattr(obj, "__dataclass_fields__"):  # public fields only (private ones are caches)
        for name in (n for n in obj.__dataclass_fields__ if not n.startswith("_")):
            value = getattr(obj, name, None)
            if isinstance(value, (torch.Tensor, list, tuple, dict)) or hasattr(value, "__dataclass_fields__"):
                setattr(obj, name, _to_device(value, device))
        return obj
    return obj


def init_runtime(spec: ParallelSpec, device: str | torch.device | None = None) -> ParallelRuntime:
    """Join the process group torchrun started (or the one already initialised) and build the mesh.

    device: this rank's device; default ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU (gloo).
    """
    if not dist.is_available():
        raise InputError("--parallel needs torch.distributed, which this torch build lacks")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # "cuda": this process's GPU
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
            raise InputError(
                f"--parallel {spec} needs {spec.world_size} processes: start it with "
                f"torchrun --nproc-per-node {spec.world_size} -m fantasy_portrait ..."
            )
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy)
    world = dist.get_world_size()
    if world != spec.world_size:
        raise InputError(
            f"--parallel {spec} needs exactly {spec.world_size} processes, torchrun started {world}"
        )
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(
        device.type, (spec.cfg, spec.ring, spec.ulysses), mesh_dim_names=("cfg", "ring", "ulysses")
    )
    rank = dist.get_rank()
    if rank != 0:  # one voice: the other ranks log warnings and errors only
        logging.getLogger("fantasy_portrait").setLevel(logging.WARNING)
    return ParallelRuntime(spec, rank, world, device, mesh)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class CfgParallel:
    """The transformer with its batch (the guidance branches of one step) shared out over cfg groups.

    Group g runs rows ``tensor_split(range(B), cfg)[g]`` (padded to equal length with its last row, so
    that every group sends the same amount) and an all-gather puts the B predictions back in order.
    A batch of one (sequential branches) runs whole on every group.
    """

    def __init__(self, transformer, group, size: int, rank: int):
        self.transformer = transformer
        self.group = group
        self.size = size
        self.rank = rank

    def __getattr__(self, name):
        return getattr(self.transformer, name)

    def __call__(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        motion=None,
        motion_scale: float | torch.Tensor = 1.0,
        **kwargs,
    ) -> torch.Tensor:
        batch = hidden_states.shape[0]
        inputs = dict(
            hidden_states=hidden_states,
            timestep=timestep.expand(batch) if timestep.numel() == 1 else timestep,
            encoder_hidden_states=encoder_hidden_states,
            encoder_hidden_states_image=encoder_hidden_states_image,
            motion_scale=torch.as_tensor(motion_scale, dtype=torch.float32).flatten().expand(batch),
        )
        if batch == 1:
            return self.transformer(motion=motion, **inputs, **kwargs)
        if motion is not None and any(w.shape[0] != 1 for w in motion.windows):
            raise ValueError("cfg parallel needs motion windows shared by the whole batch (batch 1)")
        bounds = [shard_bounds(batch, self.size, g) for g in range(self.size)]
        per = max(stop - start for start, stop in bounds)
        start, stop = bounds[self.rank]
        rows = list(range(start, stop)) or [batch - 1]
        rows += [rows[-1]] * (per - len(rows))
        local = self.transformer(
            motion=motion,
            **{
                k: None if v is None else v.index_select(0, torch.tensor(rows, device=v.device))
                for k, v in inputs.items()
            },
            **kwargs,
        ).contiguous()
        gathered = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(gathered, local, group=self.group)
        # row r of the batch is row (r - start of its group) of its group's share
        order = [g * per + r - s for g, (s, e) in enumerate(bounds) for r in range(s, e)]
        return torch.cat(gathered).index_select(0, torch.tensor(order, device=local.device))
