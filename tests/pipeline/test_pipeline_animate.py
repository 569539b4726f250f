"""End to end: `fantasy-portrait animate` on CPU with tiny random weights in the released layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fantasy_portrait.cli import main

FAST = ["--max-size", "64", "--steps", "2", "--no-progress"]


def _animate(capsys, *args) -> dict:
    code = main(["animate", *args, *FAST, "--json"])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)


def test_single_face_with_audio(tiny_weights, assets, tmp_path, capsys, video_facts):
    out = tmp_path / "single.mp4"
    s = _animate(
        capsys,
        str(assets / "fp_man.jpeg"),
        str(assets / "fp_jgz.mp4"),
        "--weights",
        str(tiny_weights),
        "--max-frames",
        "9",
        "-o",
        str(out),
    )
    facts = video_facts(out)
    assert (s["num_frames"], s["width"], s["height"]) == (9, 64, 64)
    assert facts["frames"] == 9 and (facts["width"], facts["height"]) == (64, 64)
    assert facts["fps"] == pytest.approx(25.0)
    assert facts["audio"]  # fp_jgz.mp4 has audio
    assert len(s["faces"]) == 1 and s["faces"][0]["driver"].startswith("fp_jgz.mp4")
    assert s["transformer_calls"] == 2  # cond + uncond motion as one batch per step
    assert set(s["seconds"]) >= {"faces", "motion", "encode", "denoise", "decode+write"}


def test_same_seed_same_video_other_seed_differs(stub_pipe, synthetic_media):
    args = dict(max_frames=5, max_size=64, num_steps=2, progress=False)
    media = synthetic_media["portrait"], synthetic_media["driver"]
    a = stub_pipe(*media, seed=7, **args)
    b = stub_pipe(*media, seed=7, **args)
    c = stub_pipe(*media, seed=8, **args)
    assert a.frames.shape == (5, 64, 64, 3) and a.frames.dtype == np.uint8
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)


def test_two_faces_from_one_video_without_audio(tiny_weights, assets, tmp_path, capsys, video_facts):
    out = tmp_path / "two.mp4"
    s = _animate(
        capsys,
        str(assets / "fp_two_person.png"),
        str(assets / "fp_two_person.mp4"),
        "--weights",
        str(tiny_weights),
        "--max-frames",
        "5",
        "-o",
        str(out),
    )
    facts = video_facts(out)
    assert len(s["faces"]) == 2 and s["mapping"] == [0, 1]
    assert facts["frames"] == 5 and (facts["width"], facts["height"]) == (s["width"], s["height"])
    assert s["width"] == 64 and s["height"] % 16 == 0
    assert not facts["audio"]  # fp_two_person.mp4 has no audio


def test_two_faces_from_two_videos_and_explicit_mapping(tiny_weights, assets, tmp_path, capsys, video_facts):
    image = str(assets / "fp_two_person.png")
    videos = [str(assets / "lp_d0.mp4"), str(assets / "fp_jgz.mp4")]
    common = ["--weights", str(tiny_weights), "--max-frames", "5"]
    s = _animate(capsys, image, *videos, *common, "-o", str(tmp_path / "a.mp4"))
    assert [f["driver"].split("#")[0] for f in s["faces"]] == ["lp_d0.mp4", "fp_jgz.mp4"]
    assert video_facts(tmp_path / "a.mp4")["audio"]  # the first driver with audio is muxed
    m = _animate(capsys, image, *videos, *common, "--map", "0:1,1:0", "-o", str(tmp_path / "b.mp4"))
    assert m["mapping"] == [1, 0]
    assert [f["driver"].split("#")[0] for f in m["faces"]] == ["fp_jgz.mp4", "lp_d0.mp4"]
    a, b = video_facts(tmp_path / "a.mp4"), video_facts(tmp_path / "b.mp4")
    assert a["frames"] == b["frames"] == 5
    assert not np.array_equal(a["pixels"], b["pixels"])  # swapping drivers changes the result


@pytest.mark.slow
def test_long_driver_through_sliding_windows(tiny_weights, assets, tmp_path, capsys, video_facts):
    # lp_d3.mp4: 354 frames at 30 fps (11.8 s, audio). Resampled to 10 fps -> 118 frames -> 117 used
    # (the whole clip), 30 latent frames, windows of 6 latent frames overlapping by 2: 9 windows.
    out = tmp_path / "long.mp4"
    s = _animate(
        capsys,
        str(assets / "fp_man.jpeg"),
        str(assets / "lp_d3.mp4"),
        "--weights",
        str(tiny_weights),
        "--fps",
        "10",
        "--window-frames",
        "21",
        "--overlap-frames",
        "8",
        "-o",
        str(out),
    )
    facts = video_facts(out)
    assert s["num_frames"] == 117 and facts["frames"] == 117
    assert facts["fps"] == pytest.approx(10.0) and facts["audio"]
    assert s["windows"] == 9
    assert s["transformer_calls"] == 2 * s["windows"]


def _with_text_encoder(tiny_weights, folder):
    from fantasy_portrait.models.config import PRESETS
    from fantasy_portrait.pipeline import layout
    from fantasy_portrait.pipeline.tiny import write_tiny_text_encoder

    folder.mkdir()
    for f in tiny_weights.iterdir():
        if f.name != layout.EMPTY_PROMPT_FILE:
            (folder / f.name).symlink_to(f)
    write_tiny_text_encoder(folder, text_dim=PRESETS["tiny"].wan.text_dim)
    return folder


def test_empty_prompt_is_computed_once_then_cached(tiny_weights, tmp_path):
    import torch

    from fantasy_portrait.pipeline import layout
    from fantasy_portrait.pipeline.pipeline import FantasyPortraitPipeline

    folder = _with_text_encoder(tiny_weights, tmp_path / "w")
    pipe = FantasyPortraitPipeline.from_pretrained(folder)
    emb = pipe.encode_text("")
    assert emb.shape == (1, 512, 32)
    assert int((emb[0].abs().sum(-1) > 0).sum()) == 1  # one token (end of sequence), the rest zero padding
    assert (folder / layout.EMPTY_PROMPT_FILE).is_file()
    again = FantasyPortraitPipeline.from_pretrained(folder)
    torch.testing.assert_close(again.encode_text(""), emb)
    assert again._text_encoder is None  # the cache was used: umT5 not loaded


def test_prompt_and_text_guidance_add_a_third_branch(tiny_weights, assets, tmp_path, capsys):
    folder = _with_text_encoder(tiny_weights, tmp_path / "w")
    args = [
        str(assets / "fp_man.jpeg"),
        str(assets / "fp_jgz.mp4"),
        "--weights",
        str(folder),
        "--max-frames",
        "5",
    ]
    s = _animate(
        capsys,
        *args,
        "--prompt",
        "a smiling man",
        "--text-guidance",
        "2",
        "--sequential-branches",
        "-o",
        str(tmp_path / "p.mp4"),
    )
    assert s["transformer_calls"] == 3 * 2  # cond, uncond motion, negative prompt; 2 steps
    assert s["num_frames"] == 5


def test_fps_zero_keeps_the_drivers_own_rate(tiny_pipe, assets, tmp_path, video_facts):
    out = tmp_path / "native.mp4"
    res = tiny_pipe(
        assets / "fp_man.jpeg",
        assets / "fp_jgz.mp4",
        output=out,
        fps=0,
        max_frames=5,
        max_size=64,
        num_steps=1,
        progress=False,
    )
    facts = video_facts(out)
    assert res.fps == pytest.approx(15.0) and facts["fps"] == pytest.approx(15.0)  # fp_jgz.mp4 is 15 fps
    assert facts["frames"] == 5 and facts["audio"]


def test_three_faces_given_by_hand_and_three_drivers(tiny_weights, assets, tmp_path, capsys, video_facts):
    # Boxes by hand (given right to left: they are sorted), one single-face driver each.
    boxes = "800,140,950,320;280,100,430,250;560,300,680,420"
    videos = [str(assets / v) for v in ("lp_d0.mp4", "fp_jgz.mp4", "lp_d12.mp4")]
    s = _animate(
        capsys,
        str(assets / "fp_two_person.png"),
        *videos,
        "--weights",
        str(tiny_weights),
        "--face-boxes",
        boxes,
        "--max-frames",
        "5",
        "-o",
        str(tmp_path / "three.mp4"),
    )
    assert [f["box"][0] for f in s["faces"]] == [280.0, 560.0, 800.0]
    assert [f["driver"].split("#")[0] for f in s["faces"]] == ["lp_d0.mp4", "fp_jgz.mp4", "lp_d12.mp4"]
    assert video_facts(tmp_path / "three.mp4")["frames"] == 5


def test_portrait_checkpoint_outside_the_weight_folder(tiny_weights, assets, tmp_path, capsys):
    """A trained checkpoint given with --portrait-checkpoint replaces the folder's, which may be absent."""
    import shutil

    from safetensors.torch import load_file, save_file

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights, weights)
    released = next(weights.rglob("fantasyportrait_model.safetensors"))
    trained = load_file(released)
    trained = {k: (v * 0 if "ip_adapter" in k else v) for k, v in trained.items()}  # motion branch off
    save_file(trained, tmp_path / "trained.safetensors")
    released.unlink()
    args = [
        str(assets / "fp_man.jpeg"),
        str(assets / "fp_jgz.mp4"),
        "--weights",
        str(weights),
        "--max-frames",
        "5",
    ]
    assert main(["animate", *args, *FAST, "-o", str(tmp_path / "a.mp4")]) == 2
    assert "fantasyportrait_model" in capsys.readouterr().err
    s = _animate(
        capsys,
        *args,
        "--portrait-checkpoint",
        str(tmp_path / "trained.safetensors"),
        "-o",
        str(tmp_path / "b.mp4"),
    )
    assert s["num_frames"] == 5 and (tmp_path / "b.mp4").is_file()
