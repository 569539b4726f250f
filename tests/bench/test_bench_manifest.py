"""Manifest parsing (JSON and TOML), validation errors and the built-in example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fantasy_portrait.bench.manifest import example_manifest, load_manifest, save_manifest
from fantasy_portrait.errors import InputError

ASSETS = Path(__file__).parents[2] / ".." / "shared" / "assets"


def _files(tmp_path: Path) -> Path:
    for name in ("a.mp4", "b.mp4", "p.png"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_json_and_toml_manifests_parse_the_same(tmp_path):
    _files(tmp_path)
    data = {
        "name": "mini",
        "frames": 8,
        "cases": [
            {"id": "s1", "mode": "self", "video": "a.mp4"},
            {
                "id": "c2",
                "mode": "cross",
                "portrait": "p.png",
                "drivers": ["a.mp4", "b.mp4"],
                "max_side": 300,
            },
        ],
    }
    (tmp_path / "m.json").write_text(json.dumps(data))
    (tmp_path / "m.toml").write_text(
        'name = "mini"\nframes = 8\n\n[[cases]]\nid = "s1"\nmode = "self"\nvideo = "a.mp4"\n\n'
        '[[cases]]\nid = "c2"\nmode = "cross"\nportrait = "p.png"\ndrivers = ["a.mp4", "b.mp4"]\nmax_side = 300\n'
    )
    a, b = load_manifest(tmp_path / "m.json"), load_manifest(tmp_path / "m.toml")
    assert a.to_dict() == b.to_dict()
    assert [c.subset for c in a.cases] == ["single", "multi"]
    assert a.cases[1].drivers == [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    assert a.settings(a.cases[1]) == {"frames": 8, "max_side": 300, "fps": None}
    assert a.settings(a.cases[0])["max_side"] is None
    # Round trip through save_manifest keeps every case.
    again = load_manifest(save_manifest(a, tmp_path / "out" / "again.json"))
    assert again.to_dict() == a.to_dict()


@pytest.mark.parametrize(
    "case,message",
    [
        ({"id": "x", "mode": "both", "video": "a.mp4"}, "mode must be"),
        ({"id": "x", "mode": "self"}, "needs 'video'"),
        ({"id": "x", "mode": "self", "video": "missing.mp4"}, "missing.mp4 not found"),
        ({"id": "x", "mode": "cross", "portrait": "p.png"}, "needs 'portrait' and 'drivers'"),
        ({"id": "x", "mode": "cross", "portrait": "p.png", "drivers": ["a.mp4"], "faces": 2}, "faces=2"),
        ({"id": "bad id", "mode": "self", "video": "a.mp4"}, "needs an 'id'"),
        ({"id": "x", "mode": "self", "video": "a.mp4", "frames": -3}, "frames must be positive"),
    ],
)
def test_invalid_cases_are_named(tmp_path, case, message):
    _files(tmp_path)
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"cases": [case]}))
    with pytest.raises(InputError, match=message) as info:
        load_manifest(path)
    assert str(path) in str(info.value)


def test_duplicate_ids_bad_syntax_and_missing_manifest(tmp_path):
    _files(tmp_path)
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"cases": [{"id": "a", "mode": "self", "video": "a.mp4"}] * 2}))
    with pytest.raises(InputError, match="duplicate case id"):
        load_manifest(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid"):
        load_manifest(path)
    with pytest.raises(InputError, match="manifest not found"):
        load_manifest(tmp_path / "none.json")
    path.write_text(json.dumps({"cases": []}))
    with pytest.raises(InputError, match="non-empty list"):
        load_manifest(path)


def test_example_manifest_covers_every_subset_and_mode():
    m = example_manifest(ASSETS)
    kinds = {(c.subset, c.mode) for c in m.cases}
    assert kinds == {("single", "self"), ("single", "cross"), ("multi", "self"), ("multi", "cross")}
    assert all(p.is_file() for c in m.cases for p in c.inputs())
    with pytest.raises(InputError, match="assets folder not found"):
        example_manifest(ASSETS / "nope")
