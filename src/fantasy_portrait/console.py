"""What a command-line run looks like on the terminal: log levels, native libraries' logs, signals.

- :func:`session` (used by ``cli.main``): log records go to stderr at WARNING, INFO with ``-v``,
  DEBUG with ``-vv``; SIGTERM (and SIGHUP) are handled like SIGINT: they raise
  :class:`~fantasy_portrait.errors.Interrupted` in the main thread, so the same cleanup runs
  (temporary files removed) and the CLI ends with one ``error:`` line.
- :func:`native_quiet`: silences what native libraries print straight to the process's stderr
  (MediaPipe/absl/glog/TFLite ``W0000 ...`` lines) while the wrapped calls run. Everything that
  wraps such a library calls it; ``-vv`` or ``FANTASY_PORTRAIT_NATIVE_LOGS=1`` lets the lines through.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import Interrupted

NATIVE_LOGS_ENV = "FANTASY_PORTRAIT_NATIVE_LOGS"
# Names the native face stack reads at import time: keep glog and TensorFlow quiet even where the
# fd redirection below does not reach (a library imported outside a native_quiet block).
_QUIET_ENV = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}

_native_logs = os.environ.get(NATIVE_LOGS_ENV, "") not in ("", "0")
_lock = threading.RLock()
_depth = 0
_saved_fd: int | None = None


def native_logs_enabled() -> bool:
    return _native_logs


def set_native_logs(enabled: bool) -> None:
    """Let native libraries' own stderr lines through (True) or silence them (False, the default)."""
    global _native_logs
    _native_logs = bool(enabled)


@contextmanager
def native_quiet() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null while the block runs (nesting and threads allowed).

    Python's ``sys.stderr`` object is flushed first; what native code writes to fd 2 meanwhile is
    dropped. A no-op when native logs are enabled or fd 2 cannot be duplicated.
    """
    global _depth, _saved_fd
    if _native_logs:
        yield
        return
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    with _lock:
        if _depth == 0:
            try:
                sys.stderr.flush()
            except (AttributeError, ValueError, OSError):
                pass
            try:
                saved = os.dup(2)
                devnull = os.open(os.devnull, os.O_WRONLY)
            except OSError:
                saved = None
            if saved is not None:
                os.dup2(devnull, 2)
                os.close(devnull)
            _saved_fd = saved
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved_fd is not None:
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
                _saved_fd = None


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (test capture included)."""

    def __init__(self):
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stderr)
        super().emit(record)


class _Formatter(logging.Formatter):
    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and self.verbose:
            text += "\n" + self.formatException(record.exc_info)
        if self.verbose:
            return f"{record.levelname} {record.name}: {text}"
        return f"{record.levelname.lower()}: {text}"


SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s)


def _raise_interrupted(signum, frame) -> None:
    name = signal.Signals(signum).name
    # A second signal while cleaning up is ignored: the cleanup is short and must finish.
    signal.signal(signum, signal.SIG_IGN)
    raise Interrupted(name)


@contextmanager
def session(verbosity: int = 0) -> Iterator[None]:
    """Logging and signal handling for one command; everything is restored on exit.

    verbosity 0: warnings and errors only; 1 (``-v``): INFO; 2+ (``-vv``): DEBUG and native logs.
    """
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    root = logging.getLogger()
    handler = _StderrHandler()
    handler.setFormatter(_Formatter(verbose=verbosity > 0))
    before_level, before_native = root.level, _native_logs
    root.addHandler(handler)
    root.setLevel(level)
    warnings_logger = logging.getLogger("py.warnings")
    before_warnings = warnings_logger.level
    # Library deprecation notices are for developers: shown with -v only.
    warnings_logger.setLevel(logging.WARNING if verbosity > 0 else logging.ERROR)
    logging.captureWarnings(True)
    if verbosity >= 2:
        set_native_logs(True)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:  # SIGINT keeps Python's own handler (KeyboardInterrupt, every time)
            previous[sig] = signal.signal(sig, _raise_interrupted)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        logging.captureWarnings(False)
        warnings_logger.setLevel(before_warnings)
        root.removeHandler(handler)
        root.setLevel(before_level)
        set_native_logs(before_native)
        handler.flush()


def exit_code(exc: BaseException) -> int:
    """128 + signal number for an interruption (the shell's convention), else 2."""
    if isinstance(exc, KeyboardInterrupt):
        name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
        return 128 + int(getattr(signal, name, signal.SIGINT))
    return 2
