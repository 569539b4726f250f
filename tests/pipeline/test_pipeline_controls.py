"""Motion controls through the pipeline: neutral controls change nothing, strengths reach the encoder,
a control on one face leaves the other face's motion attention bit-identical, the motion step range,
settings/CLI parsing and errors, and the --json record.

The synthetic tiny model (shipped, trained) runs on a two-character case of the synthetic world, so
the motion attention is non-trivial; 9 frames, 128x64, 3-4 steps keep each run near a second.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fantasy_portrait.errors import InputError
from fantasy_portrait.motion.controls import PART_SLICES, MotionControls, portrait_features
from fantasy_portrait.pipeline import conditioning
from fantasy_portrait.pipeline.sampler import GuidedDenoiser, motion_timestep_range
from fantasy_portrait.pipeline.schedule import flow_match_sigmas
from fantasy_portrait.pipeline.settings import AnimationSettings

FAST = dict(max_size=128, fps=25.0, num_steps=3, window_frames=0, progress=False, seed=1)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """(pipeline on the shipped tiny model, portrait path, driver paths, portrait array)."""
    from fantasy_portrait.io import save_image, write_video
    from fantasy_portrait.synthetic.cases import FPS, make_case
    from fantasy_portrait.synthetic.tiny_model import build_pipeline

    folder = tmp_path_factory.mktemp("controls_case")
    case = make_case(5, num_frames=9)  # a case MediaPipe detects in every frame after H.264 (not all do)
    save_image(folder / "portrait.png", case.portrait)
    drivers = []
    for i, d in enumerate(case.drivers):
        write_video(folder / f"driver_{i}.mp4", d.frames, fps=FPS)
        drivers.append(folder / f"driver_{i}.mp4")
    return build_pipeline(), folder / "portrait.png", drivers, case.portrait


class EncoderInputs:
    """Records the features the expression encoder is called with (one call per face)."""

    def __init__(self, module):
        self.inputs: list[torch.Tensor] = []
        self.handle = module.register_forward_pre_hook(lambda m, args: self.inputs.append(args[0].clone()))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


class MotionAttentionOutputs:
    """Records every motion-attention output of the transformer (block by block, step by step)."""

    def __init__(self, monkeypatch):
        import fantasy_portrait.models.transformer as tr

        self.outputs: list[tuple[torch.Tensor, object]] = []
        original = tr.motion_attention

        def recording(query, keys, values, condition, *args, **kwargs):
            out = original(query, keys, values, condition, *args, **kwargs)
            self.outputs.append((out.clone(), condition))
            return out

        monkeypatch.setattr(tr, "motion_attention", recording)


def test_neutral_controls_equal_the_pipeline_without_controls_exactly(synthetic, monkeypatch):
    pipe, image, drivers, _ = synthetic
    plain = pipe(image, drivers, relative="none", **FAST)
    neutral = pipe(
        image,
        drivers,
        strength=["1", "1:head=1", "mouth=1"],
        animate="all",
        relative="none",
        relative_frame=4,
        motion_multiplier="1",
        motion_smoothing="0",
        motion_steps="0:1",
        **FAST,
    )
    # the pipeline as it was before controls: windows built without them, every step with motion
    original_windows = conditioning.face_windows
    monkeypatch.setattr(
        conditioning,
        "face_windows",
        lambda enc, motion, frames=None, **kw: original_windows(enc, motion, frames),
    )
    original_init = GuidedDenoiser.__init__

    def init(self, *args, **kwargs):
        kwargs.pop("motion_range", None)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(GuidedDenoiser, "__init__", init)
    reference = pipe(image, drivers, relative="none", **FAST)
    assert np.array_equal(plain.frames, reference.frames)
    assert np.array_equal(neutral.frames, reference.frames)
    assert plain.transformer_calls == neutral.transformer_calls == reference.transformer_calls


def test_part_strength_reaches_the_encoder_as_the_portraits_own_features(synthetic):
    pipe, image, drivers, portrait = synthetic
    with EncoderInputs(pipe.expression_encoder) as plain:
        a = pipe(image, drivers, relative="none", **FAST)
    with EncoderInputs(pipe.expression_encoder) as muted:
        b = pipe(image, drivers, relative="none", strength="mouth=0", **FAST)
    assert not np.array_equal(a.frames, b.frames)
    from fantasy_portrait.faces import get_backend
    from fantasy_portrait.faces.portrait import find_portrait_faces

    faces = find_portrait_faces(portrait, get_backend(pipe.face_backend))
    own = portrait_features(portrait, faces, pipe.motion_encoder, range(len(faces)))
    mouth = PART_SLICES["mouth"]
    assert len(plain.inputs) == len(muted.inputs) == 2
    for face, (x, y) in enumerate(zip(plain.inputs, muted.inputs)):
        assert torch.equal(y[0, :, : mouth.start], x[0, :, : mouth.start])  # head, eye, emotion untouched
        assert torch.equal(y[0, :, mouth], own[face][mouth].expand(y.shape[1], -1))
        assert not torch.equal(x[0, :, mouth], y[0, :, mouth])
    assert b.summary()["controls"]["faces"][1]["strength"]["mouth"] == 0.0


def test_a_control_on_face_1_leaves_face_0_motion_attention_bit_identical(synthetic, monkeypatch):
    pipe, image, drivers, _ = synthetic
    rec = MotionAttentionOutputs(monkeypatch)
    pipe(image, drivers, relative="none", **FAST)
    plain, rec.outputs = rec.outputs, []
    pipe(image, drivers, strength="1:head=0,1:mouth=0.3", relative="1:all", motion_smoothing="1:2", **FAST)
    ctrl = rec.outputs
    assert len(plain) == len(ctrl) > 0
    # every step: face 0's windows are bit-identical, face 1's differ
    (_, cond_a), (_, cond_b) = plain[0], ctrl[0]
    assert torch.equal(cond_a.windows[0], cond_b.windows[0])
    assert not torch.equal(cond_a.windows[1], cond_b.windows[1])
    # the first motion attention (block 0 of step 0: the same video tokens in both runs): face 0's tokens
    # get bit-identical outputs, face 1's do not
    out_a, out_b = plain[0][0], ctrl[0][0]
    labels = cond_a.labels.reshape(-1)
    frames = out_a.shape[1] // labels.numel()
    per_token = labels.repeat(frames)
    face0, face1 = per_token == 1, per_token == 2
    assert face0.any() and face1.any()
    assert torch.equal(out_a[:, face0], out_b[:, face0])
    assert not torch.equal(out_a[:, face1], out_b[:, face1])


def test_motion_step_range_runs_motion_only_in_its_steps(synthetic, monkeypatch):
    pipe, image, drivers, _ = synthetic
    args = {**FAST, "num_steps": 4}
    rec = MotionAttentionOutputs(monkeypatch)
    full = pipe(image, drivers, relative="none", **args)
    calls_full = len(rec.outputs)
    rec.outputs.clear()
    half = pipe(image, drivers, relative="none", motion_steps="0:0.5", **args)
    blocks = int(pipe.transformer.config.num_layers)
    assert calls_full == 4 * blocks and len(rec.outputs) == 2 * blocks
    assert not np.array_equal(full.frames, half.frames)
    assert half.transformer_calls == full.transformer_calls == 4  # one (smaller) batched call per step


@pytest.mark.parametrize("num_steps", [1, 4, 7, 30])
def test_motion_timestep_range_holds_exactly_the_marked_steps(num_steps):
    from fantasy_portrait.motion.controls import motion_step_mask

    sigmas = flow_match_sigmas(num_steps)
    for steps in [(0.0, 1.0), (0.0, 0.5), (0.5, 1.0), (0.2, 0.7), (0.0, 0.1), (0.9, 1.0)]:
        try:
            mask = motion_step_mask(num_steps, steps)
        except InputError:
            continue
        rng = motion_timestep_range(sigmas, mask)
        denoiser = GuidedDenoiser.__new__(GuidedDenoiser)
        denoiser.motion_range = rng
        got = [denoiser.motion_active(torch.tensor([float(s) * 1000.0])) for s in sigmas]
        assert got == mask and (rng is None) == all(mask)


def test_settings_cli_flags_repeat_and_bad_values_are_one_error_each():
    import argparse

    parser = argparse.ArgumentParser()
    AnimationSettings.add_arguments(parser)
    args = parser.parse_args(
        [
            "--strength",
            "mouth=0.5",
            "--strength",
            "1:head=0",
            "--relative",
            "head",
            "--motion-steps",
            "0.1:0.9",
        ]
    )
    s = AnimationSettings.from_args(args)
    assert s.strength == ["mouth=0.5", "1:head=0"] and s.relative == ["head"]
    c = s.motion_controls()
    assert c.for_face(1).strength == {"head": 0.0, "eye": 1.0, "emotion": 1.0, "mouth": 0.5}
    assert c.motion_steps == (0.1, 0.9)
    assert AnimationSettings.from_args(parser.parse_args([])).motion_controls().is_identity(4) == (
        AnimationSettings().relative in ("none", (), None)
    )
    for argv, needle in [
        (["--strength", "nose=1"], "unknown part 'nose'"),
        (["--strength", "head=-1"], "must be >= 0"),
        (["--relative", "sideways"], "--relative 'sideways'"),
        (["--motion-steps", "0.9:0.1"], "--motion-steps"),
        (["--relative-frame", "-2"], "--relative-frame"),
    ]:
        with pytest.raises(InputError, match=needle):
            AnimationSettings.from_args(parser.parse_args(argv))
    # the Python API takes the same texts, lists and dicts
    s = AnimationSettings(strength={"mouth": 0.5, 1: {"head": 0}}, animate="lips").validate()
    assert s.motion_controls().for_face(1).strength == {"head": 0.0, "eye": 0.0, "emotion": 0.0, "mouth": 0.5}
    assert json.dumps(s.to_dict())  # recordable


def test_face_out_of_range_fails_before_any_model_work(synthetic):
    pipe, image, drivers, _ = synthetic
    with EncoderInputs(pipe.expression_encoder) as rec:
        with pytest.raises(
            InputError, match=r"--strength '2:head=0': face 2 is out of range: the portrait has 2"
        ):
            pipe(image, drivers, strength="2:head=0", **FAST)
        with pytest.raises(InputError, match="--relative-frame 9: the clip has 9 driving frames"):
            pipe(image, drivers, relative="head", relative_frame=9, **FAST)
    assert rec.inputs == []


def test_cli_json_records_the_controls_and_errors_are_one_line(tiny_weights, assets, tmp_path, capsys):
    from fantasy_portrait.cli import main

    common = ["--weights", str(tiny_weights), "--max-frames", "5", "--max-size", "64", "--steps", "2"]
    image, video = str(assets / "fp_two_person.png"), str(assets / "fp_two_person.mp4")
    out = tmp_path / "ok.mp4"
    code = main(
        ["animate", image, video, *common, "--no-progress", "--json", "-o", str(out), "--strength", "1:mouth=0.5",
         "--animate", "0:lips", "--relative", "head", "--motion-steps", "0:0.5"]
    )  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and out.is_file()
    controls = summary["controls"]
    assert controls["strength"] == ["1:mouth=0.5"] and controls["motion_steps"] == [0.0, 0.5]
    assert controls["faces"][0]["strength"] == {"head": 0.0, "eye": 0.0, "emotion": 0.0, "mouth": 1.0}
    assert controls["faces"][1]["strength"]["mouth"] == 0.5 and controls["faces"][1]["relative"] == ["head"]
    assert summary["settings"]["strength"] == ["1:mouth=0.5"]
    for extra, needle in [
        (["--strength", "nose=1"], "unknown part 'nose'"),
        (["--strength", "3:head=0"], "face 3 is out of range"),
        (["--strength", "head=-0.5"], "must be >= 0"),
    ]:
        bad = tmp_path / "bad.mp4"
        code = main(["animate", image, video, *common, "--no-progress", "-o", str(bad), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and not bad.exists()
        assert err[-1].startswith("error:") and needle in err[-1]


def test_controls_need_landmarks_of_hand_given_faces(synthetic):
    pipe, image, drivers, portrait = synthetic
    boxes = np.array([[4, 4, 60, 60], [68, 4, 124, 60]], np.float32)
    with pytest.raises(InputError, match="portrait face 0: .* given by --face-boxes"):
        pipe(image, drivers, face_boxes=boxes, strength="0:head=0", **FAST)
    # controls that need no portrait features work with hand-given boxes
    pipe(image, drivers, face_boxes=boxes, relative="none", motion_multiplier="1.5", **FAST)


def test_training_windows_are_unchanged_by_default():
    """The trainer calls face_windows without controls; neutral controls give the same tensors."""
    from fantasy_portrait.synthetic.tiny_model import build_models

    _, encoder = build_models()
    motion = torch.randn(2, 3, 9, 554, generator=torch.Generator().manual_seed(0))
    plain = conditioning.face_windows(encoder, motion)
    same = conditioning.face_windows(encoder, motion, controls=MotionControls())
    assert all(torch.equal(a, b) for a, b in zip(plain, same))
    own = torch.randn(2, 3, 554, generator=torch.Generator().manual_seed(1))
    muted = conditioning.face_windows(
        encoder, motion, controls=MotionControls.create(strength="2:0"), portrait_motion=own
    )
    assert (
        torch.equal(muted[0], plain[0])
        and torch.equal(muted[1], plain[1])
        and not torch.equal(muted[2], plain[2])
    )
