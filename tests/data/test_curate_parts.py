"""Curation parts on their own: measures, tracking, shots, sources, journal, cutting, plugins, CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fantasy_portrait.data import CurationConfig, curate, read_manifest
from fantasy_portrait.data.journal import Journal
from fantasy_portrait.data.measures import (
    EYE_OUTER,
    LIPS,
    face_sharpness,
    head_angles,
    landmark_motion,
    laplacian_variance,
    sample_indices,
    track_sampled_faces,
)
from fantasy_portrait.data.shots import split_shots
from fantasy_portrait.data.sources import list_sources
from fantasy_portrait.errors import CheckpointError, InputError
from fantasy_portrait.faces.types import FaceObservation

ASSETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "assets"


def test_sample_indices_bounds():
    idx = sample_indices(100, 400, 25.0, 5.0, 8, 48)
    assert idx == sorted(set(idx)) and 100 <= idx[0] and idx[-1] < 400
    assert len(idx) == 48
    assert len(sample_indices(0, 10, 25.0, 5.0, 8, 48)) == 8  # at least min_samples
    assert sample_indices(0, 3, 25.0, 5.0, 8, 48) == [0, 1, 2]  # never more than the frames


def test_laplacian_variance_drops_with_blur():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(image, (0, 0), 2.0)
    assert laplacian_variance(blurred) < 0.05 * laplacian_variance(image)
    box = np.array([10, 10, 80, 90], np.float32)
    assert face_sharpness(blurred, box) < face_sharpness(image, box)
    assert face_sharpness(image, np.array([50, 50, 51, 51], np.float32)) == 0.0


def _mesh(yaw_deg: float = 0.0) -> np.ndarray:
    """A 478-point stand-in: random points around a face plane, rotated about the vertical axis."""
    rng = np.random.default_rng(1)
    pts = rng.normal(0, 30, (478, 3))
    pts[EYE_OUTER[0]] = [-50, 0, 0]
    pts[EYE_OUTER[1]] = [50, 0, 0]
    pts[10] = [0, -70, 0]  # forehead
    pts[152] = [0, 90, 0]  # chin
    a = np.radians(yaw_deg)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return pts @ rot.T + [200, 150, 0]


@pytest.mark.parametrize("yaw", [-30.0, 0.0, 25.0])
def test_head_angles_recover_yaw(yaw):
    angles = head_angles(_mesh(yaw))
    assert abs(abs(angles[0]) - abs(yaw)) < 1e-6
    assert abs(angles[1]) < 1e-6 and abs(angles[2]) < 1e-6


def test_landmark_motion_ignores_head_motion_and_sees_the_mouth():
    base = _mesh()[:, :2]
    still = [base.copy() for _ in range(5)]
    assert landmark_motion(still, LIPS) < 1e-12
    # The whole face turning in the image plane, zooming and moving: no expression change.
    moved = []
    for k in range(5):
        a = np.radians(5 * k)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        moved.append((1 + 0.05 * k) * base @ rot.T + [3 * k, -2 * k])
    assert landmark_motion(moved, LIPS) < 1e-9
    # The lips opening and closing by 10% of the inter-ocular distance (100 px).
    talking = []
    for k in range(6):
        frame = base.copy()
        frame[list(LIPS), 1] += 10.0 * (k % 2)
        talking.append(frame)
    assert landmark_motion(talking, LIPS) == pytest.approx(0.05, rel=0.05)


def _face(x: float, y: float, size: float = 40.0) -> FaceObservation:
    return FaceObservation(box=np.array([x, y, x + size, y + size], np.float32), score=0.9)


def test_tracking_follows_two_faces_through_a_missed_detection():
    frames = []
    for t in range(8):
        faces = [_face(300 - 2 * t, 50), _face(20 + 3 * t, 60)]  # detector order: right face first
        if t == 4:
            faces = faces[1:]  # the right face is missed once
        frames.append(faces)
    frames[6].append(_face(600, 300))  # a one-off false positive
    tracks = track_sampled_faces(frames)
    assert len(tracks) == 3
    left, right = tracks[0], tracks[1]
    assert left.frames == list(range(8)) and right.frames == [0, 1, 2, 3, 5, 6, 7]
    assert all(o.box[0] < 100 for o in left.observations)
    assert tracks[2].frames == [6]


def test_split_shots_equal_parts_within_limits():
    config = CurationConfig(min_seconds=2.0, max_seconds=10.0)
    clips = split_shots([(0, 25), (25, 25 + 600), (625, 700)], 25.0, config)
    assert [(c.start, c.end, c.shot_index) for c in clips[:1]] == [(0, 25, 0)]
    long = [c for c in clips if c.shot_index == 1]
    assert len(long) == 3 and all(c.num_frames == 200 for c in long)
    assert long[0].start == 25 and long[-1].end == 625
    assert clips[-1].num_frames == 75


def test_sources_from_every_manifest_type(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("b.mp4", "a.mov"):
        (videos / name).write_bytes(b"")
    (videos / "notes.txt").write_text("not a video")
    from_folder = [Path(s.path).name for s in list_sources(videos)]
    assert from_folder == ["a.mov", "b.mp4"]
    (tmp_path / "list.csv").write_text("path,lang\nvideos/b.mp4,en\nvideos/a.mov,de\nvideos/b.mp4,en\n")
    (tmp_path / "list.jsonl").write_text(
        json.dumps({"url": (videos / "a.mov").as_uri()}) + "\n" + json.dumps({"url": "videos/b.mp4"}) + "\n"
    )
    pq.write_table(pa.table({"video": [str(videos / "a.mov"), "videos/b.mp4"]}), tmp_path / "list.parquet")
    ids = {s.video_id for s in list_sources(videos)}
    for name in ("list.csv", "list.jsonl", "list.parquet"):
        found = list_sources(tmp_path / name)
        assert {s.video_id for s in found} == ids, name
    (tmp_path / "remote.csv").write_text("path\nhttps://example.com/v.mp4\n")
    with pytest.raises(InputError, match="remote URL"):
        list_sources(tmp_path / "remote.csv")
    (tmp_path / "missing.csv").write_text("path\nvideos/nope.mp4\n")
    with pytest.raises(InputError, match="missing"):
        list_sources(tmp_path / "missing.csv")
    (tmp_path / "nocol.csv").write_text("name\nx\n")
    with pytest.raises(InputError, match="no path column"):
        list_sources(tmp_path / "nocol.csv")


def test_journal_drops_only_a_torn_last_line(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append({"kind": "clip", "clip_id": "a"})
        journal.append({"kind": "clip", "clip_id": "b", "score": float("nan")})
    with path.open("ab") as handle:
        handle.write(b'{"kind": "clip", "cli')
    records = Journal(path).read()
    assert [r["clip_id"] for r in records] == ["a", "b"]
    assert path.read_bytes().endswith(b"\n")  # the torn tail was cut off
    with Journal(path) as journal:
        journal.append({"kind": "clip", "clip_id": "c"})
    assert [r["clip_id"] for r in Journal(path).read()] == ["a", "b", "c"]
    path.write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(InputError, match="line 2"):
        Journal(path).read()


def test_cut_remuxes_on_keyframes_and_reencodes_elsewhere(tmp_path):
    from fantasy_portrait.data.cut import cut_clip
    from fantasy_portrait.io import iter_video_frames, keyframe_indices, probe_video

    src = str(ASSETS / "lp_d3.mp4")  # keyframes at 0 and 250
    assert keyframe_indices(src) == [0, 250]
    info = probe_video(src)
    mode = cut_clip(src, tmp_path / "tail.mp4", 250, 354, info.fps, info.num_frames)
    assert mode == "remux"
    got = list(iter_video_frames(tmp_path / "tail.mp4"))
    want = list(iter_video_frames(src, start=250, end=354))
    assert len(got) == len(want) == 104
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    mode = cut_clip(src, tmp_path / "mid.mp4", 40, 70, info.fps, info.num_frames)
    assert mode == "reencode"
    got = list(iter_video_frames(tmp_path / "mid.mp4"))
    want = list(iter_video_frames(src, start=40, end=70))
    assert len(got) == 30
    assert max(np.abs(a.astype(int) - b).mean() for a, b in zip(got, want, strict=True)) < 2.0
    assert probe_video(tmp_path / "mid.mp4").has_audio  # the source's audio follows a re-encoded clip


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    (tmp_path / "curate_test_plugins.py").write_text(
        "SCORE = [3.0]\n"
        "def aesthetic(frames):\n"
        "    assert all(f.ndim == 3 and f.shape[2] == 3 for f in frames)\n"
        "    return SCORE[0]\n"
        "def no_people(frame):\n"
        "    return []\n"
        "def caption(clip, frames):\n"
        "    return f'{len(frames)} frames of {clip}'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "curate_test_plugins", raising=False)
    import curate_test_plugins

    return curate_test_plugins


def test_aesthetic_callable_and_caption_command(curate_inputs, tmp_path, plugin_module):
    base = dict(min_faces=1, max_faces=1, aesthetic_callable="curate_test_plugins:aesthetic")
    low = curate(curate_inputs["single"], tmp_path / "low", CurationConfig(**base), "serial", progress=False)
    (row,) = read_manifest(low.manifest_path).to_pylist()
    assert row["reject_reason"] == "low_aesthetic" and row["aesthetic"] == 3.0
    assert row["aesthetic_status"] == "scored"

    plugin_module.SCORE[0] = 6.0
    command = f"{sys.executable} -c \"import sys; print('clip', sys.argv[1])\" {{clip}}"
    config = CurationConfig(**base, caption_command=command)
    high = curate(curate_inputs["single"], tmp_path / "high", config, "serial", progress=False)
    (row,) = read_manifest(high.manifest_path).to_pylist()
    assert row["kept"] and row["aesthetic"] == 6.0
    assert row["caption"] == f"clip {high.out_dir / row['clip_path']}"
    assert row["caption_status"] == "captioned"

    config = CurationConfig(**base, caption_callable="curate_test_plugins:caption", cut_clips=False)
    result = curate(curate_inputs["single"], tmp_path / "call", config, "serial", progress=False)
    (row,) = read_manifest(result.manifest_path).to_pylist()
    assert row["caption"].startswith("3 frames of ") and row["caption"].endswith("single.mp4")


def test_laion_scorer_matches_a_plain_linear_head(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from fantasy_portrait.data.plugins import LaionAestheticScorer

    torch.manual_seed(0)
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8, projection_dim=16,
    )  # fmt: skip
    model = CLIPVisionModelWithProjection(vision).eval()
    model.save_pretrained(tmp_path / "clip")
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor.save_pretrained(tmp_path / "clip")
    head = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1)).eval()
    save_file({f"layers.{k}": v for k, v in head.state_dict().items()}, str(tmp_path / "head.safetensors"))

    frames = [np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8) for i in range(2)]
    scorer = LaionAestheticScorer(str(tmp_path / "clip"), str(tmp_path / "head.safetensors"))
    with torch.no_grad():
        pixels = processor(images=frames, return_tensors="pt")["pixel_values"]
        embeds = model(pixel_values=pixels).image_embeds
        expected = head(embeds / embeds.norm(dim=-1, keepdim=True)).mean().item()
    assert scorer(frames) == pytest.approx(expected, rel=1e-5)

    torch.save({"layers.0.weight": torch.zeros(1, 768)}, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="768-dim"):
        LaionAestheticScorer(str(tmp_path / "clip"), str(tmp_path / "wrong.pth"))(frames)
    with pytest.raises(CheckpointError, match="not found"):
        LaionAestheticScorer(str(tmp_path / "clip"), str(tmp_path / "none.pth"))


def test_config_validation():
    with pytest.raises(InputError, match="face count"):
        CurationConfig(min_faces=3, max_faces=2).validate()
    with pytest.raises(InputError, match="clip length"):
        CurationConfig(min_seconds=5, max_seconds=2).validate()
    with pytest.raises(InputError, match="aesthetic-clip"):
        CurationConfig(aesthetic_weights="x.pth").validate()
    assert CurationConfig().fingerprint() != CurationConfig(min_faces=1).fingerprint()


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    from fantasy_portrait.cli import main

    assert main(["curate", str(tmp_path / "nothing"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "does not exist" in err[0]
    with pytest.raises(SystemExit):
        main(["curate", "--help"])
    assert "--min-faces" in capsys.readouterr().out


def test_unreadable_video_becomes_an_error_row(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.mp4").write_bytes(
        np.random.default_rng(0).integers(0, 255, 4096, dtype=np.uint8).tobytes()
    )
    result = curate(folder, tmp_path / "out", CurationConfig(), executor="serial", progress=False)
    (row,) = read_manifest(result.manifest_path).to_pylist()
    assert row["reject_reason"] == "error" and not row["kept"]
    assert "broken.mp4" in row["error"]
    assert result.counts == {"error": 1}


def test_split_points_move_to_keyframes_within_limits():
    config = CurationConfig(min_seconds=2.0, max_seconds=10.0)
    shots = [(0, 600)]  # 24 s at 25 fps -> 3 parts of 200 frames
    clips = split_shots(shots, 25.0, config, keyframes=[0, 180, 250, 390, 590])
    assert [(c.start, c.end) for c in clips] == [(0, 180), (180, 390), (390, 600)]
    assert all(config.min_seconds * 25 <= c.num_frames <= config.max_seconds * 25 for c in clips)
    # A keyframe too far from the ideal point, or one that would make a part too long, is ignored.
    clips = split_shots(shots, 25.0, config, keyframes=[100, 260])
    assert [(c.start, c.end) for c in clips] == [(0, 200), (200, 400), (400, 600)]


def test_person_detector_plugin_counts_people(curate_inputs, tmp_path, plugin_module):
    config = CurationConfig(min_faces=1, max_faces=1, person_callable="curate_test_plugins:no_people")
    result = curate(curate_inputs["single"], tmp_path / "p", config, "serial", progress=False)
    (row,) = read_manifest(result.manifest_path).to_pylist()
    assert row["people"] == 0 and row["faces"] == 1
    assert row["reject_reason"] == "too_few_people"
