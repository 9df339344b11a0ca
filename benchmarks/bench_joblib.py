"""joblib on procesos (``backend="procesos"``) side by side with joblib's default, loky.

Run: ``.venv/bin/python benchmarks/bench_joblib.py [--jobs N] [--rounds N] [--quick]``

Three workloads, each a ``Parallel(n_jobs=N)`` call (or scikit-learn's):

* (a) many small batches: ``delayed(inc)`` over 2,000 items with
  ``batch_size=1`` (the cost of one batch), and over 200,000 items with
  ``batch_size="auto"`` (joblib groups them);
* (b) ``GridSearchCV(SVC(), 6 candidates, cv=3, n_jobs=N)`` on ``load_digits``;
* (c) large arrays as arguments: 8 calls of ``np.sum`` on one 64 MiB array
  (joblib memmaps it once into a folder; procesos sends it through shared
  memory with each batch), and on 8 different 64 MiB arrays.

Backends: ``loky`` (its executor is reused across calls, so it is warm after
the warm-up call: the start-up it paid once is not counted), ``procesos``
(its shared pool, likewise kept warm between calls) and ``procesos, own
executor`` (``parallel_config(executor=ex)``: a pool the caller owns).
Rounds are interleaved, the order rotated each round; the table gives each
one's median wall time and the ratio loky / procesos (above 1: procesos is
faster). Prints one Markdown table and the command.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np
from joblib import Parallel, delayed, parallel_config

import procesos
import procesos.joblib  # registers the backend
from procesos._cli._bench import compile_bytecode


def inc(x: int) -> int:
    return x + 1


def small_batches(n: int) -> Callable[[], object]:
    return lambda: Parallel(batch_size=1)(delayed(inc)(i) for i in range(n))


def auto_batches(n: int) -> Callable[[], object]:
    return lambda: Parallel(batch_size="auto")(delayed(inc)(i) for i in range(n))


def grid_search() -> Callable[[], object]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    x, y = load_digits(return_X_y=True)

    def run() -> object:
        search = GridSearchCV(SVC(), {"C": [0.1, 1, 10], "gamma": [1e-3, 1e-4]}, cv=3)
        return search.fit(x, y).best_score_

    return run


def same_array(mib: int, calls: int) -> Callable[[], object]:
    array = np.random.default_rng(0).random(mib << 17)  # float64: 8 bytes each
    return lambda: Parallel(batch_size=1)(delayed(np.sum)(array) for _ in range(calls))


def different_arrays(mib: int, calls: int) -> Callable[[], object]:
    rng = np.random.default_rng(1)
    arrays = [rng.random(mib << 17) for _ in range(calls)]
    return lambda: Parallel(batch_size=1)(delayed(np.sum)(a) for a in arrays)


def main(argv: list[str]) -> int:
    compile_bytecode()  # as an installed procesos has it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller workloads, 2 rounds")
    parser.add_argument("--only", default="abc", help="which workloads: letters of a, b, c")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 2
    scale = 10 if args.quick else 1
    mib = 8 if args.quick else 64

    # Each workload's data is made when its turn comes, and dropped after.
    workloads: list[tuple[str, Callable[[], Callable[[], object]]]] = [
        (f"(a) {2000 // scale:,} tiny tasks, batch_size=1", lambda: small_batches(2000 // scale)),
        (f"(a) {200_000 // scale:,} tiny tasks, batch_size='auto'",
         lambda: auto_batches(200_000 // scale)),
        ("(b) GridSearchCV(SVC), 6 candidates x 3 folds, digits", grid_search),
        (f"(c) np.sum x 8 calls, one {mib} MiB array", lambda: same_array(mib, 8)),
        (f"(c) np.sum x 8 calls, 8 different {mib} MiB arrays",
         lambda: different_arrays(mib, 8)),
    ]
    workloads = [(name, make) for name, make in workloads if name[1] in args.only]
    own = procesos.Executor(args.jobs)
    configs: list[tuple[str, dict[str, Any]]] = [
        ("loky", {"backend": "loky", "n_jobs": args.jobs}),
        ("procesos", {"backend": "procesos", "n_jobs": args.jobs}),
        ("procesos, own executor", {"backend": "procesos", "executor": own}),
    ]
    load = os.getloadavg()[0]
    times: dict[tuple[str, str], list[float]] = {}
    try:
        for name, make in workloads:
            run = make()
            for _, config in configs:  # warm up: loky's executor, imports, the zygote
                with parallel_config(**config):
                    run()
            for round_ in range(args.rounds):
                shift = round_ % len(configs)
                for label, config in configs[shift:] + configs[:shift]:
                    with parallel_config(**config):
                        started = time.perf_counter()
                        run()
                        times.setdefault((name, label), []).append(
                            time.perf_counter() - started)
    finally:
        own.shutdown()
    load = max(load, os.getloadavg()[0])

    labels = [label for label, _ in configs]
    print(f"joblib {joblib.__version__}, n_jobs={args.jobs}, {args.rounds} rounds, "
          f"median wall time; load average up to {load:.1f} on {os.cpu_count()} CPUs\n")
    print("| workload | " + " | ".join(labels) + " | loky / procesos | loky / own executor |")
    print("|---|" + "---:|" * (len(labels) + 2))
    for name, _ in workloads:
        medians = [statistics.median(times[(name, label)]) for label in labels]
        cells = [_format(m) for m in medians]
        print(f"| {name} | " + " | ".join(cells)
              + f" | {medians[0] / medians[1]:.2f} | {medians[0] / medians[2]:.2f} |")
    print(f"\nCommand: .venv/bin/python benchmarks/bench_joblib.py {' '.join(argv)}".rstrip())
    return 0


def _format(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
