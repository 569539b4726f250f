"""Dataset curation (SPEC §10): raw videos -> single-shot clips with scores -> Parquet manifest.

Public API (see docs/curation.md):
- :class:`CurationConfig`: every threshold and setting;
- :func:`curate`: run (resumable; serial, process pool or Ray Data) -> :class:`CurationResult`;
- :func:`read_manifest`: the manifest as a pyarrow Table.
"""

from .config import REASONS, CurationConfig
from .manifest import SCHEMA, read_manifest
from .runner import EXECUTORS, CurationResult, curate

__all__ = ["EXECUTORS", "REASONS", "SCHEMA", "CurationConfig", "CurationResult", "curate", "read_manifest"]
