"""``fantasy-portrait`` command line: a thin layer that parses arguments and calls the library.

Subcommands live in :mod:`fantasy_portrait.commands`, one module each, discovered at start-up so a
new command is one new file. :func:`main` is the one place that turns an exception into what the
user sees: one ``error:`` line on stderr, the last line printed, and exit code 2 (130/143 when
interrupted by SIGINT/SIGTERM, after the partial outputs are removed). Log records go to stderr
only from WARNING up unless ``-v`` (INFO) or ``-vv`` (DEBUG and the native libraries' own logs).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback

from . import __version__, console
from .errors import error_line, one_line


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's error form: one ``error:`` line (no usage block), exit 2."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="fantasy-portrait",
        description="Animate every face of a portrait with the expressions, lips, eyes and head motion of "
        "driving videos (FantasyPortrait).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbose_help = "more messages: -v progress of the stages (INFO), -vv debugging and native libraries' logs"
    parser.add_argument("-v", "--verbose", action="count", default=0, help=verbose_help)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    from . import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    for sub in _subcommand_parsers(parser):  # -v also after the command name
        sub.add_argument("-v", "--verbose", dest="sub_verbose", action="count", default=0, help=verbose_help)
    return parser


def _subcommand_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found.append(sub)
                found.extend(_subcommand_parsers(sub))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbosity = args.verbose + getattr(args, "sub_verbose", 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with console.session(verbosity):
        try:
            return int(args.func(args) or 0)
        except SystemExit:
            raise
        except BaseException as exc:  # noqa: BLE001 - the one place that reports every failure
            line = error_line(exc)
            sys.stdout.flush()
            if line is None:  # not an error a user can cause: a bug, shown as such
                if verbosity > 0:
                    traceback.print_exc()
                line = (
                    f"unexpected {exc.__class__.__name__}: {one_line(str(exc))} (this is a bug; please "
                    "report it with the output of the same command run with -v)"
                )
                print(f"error: {line}", file=sys.stderr, flush=True)
                return 1
            print(f"error: {line}", file=sys.stderr, flush=True)
            return console.exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
