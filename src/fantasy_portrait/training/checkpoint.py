"""Crash-safe checkpoint folders.

A checkpoint is a folder ``step-NNNNNNNN`` under ``<output_dir>/checkpoints``. It is written under a
temporary name, every file and the folder are fsync'ed, and only then is it renamed into place and
the ``latest`` pointer replaced (both renames are atomic on POSIX). A crash at any moment therefore
leaves either the new complete checkpoint or the previous one; leftover temporary folders are
ignored and removed by the next save. ``COMPLETE`` is the last file written inside the folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

PREFIX = "step-"
TMP_PREFIX = ".tmp-"
LATEST = "latest"
COMPLETE = "COMPLETE"


def step_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_checkpoint(root: str | os.PathLike, step: int) -> Iterator[Path]:
    """Yield a temporary folder to fill; on normal exit it becomes ``root/step-NNNNNNNN``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(TMP_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f"{TMP_PREFIX}{step_name(step)}-{os.getpid()}"
    tmp.mkdir()
    try:
        yield tmp
        (tmp / COMPLETE).write_text(str(step))
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync_path(f)
        _fsync_path(tmp)
        final = root / step_name(step)
        if final.exists():  # re-saving the same step (e.g. the final save right after a periodic one)
            old = root / f"{TMP_PREFIX}old-{step_name(step)}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        pointer = root / f"{TMP_PREFIX}{LATEST}-{os.getpid()}"
        pointer.write_text(final.name)
        _fsync_path(pointer)
        os.replace(pointer, root / LATEST)
        _fsync_path(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_complete(path: Path) -> bool:
    return path.is_dir() and (path / COMPLETE).is_file()


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.glob(PREFIX + "*") if is_complete(p)]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint (the ``latest`` pointer if valid, else a scan), or None."""
    root = Path(root)
    pointer = root / LATEST
    if pointer.is_file():
        target = root / pointer.read_text().strip()
        if is_complete(target):
            newer = [
                p
                for p in list_checkpoints(root)
                if int(p.name[len(PREFIX) :]) > int(target.name[len(PREFIX) :])
            ]
            if not newer:
                return target
    found = list_checkpoints(root)
    return found[-1] if found else None


def prune_checkpoints(root: str | os.PathLike, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` complete checkpoints (never the newest one)."""
    found = list_checkpoints(root)
    for old in found[: max(0, len(found) - max(1, keep_last))]:
        shutil.rmtree(old, ignore_errors=True)
        logger.debug("removed old checkpoint %s", old)
