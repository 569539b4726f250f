"""Dataset curation (SPEC §10): raw videos -> single-shot clips with scores -> Parquet manifest.

Public API (see docs/curation.md):
- :class:`CurationConfig`: every threshold and setting;
- :func:`curate`: run (resumable; serial, process pool or Ray Data) -> :class:`CurationResult`;
- :func:`read_manifest`: the manifest as a pyarrow Table.

Names are imported on first use, so ``fantasy-portrait --help`` does not load pyarrow or OpenCV.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CurationConfig": "config",
    "REASONS": "config",
    "SCHEMA": "manifest",
    "read_manifest": "manifest",
    "EXECUTORS": "runner",
    "CurationResult": "runner",
    "curate": "runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
