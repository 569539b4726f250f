"""Video reader/writer: resampling, streaming, audio muxing, atomic writes, bad input."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from fantasy_portrait.errors import InputError
from fantasy_portrait.io import (
    frame_count_4k1,
    iter_video_frames,
    probe_video,
    read_video,
    write_video,
)

ASSETS = Path(__file__).parents[2] / ".." / "shared" / "assets"


def _coded_frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frames whose grey level encodes the frame index (robust to H.264 at crf 0-18)."""
    levels = (np.arange(n) * 7 + 20) % 256
    return np.broadcast_to(levels[:, None, None, None], (n, h, w, 3)).astype(np.uint8).copy()


def _decode_index(frames: np.ndarray) -> np.ndarray:
    return np.rint((frames[..., 0].mean(axis=(1, 2)) - 20) / 7).astype(int)


def test_roundtrip_keeps_frames_and_rate(tmp_path):
    frames = _coded_frames(20)
    out = write_video(tmp_path / "a.mp4", frames, fps=15)
    info = probe_video(out)
    assert (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(15)
    video = read_video(out)
    assert len(video) == 20
    np.testing.assert_array_equal(_decode_index(video.frames), np.arange(20))


def test_resampling_picks_the_frame_on_screen(tmp_path):
    path = write_video(tmp_path / "b.mp4", _coded_frames(30), fps=15)
    video = read_video(path, fps=25)
    # 30 frames at 15 fps last 2 s -> 50 frames at 25 fps; frame i shows source floor(i * 15 / 25).
    assert len(video) == 50
    expected = np.floor(np.arange(50) * 15 / 25 + 1e-9).astype(int)
    np.testing.assert_array_equal(video.source_index, expected)
    np.testing.assert_array_equal(_decode_index(video.frames), expected)
    down = read_video(path, fps=5)
    np.testing.assert_array_equal(down.source_index, np.arange(10) * 3)


def test_streaming_reader_is_lazy_and_limited(tmp_path):
    path = write_video(tmp_path / "c.mp4", _coded_frames(12, 64, 96), fps=10)
    it = iter_video_frames(path, max_frames=5, max_side=48)
    first = next(it)
    assert first.shape == (32, 48, 3)
    assert len(list(it)) == 4


def test_odd_size_is_padded(tmp_path):
    frames = np.zeros((3, 31, 45, 3), np.uint8)
    info = probe_video(write_video(tmp_path / "odd.mp4", frames, fps=8))
    assert (info.width, info.height) == (46, 32)


def test_audio_is_muxed_and_cut_to_length(tmp_path):
    src = ASSETS / "fp_jgz.mp4"
    frames = _coded_frames(25, 64, 64)  # 1 s at 25 fps
    out = write_video(tmp_path / "s.mp4", iter(frames), fps=25, audio_from=src, audio_offset_s=1.0)
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1
        audio = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(audio))
        assert samples / audio.rate == pytest.approx(1.0, abs=0.05)


def test_failed_write_leaves_old_file_untouched(tmp_path):
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"old")

    def broken():
        yield np.zeros((16, 16, 3), np.uint8)
        raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError):
        write_video(target, broken(), fps=10)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]


def test_real_video_resampled_to_working_rate():
    video = read_video(ASSETS / "lp_d0.mp4", fps=25, max_side=128)
    assert video.source_fps == pytest.approx(25)
    assert len(video) == 78
    np.testing.assert_array_equal(video.source_index, np.arange(78))


@pytest.mark.parametrize(
    "available,requested,expected", [(1, None, 1), (5, None, 5), (8, None, 5), (146, 81, 81), (100, 50, 49)]
)
def test_frame_count_4k1(available, requested, expected):
    n = frame_count_4k1(available, requested)
    assert n == expected and (n - 1) % 4 == 0


def test_bad_video_inputs(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_video(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    with pytest.raises(InputError, match="notes.mp4"):
        read_video(text)
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes((ASSETS / "lp_d0.mp4").read_bytes()[:3000])
    with pytest.raises(InputError, match="cut.mp4"):
        read_video(truncated)
    with pytest.raises(InputError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [], fps=25)
    with pytest.raises(InputError):
        frame_count_4k1(0)


def test_video_without_frames(tmp_path):
    path = tmp_path / "empty.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    container.start_encoding()
    container.close()
    with pytest.raises(InputError, match="empty.mp4"):
        read_video(path)


def test_display_rotation_turns_frames_upright():
    from fantasy_portrait.io.video import apply_display_rotation

    img = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
    assert apply_display_rotation(img, 0) is img
    clockwise = apply_display_rotation(img, -90)  # phone portrait clip
    assert clockwise.shape == (3, 2, 1) and clockwise[0, 0, 0] == 3 and clockwise[0, 1, 0] == 0
    assert apply_display_rotation(img, 90)[0, 0, 0] == 2
    np.testing.assert_array_equal(apply_display_rotation(img, 180), img[::-1, ::-1])


@pytest.mark.parametrize(
    "source_fps,count,fps", [(15, 59, 25), (23, 146, 25), (30, 1004, 25), (25, 7, 30), (24, 10, 7)]
)
def test_probe_predicts_exactly_what_the_reader_yields(tmp_path, source_fps, count, fps):
    """probe_video counts the frames from the packets and frames_at(fps) is exactly the number of frames
    the resampler yields (the faces bar's total: it once ended at 837/840)."""
    path = write_video(tmp_path / "v.mp4", np.zeros((count, 16, 16, 3), np.uint8), fps=source_fps)
    info = probe_video(path)
    assert info.num_frames == count and info.fps == pytest.approx(source_fps)
    assert info.frames_at(fps) == sum(1 for _ in iter_video_frames(path, fps=fps))
    assert info.frames_at(None) == count


def test_frame_ranges_and_selected_frames(tmp_path):
    from fantasy_portrait.io import keyframe_indices, read_frames

    path = write_video(tmp_path / "r.mp4", _coded_frames(40), fps=20)
    got = list(iter_video_frames(path, start=10, end=15, with_index=True))
    assert [i for i, _ in got] == list(range(10, 15))
    np.testing.assert_array_equal(_decode_index(np.stack([f for _, f in got])), np.arange(10, 15))
    picked = read_frames(path, [3, 31, 7])
    assert sorted(picked) == [3, 7, 31]
    np.testing.assert_array_equal(_decode_index(np.stack([picked[k] for k in (3, 7, 31)])), [3, 7, 31])
    assert keyframe_indices(path)[0] == 0
    with pytest.raises(ValueError, match="without fps"):
        next(iter_video_frames(path, fps=25, start=3))


def test_write_failures_are_output_errors_and_leave_nothing(tmp_path, monkeypatch):
    """Permission denied while muxing or at the final rename: one OutputError naming the target, the
    temporary file removed, an existing file untouched. Errors of the frames themselves pass through."""
    from fantasy_portrait.errors import OutputError
    from fantasy_portrait.io import video

    target = tmp_path / "keep.mp4"
    target.write_bytes(b"old")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(video.os, "replace", refuse)
    with pytest.raises(OutputError, match="keep.mp4: cannot write the video .Permission denied"):
        write_video(target, _coded_frames(3), fps=10)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]
    monkeypatch.undo()

    real_open = av.open

    class Full:
        def __init__(self, container):
            self.c = container

        def __getattr__(self, name):
            return getattr(self.c, name)

        def mux(self, packet):
            import errno

            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(
        av,
        "open",
        lambda p, mode="r", **k: Full(real_open(p, mode, **k)) if mode == "w" else real_open(p, mode, **k),
    )
    with pytest.raises(OutputError, match="no space left on the device"):
        write_video(target, _coded_frames(3), fps=10)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]


def test_interrupt_while_writing_removes_the_temporary_file(tmp_path):
    target = tmp_path / "out.mp4"

    def frames():
        yield np.zeros((16, 16, 3), np.uint8)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_video(target, frames(), fps=10)
    assert list(tmp_path.iterdir()) == []


def test_frame_rate_rule_header_then_timestamps_else_refused(tmp_path, monkeypatch):
    """The one frame-rate rule: the header's rate, else the packets' timestamps, else refused by name
    (the reader used to assume 25 fps silently)."""
    from fantasy_portrait.io import video

    many = write_video(tmp_path / "many.mp4", _coded_frames(10), fps=20)
    one = write_video(tmp_path / "one.mp4", _coded_frames(1), fps=20)
    assert probe_video(many).fps == pytest.approx(20)
    monkeypatch.setattr(video, "_header_rate", lambda stream: None)  # a header without a rate
    assert probe_video(many).fps == pytest.approx(20)  # from the timestamps
    assert len(read_video(many, fps=10)) == 5
    with pytest.raises(InputError, match="one.mp4: the video has no frame rate"):
        probe_video(one)
