"""Property-based tests of the --map and --face-boxes parsers and of the mapping rules (hypothesis)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fantasy_portrait.errors import FaceError, InputError
from fantasy_portrait.faces.portrait import mapping_example, parse_face_boxes, parse_mapping, resolve_mapping

TEXT = st.text(alphabet=st.sampled_from(list("0123456789:,-;. +eE_xa\t")), max_size=30) | st.text(max_size=20)


@settings(max_examples=250, deadline=None)
@given(TEXT)
def test_map_parser_accepts_or_refuses_with_an_input_error(text):
    try:
        mapping = parse_mapping(text)
    except InputError as exc:
        assert "\n" not in str(exc) and "--map" in str(exc)
        return
    assert mapping and all(isinstance(d, int) and d >= 0 for d in mapping)
    targets = [p for p in mapping.values() if p is not None]
    assert all(isinstance(p, int) and p >= 0 for p in targets) and len(set(targets)) == len(targets)


@st.composite
def mappings(draw):
    drivers = draw(st.lists(st.integers(0, 12), min_size=1, max_size=6, unique=True))
    targets = draw(st.lists(st.integers(0, 12), min_size=len(drivers), max_size=len(drivers), unique=True))
    unused = draw(st.lists(st.booleans(), min_size=len(drivers), max_size=len(drivers)))
    return {d: (None if u else p) for d, p, u in zip(drivers, targets, unused)}


@settings(max_examples=300, deadline=None)
@given(mappings(), st.sampled_from([",", ", ", " ,"]))
def test_map_text_round_trips(mapping, sep):
    text = sep.join(f"{d}:{'-' if p is None else p}" for d, p in mapping.items())
    assert parse_mapping(text) == mapping


@settings(max_examples=250, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.none() | mappings())
def test_resolved_mappings_are_valid_and_errors_suggest_working_maps(num_driving, num_portrait, mapping):
    """Either a valid pairing (every number names an existing face, a portrait face driven at most once),
    or a FaceError whose --map example works for exactly these face counts."""
    try:
        order = resolve_mapping(num_driving, num_portrait, mapping)
    except FaceError as exc:
        message = str(exc)
        assert "\n" not in message
        for example in re.findall(r"--map ([0-9:,\-]+)", message):
            fixed = resolve_mapping(num_driving, num_portrait, parse_mapping(example))
            assert len(fixed) == num_driving
        return
    assert len(order) == num_driving
    used = [p for p in order if p is not None]
    assert used and all(0 <= p < num_portrait for p in used) and len(set(used)) == len(used)
    if mapping is None:
        assert order == list(range(num_driving)) and num_driving == num_portrait


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8))
def test_mapping_example_names_only_existing_faces(num_driving, num_portrait):
    example = parse_mapping(mapping_example(num_driving, num_portrait))
    assert sorted(example) == list(range(num_driving))
    assert all(p is None or p < num_portrait for p in example.values())
    assert resolve_mapping(num_driving, num_portrait, example)


def test_negative_numbers_are_named_as_such():
    for text in ("-1:0", "0:-2", "-1:-"):
        with pytest.raises(InputError, match="numbered from 0"):
            parse_mapping(text)


@settings(max_examples=250, deadline=None)
@given(TEXT)
def test_face_boxes_parser_accepts_or_refuses_with_an_input_error(text):
    try:
        boxes = parse_face_boxes(text)
    except InputError as exc:
        assert "\n" not in str(exc) and "--face-boxes" in str(exc)
        return
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) >= 1 and boxes.dtype == np.float32
    assert (
        np.isfinite(boxes).all() and (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 1] < boxes[:, 3]).all()
    )


@st.composite
def boxes(draw):
    n = draw(st.integers(1, 5))
    out = []
    for _ in range(n):
        x1, y1 = draw(st.integers(0, 2000)), draw(st.integers(0, 2000))
        out.append([x1, y1, x1 + draw(st.integers(1, 500)), y1 + draw(st.integers(1, 500))])
    return out


@settings(max_examples=200, deadline=None)
@given(boxes(), st.sampled_from([";", "; ", " ;"]))
def test_face_boxes_round_trip(values, sep):
    text = sep.join(",".join(str(v) for v in b) for b in values)
    np.testing.assert_array_equal(parse_face_boxes(text), np.asarray(values, np.float32))
