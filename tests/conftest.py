"""Shared test fixtures: paths to ../shared (golden tensors, real assets), and what happens without it.

../shared (golden tensors and real media) sits beside the checkout; CI provides it. When it is
missing, the tests that need it are SKIPPED with that reason, the rest run:
- tests that use the ``shared_dir``, ``golden_dir`` or ``assets_dir`` fixtures (or fixtures built on them),
- tests marked ``@pytest.mark.needs_shared``,
- tests in modules that hold a module-level path into ../shared (``ASSETS = ... / "shared" / "assets"``).
With ``FP_REQUIRE_SHARED=1`` (or ``CI`` set) a missing ../shared is an error instead, so CI never
skips them silently.

Local runs: ``python -m pytest -m "not slow"`` skips the tests marked slow (> ~20 s each); CI runs all.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NEED = "these tests need ../shared beside the checkout (CI provides it)"
MISSING_REASON = f"{SHARED} is missing: {NEED}"


def _shared_required() -> bool:
    return os.environ.get("FP_REQUIRE_SHARED", "") not in ("", "0") or bool(os.environ.get("CI"))


def _require(path: Path) -> Path:
    if not path.exists():
        if _shared_required():
            pytest.fail(f"{path} is missing (FP_REQUIRE_SHARED/CI set): {NEED}")
        pytest.skip(f"{path} is missing: {NEED}")
    return path


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_shared: needs ../shared (skipped with the reason when missing)")


def _uses_shared(item) -> bool:
    if item.get_closest_marker("needs_shared"):
        return True
    module = getattr(item, "module", None)
    for value in vars(module).values() if module is not None else ():
        if isinstance(value, Path):
            try:
                value.resolve().relative_to(SHARED.resolve())
                return True
            except ValueError:
                continue
    return False


def pytest_collection_modifyitems(config, items):
    if SHARED.is_dir():
        return
    if _shared_required():
        raise pytest.UsageError(f"FP_REQUIRE_SHARED/CI is set but {MISSING_REASON}")
    for item in items:
        if _uses_shared(item):
            item.add_marker(pytest.mark.skip(reason=MISSING_REASON))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def golden_dir(shared_dir) -> Path:
    return _require(shared_dir / "golden")


@pytest.fixture(scope="session")
def assets_dir(shared_dir) -> Path:
    return _require(shared_dir / "assets")
