"""Loading and saving weights in the released file layouts (SPEC §2).

- Wan2.1 DiT, original layout: ``config.json`` (keys dim, num_heads, ...) plus
  ``diffusion_pytorch_model.safetensors`` or shards listed in ``...safetensors.index.json``;
  diffusers layout: ``config.json`` with ``_class_name`` WanTransformer3DModel (the folder itself or
  its ``transformer/`` subfolder).
- FantasyPortrait: ``fantasyportrait_model.safetensors`` (flat keys ``proj_model.``,
  ``mouth_proj_model.``, ``emo_proj_model.``, ``ip_adapter.blocks.N.cross_attn.ip_adapter_single_stream_{k,v}_proj.weight``),
  a ``.ckpt`` pickle holding four sub-dicts (ip_adapter keys with a ``processor.`` segment), and the
  single-file fp16 conversion that also bundles PD-FGC under ``pd_fpg.``.

The model is built on the meta device and every tensor goes straight from the file into the target
dtype and device, so no float32 copy of the whole model is ever made. The released names are only
used here; inside the project the parts are called by what they are.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import CheckpointError
from .config import PRESETS, ExpressionEncoderConfig, WanConfig
from .expression_encoder import ExpressionEncoder
from .transformer import FantasyPortraitTransformer

logger = logging.getLogger(__name__)

WAN_INDEX = "diffusion_pytorch_model.safetensors.index.json"
WAN_SINGLE = "diffusion_pytorch_model.safetensors"
ENCODER_PREFIXES = ("proj_model", "mouth_proj_model", "emo_proj_model")
MOTION_PREFIX = "ip_adapter"
PDFGC_PREFIX = "pd_fpg."
_HALF = (torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------- files


def _open_safetensors(path: Path):
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: file not found") from exc
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc


def _read_tensor(handle, path: Path, key: str) -> torch.Tensor:
    try:
        return handle.get_tensor(key)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: tensor {key!r} cannot be read, the file looks truncated ({exc})"
        ) from exc


def _iter_safetensors(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    for path in files:
        with _open_safetensors(path) as handle:
            for key in handle.keys():
                yield key, _read_tensor(handle, path, key)


def _torch_load(path: Path) -> dict:
    from ..io.weights import load_torch_file

    return load_torch_file(path)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a .safetensors or torch pickle file (pickles with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    if path.suffix == ".safetensors":
        return dict(_iter_safetensors([path]))
    return _torch_load(path)


# --------------------------------------------------------------------------- Wan DiT


def dit_weight_files(folder: Path) -> tuple[list[Path], list[str]]:
    """The DiT's safetensors files in ``folder`` (the index's shards, or the single file) and what is
    missing (empty when complete). The one place that knows how a Wan DiT folder lists its files."""
    folder = Path(folder)
    index = folder / WAN_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{index}: not a safetensors index ({exc})") from exc
        files = [folder / n for n in sorted(set(weight_map.values()))]
        return files, [str(f) for f in files if not f.is_file()]
    if (folder / WAN_SINGLE).is_file():
        return [folder / WAN_SINGLE], []
    if sorted(folder.glob("diffusion_pytorch_model-*-of-*.safetensors")):
        return [], [f"{folder / WAN_INDEX} (shards found but no index)"]
    return [], [f"{folder / WAN_SINGLE} (or {WAN_INDEX} with its shards)"]


def _wan_files(folder: Path) -> list[Path]:
    files, missing = dit_weight_files(folder)
    if missing and files:
        names = ", ".join(Path(m).name for m in missing)
        raise CheckpointError(f"{folder}: missing shard(s) listed in {WAN_INDEX}: {names}")
    if missing:
        raise CheckpointError(f"{folder}: DiT weights missing: {missing[0]}")
    return files


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: file not found") from exc
    except ValueError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc


def resolve_wan_folder(path: str | os.PathLike) -> tuple[Path, str, dict]:
    """Find the DiT folder and its layout ('original' or 'diffusers') and config."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: Wan folder not found")
    for folder in (path, path / "transformer"):
        config_path = folder / "config.json"
        if not config_path.is_file():
            continue
        config = _read_json(config_path)
        if config.get("_class_name") in ("WanTransformer3DModel", "FantasyPortraitTransformer"):
            return folder, "diffusers", config
        if "dim" in config and "num_layers" in config:
            return folder, "original", config
        raise CheckpointError(
            f"{config_path}: not a Wan2.1 DiT config (no dim/num_layers or diffusers class)"
        )
    raise CheckpointError(
        f"{path}: no config.json (expected a Wan2.1 folder in the original or diffusers layout)"
    )


def _diffusers_kwargs(layout: str, config: dict, motion_dim: int | None) -> dict:
    if layout == "original":
        if config.get("model_type", "i2v") != "i2v":
            raise CheckpointError(
                f"Wan config model_type {config.get('model_type')!r}: FantasyPortrait needs i2v"
            )
        kwargs = WanConfig.from_dict(config).to_diffusers_kwargs()
    else:
        import inspect

        from diffusers import WanTransformer3DModel

        allowed = set(inspect.signature(WanTransformer3DModel.__init__).parameters)
        kwargs = {k: v for k, v in config.items() if k in allowed and not k.startswith("_")}
        if "patch_size" in kwargs:
            kwargs["patch_size"] = tuple(kwargs["patch_size"])
    kwargs["motion_dim"] = motion_dim
    return kwargs


def _original_to_diffusers_key(key: str) -> str:
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    return next(iter(convert_wan_transformer_to_diffusers({key: None})))


def _keep_fp32(model: nn.Module, name: str) -> bool:
    patterns = getattr(model, "_keep_in_fp32_modules", None) or []
    return any(p in name.split(".") for p in patterns)


def _materialize(model: nn.Module, tensors, source: str, dtype, device) -> None:
    """Assign file tensors to a meta-built model, checking names and shapes.

    ``tensors``: (name, tensor) pairs or a dict. Each tensor is converted to the target dtype and
    device as soon as it is read, so at most one file tensor in its stored dtype is alive at a time
    (no float32 copy of a half-precision model).
    """
    expected = dict(model.state_dict(keep_vars=True))
    items = tensors.items() if isinstance(tensors, dict) else tensors
    ready, unexpected, mismatched = {}, [], []
    for name, tensor in items:
        if name not in expected:
            unexpected.append(name)
            continue
        if tuple(tensor.shape) != tuple(expected[name].shape):
            mismatched.append(f"{name} {tuple(tensor.shape)} (model {tuple(expected[name].shape)})")
            continue
        target = torch.float32 if dtype in _HALF and _keep_fp32(model, name) else dtype
        ready[name] = tensor.to(device=device, dtype=target if tensor.is_floating_point() else tensor.dtype)
        del tensor
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensor(s) {_names(sorted(unexpected))}")
    if mismatched:
        raise CheckpointError(f"{source}: tensor shape mismatch: {_names(mismatched)}")
    model.load_state_dict(ready, strict=False, assign=True)


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _finish_meta_model(model: FantasyPortraitTransformer, dtype, device) -> None:
    """Rebuild non-persistent buffers and give never-loaded parameters their real initial values."""
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    cfg = model.config
    rope = model.rope
    model.rope = WanRotaryPosEmbed(rope.attention_head_dim, rope.patch_size, rope.max_seq_len).to(device)
    for module in model.motion_modules() if cfg.motion_dim else []:
        if module.weight.is_meta:
            module.weight = nn.Parameter(torch.zeros(module.weight.shape, dtype=dtype, device=device))


def build_transformer(kwargs: dict, *, device="meta", dtype=torch.float32) -> FantasyPortraitTransformer:
    from accelerate import init_empty_weights

    if str(device) == "meta":
        with init_empty_weights(include_buffers=False):
            return FantasyPortraitTransformer(**kwargs)
    model = FantasyPortraitTransformer(**kwargs)
    return model.to(device=device) if dtype == torch.float32 else model.to(device=device, dtype=dtype)


def load_wan_transformer(
    path: str | os.PathLike,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    motion_dim: int | None = 2048,
) -> FantasyPortraitTransformer:
    """Load a Wan2.1 I2V DiT from an original- or diffusers-layout folder.

    The motion projections (absent from Wan files) start at zero; load a portrait checkpoint with
    :func:`load_portrait_checkpoint` to fill them. Set ``motion_dim`` to the checkpoint's token
    width (2048 released) or None for a plain Wan model.
    """
    folder, layout, config = resolve_wan_folder(path)
    files = _wan_files(folder)
    model = build_transformer(_diffusers_kwargs(layout, config, motion_dim))
    tensors = (
        (_original_to_diffusers_key(key) if layout == "original" else key, tensor)
        for key, tensor in _iter_safetensors(files)
    )
    _materialize(model, tensors, str(folder), dtype, device)
    missing = sorted(
        k
        for k, v in model.state_dict(keep_vars=True).items()
        if v.is_meta and not (motion_dim and ".motion_" in k)
    )
    if missing:
        raise CheckpointError(f"{folder}: missing tensor(s) {_names(missing)}")
    _finish_meta_model(model, dtype, device)
    logger.info("loaded Wan DiT (%s layout, %d files) from %s", layout, len(files), folder)
    return model.eval()


# --------------------------------------------------------------------------- FantasyPortrait


_ENCODER_RENAMES = (
    (r"^proj_model\.headpose_proj\.", "parts.head."),
    (r"^proj_model\.eye_proj\.", "parts.eye."),
    (r"^proj_model\.emo_proj\.", "parts.emotion."),
    (r"^proj_model\.mouth_proj\.", "parts.mouth."),
    (r"^proj_model\.norm\.", "parts.norm."),
    (r"^mouth_proj_model\.", "mouth_resampler."),
    (r"^emo_proj_model\.", "emotion_resampler."),
    (r"_resampler\.latents$", "_resampler.queries"),
    (r"_resampler\.layers\.(\d+)\.0\.", r"_resampler.layers.\1.attn."),
    (r"_resampler\.layers\.(\d+)\.1\.", r"_resampler.layers.\1.ff."),
)
_MOTION_KEY = re.compile(
    r"^(?:ip_adapter\.)?blocks\.(\d+)\.cross_attn\.(?:processor\.)?ip_adapter_single_stream_([kv])_proj\.weight$"
)


def _rename(key: str, renames) -> str:
    for pattern, replacement in renames:
        key = re.sub(pattern, replacement, key)
    return key


def released_to_internal(key: str) -> tuple[str, str] | None:
    """Map a released key to ('encoder' | 'transformer', internal name); None if not ours."""
    match = _MOTION_KEY.match(key)
    if match:
        return "transformer", f"blocks.{match[1]}.attn2.motion_{match[2]}_proj.weight"
    if key.startswith(tuple(p + "." for p in ENCODER_PREFIXES)):
        return "encoder", _rename(key, _ENCODER_RENAMES)
    return None


def internal_to_released(part: str, name: str) -> str:
    if part == "transformer":
        match = re.match(r"^blocks\.(\d+)\.attn2\.motion_([kv])_proj\.weight$", name)
        return f"ip_adapter.blocks.{match[1]}.cross_attn.ip_adapter_single_stream_{match[2]}_proj.weight"
    inverse = (
        (r"^parts\.head\.", "proj_model.headpose_proj."),
        (r"^parts\.eye\.", "proj_model.eye_proj."),
        (r"^parts\.emotion\.", "proj_model.emo_proj."),
        (r"^parts\.mouth\.", "proj_model.mouth_proj."),
        (r"^parts\.norm\.", "proj_model.norm."),
        (r"_resampler\.queries$", "_resampler.latents"),
        (r"_resampler\.layers\.(\d+)\.attn\.", r"_resampler.layers.\1.0."),
        (r"_resampler\.layers\.(\d+)\.ff\.", r"_resampler.layers.\1.1."),
        (r"^mouth_resampler\.", "mouth_proj_model."),
        (r"^emotion_resampler\.", "emo_proj_model."),
    )
    return _rename(name, inverse)


def read_portrait_checkpoint(path: str | os.PathLike) -> tuple[dict, dict, dict]:
    """Split a portrait checkpoint into (encoder tensors, transformer motion tensors, PD-FGC tensors),
    all under internal names (PD-FGC keys without their ``pd_fpg.`` prefix)."""
    path = Path(path)
    raw = read_state_dict(path)
    flat: dict[str, torch.Tensor] = {}
    if all(isinstance(v, dict) for v in raw.values()):  # .ckpt: four sub-dicts
        for group, sub in raw.items():
            for key, tensor in sub.items():
                flat[f"{group}.{key}"] = tensor
    else:
        flat = raw
    encoder, motion, pdfgc, unknown = {}, {}, {}, []
    for key, tensor in flat.items():
        if not isinstance(tensor, torch.Tensor):
            unknown.append(key)
            continue
        if key.startswith(PDFGC_PREFIX):
            pdfgc[key[len(PDFGC_PREFIX) :]] = tensor
            continue
        mapped = released_to_internal(key)
        if mapped is None:
            unknown.append(key)
        elif mapped[0] == "encoder":
            encoder[mapped[1]] = tensor
        else:
            motion[mapped[1]] = tensor
    if not encoder and not motion:
        raise CheckpointError(
            f"{path}: not a FantasyPortrait checkpoint (no proj_model./mouth_proj_model./emo_proj_model./"
            f"ip_adapter. tensors; found e.g. {_names(sorted(flat), 3)})"
        )
    if unknown:
        raise CheckpointError(f"{path}: unexpected tensor(s) {_names(sorted(unknown))}")
    return encoder, motion, pdfgc


def infer_encoder_config(
    tensors: dict[str, torch.Tensor], source: str = "checkpoint"
) -> ExpressionEncoderConfig:
    """Encoder sizes from tensor shapes (internal names). Head count is not visible in shapes:
    the head width of a preset with the same resampler width is used, else 64."""
    try:
        token_dim = tensors["parts.norm.weight"].shape[0]
        part_dims = tuple(tensors[f"parts.{p}.weight"].shape[1] for p in ("head", "eye", "emotion", "mouth"))
        resampler_dim = tensors["mouth_resampler.proj_in.weight"].shape[0]
        depth = 1 + max(int(k.split(".")[2]) for k in tensors if k.startswith("mouth_resampler.layers."))
        inner = tensors["mouth_resampler.layers.0.attn.to_q.weight"].shape[0]
        ff_hidden = tensors["mouth_resampler.layers.0.ff.1.weight"].shape[0]
        mouth_queries = tensors["mouth_resampler.queries"].shape[1]
        emotion_queries = tensors["emotion_resampler.queries"].shape[1]
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{source}: expression encoder incomplete (missing {exc})") from exc
    head_dim = next(
        (p.encoder.resampler_head_dim for p in PRESETS.values() if p.encoder.resampler_dim == resampler_dim),
        64,
    )
    if inner % head_dim:
        head_dim = 64 if inner % 64 == 0 else inner
    return ExpressionEncoderConfig(
        token_dim=token_dim,
        part_dims=part_dims,
        resampler_dim=resampler_dim,
        resampler_depth=depth,
        resampler_heads=inner // head_dim,
        resampler_head_dim=head_dim,
        mouth_queries=mouth_queries,
        emotion_queries=emotion_queries,
        ff_mult=ff_hidden // resampler_dim,
    )


def load_portrait_checkpoint(
    path: str | os.PathLike,
    transformer: FantasyPortraitTransformer | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    encoder_config: ExpressionEncoderConfig | None = None,
) -> ExpressionEncoder:
    """Load the expression encoder, and the motion projections into ``transformer`` if given."""
    from accelerate import init_empty_weights

    encoder_tensors, motion_tensors, _ = read_portrait_checkpoint(path)
    config = encoder_config or infer_encoder_config(encoder_tensors, str(path))
    with init_empty_weights():
        encoder = ExpressionEncoder(config)
    _materialize(encoder, encoder_tensors, str(path), dtype, device)
    missing = sorted(k for k, v in encoder.state_dict(keep_vars=True).items() if v.is_meta)
    if missing:
        raise CheckpointError(f"{path}: expression encoder tensor(s) missing: {_names(missing)}")
    if transformer is not None:
        load_motion_projections(transformer, motion_tensors, str(path), dtype, device, config.token_dim)
    return encoder.eval()


def load_motion_projections(transformer, tensors: dict, source: str, dtype, device, token_dim: int) -> None:
    cfg = transformer.config
    if not cfg.motion_dim:
        raise CheckpointError(f"{source}: the transformer was built without motion attention")
    width = cfg.num_attention_heads * cfg.attention_head_dim
    expected = {f"blocks.{i}.attn2.motion_{kv}_proj.weight" for i in range(cfg.num_layers) for kv in "kv"}
    missing = sorted(expected - set(tensors), key=lambda k: (int(k.split(".")[1]), k))
    if missing:
        raise CheckpointError(
            f"{source}: motion projection(s) missing for the {cfg.num_layers}-block model: {_names(missing)}"
        )
    extra = sorted(set(tensors) - expected)
    if extra:
        raise CheckpointError(f"{source}: motion projection(s) for blocks the model lacks: {_names(extra)}")
    shape = next(iter(tensors.values())).shape
    if tuple(shape) != (width, cfg.motion_dim) or cfg.motion_dim != token_dim:
        raise CheckpointError(
            f"{source}: motion projections map width {shape[1]} -> {shape[0]}, but the Wan model has width "
            f"{width} and motion tokens of width {cfg.motion_dim} (encoder tokens {token_dim}): "
            "checkpoint and Wan size do not match"
        )
    _materialize(transformer, tensors, source, dtype, device)


def portrait_state_dict(encoder: ExpressionEncoder, transformer: FantasyPortraitTransformer) -> dict:
    """The trainable parts under the released flat key names."""
    out = {internal_to_released("encoder", k): v for k, v in encoder.state_dict().items()}
    for name, tensor in transformer.state_dict().items():
        if ".motion_" in name:
            out[internal_to_released("transformer", name)] = tensor
    return out


def save_portrait_checkpoint(path: str | os.PathLike, encoder: ExpressionEncoder, transformer) -> Path:
    """Write the released ``fantasyportrait_model.safetensors`` layout atomically."""
    path = Path(path)
    tensors = {
        k: v.detach().to("cpu").contiguous() for k, v in portrait_state_dict(encoder, transformer).items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt", "producer": "fantasy-portrait"})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_pdfgc_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """PD-FGC motion-encoder weights from ``pd_fpg.pth`` or a single file bundling them under ``pd_fpg.``."""
    state = read_state_dict(path)
    bundled = {k[len(PDFGC_PREFIX) :]: v for k, v in state.items() if k.startswith(PDFGC_PREFIX)}
    return bundled or state


# --------------------------------------------------------------------------- presets


def build_from_preset(
    name: str, *, device: str | torch.device = "meta", dtype: torch.dtype = torch.float32
) -> tuple[FantasyPortraitTransformer, ExpressionEncoder]:
    """Build a preset's transformer and encoder (on the meta device by default: no memory)."""
    if name not in PRESETS:
        raise CheckpointError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    preset = PRESETS[name]
    kwargs = preset.wan.to_diffusers_kwargs()
    kwargs["motion_dim"] = preset.encoder.token_dim
    transformer = build_transformer(kwargs, device=device, dtype=dtype)
    if str(device) == "meta":
        from accelerate import init_empty_weights

        with init_empty_weights():
            encoder = ExpressionEncoder(preset.encoder)
    else:
        encoder = ExpressionEncoder(preset.encoder).to(device=device, dtype=dtype)
    return transformer, encoder


def parameter_counts(name: str) -> dict[str, int]:
    """Parameter counts per part of a preset, built on the meta device."""
    transformer, encoder = build_from_preset(name)
    motion = sum(p.numel() for m in transformer.motion_modules() for p in m.parameters())
    base = sum(p.numel() for p in transformer.parameters()) - motion
    return {
        "wan_dit": base,
        "motion_attention": motion,
        "part_projection": sum(p.numel() for p in encoder.parts.parameters()),
        "mouth_resampler": sum(p.numel() for p in encoder.mouth_resampler.parameters()),
        "emotion_resampler": sum(p.numel() for p in encoder.emotion_resampler.parameters()),
    }


def trainable_motion_parameters(transformer: FantasyPortraitTransformer, encoder: ExpressionEncoder):
    """The parameters FantasyPortrait trains on top of the frozen Wan model."""
    yield from encoder.parameters()
    for module in transformer.motion_modules():
        yield from module.parameters()
