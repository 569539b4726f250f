"""Shared test fixtures: paths to ../shared (golden tensors, real assets)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: tests need ../shared beside the checkout (CI provides it)")
    return path


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return _require(SHARED / "golden")


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    return _require(SHARED / "assets")
