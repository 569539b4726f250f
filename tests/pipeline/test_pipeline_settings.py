"""One settings object for the CLI, the Python API and front ends; step callbacks and cancellation."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest

from fantasy_portrait.errors import InputError
from fantasy_portrait.pipeline.settings import MEMORY_MODES, AnimationSettings, describe, resolve


def _parse(*argv) -> AnimationSettings:
    parser = argparse.ArgumentParser()
    AnimationSettings.add_arguments(parser)
    return AnimationSettings.from_args(parser.parse_args(list(argv)))


def test_cli_defaults_are_the_dataclass_defaults():
    assert _parse() == AnimationSettings()


def test_cli_flags_fill_the_fields():
    s = _parse(
        "--steps", "4", "--seed", "9", "--fps", "0", "--window-frames", "0", "--sequential-branches",
        "--no-progress", "--map", "0:1,1:0", "--face-boxes", "1,2,30,40;50,2,80,40", "--memory", "sequential",
    )  # fmt: skip
    assert (s.num_steps, s.seed, s.fps, s.window_frames) == (4, 9, 0.0, None)
    assert s.batch_branches is False and s.progress is False and s.mapping == "0:1,1:0"
    assert s.memory_mode == "sequential"
    assert np.asarray(s.face_boxes).shape == (2, 4)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--steps", "0"], "--steps must be >= 1"),
        (["--max-size", "8"], "--max-size must be >= 16"),
        (["--fps", "-1"], "--fps must be >= 0"),
        (["--window-frames", "10"], "--window-frames must be 0 or 4k\\+1"),
        (["--max-frames", "0"], "--max-frames must be >= 1"),
    ],
)
def test_validation_names_the_option(argv, needle):
    with pytest.raises(InputError, match=needle) as info:
        _parse(*argv)
    assert "\n" not in str(info.value)


def test_keyword_overrides_and_unknown_names():
    base = AnimationSettings(num_steps=5)
    s = resolve(base, {"seed": 3})
    assert (s.num_steps, s.seed) == (5, 3) and base.seed == 0  # the given settings are not changed
    with pytest.raises(InputError, match="unknown animation setting.*num_step"):
        resolve(base, {"num_step": 3})
    with pytest.raises(InputError, match="--steps must be >= 1"):
        resolve(None, {"num_steps": 0})


def test_every_field_has_help_and_describe_lists_them():
    info = {d["name"]: d for d in describe()}
    assert set(info) == {f.name for f in dataclasses.fields(AnimationSettings)}
    assert all(d["help"] for d in info.values())
    assert info["num_steps"]["flag"] == "--steps" and info["num_steps"]["min"] == 1
    assert info["memory_mode"]["choices"] == MEMORY_MODES and "auto" in MEMORY_MODES
    s = AnimationSettings(face_boxes=np.array([[1, 2, 3, 4]]))
    assert s.to_dict()["face_boxes"] == [[1, 2, 3, 4]]


def test_settings_object_and_keywords_give_the_same_run(stub_pipe, synthetic_media):
    args = dict(max_frames=5, max_size=64, num_steps=1, progress=False, seed=4)
    a = stub_pipe(synthetic_media["portrait"], synthetic_media["driver"], AnimationSettings(**args))
    b = stub_pipe(synthetic_media["portrait"], synthetic_media["driver"], AnimationSettings(seed=1), **args)
    assert np.array_equal(a.frames, b.frames)


def test_step_callback_sees_every_step_and_can_cancel(stub_pipe, synthetic_media, tmp_path):
    from fantasy_portrait.pipeline.pipeline import Cancelled

    args = dict(max_frames=5, max_size=64, num_steps=3, progress=False)
    seen = []

    def record(pipe, step, timestep, kwargs):
        seen.append((step, float(timestep), tuple(kwargs["latents"].shape)))
        return {}

    stub_pipe(synthetic_media["portrait"], synthetic_media["driver"], callback_on_step_end=record, **args)
    assert [s[0] for s in seen] == [0, 1, 2]
    assert seen[0][1] == pytest.approx(1000.0) and seen[0][1] > seen[1][1] > seen[2][1]

    steps = []

    def cancel(pipe, step, timestep, kwargs):
        steps.append(step)
        pipe.interrupt = step == 0
        return {}

    out = tmp_path / "cancelled.mp4"
    with pytest.raises(Cancelled, match="after denoising step 1"):
        stub_pipe(
            synthetic_media["portrait"],
            synthetic_media["driver"],
            output=out,
            callback_on_step_end=cancel,
            **args,
        )
    assert steps == [0] and not out.exists() and not list(tmp_path.iterdir())
    # the pipeline is usable again afterwards (interrupt is reset by the next call)
    assert stub_pipe(synthetic_media["portrait"], synthetic_media["driver"], **args).frames.shape[0] == 5


def test_step_callback_can_replace_the_latents(stub_pipe, synthetic_media):
    import torch

    args = dict(max_frames=5, max_size=64, num_steps=2, progress=False)

    def zero_latents(pipe, step, timestep, kwargs):
        return {"latents": torch.zeros_like(kwargs["latents"])}

    a = stub_pipe(
        synthetic_media["portrait"], synthetic_media["driver"], callback_on_step_end=zero_latents, **args
    )
    b = stub_pipe(
        synthetic_media["portrait"],
        synthetic_media["driver"],
        seed=5,
        callback_on_step_end=zero_latents,
        **args,
    )
    assert np.array_equal(a.frames, b.frames)  # the result is the decode of zero latents, whatever the noise
