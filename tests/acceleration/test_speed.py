"""Regional compilation of the repeated block and the attention backends."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from fantasy_portrait.errors import InputError
from fantasy_portrait.models.loading import build_from_preset
from fantasy_portrait.models.motion_attention import MotionCondition
from fantasy_portrait.models.speed import attention, check_attention_backend, compile_blocks


def _model():
    torch.manual_seed(0)
    model, _ = build_from_preset("tiny", device="cpu")
    for m in model.motion_modules():
        torch.nn.init.normal_(m.weight, std=0.2)
    return model.eval()


def _call(model):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        return model(
            torch.randn(2, 36, 2, 8, 8, generator=g),
            timestep=torch.tensor([700.0, 700.0]),
            encoder_hidden_states=torch.randn(2, 512, 32, generator=g),
            encoder_hidden_states_image=torch.randn(2, 257, 1280, generator=g),
            motion=MotionCondition([torch.randn(1, 2, 97, 32, generator=g)]),
            motion_scale=torch.tensor([1.0, 0.0]),
        )


def test_regional_compilation_compiles_every_block_and_keeps_the_output():
    model = _model()
    ref = _call(model)
    assert model._repeated_blocks == ["MotionWanBlock"]
    # the 'eager' backend runs dynamo's tracing without a C++ toolchain: the wiring, not the kernels
    assert compile_blocks(model, backend="eager") == len(model.blocks)
    assert all(b._compiled_call_impl is not None for b in model.blocks)
    torch.testing.assert_close(_call(model), ref)


def test_native_attention_is_the_default_and_unchanged():
    model = _model()
    ref = _call(model)
    with attention("native"):
        torch.testing.assert_close(_call(model), ref)
    with attention(None):
        torch.testing.assert_close(_call(model), ref)
    assert check_attention_backend("native") == "native"


@pytest.mark.parametrize(
    "name, package, module",
    [("flash", "flash-attn", "flash_attn"), ("sage", "sageattention", "sageattention")],
)
def test_missing_backend_is_a_one_line_error(name, package, module):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here: the missing-package message cannot be shown")
    with pytest.raises(InputError) as info:
        with attention(name):
            pass
    message = str(info.value)
    assert message.startswith(f"--attention {name}:") and package in message and "\n" not in message


def test_unknown_backend():
    with pytest.raises(InputError, match="choose from native, flash, sage"):
        check_attention_backend("xformers")


def test_one_compiled_graph_serves_every_block():
    """The block graph must not depend on the block index (per-block recompiles would exhaust dynamo's
    cache limit at 40 blocks): compiling 2 or 4 blocks traces the same number of frames, and later
    calls trace nothing new."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from fantasy_portrait.models.config import PRESETS
    from fantasy_portrait.models.loading import build_transformer

    frames = []
    for layers in (2, 4):
        torch._dynamo.reset()
        counters.clear()
        kwargs = PRESETS["tiny"].wan.to_diffusers_kwargs()
        kwargs.update(num_layers=layers, motion_dim=32)
        torch.manual_seed(0)
        model = build_transformer(kwargs, device="cpu").eval()
        compile_blocks(model, backend="eager")
        _call(model)
        first = counters["frames"]["total"]
        _call(model)
        _call(model)
        assert counters["frames"]["total"] == first
        frames.append(first)
    torch._dynamo.reset()
    assert frames[0] == frames[1]
