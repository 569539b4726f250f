"""Fixtures of the app tests: one app server per session (tiny random weights in the released layout
plus the shipped tiny synthetic model) and a headless Debian Chromium driven by Playwright.

No browser is downloaded: Playwright launches the system's Chromium (``$CHROMIUM_PATH``, default
/usr/lib/chromium/chromium, Debian's ``chromium`` package; scripts/setup.sh installs it). Outside CI
(``$CI`` unset) the browser tests skip, saying why, when Chromium, Playwright or Gradio is missing;
in CI they fail instead.

``FP_APP_SCREENSHOTS=DIR`` makes the browser tests save the documentation's screenshots into DIR
(``docs/images``; palette PNGs, a few tens of KB each).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO.parent / "shared" / "assets"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/lib/chromium/chromium")


def _missing() -> list[str]:
    out = []
    if not os.path.exists(CHROMIUM):
        out.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    for module in ("playwright", "gradio"):
        if importlib.util.find_spec(module) is None:
            out.append(f"the {module} package (bash scripts/setup.sh installs it)")
    return out


def require_browser() -> None:
    """Fail in CI, skip with the reason elsewhere, when the browser stack is missing."""
    missing = _missing()
    if not missing:
        return
    text = "browser tests need " + "; ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(text + " (CI installs them: scripts/setup.sh)")
    pytest.skip(text)


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny models run faster on one thread than on two busy cores; restore after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def assets() -> Path:
    if not ASSETS.is_dir():
        pytest.fail(f"{ASSETS} is missing: tests need ../shared beside the checkout")
    return ASSETS


@pytest.fixture(scope="session")
def app_tiny_weights(tmp_path_factory) -> Path:
    from fantasy_portrait.pipeline.tiny import write_tiny_weights

    folder = tmp_path_factory.mktemp("app_tiny_weights")
    write_tiny_weights(folder, seed=0)
    return folder


@pytest.fixture(scope="session")
def real_examples(tmp_path_factory, assets) -> Path:
    """An examples folder for the released-weights path: one real portrait and driver (../shared),
    with settings small enough for tiny random weights on a CPU."""
    folder = tmp_path_factory.mktemp("app_examples")
    (folder / "examples.json").write_text(
        json.dumps(
            [
                {
                    "name": "anime man + laughing man",
                    "portrait": str(assets / "fp_man.jpeg"),
                    "driving": [str(assets / "fp_jgz.mp4")],
                    "settings": {"max_frames": 5, "max_size": 64, "num_steps": 1, "window_frames": 0},
                }
            ]
        )
    )
    return folder


@pytest.fixture(scope="session")
def engine(tmp_path_factory, app_tiny_weights, real_examples):
    from fantasy_portrait.app import AppEngine

    return AppEngine(
        weights=app_tiny_weights, examples=real_examples, workdir=tmp_path_factory.mktemp("app_work")
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def browser_stack():
    """Checked before anything is built (fixtures are set up in argument order)."""
    require_browser()


@pytest.fixture(scope="session")
def app_url(browser_stack, tmp_path_factory, engine):
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
    from fantasy_portrait.app import build_app, launch

    engine.example(engine.example_names()[0])  # render the synthetic example before the clock runs
    demo = build_app(engine)
    port = free_port()
    launch(demo, server_name="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="session")
def browser(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url, request, tmp_path_factory):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(app_url)
    page.locator("#run").wait_for()
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        out = tmp_path_factory.getbasetemp() / "app_failures"
        out.mkdir(exist_ok=True)
        page.screenshot(path=str(out / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="session")
def screenshot():
    return _screenshot


def _screenshot(page, name: str, locator=None) -> Path | None:
    """Save docs/images/<name>.png when FP_APP_SCREENSHOTS is set (small palette PNG)."""
    folder = os.environ.get("FP_APP_SCREENSHOTS")
    if not folder:
        return None
    from PIL import Image

    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    target = locator if locator is not None else page
    target.screenshot(path=str(path))
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.width > 1100:
            im = im.resize((1100, round(im.height * 1100 / im.width)), Image.Resampling.LANCZOS)
        im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path
