"""LoRAs for the Wan DiT (e.g. the LightX2V step-distilled ones), loaded through diffusers and peft.

Layouts read (see docs/acceleration.md):
- LightX2V / ComfyUI, original Wan names: ``diffusion_model.blocks.N.self_attn.q.lora_down.weight`` /
  ``lora_up.weight`` (or ``lora_A`` / ``lora_B``), optional ``.alpha`` (scale alpha / rank), and
  difference tensors: ``X.diff`` (added to ``X.weight``), ``X.diff_b`` (added to ``X.bias``),
  ``blocks.N.diff_m`` (added to the block's modulation, diffusers ``scale_shift_table``); the prefix
  may also be ``model.diffusion_model.`` or absent;
- diffusers / peft: ``transformer.blocks.N.attn1.to_q.lora_A.weight`` (``base_model.model.`` or no
  prefix, ``lora_A.default.weight``), and kohya/musubi ``lora_unet_...`` (diffusers converts it).

The low-rank part (with ``diff_b`` of layers that also have a low-rank pair, which peft holds as the
``lora_B`` bias) goes through diffusers' Wan converter and ``load_lora_adapter`` (peft). diffusers
drops the other difference tensors: norm ``.diff`` ("zeroed values"), full-weight ``.diff`` and the
modulation ``diff_m`` (it only logs "contains diff keys which we do not handle yet"). Those are
added here, scaled like the low-rank part, to the parameters they name, after the same checks of
names and shapes; the values they replace are kept so :meth:`LoadedLoras.remove` restores them.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CheckpointError, InputError

logger = logging.getLogger(__name__)

_ORIGINAL_HINTS = ("self_attn", "cross_attn", "ffn.0", "ffn.2", "diff_m", "modulation", "head.head")
_LOW_RANK = re.compile(r"\.(lora_down|lora_up|lora_A|lora_B)(\.default)?\.weight$")


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA file and its strength (the ``--lora FILE[:SCALE]`` argument)."""

    path: Path
    scale: float = 1.0

    @classmethod
    def parse(cls, text: str | os.PathLike | LoraSpec) -> LoraSpec:
        """'FILE' or 'FILE:SCALE' (a trailing ':number' is the scale; paths may contain ':')."""
        if isinstance(text, LoraSpec):
            return text
        text = str(text)
        path, sep, tail = text.rpartition(":")
        if sep and path:
            try:
                return cls(Path(path), float(tail))
            except ValueError:
                pass
        return cls(Path(text), 1.0)


@dataclass
class LoraInfo:
    """What one LoRA file changed."""

    path: Path
    scale: float
    adapter: str | None  # peft adapter name (None: the file has no low-rank part)
    low_rank_layers: int
    diffs: dict[str, int] = field(default_factory=dict)  # kind -> number of tensors added
    layout: str = ""

    def describe(self) -> str:
        parts = [f"{self.low_rank_layers} low-rank layers"] if self.low_rank_layers else []
        parts += [f"{n} {kind} diffs" for kind, n in self.diffs.items() if n]
        return f"{self.path.name} x{self.scale:g} ({self.layout}): " + (", ".join(parts) or "nothing")


class LoadedLoras:
    """The LoRAs applied to a transformer; ``remove()`` undoes them unless they were fused."""

    def __init__(self, transformer, infos: list[LoraInfo], originals: dict[str, torch.Tensor], fused: bool):
        self.transformer = transformer
        self.infos = infos
        self.fused = fused
        self._originals = originals  # parameter name -> value before the diffs (CPU copy)

    def describe(self) -> str:
        how = "fused into the weights" if self.fused else "as peft adapters"
        return "; ".join(i.describe() for i in self.infos) + f" [{how}]"

    def remove(self) -> None:
        """Restore the parameters the diffs changed and delete the adapters (unfused LoRAs only)."""
        if self.fused:
            raise RuntimeError("fused LoRAs are part of the weights: reload the model to remove them")
        params = dict(self.transformer.named_parameters())
        for name, value in self._originals.items():
            params[name].data.copy_(value.to(params[name].device))
        names = [i.adapter for i in self.infos if i.adapter]
        if names:
            self.transformer.delete_adapters(names)
        self._originals = {}
        self.infos = []


# --------------------------------------------------------------------------- reading


def read_lora(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from .loading import read_state_dict

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: LoRA file not found")
    state = read_state_dict(path)
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{path}: no tensors (not a LoRA file)")
    return state


def _normalise(state: dict[str, torch.Tensor], path: Path) -> tuple[str, dict[str, torch.Tensor]]:
    """(layout, state) with the layout's canonical prefix: 'original' (``diffusion_model.``),
    'diffusers' (``transformer.``) or 'kohya' (``lora_unet_``, left to diffusers)."""
    out = {}
    for key, value in state.items():
        key = key.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")
        for prefix in ("base_model.model.", "model.diffusion_model.", "diffusion_model."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        out[key] = value
    keys = list(out)
    if any(k.startswith("lora_unet_") for k in keys):
        return "kohya", state
    if any(k.startswith("transformer.") for k in keys):
        return "diffusers", {
            k if k.startswith("transformer.") else f"transformer.{k}": v for k, v in out.items()
        }
    if any(h in k for k in keys for h in _ORIGINAL_HINTS) or any(
        k.endswith((".diff", ".diff_b")) for k in keys
    ):
        return "original", {f"diffusion_model.{k}": v for k, v in out.items()}
    if any(_LOW_RANK.search(k) for k in keys) and any(
        k.startswith(("blocks.", "condition_embedder.", "proj_out.")) for k in keys
    ):
        return "diffusers", {f"transformer.{k}": v for k, v in out.items()}
    raise CheckpointError(
        f"{path}: not a LoRA for a Wan DiT in a known layout (keys look like {', '.join(sorted(keys)[:3])})"
    )


def _split_diffs(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """Original layout: (what diffusers converts, difference tensors we add ourselves)."""
    low_rank_bases = {m.string[: m.start()] for k in state if (m := _LOW_RANK.search(k)) is not None}
    converted, own = {}, {}
    for key, value in state.items():
        base = key.rsplit(".", 1)[0]
        if key.endswith("diff_m") or key.endswith(".diff"):
            own[key] = value
        elif key.endswith(".diff_b") and ("norm" in key or base not in low_rank_bases):
            own[key] = value
        else:
            converted[key] = value
    return converted, own


def _diff_target(key: str) -> tuple[str, str]:
    """(kind, diffusers parameter name) of an original-layout difference key."""
    from .loading import _original_to_diffusers_key

    name = key[len("diffusion_model.") :]
    if name.endswith("diff_m"):
        original, kind = name[: -len("diff_m")].rstrip(".") + ".modulation", "modulation"
        if original == ".modulation":
            original = "head.modulation"
    elif name.endswith(".diff_b"):
        original, kind = name[: -len(".diff_b")] + ".bias", "bias"
    else:
        original, kind = name[: -len(".diff")] + ".weight", "weight"
    if "norm" in original:
        kind = "norm"
    return kind, _original_to_diffusers_key(original)


def _convert_low_rank(layout: str, state: dict, path: Path) -> dict[str, torch.Tensor]:
    if not state:
        return {}
    if layout == "diffusers":
        return state
    from diffusers.loaders.lora_pipeline import WanLoraLoaderMixin

    try:
        converted = WanLoraLoaderMixin.lora_state_dict(dict(state))
    except Exception as exc:  # the converters raise ValueError/KeyError on keys they do not know
        raise CheckpointError(
            f"{path}: LoRA keys not understood by diffusers' Wan converter ({exc!r})"
        ) from exc
    if isinstance(converted, tuple):
        converted = converted[0]
    return converted


def _check_low_rank(transformer, state: dict[str, torch.Tensor], path: Path) -> int:
    """Every low-rank tensor names an existing Linear of matching shape; returns the layer count."""
    modules = dict(transformer.named_modules())
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        name = key[len("transformer.") :] if key.startswith("transformer.") else key
        match = re.match(r"^(.*)\.(lora_A|lora_B)\.(weight|bias)$", name)
        if match is None:
            raise CheckpointError(f"{path}: unexpected LoRA tensor {key!r}")
        layers.setdefault(match[1], {})[f"{match[2]}.{match[3]}"] = value
    missing = sorted(m for m in layers if not isinstance(modules.get(m), torch.nn.Linear))
    if missing and len(missing) == len(layers):
        raise CheckpointError(
            f"{path}: the LoRA matches no weights of this model (it adapts e.g. {', '.join(missing[:3])}): "
            "not a LoRA for a Wan2.1 DiT"
        )
    if missing:
        raise CheckpointError(
            f"{path}: LoRA for another model: {len(missing)} of its {len(layers)} layers are not in this "
            f"{transformer.config.num_layers}-block model (e.g. {', '.join(missing[:3])})"
        )
    for name, tensors in layers.items():
        linear = modules[name]
        a, b = tensors.get("lora_A.weight"), tensors.get("lora_B.weight")
        if a is None or b is None:
            raise CheckpointError(
                f"{path}: LoRA layer {name} lacks its {'lora_A' if a is None else 'lora_B'}"
            )
        bias = tensors.get("lora_B.bias")
        if (
            a.shape[1] != linear.in_features
            or b.shape[0] != linear.out_features
            or a.shape[0] != b.shape[1]
            or (bias is not None and bias.shape[0] != linear.out_features)
        ):
            raise CheckpointError(
                f"{path}: LoRA for another model (shape mismatch): {name} is {linear.in_features} -> "
                f"{linear.out_features}, the LoRA has {a.shape[1]} -> {b.shape[0]} (rank {a.shape[0]})"
            )
    return len(layers)


def _check_diffs(
    transformer, diffs: dict[str, torch.Tensor], path: Path
) -> dict[str, tuple[str, torch.Tensor]]:
    """Original diff key -> (kind, target parameter name), after name and shape checks."""
    params = dict(transformer.named_parameters())
    targets, missing = {}, []
    for key, value in diffs.items():
        kind, name = _diff_target(key)
        if name not in params:
            missing.append(key)
            continue
        if tuple(value.shape) != tuple(params[name].shape):
            raise CheckpointError(
                f"{path}: LoRA for another model (shape mismatch): {key} is {tuple(value.shape)}, "
                f"{name} is {tuple(params[name].shape)}"
            )
        targets[key] = (kind, name)
    if missing:
        raise CheckpointError(
            f"{path}: LoRA for another model: difference tensor(s) for weights this model lacks: "
            f"{', '.join(sorted(missing)[:4])}"
        )
    return targets


# --------------------------------------------------------------------------- applying


def apply_loras(
    transformer,
    specs: list[LoraSpec | str],
    *,
    fuse: bool = True,
) -> LoadedLoras:
    """Load LoRA files into ``transformer`` (a FantasyPortraitTransformer or diffusers Wan model).

    fuse: merge the low-rank updates into the weights and drop the peft layers (no extra work per
    call; needed before fp8 storage or compilation); False keeps them as peft adapters (their scale
    can change, ``remove()`` undoes everything).
    """
    specs = [LoraSpec.parse(s) for s in specs]
    infos: list[LoraInfo] = []
    originals: dict[str, torch.Tensor] = {}
    pending: list[tuple[LoraSpec, dict, dict]] = []
    # Read and check every file before changing anything: a bad second file leaves the model as it was.
    for index, spec in enumerate(specs):
        state = read_lora(spec.path)
        layout, state = _normalise(state, spec.path)
        own: dict[str, torch.Tensor] = {}
        if layout == "original":
            state, own = _split_diffs(state)
        low_rank = _convert_low_rank(layout, state, spec.path)
        layers = _check_low_rank(transformer, low_rank, spec.path) if low_rank else 0
        targets = _check_diffs(transformer, own, spec.path)
        if not layers and not targets:
            raise CheckpointError(f"{spec.path}: the LoRA matches no weights of this model (no tensors)")
        adapter = f"lora{index}_{re.sub(r'[^0-9A-Za-z_]', '_', spec.path.stem)}" if layers else None
        info = LoraInfo(spec.path, spec.scale, adapter, layers, layout=layout)
        for kind, _ in targets.values():
            info.diffs[kind] = info.diffs.get(kind, 0) + 1
        infos.append(info)
        pending.append((spec, low_rank, {k: (t, own[k]) for k, t in targets.items()}))

    params = dict(transformer.named_parameters())
    for (spec, low_rank, diffs), info in zip(pending, infos):
        if info.adapter:
            with warnings.catch_warnings():  # peft warns that a second adapter joins the first: intended
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                transformer.load_lora_adapter(low_rank, prefix="transformer", adapter_name=info.adapter)
        for (_, name), value in diffs.values():
            param = params[name]
            if name not in originals:
                originals[name] = param.detach().to("cpu", copy=True)
            updated = param.detach().float() + spec.scale * value.to(param.device, torch.float32)
            param.data.copy_(updated.to(param.dtype))
    adapters = [i.adapter for i in infos if i.adapter]
    if adapters:
        transformer.set_adapters(adapters, weights=[i.scale for i in infos if i.adapter])
        if fuse:
            transformer.fuse_lora(adapter_names=adapters)
            transformer.unload_lora()
    loaded = LoadedLoras(transformer, infos, {} if fuse else originals, fused=fuse)
    logger.info("LoRA: %s", loaded.describe())
    return loaded
