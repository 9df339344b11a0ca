"""One run's engine figures as JSON, for A/B comparisons of two trees.

Run it once per tree, alternating, each tree's ``src`` first on ``PYTHONPATH``::

    for i in 1 2 3 4 5; do
        PYTHONPATH=/path/to/old/src .venv/bin/python benchmarks/ab_engine.py
        PYTHONPATH=src .venv/bin/python benchmarks/ab_engine.py
    done

Measures the bulk map and the warm round trip as ``procesos bench`` does, the
bulk map through ``Executor.map`` (automatic chunks), and a map with an
explicit ``chunksize`` of quick items.
"""

from __future__ import annotations

import json

import procesos
from procesos._cli._bench import _best, _median_round_trip, square


def main() -> None:
    data = list(range(200_000))
    small = data[:50_000]
    with procesos.Pool(2) as pool, procesos.Executor(2) as ex:
        pool.map(square, data[:1000])
        out = {
            "bulk map, M tasks/s": len(data) / _best(lambda: pool.map(square, data), 5) / 1e6,
            "warm round trip, us": _median_round_trip(
                lambda: ex.submit(square, 3).result(), 2000) * 1e6,
            "Executor.map, M tasks/s": len(data) / _best(
                lambda: list(ex.map(square, data)), 5) / 1e6,
            "map with chunksize=1000, M tasks/s": len(small) / _best(
                lambda: list(ex.map(square, small, chunksize=1000)), 3) / 1e6,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
