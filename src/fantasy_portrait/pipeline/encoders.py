"""The frozen Wan2.1 condition encoders, loaded from the original release files.

- CLIP ViT-H/14 image encoder: the visual tower of ``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth``
  converted to ``transformers.CLIPVisionModel``; features are the output of all blocks but the last
  (Wan's ``use_31_block``), (B, 257, 1280), so the last block is not even built.
- VAE: ``Wan2.1_VAE.pth`` converted to ``diffusers.AutoencoderKLWan`` with diffusers' own converter;
  latents are normalised with the Wan mean/std as the reference does.
- umT5-XXL text encoder: ``models_t5_umt5-xxl-enc-bf16.pth`` converted to ``transformers.UMT5EncoderModel``.

Sizes are read from tensor shapes, so the same code loads the released files and the tiny test ones.
Each ``*_to_original`` function is the exact inverse key map, used to write the tiny random folder.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import CheckpointError

logger = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_HEAD_DIM = 80  # ViT-H/14: 1280 / 16 heads; head count is not in the file, so fix the head width
T5_HEAD_DIM = 64  # umT5-XXL: 4096 / 64 heads
TEXT_LEN = 512


def load_torch_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pth/.ckpt (weights_only, memory-mapped when possible) or .safetensors."""
    from ..io.weights import load_torch_file as load_pickle

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise CheckpointError(f"{path}: cannot read weights ({exc.__class__.__name__}: {exc})") from exc
    sd = load_pickle(path)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(sd).__name__}")
    return sd


# ------------------------------------------------------------------------------------------------ CLIP

_CLIP_LAYER = {
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "attn.proj": "self_attn.out_proj",
    "mlp.0": "mlp.fc1",
    "mlp.2": "mlp.fc2",
}


def clip_config_from_original(sd: dict[str, torch.Tensor]):
    """A ``CLIPVisionConfig`` for the visual tower in an original open-clip state dict (all but the last block)."""
    from transformers import CLIPVisionConfig

    if "visual.patch_embedding.weight" not in sd:
        raise CheckpointError("not a Wan open-clip checkpoint: no visual.patch_embedding.weight")
    hidden, _, patch, _ = sd["visual.patch_embedding.weight"].shape
    layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"visual\.transformer\.(\d+)\.", k)))
    positions = sd["visual.pos_embedding"].shape[1]
    grid = round((positions - 1) ** 0.5)
    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=sd["visual.transformer.0.mlp.0.weight"].shape[0],
        num_hidden_layers=layers - 1,  # Wan uses the output of the second-to-last block
        num_attention_heads=max(1, hidden // CLIP_HEAD_DIM),
        image_size=grid * patch,
        patch_size=patch,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    )


def clip_original_to_transformers(sd: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Visual-tower keys of the original file -> ``CLIPVisionModel`` keys (blocks >= num_layers dropped)."""
    out = {
        "embeddings.class_embedding": sd["visual.cls_embedding"].reshape(-1),
        "embeddings.patch_embedding.weight": sd["visual.patch_embedding.weight"],
        "embeddings.position_embedding.weight": sd["visual.pos_embedding"][0],
        "pre_layrnorm.weight": sd["visual.pre_norm.weight"],
        "pre_layrnorm.bias": sd["visual.pre_norm.bias"],
        "post_layernorm.weight": sd["visual.post_norm.weight"],
        "post_layernorm.bias": sd["visual.post_norm.bias"],
    }
    for i in range(num_layers):
        p = f"visual.transformer.{i}."
        q = f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            qkv = sd[f"{p}attn.to_qkv.{kind}"]
            for name, part in zip(("q", "k", "v"), qkv.chunk(3, dim=0)):
                out[f"{q}self_attn.{name}_proj.{kind}"] = part
            for a, b in _CLIP_LAYER.items():
                out[f"{q}{b}.{kind}"] = sd[f"{p}{a}.{kind}"]
    return out


def clip_transformers_to_original(sd: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Inverse of :func:`clip_original_to_transformers` (used to write tiny files in the released layout)."""
    sd = {k.removeprefix("vision_model."): v for k, v in sd.items()}
    out = {
        "visual.cls_embedding": sd["embeddings.class_embedding"].reshape(1, 1, -1),
        "visual.patch_embedding.weight": sd["embeddings.patch_embedding.weight"],
        "visual.pos_embedding": sd["embeddings.position_embedding.weight"][None],
        "visual.pre_norm.weight": sd["pre_layrnorm.weight"],
        "visual.pre_norm.bias": sd["pre_layrnorm.bias"],
        "visual.post_norm.weight": sd["post_layernorm.weight"],
        "visual.post_norm.bias": sd["post_layernorm.bias"],
    }
    for i in range(num_layers):
        p = f"visual.transformer.{i}."
        q = f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            out[f"{p}attn.to_qkv.{kind}"] = torch.cat(
                [sd[f"{q}self_attn.{n}_proj.{kind}"] for n in ("q", "k", "v")], dim=0
            )
            for a, b in _CLIP_LAYER.items():
                out[f"{p}{a}.{kind}"] = sd[f"{q}{b}.{kind}"]
    return out


class ClipImageEncoder(torch.nn.Module):
    """Wan's CLIP image features: (B, 3, H, W) in [-1, 1] -> (B, 257, 1280) (second-to-last block output)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_size)

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        size = (self.image_size, self.image_size)
        x = F.interpolate(image.float(), size=size, mode="bicubic", align_corners=False)
        x = ((x * 0.5 + 0.5) - self.mean) / self.std
        out = self.model(pixel_values=x.to(dtype)).last_hidden_state
        return out


def load_clip_image_encoder(path: Path, *, dtype=torch.float32, device="cpu") -> ClipImageEncoder:
    from transformers import CLIPVisionModel

    sd = load_torch_file(path)
    config = clip_config_from_original(sd)
    try:
        converted = clip_original_to_transformers(sd, config.num_hidden_layers)
    except KeyError as exc:
        raise CheckpointError(f"{path}: missing CLIP tensor {exc}") from exc
    with torch.device("meta"):
        model = CLIPVisionModel(config)
    target = model.vision_model if hasattr(model, "vision_model") else model
    converted = {k: v.to(dtype) for k, v in converted.items()}
    try:
        target.load_state_dict(converted, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: does not fit a CLIP vision tower ({str(exc).splitlines()[0]})"
        ) from exc
    for module in model.modules():  # non-persistent buffers (position ids) stayed on the meta device
        for name, buf in list(module.named_buffers(recurse=False)):
            if buf.is_meta and name == "position_ids":
                module.register_buffer(name, torch.arange(buf.shape[-1]).expand(buf.shape), persistent=False)
    model.eval().requires_grad_(False)
    return ClipImageEncoder(model).to(device)


# ------------------------------------------------------------------------------------------------- VAE


def vae_diffusers_to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of diffusers' ``convert_wan_vae_to_diffusers`` for the standard 4-level, 2-res-block VAE."""
    res = {"norm1.gamma": "residual.0.gamma", "conv1": "residual.2", "norm2.gamma": "residual.3.gamma"}
    res |= {"conv2": "residual.6", "conv_shortcut": "shortcut"}

    def resnet(rest: str) -> str:
        for a, b in res.items():
            if rest.startswith(a):
                return b + rest[len(a) :]
        return rest

    out = {}
    for key, value in sd.items():
        side, _, rest = key.partition(".")
        if key.startswith("quant_conv."):
            new = "conv1." + key.split(".", 1)[1]
        elif key.startswith("post_quant_conv."):
            new = "conv2." + key.split(".", 1)[1]
        elif rest.startswith("conv_in."):
            new = f"{side}.conv1.{rest.split('.', 1)[1]}"
        elif rest.startswith("norm_out."):
            new = f"{side}.head.0.{rest.split('.', 1)[1]}"
        elif rest.startswith("conv_out."):
            new = f"{side}.head.2.{rest.split('.', 1)[1]}"
        elif m := re.match(r"mid_block\.resnets\.(\d)\.(.*)", rest):
            new = f"{side}.middle.{2 * int(m.group(1))}.{resnet(m.group(2))}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", rest):
            new = f"{side}.middle.1.{m.group(1)}"
        elif m := re.match(r"down_blocks\.(\d+)\.(.*)", rest):
            new = f"encoder.downsamples.{m.group(1)}.{resnet(m.group(2))}"
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest):
            new = f"decoder.upsamples.{4 * int(m.group(1)) + int(m.group(2))}.{resnet(m.group(3))}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.(.*)", rest):
            new = f"decoder.upsamples.{4 * int(m.group(1)) + 3}.{m.group(2)}"
        else:
            raise ValueError(f"unexpected VAE key {key}")
        out[new] = value
    return out


class OneDnnConv3d(torch.overrides.TorchFunctionMode):
    """Faster CPU kernels for the Wan VAE's two hot operations, same results to float rounding (~1e-6).

    - 3-D convolutions (float32) through oneDNN (``torch.mkldnn_convolution``) whatever their size.
      For a batch of one, torch runs a 3-D convolution with at most 20480 values in its first four
      dimensions (N*C*T*H) on its reference kernel (``slow_conv3d``) instead of oneDNN. The causal
      convolutions see a few frames at a time, so a narrow VAE or small frames (the tiny test weights
      at 128x96, where this made decoding run at a few frames per second) land there; it is 3 to 12
      times slower than oneDNN on the same shapes.
    - The RMS norms' ``F.normalize(x, dim=1)`` (a norm across the channels of every pixel) as
      x / sqrt(sum of squares): torch's vector-norm kernel reduces a non-innermost dimension about 5
      times slower than a plain sum.

    Used as a context around the VAE's own calls, never across a ``yield``.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.conv3d and len(args) == 7 and not kwargs:
            x, weight, bias, stride, padding, dilation, groups = args
            if (
                x.device.type == "cpu"
                and x.dtype == torch.float32
                and weight.dtype == torch.float32
                and not isinstance(padding, str)
                and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
            ):
                return torch.mkldnn_convolution(
                    x.contiguous(), weight, bias, padding, stride, dilation, groups
                )
        if func is torch.nn.functional.normalize and args and not torch.is_grad_enabled():
            x = args[0]
            p, dim, eps = (list(args[1:]) + [None] * 3)[:3]
            p = kwargs.get("p", 2.0 if p is None else p)
            dim = kwargs.get("dim", 1 if dim is None else dim)
            eps = kwargs.get("eps", 1e-12 if eps is None else eps)
            if x.device.type == "cpu" and x.dtype == torch.float32 and p == 2 and isinstance(dim, int):
                return x / (x * x).sum(dim, keepdim=True).sqrt().clamp_min(eps)
        return func(*args, **kwargs)


def conv3d_context(module: torch.nn.Module):
    """:class:`OneDnnConv3d` for a float32 module on the CPU (where it helps), else a no-op context."""
    import contextlib

    param = next(module.parameters(), None)
    on_cpu = param is not None and param.device.type == "cpu" and param.dtype == torch.float32
    return OneDnnConv3d() if on_cpu and torch.backends.mkldnn.is_available() else contextlib.nullcontext()


class WanVAE(torch.nn.Module):
    """``AutoencoderKLWan`` with Wan's latent normalisation. Pixels (B, 3, F, H, W) in [-1, 1].
    On the CPU its 3-D convolutions run through oneDNN at every size (:class:`OneDnnConv3d`)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        mean = torch.tensor(model.config.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(model.config.latents_std).view(1, -1, 1, 1, 1)
        self.register_buffer("latents_mean", mean, persistent=False)
        self.register_buffer("latents_std", std, persistent=False)

    @property
    def z_dim(self) -> int:
        return int(self.model.config.z_dim)

    @property
    def use_tiling(self) -> bool:
        return bool(self.model.use_tiling)

    def enable_tiling(self) -> None:
        self.model.enable_tiling()

    def disable_tiling(self) -> None:
        self.model.disable_tiling()

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, H, W) in [-1, 1] -> normalised latent mean (B, 16, (F-1)/4+1, H/8, W/8) float32."""
        dtype = next(self.model.parameters()).dtype
        with conv3d_context(self.model):
            mu = self.model.encode(video.to(dtype)).latent_dist.mode().float()
        return (mu - self.latents_mean) / self.latents_std

    @torch.no_grad()
    def encode_stream(self, chunks) -> torch.Tensor:
        """Causal encode of a video given as chunks (first chunk 1 frame, then 4 frames each), so the
        pixels of a long video never sit in memory at once. Same result as :meth:`encode`."""
        m = self.model
        if m.use_tiling:
            return self.encode(torch.cat(list(chunks), dim=2))
        dtype = next(m.parameters()).dtype
        m.clear_cache()
        outs = []
        for chunk in chunks:
            m._enc_conv_idx = [0]
            with conv3d_context(m):
                outs.append(m.encoder(chunk.to(dtype), feat_cache=m._enc_feat_map, feat_idx=m._enc_conv_idx))
        m.clear_cache()
        with conv3d_context(m):  # the same kernel as encode(), so both paths agree bit for bit
            mu = m.quant_conv(torch.cat(outs, dim=2))[:, : self.z_dim].float()
        return (mu - self.latents_mean) / self.latents_std

    @torch.no_grad()
    def decode_stream(self, latents: torch.Tensor):
        """Yield decoded pixels latent frame by latent frame: (B, 3, 1 or 4, 8h, 8w) float32 in [-1, 1].
        Same frames as :meth:`decode`, with memory bounded by one latent frame of output."""
        m = self.model
        if m.use_tiling:
            yield self.decode(latents)
            return
        dtype = next(m.parameters()).dtype
        z = latents.float() * self.latents_std + self.latents_mean
        m.clear_cache()
        try:
            for i in range(z.shape[2]):
                m._conv_idx = [0]
                with conv3d_context(m):  # entered per frame: the mode must not stay active across yield
                    x = m.post_quant_conv(z[:, :, i : i + 1].to(dtype))
                    out = m.decoder(x, feat_cache=m._feat_map, feat_idx=m._conv_idx, first_chunk=i == 0)
                yield out.float().clamp(-1, 1)
        finally:
            m.clear_cache()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, 16, T, h, w) -> pixels (B, 3, 4(T-1)+1, 8h, 8w) float32 in [-1, 1]."""
        dtype = next(self.model.parameters()).dtype
        z = latents.float() * self.latents_std + self.latents_mean
        with conv3d_context(self.model):
            return self.model.decode(z.to(dtype)).sample.float().clamp(-1, 1)


def load_vae(path: Path, *, dtype=torch.float32, device="cpu") -> WanVAE:
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    sd = load_torch_file(path)
    if "encoder.conv1.weight" not in sd or "conv2.weight" not in sd:
        raise CheckpointError(f"{path}: not a Wan2.1 VAE checkpoint (no encoder.conv1 / conv2 tensors)")
    base_dim = sd["encoder.conv1.weight"].shape[0]
    z_dim = sd["conv2.weight"].shape[0]
    converted = convert_wan_vae_to_diffusers(sd)
    with torch.device("meta"):
        model = AutoencoderKLWan(base_dim=base_dim, z_dim=z_dim)
    try:
        model.load_state_dict({k: v.to(dtype) for k, v in converted.items()}, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit the Wan VAE ({str(exc).splitlines()[0]})") from exc
    model.eval().requires_grad_(False)
    return WanVAE(model).to(device)


# ------------------------------------------------------------------------------------------------ umT5

_T5_BLOCK = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}


def t5_original_to_transformers(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """Wan umT5 encoder keys -> ``UMT5EncoderModel`` keys, plus the config kwargs read from the shapes."""
    if "token_embedding.weight" not in sd:
        raise CheckpointError("not a Wan umT5 encoder checkpoint: no token_embedding.weight")
    vocab, dim = sd["token_embedding.weight"].shape
    layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    inner = sd["blocks.0.attn.q.weight"].shape[0]
    buckets, heads = sd["blocks.0.pos_embedding.embedding.weight"].shape
    config = dict(
        vocab_size=vocab,
        d_model=dim,
        d_kv=inner // heads,
        d_ff=sd["blocks.0.ffn.fc1.weight"].shape[0],
        num_layers=layers,
        num_heads=heads,
        relative_attention_num_buckets=buckets,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
        dropout_rate=0.0,
    )
    out = {
        "shared.weight": sd["token_embedding.weight"],
        "encoder.embed_tokens.weight": sd["token_embedding.weight"],
    }
    for i in range(layers):
        for a, b in _T5_BLOCK.items():
            out[f"encoder.block.{i}.{b}"] = sd[f"blocks.{i}.{a}"]
    out["encoder.final_layer_norm.weight"] = sd["norm.weight"]
    return out, config


def t5_transformers_to_original(sd: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    out = {
        "token_embedding.weight": sd["shared.weight"],
        "norm.weight": sd["encoder.final_layer_norm.weight"],
    }
    for i in range(num_layers):
        for a, b in _T5_BLOCK.items():
            out[f"blocks.{i}.{a}"] = sd[f"encoder.block.{i}.{b}"]
    return out


class TextEncoder(torch.nn.Module):
    """umT5 prompt embedding as Wan uses it: (B, 512, dim), positions past the prompt's tokens zeroed."""

    def __init__(self, model, tokenizer, text_len: int = TEXT_LEN):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.text_len = text_len

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        tok = self.tokenizer(
            [" ".join(p.split()) for p in prompts],
            padding="max_length",
            truncation=True,
            max_length=self.text_len,
            add_special_tokens=True,
            return_tensors="pt",
        )
        ids, mask = tok.input_ids.to(device), tok.attention_mask.to(device)
        out = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        return out * mask[..., None].to(out.dtype)


def load_text_encoder(path: Path, tokenizer_dir: Path, *, dtype=torch.float32, device="cpu") -> TextEncoder:
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

    sd = load_torch_file(path)
    converted, config = t5_original_to_transformers(sd)
    with torch.device("meta"):
        model = UMT5EncoderModel(UMT5Config(**config))
    try:
        model.load_state_dict({k: v.to(dtype) for k, v in converted.items()}, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit umT5 ({str(exc).splitlines()[0]})") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    except Exception as exc:
        raise CheckpointError(f"{tokenizer_dir}: cannot load the umT5 tokenizer ({exc})") from exc
    return TextEncoder(model.eval().requires_grad_(False), tokenizer).to(device)


def pad_text(context: torch.Tensor, text_len: int = TEXT_LEN) -> torch.Tensor:
    """(L, C) or (1, L, C) prompt embedding -> (1, text_len, C), zero padded (Wan pads to 512 with zeros)."""
    if context.ndim == 2:
        context = context[None]
    L = context.shape[1]
    if L >= text_len:
        return context[:, :text_len]
    return F.pad(context, (0, 0, 0, text_len - L))


def load_empty_prompt(path: Path) -> torch.Tensor:
    """The cached empty-prompt embedding (1, 512, text_dim) float32."""
    from safetensors.torch import load_file

    try:
        ctx = load_file(str(path))["context"]
    except Exception as exc:
        raise CheckpointError(f"{path}: not an empty-prompt cache ({exc.__class__.__name__}: {exc})") from exc
    return pad_text(ctx.float())


def save_empty_prompt(path: Path, context: torch.Tensor) -> None:
    """Store only the non-zero rows of a (1, 512, C) embedding (the empty prompt is one token: 1 row)."""
    from safetensors.torch import save_file

    ctx = context[0]
    rows = int((ctx.abs().sum(-1) > 0).nonzero().max().item()) + 1 if ctx.abs().sum() > 0 else 1
    save_file({"context": ctx[:rows].contiguous().float()}, str(path))
