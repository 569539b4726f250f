"""Outputs that appear whole or not at all.

Files are written under a temporary name and renamed (``write_video``, ``save_image``). A command
that fills a new folder wraps the work in :func:`new_output_folder`: if the work fails or is
interrupted, the folder it created is removed again (a folder that existed before is left alone).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputError, os_error_reason


def check_output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """A folder path that can be created or used: not an existing file, its parent not a file.
    Raises OutputError naming it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder (the {what})")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise OutputError(f"{path}: {parent} is a file, so the {what} cannot be created there")
    return path


@contextmanager
def new_output_folder(path: str | os.PathLike, what: str = "output folder") -> Iterator[Path]:
    """Create ``path`` if needed; remove it again if the block fails and it did not exist before."""
    path = check_output_folder(path, what)
    existed = path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the {what} ({os_error_reason(exc)})") from exc
    try:
        yield path
    except BaseException:
        if not existed:
            shutil.rmtree(path, ignore_errors=True)
        raise


def check_output_file(path: str | os.PathLike, suffix: str | None = None, what: str = "output") -> Path:
    """A file path that can be written: the right suffix, not a folder, its folder exists and is
    writable, the file itself writable if it exists (it is replaced only when the new one is complete).
    Raises OutputError naming it."""
    path = Path(path)
    if suffix is not None and path.suffix.lower() != suffix:
        raise OutputError(f"{path}: the {what} must be a {suffix} file")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, not a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        blocker = next((p for p in [folder, *folder.parents] if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise OutputError(f"{path}: folder {folder} does not exist ({blocker} is a file)")
        raise OutputError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"{path}: not writable")
    return path
