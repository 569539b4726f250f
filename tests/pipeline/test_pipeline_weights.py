"""Weight folder layout, the tiny-weights writer, and the conversions of the original Wan encoder files."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from fantasy_portrait.cli import main
from fantasy_portrait.errors import CheckpointError
from fantasy_portrait.pipeline import encoders, layout


def test_tiny_folder_has_every_released_file(tiny_weights, capsys):
    files = layout.find_weight_files(tiny_weights)
    assert files.dit_files == [tiny_weights / layout.WAN_SINGLE]
    assert files.vae.name == "Wan2.1_VAE.pth" and files.motion.name == "pd_fpg.pth"
    assert files.clip.name == "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
    assert files.portrait.name == "fantasyportrait_model.safetensors"
    assert files.empty_prompt is not None and not files.has_text_encoder
    with pytest.raises(CheckpointError, match="models_t5_umt5-xxl-enc-bf16.pth"):
        layout.find_weight_files(tiny_weights, need_text_encoder=True)


def test_make_tiny_weights_command_says_noise(tmp_path, capsys, tiny_weights):
    # reuse the session folder's files through symlinks except two, so the command writes only those
    target = tmp_path / "w"
    target.mkdir()
    for f in tiny_weights.iterdir():
        if f.name not in (layout.WAN_CONFIG, layout.PORTRAIT_FILES[0]):
            (target / f.name).symlink_to(f)
    assert main(["make-tiny-weights", str(target)]) == 0
    captured = capsys.readouterr()
    assert "noise" in captured.err.lower()
    assert json.loads((target / layout.WAN_CONFIG).read_text())["num_layers"] == 2
    assert layout.find_weight_files(target).portrait.is_file()


def test_sharded_index_with_a_missing_shard(tmp_path, tiny_weights):
    (tmp_path / layout.WAN_CONFIG).write_text((tiny_weights / layout.WAN_CONFIG).read_text())
    index = {
        "weight_map": {
            "a": "diffusion_pytorch_model-00001-of-00002.safetensors",
            "b": "diffusion_pytorch_model-00002-of-00002.safetensors",
        }
    }
    (tmp_path / layout.WAN_INDEX).write_text(json.dumps(index))
    with pytest.raises(CheckpointError) as err:
        layout.find_weight_files(tmp_path)
    msg = str(err.value)
    assert (
        "00001-of-00002" in msg
        and "00002-of-00002" in msg
        and "Wan2.1_VAE.pth" in msg
        and "pd_fpg.pth" in msg
    )


def test_wan_subfolder_layout_is_found(tmp_path, tiny_weights):
    sub = tmp_path / "Wan2.1-I2V-14B-720P"
    sub.mkdir()
    for f in tiny_weights.iterdir():
        dest = tmp_path if f.name in ("fantasyportrait_model.safetensors", "pd_fpg.pth") else sub
        (dest / f.name).symlink_to(f)
    files = layout.find_weight_files(tmp_path)
    assert files.wan_dir == sub and files.portrait.parent == tmp_path


def test_vae_key_map_inverts_diffusers_converter_at_full_size():
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    with torch.device("meta"):
        sd = AutoencoderKLWan().state_dict()
    original = encoders.vae_diffusers_to_original(sd)
    assert (
        "encoder.downsamples.0.residual.0.gamma" in original
        and "decoder.upsamples.4.shortcut.weight" in original
    )
    back = convert_wan_vae_to_diffusers(original)
    assert set(back) == set(sd)
    assert all(back[k].shape == sd[k].shape for k in sd)


def test_vae_stream_equals_whole_and_latents_are_normalised(tiny_weights):
    vae = encoders.load_vae(tiny_weights / "Wan2.1_VAE.pth")
    x = torch.rand(1, 3, 9, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = vae.encode(x)
    assert z.shape == (1, 16, 3, 4, 4)
    torch.testing.assert_close(vae.encode_stream([x[:, :, :1], x[:, :, 1:5], x[:, :, 5:]]), z)
    torch.testing.assert_close(torch.cat(list(vae.decode_stream(z)), 2), vae.decode(z))
    raw = vae.model.encode(x).latent_dist.mode()
    torch.testing.assert_close(z * vae.latents_std + vae.latents_mean, raw, atol=1e-5, rtol=1e-5)


def _wan_clip_reference(sd: dict, image: torch.Tensor, heads: int) -> torch.Tensor:
    """Wan's open-clip visual tower written out from the original tensors (use_31_block)."""
    x = F.interpolate(image, size=(224, 224), mode="bicubic", align_corners=False)
    mean = torch.tensor(encoders.CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(encoders.CLIP_STD).view(1, 3, 1, 1)
    x = ((x * 0.5 + 0.5) - mean) / std
    x = F.conv2d(x, sd["visual.patch_embedding.weight"], stride=14).flatten(2).transpose(1, 2)
    x = torch.cat([sd["visual.cls_embedding"].expand(x.shape[0], -1, -1), x], 1) + sd["visual.pos_embedding"]
    x = F.layer_norm(x, x.shape[-1:], sd["visual.pre_norm.weight"], sd["visual.pre_norm.bias"], 1e-5)
    layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("visual.transformer."))
    for i in range(layers - 1):
        p = f"visual.transformer.{i}."
        h = F.layer_norm(x, x.shape[-1:], sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-5)
        q, k, v = F.linear(h, sd[p + "attn.to_qkv.weight"], sd[p + "attn.to_qkv.bias"]).chunk(3, -1)
        q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) @ v
        x = x + F.linear(a.transpose(1, 2).flatten(2), sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = F.layer_norm(x, x.shape[-1:], sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-5)
        h = F.gelu(F.linear(h, sd[p + "mlp.0.weight"], sd[p + "mlp.0.bias"]))
        x = x + F.linear(h, sd[p + "mlp.2.weight"], sd[p + "mlp.2.bias"])
    return x


def test_clip_features_match_the_original_tower(tiny_weights):
    sd = {k: v.float() for k, v in encoders.load_torch_file(tiny_weights / layout.CLIP_FILE).items()}
    clip = encoders.load_clip_image_encoder(tiny_weights / layout.CLIP_FILE)
    image = torch.rand(1, 3, 80, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = clip(image)
    assert out.shape == (1, 257, 1280)
    torch.testing.assert_close(out, _wan_clip_reference(sd, image, heads=16), atol=2e-4, rtol=1e-4)


def _bucket(rel: torch.Tensor, num_buckets=32, max_dist=128) -> torch.Tensor:
    half = num_buckets // 2
    out = (rel > 0).long() * half
    rel = rel.abs()
    exact = half // 2
    large = exact + (torch.log(rel.float() / exact) / math.log(max_dist / exact) * (half - exact)).long()
    return out + torch.where(rel < exact, rel, large.clamp(max=half - 1))


def _wan_t5_reference(sd: dict, ids: torch.Tensor, mask: torch.Tensor, heads: int) -> torch.Tensor:
    """Wan's umT5 encoder written out from the original tensors (per-block relative position bias)."""

    def rms(x, w):
        return w * (x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6))

    x = sd["token_embedding.weight"][ids]
    n = ids.shape[1]
    rel = torch.arange(n)[None] - torch.arange(n)[:, None]
    layers = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(layers):
        p = f"blocks.{i}."
        bias = sd[p + "pos_embedding.embedding.weight"][_bucket(rel)].permute(2, 0, 1)[None]
        bias = bias.masked_fill(mask[:, None, None, :] == 0, torch.finfo(x.dtype).min)
        h = rms(x, sd[p + "norm1.weight"])
        q, k, v = (F.linear(h, sd[p + f"attn.{n_}.weight"]).unflatten(-1, (heads, -1)) for n_ in "qkv")
        a = torch.softmax(torch.einsum("binc,bjnc->bnij", q, k) + bias, -1)
        x = x + F.linear(torch.einsum("bnij,bjnc->binc", a, v).flatten(2), sd[p + "attn.o.weight"])
        h = rms(x, sd[p + "norm2.weight"])
        g = F.gelu(F.linear(h, sd[p + "ffn.gate.0.weight"]), approximate="tanh")
        x = x + F.linear(F.linear(h, sd[p + "ffn.fc1.weight"]) * g, sd[p + "ffn.fc2.weight"])
    return rms(x, sd["norm.weight"])


def test_umt5_conversion_matches_the_original_encoder(tmp_path):
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    hf = UMT5EncoderModel(
        UMT5Config(
            vocab_size=50,
            d_model=32,
            d_kv=8,
            d_ff=48,
            num_layers=2,
            num_heads=4,
            feed_forward_proj="gated-gelu",
        )
    )
    original = encoders.t5_transformers_to_original(hf.state_dict(), 2)
    assert all(k.startswith(("blocks.", "token_embedding", "norm")) for k in original)
    converted, config = encoders.t5_original_to_transformers(original)
    assert (config["num_heads"], config["d_kv"], config["d_ff"], config["num_layers"]) == (4, 8, 48, 2)
    model = UMT5EncoderModel(UMT5Config(**config)).eval()
    model.load_state_dict(converted, strict=True)
    ids = torch.tensor([[5, 9, 13, 1, 0, 0, 0, 0]])
    mask = (torch.arange(8) < 4).long()[None]
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    ref = _wan_t5_reference(original, ids, mask, heads=4)
    torch.testing.assert_close(out[:, :4], ref[:, :4], atol=1e-5, rtol=1e-5)


def test_empty_prompt_cache_roundtrip(tmp_path):
    emb = torch.zeros(1, 512, 32)
    emb[0, 0] = torch.randn(32)
    encoders.save_empty_prompt(tmp_path / "c.safetensors", emb)
    back = encoders.load_empty_prompt(tmp_path / "c.safetensors")
    assert back.shape == (1, 512, 32)
    torch.testing.assert_close(back, emb)


def test_dry_run_matches_the_known_14b_size(assets, capsys):
    code = main(
        [
            "animate",
            str(assets / "fp_man.jpeg"),
            str(assets / "fp_jgz.mp4"),
            "--dry-run",
            "--json",
            "--dtype",
            "bf16",
            "--device",
            "cpu",
        ]
    )
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # the estimate is printed whether or not the run would fit
    # On the CPU the whole run lives in RAM (about 40.5 GiB): the dry run ends with the memory error
    # (exit 2) where the machine has less, and succeeds where it has more.
    fits = report["estimate_bytes"]["peak_by_mode_gib"]["gpu"] * 2**30 <= _ram_bytes()
    assert code == (0 if fits else 2)
    if not fits:
        last = captured.err.strip().splitlines()[-1]
        assert last.startswith("error:") and "GiB of RAM" in last and "--max-size" in last
    from fantasy_portrait.models.loading import parameter_counts

    counts = parameter_counts("wan2.1-i2v-14b-720p")
    assert report["dit_parameters"] == counts["wan_dit"] + counts["motion_attention"]
    # Wan2.1-I2V-14B: 7 float32 shards of about 65.6 GB in all -> 16.4 B parameters (+ 0.84 B motion attention)
    assert 16.2e9 < counts["wan_dit"] < 16.6e9
    est = report["estimate_bytes"]
    assert est["dit_params"] == 2 * report["dit_parameters"]  # bf16
    # fp_jgz.mp4: 59 frames at 15 fps = 3.93 s -> 98 frames at 25 fps -> 97 (4k+1)
    assert (report["width"], report["height"]) == (720, 720) and report["frames"] == 97
    peaks = est["peak_by_mode_gib"]
    assert peaks["gpu"] > peaks["model-offload"] > peaks["sequential"]
    assert peaks["sequential"] < 24  # the 14B model in a 24 GB card, block by block


def test_checkpoints_given_apart_from_the_folder(tmp_path, tiny_weights):
    wan = tmp_path / "wan"
    wan.mkdir()
    for f in tiny_weights.iterdir():
        if f.name not in ("fantasyportrait_model.safetensors", "pd_fpg.pth"):
            (wan / f.name).symlink_to(f)
    with pytest.raises(CheckpointError, match="fantasyportrait_model"):
        layout.find_weight_files(wan)
    files = layout.find_weight_files(
        wan, portrait=tiny_weights / "fantasyportrait_model.safetensors", motion=tiny_weights / "pd_fpg.pth"
    )
    assert files.portrait.parent == tiny_weights and files.wan_dir == wan
    with pytest.raises(CheckpointError, match="nope.safetensors"):
        layout.find_weight_files(
            wan, portrait=tmp_path / "nope.safetensors", motion=tiny_weights / "pd_fpg.pth"
        )


def _ram_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
