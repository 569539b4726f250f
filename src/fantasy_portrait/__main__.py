"""``python -m fantasy_portrait ...``: the same command line as ``fantasy-portrait`` (what ``torchrun -m`` runs)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
