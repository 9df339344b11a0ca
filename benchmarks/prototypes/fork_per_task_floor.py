"""The floor of a design, not procesos: one process per task by forking a warm "mother".

Issue 20 asks ``Pool(4, maxtasksperchild=1)`` to be no slower than the standard
library's fork ``Pool``. procesos today starts a new worker per task through the
zygote (1.5x slower on the 2-core VM, BENCHMARKS.md). This script measures the
least that a different design would cost: four long-lived mother processes,
each forking one child per task; the child computes, writes its result to the
parent's pipe and exits with ``os._exit``; the mother reaps it. No procesos code
runs in it: no exception handling, no output relay, no shared memory, no fault
reporting, no initializer. The time includes starting the mothers, as the
standard library's includes starting its pool.

    python benchmarks/prototypes/fork_per_task_floor.py [--tasks N] [--runs R]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pickle
import struct
import time
from typing import Any

WORKERS = 4
_SIZE = struct.Struct("!I")


def square(x: int) -> int:
    return x * x


def _read_exactly(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _mother(task_r: int, result_w: int) -> None:
    while True:
        try:
            (size,) = _SIZE.unpack(_read_exactly(task_r, _SIZE.size))
        except EOFError:
            os._exit(0)
        fn, x, index = pickle.loads(_read_exactly(task_r, size))
        pid = os.fork()
        if pid == 0:
            out = pickle.dumps((index, fn(x)))
            os.write(result_w, _SIZE.pack(len(out)) + out)
            os._exit(0)
        os.waitpid(pid, 0)


def run_mothers(tasks: int) -> float:
    start = time.perf_counter()
    result_r, result_w = os.pipe()
    mothers: list[tuple[int, int]] = []
    for _ in range(WORKERS):
        task_r, task_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(task_w)
            os.close(result_r)
            for _, other in mothers:
                os.close(other)
            _mother(task_r, result_w)
        os.close(task_r)
        mothers.append((pid, task_w))
    os.close(result_w)

    def send(index: int, slot: int) -> None:
        data = pickle.dumps((square, index, index))
        os.write(mothers[slot][1], _SIZE.pack(len(data)) + data)

    results: dict[int, Any] = {}
    in_flight: dict[int, int] = {}
    sent = 0
    for slot in range(WORKERS):  # one task at a time per mother, as chunksize=1
        send(sent, slot)
        in_flight[sent] = slot
        sent += 1
    while len(results) < tasks:
        (size,) = _SIZE.unpack(_read_exactly(result_r, _SIZE.size))
        index, value = pickle.loads(_read_exactly(result_r, size))
        results[index] = value
        slot = in_flight.pop(index)
        if sent < tasks:
            send(sent, slot)
            in_flight[sent] = slot
            sent += 1
    for pid, task_w in mothers:
        os.close(task_w)
        os.waitpid(pid, 0)
    os.close(result_r)
    assert [results[i] for i in range(tasks)] == [i * i for i in range(tasks)]
    return time.perf_counter() - start


def run_stdlib(tasks: int) -> float:
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(WORKERS, maxtasksperchild=1) as pool:
        assert pool.map(square, range(tasks), chunksize=1) == [i * i for i in range(tasks)]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    import procesos  # noqa: F401  (the parent's size as in bench_short_workers)

    print(f"# load average {os.getloadavg()[0]:.2f}, {args.tasks} tasks, {WORKERS} workers")
    for _ in range(args.runs):
        before = os.times()
        mothers = run_mothers(args.tasks)
        middle = os.times()
        stdlib = run_stdlib(args.tasks)
        after = os.times()
        cpu_m = (middle.children_user - before.children_user
                 + middle.children_system - before.children_system)
        cpu_s = (after.children_user - middle.children_user
                 + after.children_system - middle.children_system)
        print(f"fork per task from a mother {mothers:.2f} s (children CPU {cpu_m:.2f} s)   "
              f"stdlib fork Pool {stdlib:.2f} s (children CPU {cpu_s:.2f} s)   "
              f"ratio {mothers / stdlib:.2f}")


if __name__ == "__main__":
    main()
