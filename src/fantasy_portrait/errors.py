"""Errors a user can act on, and the one place that turns any exception into one line for the CLI.

Library code raises the classes below with a message that names the file (or option) and the
problem. :func:`error_line` is what the command line prints after ``error:``; it also covers the
few standard exceptions a user can cause without a bug in the program (a file system that refuses
a write, a full disk, memory running out).
"""

from __future__ import annotations

import errno
import os


class FantasyPortraitError(Exception):
    """Base class for every error meant for the user (bad input, missing files, wrong weights)."""


class InputError(FantasyPortraitError):
    """An input file (image, video, manifest, config) or option is missing, unreadable or unsuitable."""


class OutputError(FantasyPortraitError):
    """An output file or folder cannot be written (permissions, full disk, a folder in the way)."""


class CheckpointError(FantasyPortraitError):
    """A weight file or folder is missing, truncated, of the wrong model, or does not fit the model."""


class FaceError(FantasyPortraitError):
    """Faces could not be found, tracked or matched as needed."""


class ResourceError(FantasyPortraitError):
    """The run needs more memory (or another resource) than the machine or device has."""


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop (SIGINT or SIGTERM). A KeyboardInterrupt, so every
    ``except BaseException`` cleanup (temporary files) runs exactly as for Ctrl-C."""

    def __init__(self, signal_name: str = "SIGINT"):
        super().__init__(signal_name)
        self.signal_name = signal_name


def one_line(text: str) -> str:
    """Collapse a message onto one line (newlines and runs of spaces become single spaces)."""
    return " ".join(str(text).split())


def os_error_reason(exc: OSError) -> str:
    """The reason of an OSError in words ("Permission denied", "no space left on the device")."""
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.strerror:
        return str(exc.strerror)
    if exc.errno:
        return os.strerror(exc.errno)
    return one_line(str(exc)) or exc.__class__.__name__


def os_error_text(exc: OSError) -> str:
    """``FILE: reason`` for an OSError (``reason`` alone when it names no file)."""
    reason = os_error_reason(exc)
    return f"{exc.filename}: {reason}" if exc.filename is not None else reason


def error_line(exc: BaseException) -> str | None:
    """The one-line message for an exception a user can act on; None for a bug (unexpected type).

    FantasyPortraitError: its message. OSError (permission denied, no space left, ...): the file
    and the reason. MemoryError: out of memory. Interrupted/KeyboardInterrupt: which signal.
    """
    if isinstance(exc, FantasyPortraitError):
        return one_line(str(exc)) or exc.__class__.__name__
    if isinstance(exc, KeyboardInterrupt):
        name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
        return f"interrupted ({name}); partial outputs were removed"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch's CUDA OOM too
        first = str(exc).split(". ")[0] if str(exc) else ""
        return one_line(
            f"out of memory ({first}); lower --max-size, --max-frames or --window-frames, or "
            "use --memory model-offload/sequential"
            if first
            else "out of memory"
        )
    if isinstance(exc, OSError) and exc.errno is not None:
        return one_line(os_error_text(exc))
    return None
