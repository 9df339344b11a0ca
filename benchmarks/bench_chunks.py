"""Maps whose items carry data: each library's default chunking, side by side.

    .venv/bin/python benchmarks/bench_chunks.py [--repeat 5] [--mb 50]

Each workload maps ``a * 2`` over numpy arrays of one size (1 KB to 500 KB,
``--mb`` megabytes in all): the arguments and the results cross the
processes. Two workers each; every library with the chunking a user gets by
default (procesos: chosen from measured durations and bytes; the standard
library's ``Pool.map``: a quarter of the items per worker and round, split in
four; ``ProcessPoolExecutor.map``: one item at a time; loky: the same; joblib:
its auto-batching). Best wall time of ``--repeat`` runs after a warm-up, in
milliseconds, and throughput in MB/s of arguments. Peers that are not
installed are skipped.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gc
import importlib.util
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _transport_tasks as tasks
import procesos
from procesos._cli._bench import compile_bytecode

SIZES_KB = (1, 10, 100, 500)
Mapper = Callable[[list[np.ndarray]], object]


def _libraries() -> Iterator[tuple[str, Callable[[], contextlib.AbstractContextManager[Mapper]]]]:
    @contextlib.contextmanager
    def procesos_pool() -> Iterator[Mapper]:
        with procesos.Pool(2) as pool:
            yield lambda arrays: pool.map(tasks.doubled, arrays)

    @contextlib.contextmanager
    def procesos_executor() -> Iterator[Mapper]:
        with procesos.Executor(2) as ex:
            yield lambda arrays: list(ex.map(tasks.doubled, arrays))

    @contextlib.contextmanager
    def stdlib_pool() -> Iterator[Mapper]:
        with multiprocessing.get_context("forkserver").Pool(2) as pool:
            yield lambda arrays: pool.map(tasks.doubled, arrays)

    @contextlib.contextmanager
    def stdlib_ppe() -> Iterator[Mapper]:
        ctx = multiprocessing.get_context("forkserver")
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
            yield lambda arrays: list(ex.map(tasks.doubled, arrays))

    yield "procesos.Pool", procesos_pool
    yield "procesos.Executor", procesos_executor
    yield "multiprocessing.Pool (forkserver)", stdlib_pool
    yield "ProcessPoolExecutor (forkserver)", stdlib_ppe
    if importlib.util.find_spec("loky"):
        @contextlib.contextmanager
        def loky_executor() -> Iterator[Mapper]:
            import loky

            ex = loky.get_reusable_executor(max_workers=2)
            yield lambda arrays: list(ex.map(tasks.doubled, arrays))

        yield "loky", loky_executor
    if importlib.util.find_spec("joblib"):
        @contextlib.contextmanager
        def joblib_parallel() -> Iterator[Mapper]:
            import joblib

            with joblib.Parallel(n_jobs=2) as parallel:
                yield lambda arrays: parallel(joblib.delayed(tasks.doubled)(a) for a in arrays)

        yield "joblib (loky)", joblib_parallel


def _best(fn: Mapper, arrays: list[np.ndarray], repeat: int) -> float:
    fn(arrays)  # warm-up: workers started, chunk sizes learned
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn(arrays)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mb", type=float, default=50.0, help="megabytes of arrays per map")
    args = parser.parse_args(argv)
    compile_bytecode()
    workloads = {kb: [np.random.rand(kb * 128) for _ in range(int(args.mb * 1000 / kb))]
                 for kb in SIZES_KB}
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, numpy {np.__version__}")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    results: dict[str, dict[int, float]] = {}
    for name, make in _libraries():
        with make() as mapper:
            for kb, arrays in workloads.items():
                seconds = _best(mapper, arrays, args.repeat)
                results.setdefault(name, {})[kb] = seconds
                print(f"  {name:34} {kb:4d} KB x {len(arrays):6d}  {seconds * 1e3:8.1f} ms",
                      flush=True)
    header = " | ".join(f"{kb} KB x {len(workloads[kb])}" for kb in SIZES_KB)
    print(f"\n| library | {header} |")
    print("|---|" + "---:|" * len(SIZES_KB))
    baseline = results["multiprocessing.Pool (forkserver)"]
    for name, row in results.items():
        cells = []
        for kb in SIZES_KB:
            mb_s = args.mb / row[kb]
            cells.append(f"{row[kb] * 1e3:.0f} ms, {mb_s:.0f} MB/s ({baseline[kb] / row[kb]:.1f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n(x: against multiprocessing.Pool's time for the same arrays)")


if __name__ == "__main__":
    main()
