"""Low-precision weights: fp8 storage with bf16 compute, and the single-file DiTs users already have.

- fp8 storage (:func:`enable_fp8_storage`): diffusers' layerwise casting. Every Linear of the
  blocks is stored as float8 e4m3 and cast to the compute dtype for its own forward only; the
  motion projections (FantasyPortrait's trained part), norms, embedders, modulation tables and the
  output head stay in the compute dtype. A plain cast, no scales: about 3-4% relative error per
  weight (e4m3 keeps 3 mantissa bits).
- ComfyUI fp8 single files (:func:`load_wan_single_file`): ``wan2.1_i2v_*_fp8_scaled.safetensors``
  (Comfy-Org), ``*_fp8_e4m3fn_scaled_KJ.safetensors`` (Kijai) and unscaled fp8/bf16/fp16 single files.
  Keys in the original Wan layout, with or without ``model.diffusion_model.`` / ``diffusion_model.``;
  scaled files carry a ``scaled_fp8`` marker and, per Linear, ``<layer>.scale_weight`` (older
  ComfyUI) or ``<layer>.weight_scale`` (newer), a scalar or one value per output row: each weight is
  dequantized as it is read (``weight.float() * scale``) into the target dtype, or straight into fp8
  storage for the layers layerwise casting will hold in fp8 (so no full bf16 copy is ever made).
  ``scale_input`` and ``comfy_quant`` tensors are not needed (we compute in bf16) and are dropped.
- GGUF (:func:`load_wan_gguf`, city96 ``wan2.1-i2v-14b-*-Q*.gguf``): through diffusers' GGUF
  support (``from_single_file`` with ``GGUFQuantizationConfig``): quantized Linears stay packed and
  are dequantized per forward to the compute dtype. Needs the ``gguf`` package (extra ``gguf``).

The model size (width, depth, FFN, text width) is read from the tensor shapes, not from a config
file; a text-to-video file (no image projections) is refused: FantasyPortrait needs Wan I2V.
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

from ..errors import CheckpointError
from .config import WanConfig

logger = logging.getLogger(__name__)

FP8 = torch.float8_e4m3fn
MOTION_PATTERNS = ("motion_k_proj", "motion_v_proj")
_FP8_TYPES = {torch.float8_e4m3fn, torch.float8_e5m2}
_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
_DROP = ("scaled_fp8", "scale_input", "comfy_quant", "input_scale")
HEAD_DIM = 128  # every Wan2.1 size uses 128-wide attention heads (1.3B: 1536/12, 14B: 5120/40)


# --------------------------------------------------------------------------- fp8 storage


def fp8_skip_patterns(transformer) -> tuple[str, ...]:
    """Module-name patterns layerwise casting leaves alone: diffusers' defaults, the Wan class's own
    (norms, embedders, modulation, rope) and the motion projections."""
    from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

    patterns = tuple(DEFAULT_SKIP_MODULES_PATTERN) + MOTION_PATTERNS
    patterns += tuple(getattr(transformer, "_keep_in_fp32_modules", None) or ())
    patterns += tuple(getattr(transformer, "_skip_layerwise_casting_patterns", None) or ())
    return tuple(dict.fromkeys(patterns))


def fp8_module_names(transformer) -> list[str]:
    """Names of the modules fp8 storage holds in fp8 (diffusers' traversal rule: a matching parent
    skips its subtree; only Linear/Conv/Embedding layers are cast)."""
    from diffusers.hooks._common import _GO_LC_SUPPORTED_PYTORCH_LAYERS

    patterns = fp8_skip_patterns(transformer)
    names: list[str] = []

    def visit(module, prefix):
        if prefix and any(re.search(p, prefix) for p in patterns):
            return
        if isinstance(module, _GO_LC_SUPPORTED_PYTORCH_LAYERS):
            names.append(prefix)
            return
        for child_name, child in module.named_children():
            visit(child, f"{prefix}.{child_name}" if prefix else child_name)

    visit(transformer, "")
    return names


def fp8_parameter_count(transformer) -> int:
    """Parameters fp8 storage holds in fp8 (works on a meta-device model)."""
    modules = dict(transformer.named_modules())
    return sum(p.numel() for name in fp8_module_names(transformer) for p in modules[name].parameters())


def enable_fp8_storage(transformer, compute_dtype: torch.dtype = torch.bfloat16) -> int:
    """Store the blocks' Linears in float8 e4m3, compute in ``compute_dtype``; returns the number of
    parameters now stored in fp8. Irreversible (reload the model for full precision)."""
    if getattr(transformer, "_fp_fp8_storage", False):
        return fp8_parameter_count(transformer)
    from diffusers.hooks import apply_layerwise_casting

    apply_layerwise_casting(
        transformer,
        storage_dtype=FP8,
        compute_dtype=compute_dtype,
        skip_modules_pattern=fp8_skip_patterns(transformer),
    )
    transformer._fp_fp8_storage = True
    count = fp8_parameter_count(transformer)
    logger.info("fp8 storage: %.2f B parameters in float8_e4m3fn, compute in %s", count / 1e9, compute_dtype)
    return count


# --------------------------------------------------------------------------- single files: shapes


def _strip(key: str) -> str:
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def infer_wan_config(shapes: dict[str, tuple[int, ...]], source: str) -> WanConfig:
    """A Wan DiT's size from its tensor shapes (original key names)."""
    try:
        patch = shapes["patch_embedding.weight"]
        dim, in_dim, patch_size = patch[0], patch[1], tuple(patch[2:])
        layers = 1 + max(int(k.split(".")[1]) for k in shapes if k.startswith("blocks."))
        ffn_dim = shapes["blocks.0.ffn.0.weight"][0]
        text_dim = shapes["text_embedding.0.weight"][1]
        freq_dim = shapes["time_embedding.0.weight"][1]
        out_dim = shapes["head.head.weight"][0] // (patch_size[0] * patch_size[1] * patch_size[2])
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{source}: not a Wan2.1 DiT (missing or odd tensor: {exc})") from exc
    if "blocks.0.cross_attn.k_img.weight" not in shapes:
        raise CheckpointError(
            f"{source}: a text-to-video Wan DiT (no image projections k_img/v_img): FantasyPortrait needs Wan2.1 I2V"
        )
    image_dim = shapes.get("img_emb.proj.0.weight", (1280,))[0]
    return WanConfig(
        dim=dim,
        ffn_dim=ffn_dim,
        num_heads=_head_count(dim, source),
        num_layers=layers,
        in_dim=in_dim,
        out_dim=out_dim,
        text_dim=text_dim,
        freq_dim=freq_dim,
        patch_size=patch_size,
        image_dim=image_dim,
    )


def _head_count(dim: int, source: str) -> int:
    """Heads are not visible in the shapes: the preset of that width, else 128-wide heads (every Wan2.1 size)."""
    from .config import PRESETS

    for preset in PRESETS.values():
        if preset.wan.dim == dim:
            return preset.wan.num_heads
    if dim % HEAD_DIM:
        raise CheckpointError(f"{source}: width {dim} is not a multiple of Wan's 128-wide heads")
    return dim // HEAD_DIM


def _diffusers_kwargs(config: WanConfig, motion_dim: int | None) -> dict:
    kwargs = config.to_diffusers_kwargs()
    kwargs["motion_dim"] = motion_dim
    return kwargs


# --------------------------------------------------------------------------- ComfyUI fp8 / plain single files


def describe_single_file(path: str | os.PathLike) -> dict:
    """{'format': 'gguf' | 'safetensors', 'fp8': bool, 'scaled': bool, 'config': WanConfig} without
    reading tensor data."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: DiT file not found")
    if path.suffix.lower() == ".gguf":
        shapes = {_strip(k): s for k, (s, _) in _gguf_shapes(path).items()}
        return {
            "format": "gguf",
            "fp8": False,
            "scaled": False,
            "config": infer_wan_config(shapes, str(path)),
        }
    from .loading import _open_safetensors

    with _open_safetensors(path) as handle:
        keys = list(handle.keys())
        shapes = {_strip(k): tuple(handle.get_slice(k).get_shape()) for k in keys}
        dtypes = {_strip(k): handle.get_slice(k).get_dtype() for k in keys}
    scaled = "scaled_fp8" in shapes or any(k.endswith((".scale_weight", ".weight_scale")) for k in shapes)
    fp8 = any(d.startswith("F8") for d in dtypes.values())
    return {
        "format": "safetensors",
        "fp8": fp8,
        "scaled": scaled,
        "config": infer_wan_config(shapes, str(path)),
    }


def iter_dequantized(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(original key, tensor) of a single-file DiT, scaled fp8 weights multiplied by their scale."""
    from .loading import _open_safetensors, _read_tensor

    with _open_safetensors(path) as handle:
        keys = {_strip(k): k for k in handle.keys()}
        for name, key in keys.items():
            base = name.rsplit(".", 1)
            if name in _DROP or (len(base) == 2 and base[1] in _DROP + ("scale_weight", "weight_scale")):
                continue
            tensor = _read_tensor(handle, path, key)
            if tensor.dtype in _FP8_TYPES and name.endswith(".weight"):
                stem = name[: -len("weight")]
                scale_key = next(
                    (keys[stem + s] for s in ("scale_weight", "weight_scale") if stem + s in keys), None
                )
                tensor = tensor.float()
                if scale_key is not None:
                    scale = _read_tensor(handle, path, scale_key).float()
                    if scale.numel() > 1:  # one scale per output row
                        scale = scale.reshape(-1, *([1] * (tensor.ndim - 1)))
                    tensor = tensor * scale
            yield name, tensor


def load_wan_single_file(
    path: str | os.PathLike,
    *,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    motion_dim: int | None = 2048,
    fp8_storage: bool = False,
):
    """A FantasyPortraitTransformer from a single-file Wan2.1 I2V DiT (.safetensors, fp8 scaled or not;
    .gguf goes to :func:`load_wan_gguf`). Motion projections start at zero (load the portrait checkpoint).

    fp8_storage: the layers fp8 storage holds go straight into float8 (then call
    :func:`enable_fp8_storage`, which keeps them there), everything else into ``dtype``.
    """
    from .loading import (
        _finish_meta_model,
        _materialize,
        _names,
        _original_to_diffusers_key,
        build_transformer,
    )

    path = Path(path)
    info = describe_single_file(path)
    if info["format"] == "gguf":
        return load_wan_gguf(path, compute_dtype=dtype, device=device, motion_dim=motion_dim)
    model = build_transformer(_diffusers_kwargs(info["config"], motion_dim))
    fp8_names = {f"{m}." for m in fp8_module_names(model)} if fp8_storage else set()

    def converted(want_fp8: bool):
        for key, tensor in iter_dequantized(path):
            name = _original_to_diffusers_key(key)
            if any(name.startswith(m) for m in fp8_names) == want_fp8:
                yield name, tensor

    if fp8_names:
        _materialize(model, converted(True), str(path), FP8, device)
    _materialize(model, converted(False), str(path), dtype, device)
    missing = sorted(
        k
        for k, v in model.state_dict(keep_vars=True).items()
        if v.is_meta and not (motion_dim and ".motion_" in k)
    )
    if missing:
        raise CheckpointError(f"{path}: missing tensor(s) {_names(missing)}")
    _finish_meta_model(model, dtype, device)
    logger.info(
        "loaded Wan DiT from single file %s (%s%s)",
        path,
        "scaled fp8, dequantized" if info["scaled"] else ("fp8" if info["fp8"] else "full precision"),
        ", fp8 storage" if fp8_storage else "",
    )
    return model.eval()


# --------------------------------------------------------------------------- GGUF


def _require_gguf():
    try:
        import gguf  # noqa: F401
    except ImportError as exc:
        raise CheckpointError(
            "reading GGUF files needs the gguf package: pip install 'fantasy-portrait[gguf]' (or pip install gguf)"
        ) from exc


def _gguf_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (logical torch shape, quantization type name) from the GGUF header."""
    _require_gguf()
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable GGUF file ({exc})") from exc
    return {t.name: (tuple(int(d) for d in reversed(t.shape)), t.tensor_type.name) for t in reader.tensors}


def load_wan_gguf(
    path: str | os.PathLike,
    *,
    compute_dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    motion_dim: int | None = 2048,
):
    """A FantasyPortraitTransformer from a GGUF Wan2.1 I2V DiT through diffusers' GGUF support:
    quantized Linears stay packed (``GGUFLinear``) and are dequantized per forward to ``compute_dtype``."""
    from diffusers import GGUFQuantizationConfig
    from diffusers.models.model_loading_utils import load_gguf_checkpoint

    from .loading import _finish_meta_model
    from .transformer import FantasyPortraitTransformer

    path = Path(path)
    shapes = {_strip(k): s for k, (s, _) in _gguf_shapes(path).items()}
    config = infer_wan_config(shapes, str(path))
    kwargs = _diffusers_kwargs(config, motion_dim)
    try:
        checkpoint = {_strip(k): v for k, v in load_gguf_checkpoint(str(path)).items()}
    except ValueError as exc:  # unsupported quantization type
        raise CheckpointError(f"{path}: {str(exc).splitlines()[0]}") from exc
    if (
        motion_dim
    ):  # placeholders (zeros) so diffusers materialises every parameter; the portrait checkpoint fills them
        width = config.dim
        for i in range(config.num_layers):
            for kv in "kv":
                checkpoint[f"blocks.{i}.attn2.motion_{kv}_proj.weight"] = torch.zeros(width, motion_dim)
    with tempfile.TemporaryDirectory() as folder:
        saved = dict(kwargs, _class_name="FantasyPortraitTransformer", patch_size=list(kwargs["patch_size"]))
        (Path(folder) / "config.json").write_text(json.dumps(saved))
        try:
            model = FantasyPortraitTransformer.from_single_file(
                checkpoint,
                config=folder,
                quantization_config=GGUFQuantizationConfig(compute_dtype=compute_dtype),
                torch_dtype=compute_dtype,
                device=device,
            )
        except Exception as exc:
            raise CheckpointError(f"{path}: the GGUF file does not fit a Wan2.1 I2V DiT ({exc})") from exc
    _finish_meta_model(model, compute_dtype, device)
    logger.info("loaded Wan DiT from GGUF %s (%d layers)", path, config.num_layers)
    return model.eval()
