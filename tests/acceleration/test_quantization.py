"""fp8 storage, ComfyUI fp8(-scaled) single files and GGUF files on the tiny DiT."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file

from fantasy_portrait.errors import CheckpointError
from fantasy_portrait.models.quantization import (
    FP8,
    describe_single_file,
    enable_fp8_storage,
    fp8_module_names,
    load_wan_gguf,
    load_wan_single_file,
)
from fantasy_portrait.pipeline.tiny import TINY_WAN, _Rand, tiny_wan_state_dict


@pytest.fixture(scope="module")
def original():
    """Tiny Wan2.1 I2V tensors under the original key names (float32)."""
    return tiny_wan_state_dict(TINY_WAN, _Rand(0))


@pytest.fixture(scope="module")
def full(original, tmp_path_factory):
    path = tmp_path_factory.mktemp("dit") / "wan_tiny_f32.safetensors"
    save_file(original, str(path))
    model = load_wan_single_file(path, dtype=torch.float32, motion_dim=32)
    torch.manual_seed(1)
    for m in model.motion_modules():
        torch.nn.init.normal_(m.weight, std=0.2)
    return model


def _inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(3)
    return dict(
        hidden_states=torch.randn(1, 36, 2, 8, 8, generator=g).to(dtype),
        timestep=torch.tensor([700.0]),
        encoder_hidden_states=torch.randn(1, 512, 32, generator=g).to(dtype),
        encoder_hidden_states_image=torch.randn(1, 257, 1280, generator=g).to(dtype),
    )


def _out(model, dtype=torch.float32):
    from fantasy_portrait.models.motion_attention import MotionCondition

    g = torch.Generator().manual_seed(5)
    motion = MotionCondition([torch.randn(1, 2, 97, 32, generator=g).to(dtype)])
    with torch.no_grad():
        return model(**_inputs(dtype), motion=motion).float()


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("compute", [torch.float32, torch.bfloat16])
def test_fp8_storage_round_trip_is_within_fp8_error(full, compute):
    base = copy.deepcopy(full).to(compute)
    names = fp8_module_names(base)
    assert names and all(n.startswith("blocks.") for n in names)  # embedders, head, norms stay as they are
    assert not any("motion_" in n for n in names)
    by_hand = copy.deepcopy(base)  # the same rounding written out: weight -> fp8 -> compute dtype
    modules = dict(by_hand.named_modules())
    with torch.no_grad():
        for n in names:
            for p in modules[n].parameters():
                p.copy_(p.to(FP8).to(compute))
    model = copy.deepcopy(base)
    count = enable_fp8_storage(model, compute_dtype=compute)
    stored = dict(model.named_modules())
    assert stored["blocks.0.attn1.to_q"].weight.dtype == FP8
    assert stored["blocks.0.attn2.motion_k_proj"].weight.dtype == compute  # motion parts kept
    assert stored["condition_embedder.time_proj"].weight.dtype == compute
    assert count == sum(p.numel() for n in names for p in stored[n].parameters())
    out = _out(model, compute)
    assert torch.equal(out, _out(by_hand, compute))  # storage is exactly the fp8 rounding, compute unchanged
    # e4m3: 3 mantissa bits -> relative rounding error <= 2^-4 per normal weight
    w = base.blocks[1].ffn.net[0].proj.weight.float()
    w8 = w.to(FP8).float()
    normal = w.abs() >= 2**-6
    assert ((w8 - w).abs()[normal] / w.abs()[normal]).max() <= 2**-4 + 1e-6
    assert ((w8 - w).abs()[~normal]).max() <= 2**-10 + 1e-9
    assert 0 < _rel(out, _out(base, compute)) < 0.1


def _scaled_fp8_file(original, path, per_row=False, prefix="model.diffusion_model."):
    """A ComfyUI-style scaled fp8 file: 2-D weights of the blocks as fp8 + scale, the rest bf16."""
    sd, expected = {}, {}
    for key, value in original.items():
        if key.startswith("blocks.") and key.endswith(".weight") and value.ndim == 2:
            amax = value.abs().amax(dim=1, keepdim=True) if per_row else value.abs().max()
            scale = (amax / 448.0).float()
            w8 = (value / scale).to(FP8)
            sd[prefix + key] = w8
            sd[prefix + key[: -len("weight")] + ("weight_scale" if per_row else "scale_weight")] = (
                scale.flatten() if per_row else scale.reshape(())
            )
            sd[prefix + key[: -len("weight")] + "scale_input"] = torch.tensor(1.0)
            expected[key] = w8.float() * scale
        else:
            sd[prefix + key] = value.to(torch.bfloat16)
            expected[key] = value.to(torch.bfloat16).float()
    sd[prefix + "scaled_fp8"] = torch.zeros(2, dtype=FP8)
    save_file(sd, str(path))
    return expected


@pytest.mark.parametrize("per_row", [False, True])
def test_scaled_fp8_file_is_dequantized_with_its_scales(original, full, tmp_path, per_row):
    path = tmp_path / "wan2.1_i2v_tiny_fp8_scaled.safetensors"
    expected = _scaled_fp8_file(original, path, per_row=per_row)
    info = describe_single_file(path)
    assert info["fp8"] and info["scaled"] and info["config"].num_layers == 2 and info["config"].dim == 64
    model = load_wan_single_file(path, dtype=torch.float32, motion_dim=32)
    assert torch.equal(model.blocks[1].attn2.to_k.weight, expected["blocks.1.cross_attn.k.weight"])
    assert torch.equal(model.blocks[0].ffn.net[2].weight, expected["blocks.0.ffn.2.weight"])
    model.load_state_dict({k: v for k, v in full.state_dict().items() if "motion_" in k}, strict=False)
    # within fp8 error of the full-precision model (scaled: the scale keeps small weights normal)
    assert _rel(_out(model), _out(full)) < 0.05


def test_fp8_storage_straight_from_the_file(original, tmp_path):
    path = tmp_path / "scaled.safetensors"
    _scaled_fp8_file(original, path, prefix="diffusion_model.")
    plain = load_wan_single_file(path, dtype=torch.float32, motion_dim=32)
    model = load_wan_single_file(path, dtype=torch.float32, motion_dim=32, fp8_storage=True)
    assert model.blocks[0].attn1.to_q.weight.dtype == FP8  # never held in full precision
    assert model.blocks[0].attn2.motion_k_proj.weight.dtype == torch.float32
    assert model.blocks[0].norm2.weight.dtype == torch.float32
    enable_fp8_storage(model, compute_dtype=torch.float32)
    reference = copy.deepcopy(plain)
    enable_fp8_storage(reference, compute_dtype=torch.float32)
    assert torch.equal(_out(model), _out(reference))


def _write_gguf(original, path, quantize=True):
    gguf = pytest.importorskip("gguf", reason="the gguf package (extra 'gguf') is not installed")
    writer = gguf.GGUFWriter(str(path), "wan")
    dequantized = {}
    for key, value in original.items():
        array = value.float().numpy()
        if quantize and array.ndim == 2 and array.shape[1] % 32 == 0 and array.size > 1024:
            q = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(key, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            # scale (f16) x int8, exact in f32; diffusers forms the product in float16, hence the rounding
            exact = torch.from_numpy(gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0).copy())
            dequantized[key] = exact.half().float()
        else:
            writer.add_tensor(key, array)
            dequantized[key] = value.float()
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dequantized


def test_gguf_file_loads_and_equals_its_dequantized_weights(original, full, tmp_path):
    from diffusers.quantizers.gguf.utils import GGUFLinear

    path = tmp_path / "wan2.1-i2v-tiny-Q8_0.gguf"
    dequantized = _write_gguf(original, path)
    assert describe_single_file(path)["config"].num_layers == 2
    model = load_wan_gguf(path, compute_dtype=torch.float32, motion_dim=32)
    assert isinstance(model.blocks[0].attn1.to_q, GGUFLinear)  # stays packed, dequantized per forward
    assert model.blocks[0].attn1.to_q.weight.dtype == torch.uint8
    motion = {k: v for k, v in full.state_dict().items() if "motion_" in k}
    assert all(torch.equal(model.state_dict()[k], torch.zeros_like(v)) for k, v in motion.items())
    model.load_state_dict(motion, strict=False)
    # the same model built from the dequantized tensors, in full precision
    reference_path = tmp_path / "dequantized.safetensors"
    save_file(dequantized, str(reference_path))
    reference = load_wan_single_file(reference_path, dtype=torch.float32, motion_dim=32)
    reference.load_state_dict(motion, strict=False)
    torch.testing.assert_close(_out(model), _out(reference), rtol=1e-5, atol=1e-5)
    assert _rel(_out(model), _out(full)) < 0.02  # Q8_0 error


def test_single_file_dispatches_gguf(original, tmp_path):
    path = tmp_path / "plain.gguf"
    _write_gguf(original, path, quantize=False)
    model = load_wan_single_file(path, dtype=torch.float32, motion_dim=32)
    assert model.config.num_layers == 2


def test_text_to_video_and_foreign_files_are_refused(original, tmp_path):
    t2v = {k: v for k, v in original.items() if "_img" not in k and not k.startswith("img_emb")}
    save_file(t2v, str(tmp_path / "t2v.safetensors"))
    with pytest.raises(CheckpointError, match=r"t2v\.safetensors: a text-to-video Wan DiT"):
        load_wan_single_file(tmp_path / "t2v.safetensors")
    save_file({"encoder.weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match=r"other\.safetensors: not a Wan2.1 DiT"):
        load_wan_single_file(tmp_path / "other.safetensors")
