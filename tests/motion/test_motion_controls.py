"""Motion controls: parsing (with property tests), resolution per face, and the feature transforms."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fantasy_portrait.errors import InputError
from fantasy_portrait.motion.controls import (
    ALIASES,
    PART_SLICES,
    PARTS,
    PRESETS,
    FaceControls,
    FaceWord,
    MotionControls,
    PartValue,
    apply_controls,
    apply_face_controls,
    gaussian_smooth,
    motion_step_mask,
    parse_face_words,
    parse_motion_steps,
    parse_part_values,
)


def features(frames: int = 9, seed: int = 0) -> torch.Tensor:
    return torch.randn(frames, 554, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ parsing
def test_parse_forms_of_the_cli_and_the_python_api():
    assert parse_part_values("mouth=0.5") == (PartValue(None, "mouth", 0.5),)
    assert parse_part_values(["1:head=0", "lips=0.2,eyes=1"]) == (
        PartValue(1, "head", 0.0),
        PartValue(None, "mouth", 0.2),
        PartValue(None, "eye", 1.0),
    )
    assert parse_part_values("0.7") == (PartValue(None, None, 0.7),)
    assert parse_part_values("2:0") == (PartValue(2, None, 0.0),)
    assert parse_part_values(0.5) == (PartValue(None, None, 0.5),)
    assert parse_part_values({"mouth": 0.5, 1: {"head": 0}}) == (
        PartValue(None, "mouth", 0.5),
        PartValue(1, "head", 0.0),
    )
    assert parse_part_values(" Mouth = 0.5 , ") == (PartValue(None, "mouth", 0.5),)
    assert parse_face_words("head,1:none", "--relative", ["none", "head", "all"]) == (
        FaceWord(None, "head"),
        FaceWord(1, "none"),
    )
    assert parse_motion_steps("0:0.6") == (0.0, 0.6)
    assert parse_motion_steps(None) == (0.0, 1.0)


@pytest.mark.parametrize(
    "spec,message",
    [
        ("nose=0.5", "unknown part 'nose'"),
        ("mouth=-0.5", "must be >= 0"),
        ("-1:head=0", "face -1 is negative"),
        ("x:head=0", "'x' is not a face number"),
        ("head=abc", "'abc' is not a number"),
        ("head=inf", "finite"),
        ("head=nan", "finite"),
        ("mouth", "give the part a value"),
        ("1:2:head=0", "expected [FACE:][PART=]VALUE"),
    ],
)
def test_bad_part_values_are_one_clear_error_each(spec, message):
    with pytest.raises(InputError) as err:
        MotionControls.create(strength=spec)
    text = str(err.value)
    assert message in text and "--strength" in text and "\n" not in text


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(relative="nose"), "--relative 'nose': unknown value"),
        (dict(animate="dance"), "--animate 'dance': unknown value"),
        (dict(relative_frame=-1), "must be >= 0"),
        (dict(relative_frame=1.5), "whole frame number"),
        (dict(motion_steps="0.8:0.2"), "START < END"),
        (dict(motion_steps="0:2"), "END <= 1"),
        (dict(motion_steps="half"), "START:END"),
        (dict(multiplier="mouth=-1"), "--motion-multiplier"),
        (dict(smoothing="head=-2"), "--motion-smoothing"),
    ],
)
def test_bad_other_options_are_one_clear_error_each(kwargs, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(")):
        MotionControls.create(**kwargs)


def test_face_index_out_of_range_is_checked_against_the_portrait():
    controls = MotionControls.create(strength="2:head=0")
    controls.check(num_faces=3)
    with pytest.raises(
        InputError, match=r"--strength '2:head=0': face 2 is out of range: the portrait has 2 faces"
    ):
        controls.check(num_faces=2)
    with pytest.raises(InputError, match="--relative '1:head'"):
        MotionControls.create(relative="1:head").check(num_faces=1)
    with pytest.raises(InputError, match="--relative-frame 9: the clip has 9 driving frames"):
        MotionControls.create(relative_frame=9).check(num_faces=1, num_frames=9)
    with pytest.raises(InputError, match="out of range"):
        apply_controls([features(), features()], MotionControls.create(strength="2:mouth=0"))


def test_step_mask():
    assert motion_step_mask(4, (0.0, 1.0)) == [True] * 4
    assert motion_step_mask(10, (0.0, 0.5)) == [True] * 5 + [False] * 5
    assert motion_step_mask(10, (0.3, 0.6)) == [False] * 3 + [True] * 3 + [False] * 4
    with pytest.raises(InputError, match="selects none of the 5"):
        motion_step_mask(5, (0.01, 0.05))


# --------------------------------------------------------------------------------------- resolution
def test_face_specific_and_part_specific_items_win_whatever_the_order():
    c = MotionControls.create(strength=["1:head=0.1", "head=0.5", "0.9", "1:0.3"])
    assert c.for_face(0).strength == {"head": 0.5, "eye": 0.9, "emotion": 0.9, "mouth": 0.9}
    assert c.for_face(1).strength == {"head": 0.1, "eye": 0.3, "emotion": 0.3, "mouth": 0.3}
    # among equals the later item wins
    assert MotionControls.create(strength="mouth=0.2,mouth=0.4").for_face(0).strength["mouth"] == 0.4


def test_presets_set_strengths_and_explicit_strengths_override_them():
    lips = MotionControls.create(animate="lips").for_face(0)
    assert lips.strength == {"head": 0.0, "eye": 0.0, "emotion": 0.0, "mouth": 1.0}
    expression = MotionControls.create(animate="expression").for_face(0)
    assert expression.strength == {"head": 0.0, "eye": 1.0, "emotion": 1.0, "mouth": 1.0}
    c = MotionControls.create(animate=["lips", "1:all"], strength="eye=0.5")
    assert c.for_face(0).strength == {"head": 0.0, "eye": 0.5, "emotion": 0.0, "mouth": 1.0}
    assert c.for_face(1).strength == {"head": 1.0, "eye": 0.5, "emotion": 1.0, "mouth": 1.0}
    assert set(PRESETS) >= {"all", "lips", "expression"}


def test_relative_scopes():
    c = MotionControls.create(relative=["head,mouth", "1:none", "2:expression"])
    assert c.for_face(0).relative == {"head", "mouth"}
    assert c.for_face(1).relative == frozenset()
    assert c.for_face(2).relative == {"eye", "emotion", "mouth"}
    assert MotionControls.create(relative="all").for_face(5).relative == set(PARTS)
    assert MotionControls.create(relative="head,none,eye").for_face(0).relative == {"eye"}


def test_defaults_are_identity_and_records_name_every_face():
    c = MotionControls()
    assert c.is_identity(3) and MotionControls.create() == c
    record = MotionControls.create(strength="1:head=0", relative="head").to_dict(2)
    assert record["strength"] == ["1:head=0"] and record["relative"] == ["head"]
    assert record["faces"][0]["strength"]["head"] == 1.0 and record["faces"][1]["strength"]["head"] == 0.0
    assert record["faces"][0]["relative"] == ["head"] and record["motion_steps"] == [0.0, 1.0]


# --------------------------------------------------------------------------------------- transforms
def test_identity_controls_return_the_same_tensor():
    d = features()
    assert apply_face_controls(d, FaceControls()) is d
    out = apply_controls([d, features(seed=1)], MotionControls())
    assert out[0] is d


@pytest.mark.parametrize("part", PARTS)
def test_strength_zero_gives_the_portrait_part_and_leaves_the_others_bit_identical(part):
    d, p = features(), features(1, seed=1)[0]
    out = apply_face_controls(d, MotionControls.create(strength=f"{part}=0").for_face(0), p)
    sl = PART_SLICES[part]
    assert torch.equal(out[:, sl], p[sl].expand(d.shape[0], -1))
    others = torch.ones(554, dtype=torch.bool)
    others[sl] = False
    assert torch.equal(out[:, others], d[:, others])


def test_strength_interpolates_between_portrait_and_driver():
    d, p = features(), features(1, seed=1)[0]
    out = apply_face_controls(d, MotionControls.create(strength="0.25").for_face(0), p)
    torch.testing.assert_close(out, p + 0.25 * (d - p))


def test_relative_starts_at_the_portrait_and_keeps_the_drivers_changes():
    d, p = features(), features(1, seed=1)[0]
    head = PART_SLICES["head"]
    for k in (0, 4):
        out = apply_face_controls(d, MotionControls.create(relative="head", relative_frame=k).for_face(0), p)
        torch.testing.assert_close(out[k, head], p[head])
        torch.testing.assert_close(out[:, head] - out[k, head], d[:, head] - d[k, head])
        assert torch.equal(out[:, 6:], d[:, 6:])


def test_multiplier_scales_the_change_from_the_reference_frame():
    d = features()
    out = apply_face_controls(d, MotionControls.create(multiplier="mouth=2").for_face(0))
    mouth = PART_SLICES["mouth"]
    torch.testing.assert_close(out[0, mouth], d[0, mouth])
    torch.testing.assert_close(out[:, mouth] - d[0, mouth], 2 * (d[:, mouth] - d[0, mouth]))
    assert torch.equal(out[:, :42], d[:, :42])
    # relative + multiplier: the portrait plus m times the driver's change
    p = features(1, seed=1)[0]
    out = apply_face_controls(d, MotionControls.create(relative="head", multiplier="head=0.5").for_face(0), p)
    torch.testing.assert_close(out[:, :6], p[:6] + 0.5 * (d[:, :6] - d[0, :6]))


def test_smoothing_is_zero_phase_and_reduces_jitter():
    t = torch.arange(30, dtype=torch.float32)[:, None]
    ramp = t.expand(-1, 3) * 0.1
    sm = gaussian_smooth(ramp, 2.0)
    torch.testing.assert_close(sm[8:-8], ramp[8:-8])  # a straight line is unchanged away from the ends
    const = torch.full((12, 2), 3.0)
    torch.testing.assert_close(gaussian_smooth(const, 1.5), const)
    noise = torch.randn(200, 4, generator=torch.Generator().manual_seed(0))
    assert gaussian_smooth(noise, 2.0).diff(dim=0).abs().mean() < 0.3 * noise.diff(dim=0).abs().mean()
    d = features(20)
    out = apply_face_controls(d, MotionControls.create(smoothing="head=1").for_face(0))
    assert not torch.equal(out[:, :6], d[:, :6]) and torch.equal(out[:, 6:], d[:, 6:])


def test_controls_needing_the_portrait_say_so():
    with pytest.raises(ValueError, match="portrait face's own motion features"):
        apply_face_controls(features(), MotionControls.create(strength="head=0").for_face(0))
    # multiplier and smoothing alone need no portrait
    assert apply_face_controls(features(), MotionControls.create(multiplier="2").for_face(0)).shape == (
        9,
        554,
    )


def test_a_control_on_one_face_leaves_the_other_face_untouched():
    d0, d1 = features(seed=0), features(seed=1)
    p = [features(1, seed=2)[0], features(1, seed=3)[0]]
    out = apply_controls([d0, d1], MotionControls.create(strength="1:head=0", relative="1:all"), p)
    assert out[0] is d0 and not torch.equal(out[1], d1)


# ------------------------------------------------------------------------------------- properties
face_st = st.one_of(st.none(), st.integers(0, 12))
part_st = st.one_of(st.none(), st.sampled_from(PARTS))
value_st = st.floats(0, 50, allow_nan=False, allow_infinity=False)
item_st = st.builds(PartValue, face_st, part_st, value_st)


@settings(max_examples=200, deadline=None)
@given(st.lists(item_st, max_size=8), st.booleans())
def test_text_round_trip(items, joined):
    texts = [
        f"{it.face}:" * (it.face is not None) + f"{it.part}=" * (it.part is not None) + repr(it.value)
        for it in items
    ]
    spec = ",".join(texts) if joined else texts
    assert parse_part_values(spec) == tuple(items)
    # the canonical text of parsed items parses back to themselves (values to %g precision)
    again = parse_part_values([it.text() for it in items])
    assert [(a.face, a.part) for a in again] == [(b.face, b.part) for b in items]
    assert all(math.isclose(a.value, b.value, rel_tol=1e-5, abs_tol=1e-5) for a, b in zip(again, items))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789:=,.-+ abcdefghijklmnopqrstuvwxyzINF", max_size=24))
def test_any_text_parses_or_raises_input_error(text):
    try:
        items = parse_part_values(text)
    except InputError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("--strength")
        return
    assert all(it.value >= 0 and math.isfinite(it.value) for it in items)
    assert all(it.part in (None, *PARTS) and (it.face is None or it.face >= 0) for it in items)


@settings(max_examples=200, deadline=None)
@given(st.lists(item_st, max_size=8), st.integers(0, 12))
def test_resolution_matches_the_precedence_rule(items, face):
    resolved = MotionControls(strength=tuple(items)).for_face(face).strength
    for part in PARTS:
        # the most specific item that applies (face own > every face; part own > every part), last among equals
        best, rank = 1.0, (-1, -1)
        for it in items:
            if it.face not in (None, face) or it.part not in (None, part):
                continue
            r = (it.face is not None, it.part is not None)
            if r >= rank:
                best, rank = it.value, r
        assert resolved[part] == best


@settings(max_examples=100, deadline=None)
@given(st.lists(item_st, max_size=6), st.integers(1, 6))
def test_out_of_range_faces_are_reported(items, num_faces):
    controls = MotionControls(strength=tuple(items))
    bad = [it for it in items if it.face is not None and it.face >= num_faces]
    if bad:
        with pytest.raises(InputError, match=f"face {bad[0].face} is out of range"):
            controls.check(num_faces)
    else:
        controls.check(num_faces)


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(sorted(ALIASES)), value_st)
def test_aliases_name_their_part(alias, value):
    assert parse_part_values(f"{alias}={value!r}") == (PartValue(None, ALIASES[alias], value),)
