"""What each slower fallback of ``procesos._compat`` costs, measured in one run.

Run: ``.venv/bin/python benchmarks/bench_compat.py [--rounds N]``

Each figure alternates the usual path (the private reach) and its fallback
forced, round by round, and prints the medians and their ratio:

- round trip: ``submit(f).result()`` of a no-op, one worker (``LightFuture``
  and the direct path, against plain futures through the dispatcher);
- bulk map: ``list(map(f, range(100_000)))``, two workers (the same switch);
- queue: 20,000 small ints through a ``procesos.Queue`` in one process
  (the batching feeder and ``get()`` fast path, against the standard library's).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import procesos
from procesos._engine import _sending
from procesos._sharing import _queues


def _noop(x: int) -> int:
    return x


def _round_trip(ex: procesos.Executor, n: int = 2000) -> float:
    start = time.perf_counter()
    for i in range(n):
        ex.submit(_noop, i).result()
    return (time.perf_counter() - start) / n * 1e6  # µs per call


def _bulk_map(ex: procesos.Executor, n: int = 100_000) -> float:
    start = time.perf_counter()
    list(ex.map(_noop, range(n)))
    return time.perf_counter() - start


def _queue(n: int = 20_000) -> float:
    queue = procesos.Queue()
    start = time.perf_counter()
    for i in range(n):
        queue.put(i)
    for _ in range(n):
        queue.get()
    elapsed = time.perf_counter() - start
    queue.close()
    queue.join_thread()
    return elapsed


def _compare(name: str, unit: str, rounds: int, run: Callable[[bool], float]) -> None:
    usual: list[float] = []
    fallback: list[float] = []
    run(True), run(False)  # warm up
    for _ in range(rounds):
        usual.append(run(True))
        fallback.append(run(False))
    a, b = statistics.median(usual), statistics.median(fallback)
    print(f"| {name} | {a:.3g} {unit} | {b:.3g} {unit} | {b / a:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds

    print("| what | usual | fallback | fallback / usual |")
    print("|---|---|---|---|")

    def with_futures(known: bool, workers: int, measure: Callable[[procesos.Executor], float],
                     pool: dict[int, procesos.Executor]) -> float:
        _sending.LIGHT_FUTURES = known
        return measure(pool[workers])

    pool = {1: procesos.Executor(max_workers=1), 2: procesos.Executor(max_workers=2)}
    try:
        for ex in pool.values():
            list(ex.map(_noop, range(100)))  # workers started
        _compare("round trip", "µs", rounds,
                 lambda known: with_futures(known, 1, _round_trip, pool))
        _compare("bulk map 100k", "s", rounds,
                 lambda known: with_futures(known, 2, _bulk_map, pool))
    finally:
        _sending.LIGHT_FUTURES = True
        for ex in pool.values():
            ex.shutdown()

    def queue(known: bool) -> float:
        _queues._INTERNALS_KNOWN = known
        return _queue()

    try:
        _compare("queue 20k small", "s", rounds, queue)
    finally:
        _queues._INTERNALS_KNOWN = True


if __name__ == "__main__":
    main()
