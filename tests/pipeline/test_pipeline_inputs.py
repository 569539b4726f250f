"""The Python API a notebook user expects: images and frames in memory in, frames out, a step
callback for progress and cancellation (``pipeline/inputs.py`` + ``FantasyPortraitPipeline.__call__``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fantasy_portrait.errors import InputError
from fantasy_portrait.io import VideoFrames, read_video
from fantasy_portrait.pipeline.inputs import driver_list, image_array, portrait_array, prepare_inputs


def _rgb(h=40, w=50, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_portrait_forms_give_the_same_array():
    a = _rgb()
    forms = [
        a,
        Image.fromarray(a),
        a.astype(np.float32) / 255,
        torch.from_numpy(a).permute(2, 0, 1),  # channel-first tensor
        np.concatenate([a, np.full((*a.shape[:2], 1), 255, np.uint8)], -1),  # opaque RGBA
    ]
    for x in forms:
        got, name = portrait_array(x)
        assert got.dtype == np.uint8 and np.array_equal(got, a), type(x).__name__
        assert name.startswith("portrait (")
    grey = image_array(a[..., 0])
    assert grey.shape == (40, 50, 3) and np.array_equal(grey[..., 2], a[..., 0])
    clear = np.zeros((20, 20, 4), np.uint8)  # fully transparent: white, as io.load_image composites
    assert (image_array(clear) == 255).all()


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((40, 50, 2), np.uint8), "expected an \\(H, W, 3\\)"),
        (np.full((40, 50, 3), 1.5, np.float32), "float pixels must lie in \\[0, 1\\]"),
        (np.full((40, 50, 3), 300, np.int32), "integer pixels"),
        (np.zeros((8, 50, 3), np.uint8), "too small"),
    ],
)
def test_bad_portraits_are_one_line_errors(bad, message):
    with pytest.raises(InputError, match=message):
        portrait_array(bad)


def test_driver_forms():
    clip = np.stack([_rgb(32, 32, s) for s in range(5)])
    assert len(driver_list("a.mp4")) == 1 and len(driver_list(["a.mp4", "b.mp4"])) == 2
    assert len(driver_list(clip)) == 1  # one (F, H, W, 3) array
    assert len(driver_list(list(clip))) == 1  # a flat list of frames is one driver
    assert len(driver_list([clip, list(clip)])) == 2  # a list of clips is several
    assert len(driver_list([Image.fromarray(f) for f in clip])) == 1
    with pytest.raises(InputError, match="frames differ in size"):
        prepare_inputs(_rgb(), [[clip[0], clip[0][:16]]])
    with pytest.raises(InputError, match="no driving video"):
        prepare_inputs(_rgb(), [])


def test_frames_in_memory_become_lossless_files_at_their_rate():
    clip = np.stack([_rgb(33, 47, s) for s in range(9)])  # odd sizes stay (no chroma subsampling)
    with prepare_inputs(_rgb(), [clip, VideoFrames(clip[:4], 12.5, 12.5, np.arange(4))], fps=25) as inputs:
        a, b = inputs.videos
        assert np.array_equal(read_video(a, fps=25).frames, clip)
        assert np.array_equal(read_video(b, fps=12.5).frames, clip[:4])
        assert read_video(b, fps=25).frames.shape[0] == 8  # 12.5 fps resampled to 25: each frame twice
        folder = a.parent
    assert not folder.exists()  # removed when the inputs are closed


@pytest.fixture(scope="module")
def synthetic():
    """The shipped tiny synthetic pipeline and a synthetic case (portrait + two drivers) as arrays."""
    from fantasy_portrait.synthetic.cases import make_case
    from fantasy_portrait.synthetic.tiny_model import build_pipeline

    return build_pipeline(), make_case(0)


def test_notebook_arrays_in_frames_out_and_the_callback_cancels(synthetic):
    pipe, case = synthetic
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = dict(max_size=128, num_steps=2, window_frames=None, progress=False, seed=3)
        drivers_arrays = [d.frames for d in case.drivers]
        steps = []

        def record(p, step, timestep, kwargs):
            steps.append((step, float(timestep), tuple(kwargs["latents"].shape)))
            return kwargs

        a = pipe(case.portrait, drivers_arrays, callback_on_step_end=record, **settings)
        assert a.output is None and a.frames.shape == (17, 64, 128, 3) and a.frames.dtype == np.uint8
        assert [s[0] for s in steps] == [0, 1] and steps[0][1] > steps[1][1]  # noise level falls
        assert len(a.faces) == 2 and a.mapping == [0, 1]

        # The same frames as PIL images in a list per driver, and the portrait as a PIL image.
        pil = [[Image.fromarray(f) for f in d] for d in drivers_arrays]
        b = pipe(Image.fromarray(case.portrait), pil, **settings)
        assert np.array_equal(a.frames, b.frames)

        def cancel_first(p, step, timestep, kwargs):
            p.interrupt = True
            return kwargs

        from fantasy_portrait.pipeline.pipeline import Cancelled

        with pytest.raises(Cancelled, match="step 1"):
            pipe(case.portrait, drivers_arrays, callback_on_step_end=cancel_first, **settings)
        # Nothing of the cancelled call leaks into the next one.
        c = pipe(case.portrait, drivers_arrays, **settings)
        assert np.array_equal(a.frames, c.frames)
    finally:
        torch.set_num_threads(before)
