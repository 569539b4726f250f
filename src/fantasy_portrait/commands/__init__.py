"""CLI subcommands. Each module defines ``register(subparsers)``; ``cli.py`` discovers them.

A command module parses nothing itself beyond its own arguments and calls the library; the
handler it registers with ``set_defaults(func=...)`` returns an exit code (or None for 0).
"""
