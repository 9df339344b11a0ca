"""``python -m procesos`` and the ``procesos`` command: ``demo``, ``info``, ``bench``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``procesos`` command line with *argv* (default: ``sys.argv[1:]``).

    Returns the exit code: 0 on success, 2 for a usage error, 130 after Ctrl-C.
    """
    from ._cli._main import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
