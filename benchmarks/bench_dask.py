"""procesos' Dask backend side by side with ``dask.distributed`` used directly.

Run: ``.venv/bin/python benchmarks/bench_dask.py [--workers N] [--tasks N] [--calls N]``

One local cluster (``Executor(backend="dask")``, N worker processes of one
thread), used through procesos and, through the executor's own ``Client``,
directly, in interleaved rounds:

* per-task overhead: ``submit(inc, i).result()`` one at a time, median;
* map throughput: ``list(ex.map(inc, range(N)))`` against
  ``client.gather(client.map(inc, range(N), pure=False))``, median and best
  of the rounds (procesos first in odd rounds, direct first in even ones).

Wall time depends on everything else the machine runs; the CPU time the
client, the scheduler and the workers spent (psutil), summed, measures what
each path costs whatever the load. Prints one Markdown table and the command
that reproduces it.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable

import psutil

import procesos
from procesos._cli._bench import compile_bytecode


def inc(x: int) -> int:
    return x + 1


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def measure(run: Callable[[], object], processes: list[psutil.Process]) -> tuple[float, float]:
    """Wall seconds and CPU seconds of the cluster's processes for one call of *run*."""
    cpu0, t0 = cpu_seconds(processes), time.perf_counter()
    run()
    return time.perf_counter() - t0, cpu_seconds(processes) - cpu0


def main(argv: list[str]) -> int:
    compile_bytecode()  # as an installed procesos has it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    with procesos.Executor(args.workers, backend="dask") as ex:
        start_s = time.perf_counter() - started
        client = ex.client
        for _ in range(20):  # warm up both paths
            ex.submit(inc, 1).result()
            client.submit(inc, 1, pure=False).result()
        processes = [psutil.Process()] + [
            psutil.Process(pid) for pid in {p.pid for p in ex._cluster.processes}
            | set(client.run(os.getpid).values())]

        def ours_once(i: int) -> object:
            return ex.submit(inc, i).result()

        def direct_once(i: int) -> object:
            return client.submit(inc, i, pure=False).result()

        def ours_map() -> object:
            return list(ex.map(inc, range(args.tasks)))

        def direct_map() -> object:
            return client.gather(client.map(inc, range(args.tasks), pure=False))

        once = {"procesos": ours_once, "direct": direct_once}
        maps = {"procesos": ours_map, "direct": direct_map}
        wall: dict[str, list[float]] = {"procesos": [], "direct": []}
        cpu: dict[str, list[float]] = {"procesos": [], "direct": []}
        block = 10  # CPU times tick every 10 ms: measured over blocks of calls
        for start in range(0, args.calls, block):
            for name, call in once.items():
                def calls(call: Callable[[int], object] = call, start: int = start,
                          name: str = name) -> None:
                    for i in range(start, start + block):
                        w, _ = measure(functools.partial(call, i), [])
                        wall[name].append(w)
                _, c = measure(calls, processes)
                cpu[name].append(c / block)

        map_wall: dict[str, list[float]] = {"procesos": [], "direct": []}
        map_cpu: dict[str, list[float]] = {"procesos": [], "direct": []}
        for round_ in range(args.rounds):
            order = ["procesos", "direct"] if round_ % 2 == 0 else ["direct", "procesos"]
            for name in order:
                w, c = measure(maps[name], processes)
                map_wall[name].append(w)
                map_cpu[name].append(c)
        load = os.getloadavg()[0]

    def row(label: str, ours: float, direct: float, digits: int = 2) -> None:
        print(f"| {label} | {ours:.{digits}f} | {direct:.{digits}f} | {ours / direct:.2f}x |")

    median = statistics.median
    print(f"procesos {procesos.__version__}, Python {sys.version.split()[0]}, "
          f"{args.workers} Dask workers (1 thread each), cluster start {start_s:.1f} s, "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at the end\n")
    print("| measure | procesos | dask.distributed directly | procesos / direct |")
    print("|---|---:|---:|---:|")
    row(f"submit + result, wall, median of {args.calls} (ms)",
        median(wall["procesos"]) * 1e3, median(wall["direct"]) * 1e3)
    row("submit + result, CPU of client + scheduler + workers, mean (ms)",
        statistics.mean(cpu["procesos"]) * 1e3, statistics.mean(cpu["direct"]) * 1e3)
    row(f"map of {args.tasks:,} trivial tasks, wall, median of {args.rounds} (s)",
        median(map_wall["procesos"]), median(map_wall["direct"]))
    row(f"the same, best of {args.rounds} (s)", min(map_wall["procesos"]),
        min(map_wall["direct"]))
    row("map throughput, median (tasks/s)", args.tasks / median(map_wall["procesos"]),
        args.tasks / median(map_wall["direct"]), digits=0)
    row("map, CPU of client + scheduler + workers, median (s)",
        median(map_cpu["procesos"]), median(map_cpu["direct"]))
    print(f"\ncommand: .venv/bin/python benchmarks/bench_dask.py {' '.join(argv)}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
