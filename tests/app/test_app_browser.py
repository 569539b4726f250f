"""The app in a real headless Chromium: uploads, numbered faces, mapping, the synthetic example run on
the CPU with its result video playing, cancelling a run, the one-line error for a portrait without a
face, and the released-weights path with an example folder (tiny random weights)."""

from __future__ import annotations

import re

import numpy as np


def _expect():
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)  # the shared 2-core box can be slow
    return expect


def _wait_video(page, selector: str, timeout: float = 60_000) -> dict:
    """Wait for a playable <video> under ``selector``; play it (muted) and return its state."""
    page.wait_for_function(
        f"() => {{ const v = document.querySelector('{selector} video'); "
        "return v && v.readyState >= 1 && v.videoWidth > 0; }",
        timeout=timeout,
    )
    return page.evaluate(
        f"""async () => {{
            const v = document.querySelector('{selector} video');
            v.muted = true;
            await v.play();
            const t0 = v.currentTime;
            await new Promise(r => setTimeout(r, 400));
            return {{readyState: v.readyState, width: v.videoWidth, height: v.videoHeight,
                     t0, t1: v.currentTime, paused: v.paused, src: v.currentSrc}};
        }}"""
    )


def _set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input").first
    box.fill(str(value))
    box.press("Tab")


def _load_example(page, name_part: str) -> None:
    dropdown = page.locator("#example input")
    dropdown.click()
    page.get_by_role("option", name=re.compile(re.escape(name_part))).click()
    page.locator("#load-example").click()


def test_upload_numbered_faces_and_mapping(page, engine, screenshot):
    expect = _expect()
    ex = engine.example(engine.example_names()[0])  # the synthetic portrait and drivers as plain files
    page.locator("#portrait input[type=file]").set_input_files(str(ex.portrait))
    expect(page.locator("#portrait img")).to_be_visible()
    page.locator("#driving input[type=file]").set_input_files([str(d) for d in ex.driving])
    info = page.locator("#faces-info textarea")
    # The upload alone finds the faces: two portrait faces numbered left to right, driver i -> face i.
    expect(info).to_have_value(re.compile(r"2 face\(s\), numbered left to right"), timeout=60_000)
    expect(info).to_have_value(re.compile(r"driver 0: driver_1\.mp4.*-> portrait face 0"))
    expect(info).to_have_value(re.compile(r"driver 1: driver_2\.mp4.*-> portrait face 1"))
    expect(page.locator("#mapping textarea, #mapping input").first).to_have_value("0:0,1:1")
    faces = page.locator("#faces img")
    expect(faces).to_be_visible()
    first_src = faces.get_attribute("src")
    width = page.evaluate("() => document.querySelector('#faces img').naturalWidth")
    assert width >= 512  # the 128x64 synthetic portrait is drawn enlarged so the numbers can be read
    tracks = _wait_video(page, "#tracks")
    assert tracks["width"] > 0
    expect(page.locator(".progress-text")).to_have_count(0)  # nothing still running
    screenshot(page, "app_faces")

    # Swap with the list of driver 0: picking the face driver 1 has swaps the two.
    mapping = page.locator("#mapping textarea, #mapping input").first
    page.locator("#map-driver-0 input").click()
    page.get_by_role("option", name="portrait face 1").click()
    expect(mapping).to_have_value("0:1,1:0")
    expect(info).to_have_value(re.compile(r"driver 0: driver_1\.mp4.*-> portrait face 1"))
    expect(info).to_have_value(re.compile(r"driver 1: driver_2\.mp4.*-> portrait face 0"))
    expect(faces).not_to_have_attribute("src", first_src)
    expect(page.locator("#map-driver-1 input")).to_have_value("portrait face 0")  # the lists follow
    screenshot(page, "app_mapping", page.locator("#faces"))

    mapping.fill("0:0,1:-")  # the text form: driver 1 unused, portrait face 1 keeps still
    page.locator("#apply-mapping").click()
    expect(info).to_have_value(re.compile(r"driver 1: driver_2\.mp4.*-> unused"))
    expect(info).to_have_value(re.compile(r"portrait face\(s\) 1 keep still"))

    mapping.fill("0:1,1:1")  # two drivers on one face: a one-line message, the preview stays
    page.locator("#apply-mapping").click()
    expect(page.locator("[data-testid=toast-text]").first).to_contain_text("two driving faces")
    expect(faces).to_be_visible()
    expect(info).to_have_value(re.compile(r"driver 1: driver_2\.mp4.*-> unused"))


def test_synthetic_example_runs_on_cpu_and_plays(page, screenshot):
    expect = _expect()
    _load_example(page, "synthetic two-character portrait")
    info = page.locator("#faces-info textarea")
    expect(info).to_have_value(re.compile(r"2 face\(s\)"), timeout=60_000)
    # The example set its settings (128 px, 25 fps); make the run short for the test.
    page.locator("#group-video").get_by_text("video", exact=True).first.click()  # open the section
    expect(page.locator("#setting-max-size input").first).to_have_value("128")
    _set_number(page, "setting-num-steps", 2)
    page.locator("#run").click()
    # Live progress while it runs, drawn by Gradio in the output components.
    expect(page.locator("#status .progress-text, #status .progress-level").first).to_be_visible(
        timeout=30_000
    )
    status = page.locator("#status textarea")
    expect(status).to_have_value(re.compile(r"^done: 17 frames, 128x64, 25 fps, 2 face"), timeout=120_000)
    result = _wait_video(page, "#result")
    assert (result["width"], result["height"]) == (128, 64)
    assert result["t1"] > result["t0"] or not result["paused"]  # it plays
    sbs = _wait_video(page, "#side-by-side")
    assert sbs["width"] > 3 * 128  # drivers | result | ground truth
    downloads = "".join(page.locator("#downloads").inner_text().split())
    assert "result.mp4" in downloads and "side_by_side.mp4" in downloads and "summary.json" in downloads
    screenshot(page, "app_result", page.locator("#outputs"))


def test_cancel_a_run(page, engine):
    expect = _expect()
    _load_example(page, "synthetic two-character portrait")
    expect(page.locator("#faces-info textarea")).to_have_value(re.compile(r"2 face\(s\)"), timeout=60_000)
    _set_number(page, "setting-num-steps", 400)
    page.locator("#run").click()
    progress = page.locator("#status .progress-text").first
    expect(progress).to_contain_text(re.compile(r"[1-9]\d*/400"), timeout=60_000)  # denoising has started
    page.locator("#cancel").click()
    status = page.locator("#status textarea")
    expect(status).to_have_value(re.compile(r"run cancelled at step \d+ of 400"), timeout=60_000)
    # The device is free again at once: the lock is released.
    assert not engine._run_lock.locked()


def test_portrait_without_a_face_is_a_message(page, engine, tmp_path, screenshot):
    from fantasy_portrait.io import save_image

    expect = _expect()
    landscape = np.zeros((160, 240, 3), np.uint8)  # sky, meadow and a sun: no face anywhere
    landscape[:100] = (120, 180, 235)
    landscape[100:] = (90, 160, 70)
    yy, xx = np.mgrid[0:160, 0:240]
    landscape[(yy - 45) ** 2 + (xx - 180) ** 2 < 20**2] = (250, 215, 60)
    path = tmp_path / "landscape.png"
    save_image(path, landscape)
    ex = engine.example(engine.example_names()[0])
    page.locator("#driving input[type=file]").set_input_files(str(ex.driving[0]))
    expect(page.locator("#driving").get_by_text("driver_1.mp4")).to_be_visible()
    page.locator("#portrait input[type=file]").set_input_files(str(path))
    toast = page.locator("[data-testid=toast-text].error").first
    expect(toast).to_contain_text("landscape.png: no face found", timeout=60_000)
    text = toast.inner_text()
    assert "\n" not in text.strip() and "Traceback" not in page.content()
    assert "'face boxes'" in text  # the CLI's --face-boxes named as the page's control
    page.wait_for_timeout(500)  # the toast fades in
    screenshot(page, "app_error")


def test_released_weights_example_folder(page):
    """With --weights and --examples the folder's examples are offered and run with the released
    pipeline (tiny random weights here: noise, but the whole path)."""
    expect = _expect()
    assert page.locator("#model").inner_text().count("FantasyPortrait") == 1
    _load_example(page, "anime man + laughing man")
    info = page.locator("#faces-info textarea")
    expect(info).to_have_value(re.compile(r"1 face\(s\).*driver 0: fp_jgz\.mp4", re.S), timeout=60_000)
    page.locator("#run").click()
    status = page.locator("#status textarea")
    expect(status).to_have_value(re.compile(r"^done: 5 frames, 64x64"), timeout=120_000)
    result = _wait_video(page, "#result")
    assert (result["width"], result["height"]) == (64, 64)
