"""The run's journal: one JSON line per finished unit of work, so a run can stop at any moment.

Only the parent process writes it. Each record is appended with a single ``write`` of one complete
line followed by ``fsync``; a line cut short by a crash is the only possible damage and is ignored
(with a warning) when the journal is read back, so the clip it described is simply done again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..errors import InputError

logger = logging.getLogger(__name__)


class Journal:
    """Append-only JSONL log of ``{"kind": "config"|"video"|"clip", ...}`` records."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def read(self) -> list[dict]:
        """All complete records; a truncated last line (crash mid-write) is dropped."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                if number == len(lines):  # last line without newline: cut short by a crash
                    logger.warning("%s: ignoring an incomplete last record", self.path)
                    self._truncate_to(len(raw) - len(line))
                    break
                raise InputError(f"{self.path}: line {number} is not valid JSON ({exc})") from exc
        return records

    def _truncate_to(self, size: int) -> None:
        with self.path.open("r+b") as handle:
            handle.truncate(size)

    def append(self, record: dict) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = (json.dumps(record, sort_keys=True, allow_nan=True) + "\n").encode()
        os.write(self._fd, data)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
