"""Short-lived workers, side by side: a pool whose every worker runs one task, then is replaced.

``Pool(4, maxtasksperchild=1).map(square, range(N), chunksize=1)``: procesos'
``Pool`` (its default start method, the zygote), whose workers fork per task
(each task in a fork of a worker that stays), and the same with
``PROCESOS_FORK_PER_TASK=0`` (a new worker from the zygote per task; switched
here in the module, not in the environment, which the zygote would then send to
every child since it differs from the zygote's own), against
the standard library's ``Pool`` under ``fork``, run alternately, each run in
a fresh interpreter that imports only the library it measures (procesos'
zygote started there before the measure), the pool's creation and shutdown
included. Also the CPU time: the parent's, and
that of everything else (the standard library's workers; the zygote with the
workers it forked and reaped).

    python benchmarks/bench_short_workers.py [--tasks N] [--runs R]
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

LABELS = ("procesos", "procesos, worker per task", "stdlib fork")


def square(x: int) -> int:
    return x * x


def _zygote_cpu() -> float:
    """CPU seconds of the zygote and of the children it has reaped (Linux)."""
    import procesos

    pid = procesos.zygote_pid()
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def run(label: str, tasks: int) -> tuple[float, float, float]:
    """Wall seconds, parent CPU seconds, other CPU seconds of one map, in this
    interpreter, which imports only the library measured."""
    zygote_cpu: Callable[[], float] = lambda: 0.0
    if label == "stdlib fork":
        pool_class: Any = multiprocessing.get_context("fork").Pool
    else:
        import procesos
        from procesos._engine import _api as api

        pool_class = procesos.Pool
        api.TASK_FORK_SUPPORTED = label != "procesos, worker per task" and \
            api.TASK_FORK_SUPPORTED
        with procesos.Pool(1) as pool:  # the zygote, up before the measure
            pool.map(square, range(2))
        zygote_cpu = _zygote_cpu
    zygote_before = zygote_cpu()
    before, start = os.times(), time.perf_counter()
    with pool_class(4, maxtasksperchild=1) as pool:
        results = pool.map(square, range(tasks), chunksize=1)
    wall, after = time.perf_counter() - start, os.times()
    assert results == [x * x for x in range(tasks)]
    parent = after.user - before.user + after.system - before.system
    others = (after.children_user - before.children_user
              + after.children_system - before.children_system
              + zygote_cpu() - zygote_before)
    return wall, parent, others


def run_alone(label: str, tasks: int) -> tuple[float, float, float]:
    """:func:`run` in a fresh interpreter: a user of that library has no other in memory."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", label,
                          "--tasks", str(tasks)], capture_output=True, text=True, check=True)
    wall, parent, others = json.loads(out.stdout.strip().splitlines()[-1])
    return wall, parent, others


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--one", choices=LABELS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run(args.one, args.tasks)))
        return 0
    rows: dict[str, list[tuple[float, float, float]]] = {label: [] for label in LABELS}
    load = os.getloadavg()[0]
    for _ in range(args.runs):
        for label in LABELS:
            rows[label].append(run_alone(label, args.tasks))
    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load average "
          f"{load:.2f} -> {os.getloadavg()[0]:.2f}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs")
    print(f"# python benchmarks/bench_short_workers.py --tasks {args.tasks} --runs {args.runs}")
    reference = statistics.median(r[0] for r in rows["stdlib fork"])
    print(f"{'pool':<26} {'wall s (median)':>16} {'vs fork':>8} {'parent CPU s':>13} "
          f"{'other CPU s':>12}")
    for label, results in rows.items():
        wall = statistics.median(r[0] for r in results)
        print(f"{label:<26} {wall:>16.2f} {wall / reference:>7.2f}x "
              f"{statistics.median(r[1] for r in results):>13.2f} "
              f"{statistics.median(r[2] for r in results):>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
