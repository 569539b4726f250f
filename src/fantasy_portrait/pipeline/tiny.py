"""Write a complete tiny random weight folder in the released file layout (SPEC §2).

Every file ``fantasy-portrait animate`` reads, under its released name, at tiny sizes: a 2-block
Wan DiT (original keys and ``config.json``), a narrow Wan VAE, a 2-block CLIP visual tower (width
1280 is kept because the DiT's image projector expects 1280-wide features), the FantasyPortrait
adapter (flat released keys), the PD-FGC motion encoder (its size is fixed: about 36 MB) and the
cached empty-prompt embedding; optionally a tiny umT5 and a word-level tokenizer (for prompts). Such weights exercise the whole program but produce noise, not animation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..models.config import PRESETS
from . import layout

# The golden tiny size (models.config PRESETS["tiny"]), in the released file vocabulary.
TINY_WAN = PRESETS["tiny"].wan.to_original_config()
TINY_ENCODER = {
    k: getattr(PRESETS["tiny"].encoder, k)
    for k in ("token_dim", "resampler_dim", "resampler_depth", "resampler_heads", "resampler_head_dim")
}
TINY_VAE_BASE_DIM = 8
TINY_CLIP = dict(hidden=1280, layers=2, intermediate=256)
NOISE_NOTE = (
    "These are tiny RANDOM weights: the whole program runs with them, but the videos it makes are "
    "noise, not animation. Point --weights at the released files for real results."
)


class _Rand:
    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def normal(self, *shape, std=1.0, mean=0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=self.g) * std + mean

    def linear(self, out_f, in_f, bias=True, prefix="", sd=None):
        sd[f"{prefix}.weight"] = self.normal(out_f, in_f, std=1 / math.sqrt(in_f))
        if bias:
            sd[f"{prefix}.bias"] = self.normal(out_f, std=0.02)

    def norm(self, dim, prefix, sd, bias=True):
        sd[f"{prefix}.weight"] = self.normal(dim, std=0.1, mean=1.0)
        if bias:
            sd[f"{prefix}.bias"] = self.normal(dim, std=0.05)


def tiny_wan_state_dict(cfg: dict, rnd: _Rand) -> dict[str, torch.Tensor]:
    """Random Wan2.1 I2V DiT tensors with the original key names for config ``cfg``."""
    d, ffn, pt = cfg["dim"], cfg["ffn_dim"], cfg["patch_size"]
    sd: dict[str, torch.Tensor] = {}
    sd["patch_embedding.weight"] = rnd.normal(
        d, cfg["in_dim"], *pt, std=math.sqrt(2 / (cfg["in_dim"] * math.prod(pt)))
    )
    sd["patch_embedding.bias"] = rnd.normal(d, std=0.02)
    rnd.linear(d, cfg["text_dim"], prefix="text_embedding.0", sd=sd)
    rnd.linear(d, d, prefix="text_embedding.2", sd=sd)
    rnd.linear(d, cfg["freq_dim"], prefix="time_embedding.0", sd=sd)
    rnd.linear(d, d, prefix="time_embedding.2", sd=sd)
    rnd.linear(6 * d, d, prefix="time_projection.1", sd=sd)
    for i in range(cfg["num_layers"]):
        b = f"blocks.{i}"
        for n in ("q", "k", "v", "o"):
            rnd.linear(d, d, prefix=f"{b}.self_attn.{n}", sd=sd)
            rnd.linear(d, d, prefix=f"{b}.cross_attn.{n}", sd=sd)
        for n in ("k_img", "v_img"):
            rnd.linear(d, d, prefix=f"{b}.cross_attn.{n}", sd=sd)
        for n in (
            "self_attn.norm_q",
            "self_attn.norm_k",
            "cross_attn.norm_q",
            "cross_attn.norm_k",
            "cross_attn.norm_k_img",
        ):
            rnd.norm(d, f"{b}.{n}", sd, bias=False)
        rnd.norm(d, f"{b}.norm3", sd)
        rnd.linear(ffn, d, prefix=f"{b}.ffn.0", sd=sd)
        rnd.linear(d, ffn, prefix=f"{b}.ffn.2", sd=sd)
        sd[f"{b}.modulation"] = rnd.normal(1, 6, d, std=1 / math.sqrt(d))
    rnd.linear(cfg["out_dim"] * math.prod(pt), d, prefix="head.head", sd=sd)
    sd["head.modulation"] = rnd.normal(1, 2, d, std=1 / math.sqrt(d))
    rnd.norm(1280, "img_emb.proj.0", sd)
    rnd.linear(1280, 1280, prefix="img_emb.proj.1", sd=sd)
    rnd.linear(d, 1280, prefix="img_emb.proj.3", sd=sd)
    rnd.norm(d, "img_emb.proj.4", sd)
    return sd


def _resampler(prefix: str, in_dim: int, queries: int, enc: dict, rnd: _Rand, sd: dict) -> None:
    dim, inner = enc["resampler_dim"], enc["resampler_heads"] * enc["resampler_head_dim"]
    sd[f"{prefix}.latents"] = rnd.normal(1, queries, dim, std=1 / math.sqrt(dim))
    rnd.linear(dim, in_dim, prefix=f"{prefix}.proj_in", sd=sd)
    rnd.linear(enc["token_dim"], dim, prefix=f"{prefix}.proj_out", sd=sd)
    rnd.norm(enc["token_dim"], f"{prefix}.norm_out", sd)
    for i in range(enc["resampler_depth"]):
        p = f"{prefix}.layers.{i}"
        rnd.norm(dim, f"{p}.0.norm1", sd)
        rnd.norm(dim, f"{p}.0.norm2", sd)
        rnd.linear(inner, dim, bias=False, prefix=f"{p}.0.to_q", sd=sd)
        rnd.linear(2 * inner, dim, bias=False, prefix=f"{p}.0.to_kv", sd=sd)
        rnd.linear(dim, inner, bias=False, prefix=f"{p}.0.to_out", sd=sd)
        rnd.norm(dim, f"{p}.1.0", sd)
        rnd.linear(4 * dim, dim, bias=False, prefix=f"{p}.1.1", sd=sd)
        rnd.linear(dim, 4 * dim, bias=False, prefix=f"{p}.1.3", sd=sd)


def tiny_portrait_state_dict(
    num_blocks: int, block_dim: int, enc: dict, rnd: _Rand
) -> dict[str, torch.Tensor]:
    """Random FantasyPortrait adapter tensors with the flat released keys (SPEC §2)."""
    t = enc["token_dim"]
    sd: dict[str, torch.Tensor] = {}
    for name, width in (("headpose", 6), ("eye", 6), ("emo", 30), ("mouth", 512)):
        rnd.linear(t, width, bias=False, prefix=f"proj_model.{name}_proj", sd=sd)
    rnd.norm(t, "proj_model.norm", sd)
    _resampler("mouth_proj_model", 512, 16, enc, rnd, sd)
    _resampler("emo_proj_model", 30, 4, enc, rnd, sd)
    for i in range(num_blocks):
        for kv in ("k", "v"):
            key = f"ip_adapter.blocks.{i}.cross_attn.ip_adapter_single_stream_{kv}_proj.weight"
            sd[key] = rnd.normal(block_dim, t, std=0.05)
    return sd


def tiny_vae_state_dict(seed: int) -> dict[str, torch.Tensor]:
    from diffusers import AutoencoderKLWan

    from .encoders import vae_diffusers_to_original

    torch.manual_seed(seed)
    model = AutoencoderKLWan(base_dim=TINY_VAE_BASE_DIM)
    return vae_diffusers_to_original(model.state_dict())


def tiny_clip_state_dict(rnd: _Rand) -> dict[str, torch.Tensor]:
    """Original open-clip visual-tower keys (no text tower: it is never loaded)."""
    h, n, mlp = TINY_CLIP["hidden"], TINY_CLIP["layers"], TINY_CLIP["intermediate"]
    sd: dict[str, torch.Tensor] = {
        "visual.patch_embedding.weight": rnd.normal(h, 3, 14, 14, std=1 / math.sqrt(3 * 14 * 14)),
        "visual.cls_embedding": rnd.normal(1, 1, h, std=1 / math.sqrt(h)),
        "visual.pos_embedding": rnd.normal(1, 257, h, std=1 / math.sqrt(h)),
        "visual.head": rnd.normal(h, 1024, std=1 / math.sqrt(h)),
    }
    rnd.norm(h, "visual.pre_norm", sd)
    rnd.norm(h, "visual.post_norm", sd)
    for i in range(n):
        p = f"visual.transformer.{i}"
        rnd.norm(h, f"{p}.norm1", sd)
        rnd.norm(h, f"{p}.norm2", sd)
        rnd.linear(3 * h, h, prefix=f"{p}.attn.to_qkv", sd=sd)
        rnd.linear(h, h, prefix=f"{p}.attn.proj", sd=sd)
        rnd.linear(mlp, h, prefix=f"{p}.mlp.0", sd=sd)
        rnd.linear(h, mlp, prefix=f"{p}.mlp.2", sd=sd)
    return {k: v.half() for k, v in sd.items()}  # the released file is float16 too


def tiny_motion_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """The full-size PD-FGC encoder with random weights (its size is fixed by the architecture)."""
    from ..motion import FanEncoder

    torch.manual_seed(seed)
    net = FanEncoder()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


TINY_WORDS = ("a", "man", "woman", "smiling", "talking", "portrait", "of", "the", "and", "face")


def write_tiny_text_encoder(folder: Path, text_dim: int, seed: int = 0) -> list[Path]:
    """A tiny random umT5 encoder (original key names) and a word-level tokenizer in ``google/umt5-xxl/``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    from .encoders import t5_transformers_to_original

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(TINY_WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    tok_dir = folder / layout.T5_TOKENIZER
    hf_tok.save_pretrained(str(tok_dir))
    torch.manual_seed(seed)
    config = UMT5Config(
        vocab_size=len(vocab),
        d_model=text_dim,
        d_kv=8,
        d_ff=2 * text_dim,
        num_layers=2,
        num_heads=max(1, text_dim // 8),
        feed_forward_proj="gated-gelu",
    )
    model = UMT5EncoderModel(config)
    path = folder / layout.T5_FILE
    torch.save(
        {k: v.to(torch.bfloat16) for k, v in t5_transformers_to_original(model.state_dict(), 2).items()}, path
    )
    return [path, tok_dir]


def write_tiny_weights(
    folder: str | Path, seed: int = 0, *, overwrite: bool = False, text_encoder: bool = False
) -> list[Path]:
    """Write every file ``animate`` needs, tiny and random, into ``folder``. Returns the paths written.

    text_encoder: also write a tiny umT5 and tokenizer (needed only for a prompt or text guidance != 1).
    """
    from safetensors.torch import save_file

    from .encoders import save_empty_prompt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rnd = _Rand(seed)
    files: dict[str, object] = {
        layout.WAN_CONFIG: ("json", TINY_WAN),
        layout.WAN_SINGLE: ("st", tiny_wan_state_dict(TINY_WAN, rnd)),
        layout.VAE_FILE: ("pt", tiny_vae_state_dict(seed)),
        layout.CLIP_FILE: ("pt", tiny_clip_state_dict(rnd)),
        layout.PORTRAIT_FILES[0]: (
            "st",
            tiny_portrait_state_dict(TINY_WAN["num_layers"], TINY_WAN["dim"], TINY_ENCODER, rnd),
        ),
        layout.MOTION_FILE: ("pt", tiny_motion_state_dict(seed)),
        layout.EMPTY_PROMPT_FILE: ("ctx", rnd.normal(1, 1, TINY_WAN["text_dim"])),
        "README_TINY_WEIGHTS.txt": ("txt", NOISE_NOTE + "\n"),
    }
    written = []
    for name, (kind, content) in files.items():
        path = folder / name
        if path.exists() and not overwrite:
            written.append(path)
            continue
        tmp = path.with_name(f".{name}.tmp")
        if kind == "json":
            tmp.write_text(json.dumps(content, indent=2))
        elif kind == "txt":
            tmp.write_text(content)
        elif kind == "st":
            save_file({k: v.contiguous() for k, v in content.items()}, str(tmp))
        elif kind == "pt":
            torch.save(content, tmp)
        elif kind == "ctx":
            save_empty_prompt(tmp, content)
        tmp.replace(path)
        written.append(path)
    if text_encoder:
        written += write_tiny_text_encoder(folder, TINY_WAN["text_dim"], seed)
    return written
