"""Reading torch pickles (``.pth``, ``.ckpt``, ``.bin``): the project's one ``torch.load``.

Pickles are only ever read with ``weights_only=True`` (torch's restricted unpickler: tensors,
containers and numbers). A file that needs anything else is refused with one line saying so and
why; torch's own message, which suggests re-running with ``weights_only=False``, is never shown,
since that would run the code we just refused.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path

from ..errors import CheckpointError, one_line


def refusal_reason(message: str) -> str:
    """What the restricted unpickler objected to, in words, from torch's message."""
    found = re.search(r"GLOBAL\s+([\w.]+)", message)
    if found:
        return f"it would call {found.group(1)}"
    found = re.search(r"[Uu]nsupported operand (\d+)", message)
    if found:
        return f"it uses pickle instruction {found.group(1)}, which only arbitrary Python objects need"
    return "it holds Python objects other than tensors"


def load_torch_file(path: str | os.PathLike, what: str = "weights", mmap: bool = True):
    """``torch.load(path, weights_only=True)`` on the CPU (memory-mapped when the format allows).

    Raises CheckpointError (one line naming the file): missing, empty, truncated or not a torch file,
    or refused because loading it would run code.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: {what} file not found" if not path.is_dir() else f"{path}: is a folder"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the {what} file is empty")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch's zip format, or a pickle
        raise CheckpointError(
            f"{path}: cannot read the {what} file: not a torch checkpoint (neither zip nor pickle)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": noise before a refusal
            try:
                return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as exc:
                if not mmap or "mmap" not in str(exc):
                    raise
                return torch.load(str(path), map_location="cpu", weights_only=True)  # legacy format
    except pickle.UnpicklingError as exc:
        reason = refusal_reason(str(exc))
        raise CheckpointError(
            f"{path}: refused to load: {reason}, and only tensors are read from pickles (safe loading)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        first = one_line(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
        raise CheckpointError(
            f"{path}: cannot read the {what} file; it looks truncated or is not a torch checkpoint ({first})"
        ) from None
