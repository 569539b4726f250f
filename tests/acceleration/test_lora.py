"""LoRAs: every layout loads and equals the weights merged by hand; the modulation diff is applied;
LoRAs of another model fail with the file's name."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file

from fantasy_portrait.errors import CheckpointError
from fantasy_portrait.models.loading import build_from_preset
from fantasy_portrait.models.lora import LoraSpec, apply_loras

D, FFN, RANK = 64, 128, 4  # tiny preset: width 64, FFN 128, 2 blocks


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    transformer, _ = build_from_preset("tiny", device="cpu")
    return transformer.eval()


def _inputs():
    g = torch.Generator().manual_seed(3)
    return dict(
        hidden_states=torch.randn(1, 36, 2, 8, 8, generator=g),
        timestep=torch.tensor([700.0]),
        encoder_hidden_states=torch.randn(1, 512, 32, generator=g),
        encoder_hidden_states_image=torch.randn(1, 257, 1280, generator=g),
    )


def _out(model):
    with torch.no_grad():
        return model(**_inputs())


def _lightx2v_lora(alpha: float | None = 2.0, seed: int = 1) -> dict[str, torch.Tensor]:
    """A LightX2V-style LoRA: low-rank pairs, diff_b, norm diffs, a full-weight diff, diff_m."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.1

    sd = {}
    for i in range(2):
        p = f"diffusion_model.blocks.{i}"
        for attn in ("self_attn", "cross_attn"):
            for o in ("q", "k", "v", "o"):
                sd[f"{p}.{attn}.{o}.lora_down.weight"] = r(RANK, D)
                sd[f"{p}.{attn}.{o}.lora_up.weight"] = r(D, RANK)
                sd[f"{p}.{attn}.{o}.diff_b"] = r(D)
                if alpha is not None:
                    sd[f"{p}.{attn}.{o}.alpha"] = torch.tensor(alpha)
        for o in ("k_img", "v_img"):
            sd[f"{p}.cross_attn.{o}.lora_down.weight"] = r(RANK, D)
            sd[f"{p}.cross_attn.{o}.lora_up.weight"] = r(D, RANK)
        sd[f"{p}.ffn.0.lora_down.weight"] = r(RANK, D)
        sd[f"{p}.ffn.0.lora_up.weight"] = r(FFN, RANK)
        sd[f"{p}.ffn.2.lora_down.weight"] = r(RANK, FFN)
        sd[f"{p}.ffn.2.lora_up.weight"] = r(D, RANK)
        sd[f"{p}.ffn.2.diff_b"] = r(D)
        sd[f"{p}.cross_attn.norm_k_img.diff"] = r(D)
        sd[f"{p}.norm3.diff"] = r(D)  # diffusers norm2 (the cross-attention norm)
        sd[f"{p}.norm3.diff_b"] = r(D)
        sd[f"{p}.diff_m"] = r(1, 6, D)
    sd["diffusion_model.head.head.diff_b"] = r(64)  # bias diff without a low-rank pair
    sd["diffusion_model.text_embedding.0.diff"] = r(D, 32)  # full-weight diff
    return sd


_NAMES = {
    "self_attn": "attn1",
    "cross_attn": "attn2",
    "q": "to_q",
    "k": "to_k",
    "v": "to_v",
    "o": "to_out.0",
    "k_img": "add_k_proj",
    "v_img": "add_v_proj",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}


def _merge_by_hand(model, sd, scale=1.0, skip_modulation=False):
    """W + scale * alpha/r * up @ down, b + scale * diff_b, and every diff added, written out here
    without the library's converter (names mapped by this table)."""
    merged = copy.deepcopy(model)
    p = dict(merged.named_parameters())
    with torch.no_grad():
        for i in range(2):
            src = f"diffusion_model.blocks.{i}"
            layers = [
                (f"{a}.{o}", f"attn{1 if a == 'self_attn' else 2}.{_NAMES[o]}")
                for a in ("self_attn", "cross_attn")
                for o in "qkvo"
            ]
            layers += [(f"cross_attn.{o}", f"attn2.{_NAMES[o]}") for o in ("k_img", "v_img")]
            layers += [("ffn.0", "ffn.net.0.proj"), ("ffn.2", "ffn.net.2")]
            for theirs, ours in layers:
                down = sd[f"{src}.{theirs}.lora_down.weight"]
                up = sd[f"{src}.{theirs}.lora_up.weight"]
                alpha = sd.get(f"{src}.{theirs}.alpha")
                factor = scale * (float(alpha) / down.shape[0] if alpha is not None else 1.0)
                p[f"blocks.{i}.{ours}.weight"] += factor * up @ down
                if f"{src}.{theirs}.diff_b" in sd:
                    p[f"blocks.{i}.{ours}.bias"] += scale * sd[f"{src}.{theirs}.diff_b"]
            p[f"blocks.{i}.attn2.norm_added_k.weight"] += scale * sd[f"{src}.cross_attn.norm_k_img.diff"]
            p[f"blocks.{i}.norm2.weight"] += scale * sd[f"{src}.norm3.diff"]
            p[f"blocks.{i}.norm2.bias"] += scale * sd[f"{src}.norm3.diff_b"]
            if not skip_modulation:
                p[f"blocks.{i}.scale_shift_table"] += scale * sd[f"{src}.diff_m"]
        p["proj_out.bias"] += scale * sd["diffusion_model.head.head.diff_b"]
        p["condition_embedder.text_embedder.linear_1.weight"] += (
            scale * sd["diffusion_model.text_embedding.0.diff"]
        )
    return merged


def _write(tmp_path, name, sd):
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("alpha", [2.0, None])
def test_lightx2v_layout_equals_the_weights_merged_by_hand(base, tmp_path, fuse, alpha):
    sd = _lightx2v_lora(alpha)
    path = _write(tmp_path, "lightx2v.safetensors", sd)
    model = copy.deepcopy(base)
    loaded = apply_loras(model, [f"{path}:0.7"], fuse=fuse)
    expected = _merge_by_hand(base, sd, scale=0.7)
    torch.testing.assert_close(_out(model), _out(expected), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(_out(base), _out(expected), atol=1e-3)  # the LoRA changes the output
    info = loaded.infos[0]
    assert info.low_rank_layers == 2 * 12 and info.diffs == {
        "bias": 1,
        "norm": 6,
        "modulation": 2,
        "weight": 1,
    }
    if fuse:  # fused: plain Linear layers again, the weights themselves equal the hand merge
        assert type(model.blocks[0].attn1.to_q) is torch.nn.Linear
        for name, value in expected.state_dict().items():
            torch.testing.assert_close(model.state_dict()[name], value, rtol=1e-5, atol=1e-6)


def test_modulation_diff_is_applied_although_diffusers_drops_it(base, tmp_path):
    """The trap: diffusers' Wan converter logs and drops ``blocks.N.diff_m``; we add it ourselves."""
    from diffusers.loaders.lora_pipeline import WanLoraLoaderMixin

    sd = _lightx2v_lora()
    kept = {k: v for k, v in sd.items() if "norm" not in k and "embedding" not in k and "head" not in k}
    converted = WanLoraLoaderMixin.lora_state_dict(kept)
    assert not any("scale_shift_table" in k or "diff_m" in k for k in converted)  # diffusers alone drops it
    model = copy.deepcopy(base)
    apply_loras(model, [_write(tmp_path, "m.safetensors", sd)])
    torch.testing.assert_close(
        model.blocks[1].scale_shift_table,
        base.blocks[1].scale_shift_table + sd["diffusion_model.blocks.1.diff_m"],
    )
    without = _merge_by_hand(base, sd, skip_modulation=True)
    assert not torch.allclose(_out(model), _out(without), atol=1e-4)


def test_diffusers_layout_and_prefixes(base, tmp_path):
    """diffusers/peft keys (with and without prefixes, peft's '.default') equal the hand merge."""
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(RANK, D, generator=g) * 0.1, torch.randn(D, RANK, generator=g) * 0.1
    fa, fb = torch.randn(RANK, D, generator=g) * 0.1, torch.randn(FFN, RANK, generator=g) * 0.1
    expected = copy.deepcopy(base)
    with torch.no_grad():
        expected.blocks[1].attn2.to_k.weight += b @ a
        expected.blocks[0].ffn.net[0].proj.weight += fb @ fa
    for prefix, suffix in (("transformer.", ""), ("", ""), ("base_model.model.", ".default")):
        sd = {
            f"{prefix}blocks.1.attn2.to_k.lora_A{suffix}.weight": a,
            f"{prefix}blocks.1.attn2.to_k.lora_B{suffix}.weight": b,
            f"{prefix}blocks.0.ffn.net.0.proj.lora_A{suffix}.weight": fa,
            f"{prefix}blocks.0.ffn.net.0.proj.lora_B{suffix}.weight": fb,
        }
        model = copy.deepcopy(base)
        apply_loras(model, [_write(tmp_path, "d.safetensors", sd)])
        torch.testing.assert_close(_out(model), _out(expected), rtol=1e-5, atol=1e-5)


def test_two_loras_add_up_and_unfused_ones_can_be_removed(base, tmp_path):
    one, two = _lightx2v_lora(seed=1), _lightx2v_lora(seed=2)
    model = copy.deepcopy(base)
    loaded = apply_loras(
        model,
        [f"{_write(tmp_path, 'a.safetensors', one)}:0.5", _write(tmp_path, "b.safetensors", two)],
        fuse=False,
    )
    expected = _merge_by_hand(_merge_by_hand(base, one, 0.5), two, 1.0)
    torch.testing.assert_close(_out(model), _out(expected), rtol=1e-5, atol=1e-5)
    loaded.remove()
    assert torch.equal(_out(model), _out(base))


def test_lora_spec_parsing():
    assert LoraSpec.parse("a/b.safetensors") == LoraSpec(__import__("pathlib").Path("a/b.safetensors"), 1.0)
    assert LoraSpec.parse("a/b.safetensors:0.8").scale == 0.8
    assert str(LoraSpec.parse("C:/x/b.safetensors").path) == "C:/x/b.safetensors"


def test_lora_matching_no_weights_names_the_file(base, tmp_path):
    sd = {
        "transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 64),
        "transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(64, 4),
    }
    path = _write(tmp_path, "flux.safetensors", sd)
    with pytest.raises(CheckpointError, match=r"flux\.safetensors: the LoRA matches no weights"):
        apply_loras(copy.deepcopy(base), [path])


def test_lora_of_another_model_size_names_the_file(base, tmp_path):
    sd = {k: v for k, v in _lightx2v_lora().items() if "lora_" in k or k.endswith(".alpha")}
    sd["diffusion_model.blocks.0.self_attn.q.lora_down.weight"] = torch.zeros(RANK, 1536)  # a 1.3B-wide LoRA
    path = _write(tmp_path, "wan13b.safetensors", sd)
    model = copy.deepcopy(base)
    with pytest.raises(
        CheckpointError, match=r"wan13b\.safetensors: LoRA for another model \(shape mismatch\)"
    ):
        apply_loras(model, [path])
    assert torch.equal(_out(model), _out(base))  # nothing was applied


def test_lora_with_more_blocks_than_the_model_names_the_file(base, tmp_path):
    sd = _lightx2v_lora()
    sd["diffusion_model.blocks.5.self_attn.q.lora_down.weight"] = torch.zeros(RANK, D)
    sd["diffusion_model.blocks.5.self_attn.q.lora_up.weight"] = torch.zeros(D, RANK)
    path = _write(tmp_path, "deep.safetensors", sd)
    with pytest.raises(CheckpointError, match=r"deep\.safetensors: LoRA for another model"):
        apply_loras(copy.deepcopy(base), [path])


def test_modulation_diff_of_another_width_names_the_file(base, tmp_path):
    sd = {"diffusion_model.blocks.0.diff_m": torch.zeros(1, 6, 1536)}
    path = _write(tmp_path, "m13b.safetensors", sd)
    with pytest.raises(
        CheckpointError, match=r"m13b\.safetensors: LoRA for another model \(shape mismatch\)"
    ):
        apply_loras(copy.deepcopy(base), [path])


def test_not_a_lora_names_the_file(base, tmp_path):
    path = _write(tmp_path, "other.safetensors", {"encoder.conv.weight": torch.zeros(3, 3)})
    with pytest.raises(CheckpointError, match=r"other\.safetensors: not a LoRA for a Wan DiT"):
        apply_loras(copy.deepcopy(base), [path])
