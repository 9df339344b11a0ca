"""The task engine side by side with the standard library and its peers.

Run: ``.venv/bin/python benchmarks/bench_engine.py [--quick] [--plot FILE.png]``
(the same as ``procesos bench``); prints one Markdown table.
"""

from __future__ import annotations

import sys

from procesos._cli._bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
