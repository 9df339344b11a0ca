"""The bulk map of ``procesos bench`` through each of procesos' map calls, beside
the standard library's fork ``Pool.map``, in one run.

    .venv/bin/python benchmarks/bench_bulk.py [--items 200000] [--rounds 3]

``x * x`` over *items* integers on 2 workers, the whole list of results
wanted: ``procesos.Executor.map`` with automatic chunks and with the standard
library's chunk size (items / 8, as ``Pool.map`` picks for 2 workers),
``procesos.Pool.map`` and ``multiprocessing`` fork ``Pool.map``. Each case
runs with only its own pool alive (idle workers of another pool would share
the CPUs), best of 5 maps after a warm-up; the cases take turns for *rounds*
rounds so that the machine's drift hits all alike. Prints M tasks/s per
round and the ratio of each round's best to the standard library's.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import sys
from collections.abc import Callable

import procesos
from procesos._cli._bench import _best
from procesos._cli._bench_tasks import square

WORKERS = 2


def best_rate(run: Callable[[], object], items: int, repeat: int = 5) -> float:
    """Tasks per second of the quickest of *repeat* runs, after one warm-up."""
    run()
    return items / _best(run, repeat)


def cases(items: int) -> dict[str, Callable[[list[int]], float]]:
    """Each case opens its pool, measures, and closes it."""
    stdlib_chunk = -(-items // (WORKERS * 4))

    def executor_auto(data: list[int]) -> float:
        with procesos.Executor(WORKERS) as ex:
            return best_rate(lambda: list(ex.map(square, data)), items)

    def executor_chunked(data: list[int]) -> float:
        with procesos.Executor(WORKERS) as ex:
            return best_rate(lambda: list(ex.map(square, data, chunksize=stdlib_chunk)), items)

    def procesos_pool(data: list[int]) -> float:
        with procesos.Pool(WORKERS) as pool:
            return best_rate(lambda: pool.map(square, data), items)

    def stdlib_pool(data: list[int]) -> float:
        with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
            return best_rate(lambda: pool.map(square, data), items)

    return {
        "procesos.Executor.map, automatic chunks": executor_auto,
        f"procesos.Executor.map, chunksize={stdlib_chunk}": executor_chunked,
        "procesos.Pool.map": procesos_pool,
        "multiprocessing.Pool.map (fork)": stdlib_pool,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    data = list(range(args.items))
    table = cases(args.items)
    rates: dict[str, list[float]] = {name: [] for name in table}
    for _ in range(args.rounds):
        for name, case in table.items():
            rates[name].append(case(data))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"# bench_bulk: {args.items} x*x, {WORKERS} workers, {now}, load {load:.2f}, "
        f"Python {sys.version.split()[0]}"
    )
    stdlib = rates["multiprocessing.Pool.map (fork)"]
    print("| map | M tasks/s, each round | best vs stdlib |")
    print("|---|---:|---:|")
    for name, values in rates.items():
        per_round = " / ".join(f"{v / 1e6:.2f}" for v in values)
        print(f"| {name} | {per_round} | {max(values) / max(stdlib):.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
