"""The tiny FantasyPortrait of the synthetic world: sizes, the stand-in encoders, one weight file.

Architecture (the same classes as the full model, smaller): a Wan2.1 I2V DiT
(:class:`~fantasy_portrait.models.transformer.FantasyPortraitTransformer`, width 128, 4 blocks,
4 heads, with the masked motion cross-attention in every block), the expression-augmented
:class:`~fantasy_portrait.models.expression_encoder.ExpressionEncoder` (token width 64), the
synthetic PD-FGC-interface motion encoder (``motion_encoder.py``) in place of PD-FGC, the linear
latent of ``latent.py`` in place of the Wan VAE, a parameter-free patch encoder in place of CLIP,
and a fixed empty-prompt embedding (there is no text encoder: the demo never uses a prompt).

Everything except the motion encoder lives in one safetensors file (``assets/``): tensors
prefixed ``transformer.``, ``encoder.`` and ``latent.``, configurations in its metadata.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from ..models.config import ExpressionEncoderConfig, WanConfig

ASSETS = Path(__file__).resolve().parents[1] / "assets"
WEIGHTS_PATH = ASSETS / "synthetic_portrait.safetensors"
RECORD_PATH = ASSETS / "synthetic_portrait.json"
EMPTY_PROMPT_PATH = (
    ASSETS / "synthetic_empty_prompt.safetensors"
)  # empty_prompt() in the pipeline's cache format

TEXT_LEN = 512
LATENT_CHANNELS = 16  # latent.Z_DIM: the DiT sees noisy latents + 4 mask channels + image latents
TINY_WAN = WanConfig(
    dim=128,
    ffn_dim=256,
    num_heads=4,
    num_layers=4,
    in_dim=2 * LATENT_CHANNELS + 4,
    out_dim=LATENT_CHANNELS,
    text_dim=16,
    freq_dim=64,
    image_dim=48,
)
TINY_ENCODER = ExpressionEncoderConfig(
    token_dim=64, resampler_dim=64, resampler_depth=1, resampler_heads=4, resampler_head_dim=16
)


def build_models(
    wan: WanConfig = TINY_WAN, encoder: ExpressionEncoderConfig = TINY_ENCODER, seed: int = 0
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Randomly initialised (transformer, expression encoder) on the CPU, float32."""
    from ..models.expression_encoder import ExpressionEncoder
    from ..models.loading import build_transformer

    torch.manual_seed(seed)
    kwargs = wan.to_diffusers_kwargs()
    kwargs["motion_dim"] = encoder.token_dim
    transformer = build_transformer(kwargs, device="cpu", dtype=torch.float32)
    return transformer, ExpressionEncoder(encoder)


def empty_prompt(text_dim: int = TINY_WAN.text_dim) -> torch.Tensor:
    """(1, 512, text_dim): the fixed 'empty prompt' of the tiny model (one constant token, zero padding)."""
    out = torch.zeros(1, TEXT_LEN, text_dim)
    out[0, 0] = torch.linspace(-1.0, 1.0, text_dim)
    return out


class SyntheticMotionEncoder:
    """The tiny synthetic motion encoder behind the ``fantasy_portrait.motion.MotionEncoder`` interface.

    The pipeline aligns crops at PD-FGC's 224 px; they are area-resized to the encoder's crop size
    (the same template, scaled) before encoding.

    path: the encoder file when no ``network`` is given (default: the shipped one; ``"disentangled"``
    names ``motion_encoder.DISENTANGLED_WEIGHTS_PATH``, see ``motion_encoder.resolve_weights``).
    """

    def __init__(self, network=None, path=None):
        from .motion_encoder import load_motion_encoder

        self.network = network if network is not None else load_motion_encoder(path)
        self.size = self.network.config.crop_size
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    def _resize(self, crops: np.ndarray) -> np.ndarray:
        import cv2

        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.shape[1] == self.size:
            return crops
        return np.stack([cv2.resize(c, (self.size, self.size), interpolation=cv2.INTER_AREA) for c in crops])

    def encode(self, crops_rgb: np.ndarray):
        """(B, S, S, 3) uint8 aligned crops (any S, normally 224) -> MotionFeatures (B rows)."""
        from .motion_encoder import encode_crops

        return self._features(encode_crops(self.network, self._resize(crops_rgb)))

    def encode_tensor(self, x: torch.Tensor):
        """(B, 3, S, S) float in [-1, 1] -> MotionFeatures."""
        if x.shape[0] == 0:
            return self._features(np.zeros((0, self.network.config.feature_dim), np.float32))
        x = torch.nn.functional.interpolate(x.float(), size=(self.size, self.size), mode="area")
        with torch.no_grad():
            self.network.eval()
            return self._features(self.network.features(x).numpy())

    def encode_blank(self):
        return self.encode_tensor(-torch.ones(1, 3, self.size, self.size))

    @staticmethod
    def _features(feats: np.ndarray):
        from ..motion.encoder import MotionFeatures

        return MotionFeatures.from_tensor(torch.from_numpy(np.ascontiguousarray(feats, np.float32)))


def save_tiny_model(
    path: str | os.PathLike, transformer, encoder, latent, extra: dict | None = None, half: bool = False
) -> Path:
    """Write transformer, encoder and latent tensors plus their configurations to one safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for prefix, module in (("transformer", transformer), ("encoder", encoder), ("latent", latent)):
        for k, v in module.state_dict().items():
            v = v.detach().cpu()
            if half and prefix != "latent" and v.is_floating_point():
                v = v.half()
            tensors[f"{prefix}.{k}"] = v.contiguous()
    wan = transformer.config
    meta = {
        "wan": json.dumps(_wan_config_of(transformer).to_dict()),
        "encoder": json.dumps(asdict(encoder.config)),
        "motion_dim": str(int(wan.get("motion_dim", encoder.config.token_dim))),
        "extra": json.dumps(extra or {}),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def _wan_config_of(transformer) -> WanConfig:
    c = transformer.config
    heads = int(c["num_attention_heads"])
    return WanConfig(
        dim=heads * int(c["attention_head_dim"]),
        ffn_dim=int(c["ffn_dim"]),
        num_heads=heads,
        num_layers=int(c["num_layers"]),
        in_dim=int(c["in_channels"]),
        out_dim=int(c["out_channels"]),
        text_dim=int(c["text_dim"]),
        freq_dim=int(c["freq_dim"]),
        patch_size=tuple(c["patch_size"]),
        eps=float(c["eps"]),
        image_dim=int(c["image_dim"]),
    )


def load_tiny_model(path: str | os.PathLike | None = None):
    """(transformer, expression encoder, latent, extra) from :func:`save_tiny_model`'s file (default: shipped)."""
    from safetensors import safe_open

    from ..models.expression_encoder import ExpressionEncoder
    from ..models.loading import build_transformer
    from .latent import latent_from_state

    path = Path(path) if path is not None else WEIGHTS_PATH
    if not path.is_file():
        raise CheckpointError(
            f"{path}: tiny synthetic FantasyPortrait weights not found (train them with "
            "scripts/train_synthetic_portrait.py)"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        wan = WanConfig.from_dict(json.loads(meta["wan"]))
        enc_cfg = json.loads(meta["encoder"])
        enc_cfg["part_dims"] = tuple(enc_cfg["part_dims"])
        enc_cfg = ExpressionEncoderConfig(**enc_cfg)
        extra = json.loads(meta.get("extra", "{}"))
    except Exception as exc:
        raise CheckpointError(f"{path}: not a tiny synthetic FantasyPortrait file ({exc})") from exc

    def part(prefix):
        return {k[len(prefix) + 1 :]: v.float() for k, v in tensors.items() if k.startswith(prefix + ".")}

    kwargs = wan.to_diffusers_kwargs()
    kwargs["motion_dim"] = enc_cfg.token_dim
    transformer = build_transformer(kwargs, device="cpu", dtype=torch.float32)
    encoder = ExpressionEncoder(enc_cfg)
    try:
        transformer.load_state_dict(part("transformer"), strict=True)
        encoder.load_state_dict(part("encoder"), strict=True)
        latent = latent_from_state(part("latent"))
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: tensors do not fit the stored configuration ({exc})") from exc
    return transformer.eval(), encoder.eval(), latent, extra


# Tiny models shipped beside the default one, by name (``fantasy-portrait demo --weights NAME``):
# - linear: the default model before issue 19 (linear latent, the default motion encoder's features);
# - disentangled: that model fine-tuned on the part-disentangled motion encoder's features (it records
#   that encoder, which build_pipeline then uses), on the linear latent (benchmarks/controls.md).
# The default (WEIGHTS_PATH) has the convolutional latent and the part-disentangled encoder (docs/demo.md).
SHIPPED_MODELS = {
    "linear": ASSETS / "synthetic_portrait_linear.safetensors",
    "disentangled": Path(__file__).resolve().parent / "weights" / "tiny_portrait_disentangled.safetensors",
}


def resolve_weights(value: str | os.PathLike | None) -> Path | None:
    """A ``--weights`` value: None (the default model), the name of a shipped model, or a file path."""
    if value is None:
        return None
    if str(value) in SHIPPED_MODELS:
        return SHIPPED_MODELS[str(value)]
    return Path(value)


def shipped_weight_files() -> list[Path]:
    """Every weight file the synthetic world ships in the package (the tiny models, the motion encoder,
    the judge): together they must stay within the 25 MB budget for shipped weights."""
    here = Path(__file__).resolve().parent
    files = {*ASSETS.glob("synthetic_*.safetensors"), *(here / "weights").glob("*.safetensors")}
    return sorted(files)


def motion_encoder_digest(path=None) -> str:
    """sha256 of the shipped synthetic motion encoder file (the tiny model was trained on its features);
    path: another encoder file (or a name of ``motion_encoder.NAMED_WEIGHTS``)."""
    import hashlib

    from .motion_encoder import resolve_weights

    return hashlib.sha256(resolve_weights(path).read_bytes()).hexdigest()


def build_pipeline(
    path: str | os.PathLike | None = None,
    *,
    face_backend="mediapipe",
    models=None,
    masked_motion=None,
    motion_encoder: str | os.PathLike | None = None,
):
    """A :class:`~fantasy_portrait.pipeline.pipeline.FantasyPortraitPipeline` running the tiny model.

    models: optional (transformer, encoder, latent) already in memory (e.g. random, for tests).
    masked_motion: default: as the weight file records (False only for the no-mask ablation model).
    motion_encoder: the synthetic motion encoder file or name (``motion_encoder.resolve_weights``);
    default: the one the weight file records as trained on (``extra["motion_encoder"]``), else the shipped one.
    """
    import tempfile

    from ..pipeline.encoders import load_empty_prompt, save_empty_prompt
    from ..pipeline.layout import WeightFiles
    from ..pipeline.pipeline import FantasyPortraitPipeline
    from .latent import PatchImageEncoder

    if models is None:
        transformer, encoder, latent, extra = load_tiny_model(path)
        if masked_motion is None:
            masked_motion = bool(extra.get("masked_motion", True))
        if motion_encoder is None:
            motion_encoder = extra.get("motion_encoder")
    else:
        transformer, encoder, latent = models
    masked_motion = True if masked_motion is None else masked_motion
    weights = Path(path) if path is not None else WEIGHTS_PATH
    # The pipeline reads the empty prompt from a cache file beside the weights; ours is a constant.
    text_dim = int(transformer.config["text_dim"])
    cache = EMPTY_PROMPT_PATH
    if not cache.is_file() or load_empty_prompt(cache).shape[-1] != text_dim:
        cache = Path(tempfile.mkdtemp(prefix="fp_synthetic_")) / "empty_prompt.safetensors"
        save_empty_prompt(cache, empty_prompt(text_dim))
    files = WeightFiles(
        root=weights.parent,
        wan_dir=weights.parent,
        dit_files=[weights],
        vae=weights,
        clip=weights,
        portrait=weights,
        motion=weights,
        empty_prompt=cache,
        t5=None,
        t5_tokenizer=None,
    )
    return FantasyPortraitPipeline(
        transformer,
        encoder,
        SyntheticMotionEncoder(path=motion_encoder),
        latent,
        PatchImageEncoder(),
        files,
        dtype=torch.float32,
        device="cpu",
        memory_mode="auto",
        face_backend=face_backend,
        masked_motion=masked_motion,
    )
