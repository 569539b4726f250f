"""The one place that reports failures (cli.main + errors.error_line) and the console session:
one `error:` line and nothing after it, log levels by -v, native stderr silenced, signals restored."""

from __future__ import annotations

import logging
import os
import signal

import pytest
from command_helpers import assert_error, run

from fantasy_portrait import console
from fantasy_portrait.errors import InputError, Interrupted, OutputError, error_line


def _command(monkeypatch, func):
    """Replace `info`'s work with ``func`` (a command that raises or logs)."""
    from fantasy_portrait.commands import info

    monkeypatch.setattr(info, "run", func)


def test_multi_line_messages_become_one_line(monkeypatch, capsys):
    def fails(args):
        logging.getLogger("fantasy_portrait.test").info("an info line")
        raise InputError("x.yaml: not valid YAML:\n  in line 3\n    ^")

    _command(monkeypatch, fails)
    line = assert_error(run(capsys, "info"), "x.yaml: not valid YAML: in line 3 ^")
    assert "an info line" not in run(capsys, "info").err  # INFO only with -v
    verbose = run(capsys, "-v", "info")
    assert "an info line" in verbose.err and verbose.lines[-1] == line


def test_os_errors_and_interruptions_are_errors_a_user_can_act_on():
    assert (
        error_line(PermissionError(13, "Permission denied", "/out/x.mp4")) == "/out/x.mp4: Permission denied"
    )
    assert "no space left" in error_line(OSError(28, "No space left on device"))
    assert error_line(Interrupted("SIGTERM")).startswith("interrupted (SIGTERM)")
    assert error_line(KeyboardInterrupt()).startswith("interrupted (SIGINT)")
    assert error_line(OutputError("a\nb")) == "a b"
    assert error_line(ValueError("a bug")) is None

    class OutOfMemoryError(RuntimeError):  # what torch raises when CUDA memory runs out
        pass

    line = error_line(OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 ..."))
    assert line.startswith("out of memory (CUDA out of memory)") and "--max-size" in line


def test_a_bug_is_one_line_too_and_the_traceback_comes_with_v(monkeypatch, capsys):
    def bug(args):
        raise ZeroDivisionError("division by zero")

    _command(monkeypatch, bug)
    result = run(capsys, "info")
    assert_error(result, "unexpected ZeroDivisionError: division by zero", "this is a bug", code=1)
    verbose = run(capsys, "info", "-v")
    assert "Traceback" in verbose.err and verbose.lines[-1].startswith("error: unexpected ZeroDivisionError")


def test_sigterm_is_handled_only_while_a_command_runs(monkeypatch, capsys):
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def command(args):
        seen.append(signal.getsignal(signal.SIGTERM))
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("not reached: SIGTERM raises Interrupted")

    _command(monkeypatch, command)
    assert_error(run(capsys, "info"), "interrupted (SIGTERM)", code=143)
    assert seen and seen[0] is not before and signal.getsignal(signal.SIGTERM) == before


def test_native_stderr_is_silenced_unless_asked(capfd):
    with console.native_quiet():
        os.write(2, b"W0000 native noise\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    console.set_native_logs(True)
    try:
        with console.native_quiet():
            os.write(2, b"W0000 wanted\n")
    finally:
        console.set_native_logs(False)
    assert "W0000 wanted" in capfd.readouterr().err


def test_session_restores_logging(capsys):
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    with console.session(2):
        assert root.level == logging.DEBUG and console.native_logs_enabled()
    assert root.level == level and root.handlers == handlers and not console.native_logs_enabled()


@pytest.mark.parametrize(
    "argv", [["animate", "a.png"], ["nosuch"], ["info", "--preset"], ["-v", "bench", "run", "-x"]]
)
def test_argument_errors_are_one_line(argv, capsys):
    result = run(capsys, *argv)
    assert (
        result.code == 2 and len(result.lines) == 1 and result.lines[0].startswith("error: fantasy-portrait")
    )
