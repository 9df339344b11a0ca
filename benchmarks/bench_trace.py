"""What recording a trace costs (issue 22): the engine with ``procesos.trace()`` off
and on, beside the standard library's Pool, in one run.

    .venv/bin/python benchmarks/bench_trace.py [--items 200000] [--rounds 5]

Workloads (2 workers each): the bulk map of ``procesos bench`` (``x * x`` over
*items* integers, automatic chunks), the same with 1 ms tasks (``chunksize=1``:
one slice per task), and the warm round trip of one trivial call
(``submit(...).result()``). Each figure is the best of *rounds*, taking turns
(off, on, standard library) so that the machine's drift hits all alike.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import procesos
from procesos._cli._bench_tasks import square


def sleep_1ms(x: int) -> int:
    time.sleep(0.001)
    return x


def bulk(run: object, items: int) -> float:
    start = time.perf_counter()
    run(square, range(items))  # type: ignore[operator]
    return items / (time.perf_counter() - start)


def round_trips(submit: object, n: int = 2000, get: bool = False) -> float:
    start = time.perf_counter()
    for i in range(n):
        submit(square, (i,)).get() if get else submit(square, i).result()  # type: ignore[operator]
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    best: dict[tuple[str, str], float] = {}

    def keep(key: tuple[str, str], value: float, higher_is_better: bool) -> None:
        old = best.get(key)
        if old is None or (value > old if higher_is_better else value < old):
            best[key] = value

    trace_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".bench_trace.json")
    with procesos.Executor(2) as ex, multiprocessing.get_context("fork").Pool(2) as pool:
        ex.submit(square, 1).result()
        for _ in range(args.rounds):
            for who in ("off", "on"):
                recording = procesos.trace(trace_path) if who == "on" else None
                if recording is not None:
                    recording.start()
                try:
                    keep(("bulk map (tasks/s)", who),
                         bulk(lambda f, xs: list(ex.map(f, xs)), args.items), True)
                    keep(("1 ms tasks, chunksize=1 (tasks/s)", who),
                         bulk(lambda f, xs: list(ex.map(sleep_1ms, xs, chunksize=1)), 400), True)
                    keep(("round trip (us)", who), round_trips(ex.submit), False)
                finally:
                    if recording is not None:
                        recording.stop()
            keep(("bulk map (tasks/s)", "stdlib"), bulk(pool.map, args.items), True)
            keep(("1 ms tasks, chunksize=1 (tasks/s)", "stdlib"),
                 bulk(lambda f, xs: pool.map(sleep_1ms, xs, chunksize=1), 400), True)
            keep(("round trip (us)", "stdlib"), round_trips(pool.apply_async, get=True), False)
    size = os.path.getsize(trace_path)
    os.unlink(trace_path)
    print(f"procesos.trace() overhead, {datetime.date.today()}, Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"best of {args.rounds}; the last 'on' trace file: {size / 1e6:.1f} MB")
    print()
    print("| workload | trace off | trace on | on / off | stdlib Pool (fork) |")
    print("|---|---:|---:|---:|---:|")
    for workload in ("bulk map (tasks/s)", "1 ms tasks, chunksize=1 (tasks/s)",
                     "round trip (us)"):
        off, on, std = (best[(workload, w)] for w in ("off", "on", "stdlib"))
        ratio = on / off
        fmt = "{:,.0f}" if "tasks/s" in workload else "{:.1f}"
        print(f"| {workload} | {fmt.format(off)} | {fmt.format(on)} | {ratio:.3f} "
              f"| {fmt.format(std)} |")


if __name__ == "__main__":
    main()
