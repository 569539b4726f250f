"""Loading the released file layouts, and the errors users get for bad files."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from fantasy_portrait.cli import main
from fantasy_portrait.errors import CheckpointError
from fantasy_portrait.models.config import PRESETS
from fantasy_portrait.models.loading import (
    build_from_preset,
    load_portrait_checkpoint,
    load_wan_transformer,
    parameter_counts,
    portrait_state_dict,
    read_pdfgc_state,
    read_portrait_checkpoint,
    save_portrait_checkpoint,
)
from fantasy_portrait.models.motion_attention import MotionCondition

TINY = PRESETS["tiny"]  # the golden tiny sizes: one definition (models.config)


def _forward(transformer, golden_dir):
    case = load_file(golden_dir / "dit_single.safetensors")
    with torch.no_grad():
        return transformer(
            torch.cat([case["x"], case["y"]])[None],
            case["timestep"],
            case["context"],
            case["clip_fea"],
            motion=MotionCondition([case["adapter_proj"]]),
        ), case["out"]


def _sharded_copy(golden_dir, dest, shards=3):
    tensors = load_file(golden_dir / "wan_tiny" / "diffusion_pytorch_model.safetensors")
    keys = sorted(tensors)
    weight_map = {}
    for i in range(shards):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: tensors[k] for k in keys[i::shards]}
        save_file(part, dest / name)
        weight_map.update(dict.fromkeys(part, name))
    (dest / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"weight_map": weight_map})
    )
    shutil.copy(golden_dir / "wan_tiny" / "config.json", dest / "config.json")
    return dest


def test_sharded_original_layout_loads_the_same_model(golden_dir, tmp_path):
    folder = _sharded_copy(golden_dir, tmp_path)
    transformer = load_wan_transformer(folder, motion_dim=TINY.encoder.token_dim)
    load_portrait_checkpoint(golden_dir / "portrait_tiny.safetensors", transformer)
    out, expected = _forward(transformer, golden_dir)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_diffusers_layout_loads_the_same_model(golden_dir, tmp_path):
    plain = load_wan_transformer(golden_dir / "wan_tiny", motion_dim=None)
    from diffusers import WanTransformer3DModel

    kwargs = {k: v for k, v in plain.config.items() if not k.startswith("_") and k != "motion_dim"}
    reference = WanTransformer3DModel(**kwargs)
    reference.load_state_dict(plain.state_dict())
    reference.save_pretrained(tmp_path / "Wan-Diffusers" / "transformer")
    transformer = load_wan_transformer(tmp_path / "Wan-Diffusers", motion_dim=TINY.encoder.token_dim)
    load_portrait_checkpoint(golden_dir / "portrait_tiny.ckpt", transformer)
    out, expected = _forward(transformer, golden_dir)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_half_precision_load_goes_straight_to_the_target_dtype(golden_dir):
    transformer = load_wan_transformer(
        golden_dir / "wan_tiny", motion_dim=TINY.encoder.token_dim, dtype=torch.bfloat16
    )
    encoder = load_portrait_checkpoint(
        golden_dir / "portrait_tiny.safetensors", transformer, dtype=torch.bfloat16
    )
    dtypes = {name: p.dtype for name, p in transformer.named_parameters()}
    assert dtypes["blocks.0.attn1.to_q.weight"] == torch.bfloat16
    assert dtypes["blocks.0.attn2.motion_k_proj.weight"] == torch.bfloat16
    assert dtypes["blocks.0.scale_shift_table"] == torch.float32  # diffusers keeps these in fp32
    assert all(p.dtype == torch.bfloat16 for p in encoder.parameters())
    assert not any(p.is_meta for p in transformer.parameters())


def test_portrait_checkpoint_round_trip_keeps_the_released_layout(golden_dir, tmp_path):
    transformer = load_wan_transformer(golden_dir / "wan_tiny", motion_dim=TINY.encoder.token_dim)
    encoder = load_portrait_checkpoint(golden_dir / "portrait_tiny.safetensors", transformer)
    path = save_portrait_checkpoint(tmp_path / "fantasyportrait_model.safetensors", encoder, transformer)
    saved, released = load_file(path), load_file(golden_dir / "portrait_tiny.safetensors")
    assert set(saved) == set(released)
    assert all(torch.equal(saved[k], released[k]) for k in released)
    assert set(portrait_state_dict(encoder, transformer)) == set(released)


def test_fp16_single_file_with_bundled_pdfgc(golden_dir, tmp_path):
    portrait = load_file(golden_dir / "portrait_tiny.safetensors")
    pdfgc = torch.load(golden_dir / "pd_fgc_random.pth", map_location="cpu", weights_only=True)
    bundled = {k: v.half() for k, v in portrait.items()}
    bundled.update({f"pd_fpg.{k}": (v.half() if v.is_floating_point() else v) for k, v in pdfgc.items()})
    path = tmp_path / "fantasyportrait_fp16.safetensors"
    save_file(bundled, path)
    transformer = load_wan_transformer(golden_dir / "wan_tiny", motion_dim=TINY.encoder.token_dim)
    encoder = load_portrait_checkpoint(path, transformer)
    assert encoder.parts.head.weight.dtype == torch.float32
    torch.testing.assert_close(
        encoder.parts.head.weight, portrait["proj_model.headpose_proj.weight"].half().float()
    )
    state = read_pdfgc_state(path)
    assert set(state) == set(pdfgc)
    _, _, pdfgc_part = read_portrait_checkpoint(path)
    assert len(pdfgc_part) == len(pdfgc)


def test_missing_shard_is_named(golden_dir, tmp_path):
    folder = _sharded_copy(golden_dir, tmp_path)
    (folder / "diffusion_pytorch_model-00002-of-00003.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing shard.*00002-of-00003"):
        load_wan_transformer(folder, motion_dim=TINY.encoder.token_dim)


def test_truncated_file_is_named(golden_dir, tmp_path):
    folder = tmp_path / "wan"
    folder.mkdir()
    shutil.copy(golden_dir / "wan_tiny" / "config.json", folder)
    data = (golden_dir / "wan_tiny" / "diffusion_pytorch_model.safetensors").read_bytes()
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="diffusion_pytorch_model.safetensors"):
        load_wan_transformer(folder, motion_dim=TINY.encoder.token_dim)


def test_wrong_model_as_portrait_checkpoint(golden_dir):
    with pytest.raises(CheckpointError, match="not a FantasyPortrait checkpoint"):
        read_portrait_checkpoint(golden_dir / "wan_tiny" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CheckpointError, match="not a FantasyPortrait checkpoint"):
        read_portrait_checkpoint(golden_dir / "pd_fgc_random.pth")


def test_portrait_checkpoint_of_another_width(golden_dir):
    transformer, _ = build_from_preset("tiny", device="cpu")
    wider = load_wan_transformer(
        golden_dir / "wan_tiny", motion_dim=2 * TINY.encoder.token_dim
    )  # tokens wider than the checkpoint's
    with pytest.raises(CheckpointError, match="do not match"):
        load_portrait_checkpoint(golden_dir / "portrait_tiny.safetensors", wider)
    load_portrait_checkpoint(golden_dir / "portrait_tiny.safetensors", transformer)  # the right size loads


def test_portrait_checkpoint_missing_blocks(golden_dir, tmp_path):
    tensors = load_file(golden_dir / "portrait_tiny.safetensors")
    del tensors["ip_adapter.blocks.1.cross_attn.ip_adapter_single_stream_v_proj.weight"]
    save_file(tensors, tmp_path / "partial.safetensors")
    transformer = load_wan_transformer(golden_dir / "wan_tiny", motion_dim=TINY.encoder.token_dim)
    with pytest.raises(CheckpointError, match=r"missing.*blocks\.1\.attn2\.motion_v_proj"):
        load_portrait_checkpoint(tmp_path / "partial.safetensors", transformer)


def test_wan_folder_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_wan_transformer(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no config.json"):
        load_wan_transformer(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_wan_transformer(tmp_path)


def test_14b_preset_motion_parts_have_the_released_shapes():
    transformer, encoder = build_from_preset("wan2.1-i2v-14b-720p")
    released = portrait_state_dict(encoder, transformer)
    shapes = {k: tuple(v.shape) for k, v in released.items()}
    assert len([k for k in shapes if k.startswith("ip_adapter.")]) == 80
    assert shapes["ip_adapter.blocks.39.cross_attn.ip_adapter_single_stream_k_proj.weight"] == (5120, 2048)
    assert shapes["proj_model.headpose_proj.weight"] == (2048, 6)
    assert shapes["proj_model.mouth_proj.weight"] == (2048, 512)
    assert shapes["mouth_proj_model.latents"] == (1, 16, 1280)
    assert shapes["emo_proj_model.latents"] == (1, 4, 1280)
    assert shapes["mouth_proj_model.proj_in.weight"] == (1280, 512)
    assert shapes["emo_proj_model.proj_in.weight"] == (1280, 30)
    assert shapes["mouth_proj_model.layers.3.0.to_kv.weight"] == (2560, 1280)
    assert shapes["mouth_proj_model.layers.3.1.1.weight"] == (5120, 1280)
    assert shapes["emo_proj_model.proj_out.weight"] == (2048, 1280)
    assert not any(k.startswith("mouth_proj_model.layers.4") for k in shapes)


def _wan_parameter_formula(w):
    """Independent count of a Wan2.1 I2V DiT's parameters from its config."""
    d, f, L = w.dim, w.ffn_dim, w.num_layers
    patch = w.in_dim * d * 4 + d
    text = w.text_dim * d + d + d * d + d
    time = w.freq_dim * d + d + d * d + d + d * 6 * d + 6 * d
    image = 2 * 1280 + 1280 * 1280 + 1280 + 1280 * d + d + 2 * d
    self_attn = 4 * (d * d + d) + 2 * d
    cross_attn = 4 * (d * d + d) + 2 * d + 2 * (d * d + d) + d + 2 * d  # + image k/v, norm_k_img, cross norm
    block = self_attn + cross_attn + (d * f + f + f * d + d) + 6 * d
    head = d * w.out_dim * 4 + w.out_dim * 4 + 2 * d
    return patch + text + time + image + L * block + head


@pytest.mark.parametrize("name", ["wan2.1-i2v-14b-720p", "wan2.1-i2v-1.3b", "tiny"])
def test_parameter_counts_match_the_architecture(name):
    counts = parameter_counts(name)
    preset = PRESETS[name]
    assert counts["wan_dit"] == _wan_parameter_formula(preset.wan)
    assert counts["motion_attention"] == preset.wan.num_layers * 2 * preset.wan.dim * preset.encoder.token_dim


def test_info_command_prints_counts(capsys):
    assert main(["info", "--preset", "wan2.1-i2v-14b-720p", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parameters"]["wan_dit"] == 16_394_878_784
    assert report["parameters"]["motion_attention"] == 40 * 2 * 5120 * 2048


def test_tiny_preset_writes_the_golden_original_config(golden_dir):
    golden = json.loads((golden_dir / "wan_tiny" / "config.json").read_text())
    assert PRESETS["tiny"].wan.to_original_config() == {
        k: v for k, v in golden.items() if not k.startswith("_")
    }
