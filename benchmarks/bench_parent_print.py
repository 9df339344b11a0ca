"""What the parent's own ``print()`` costs on a stream procesos relays its children's output to.

    .venv/bin/python benchmarks/bench_parent_print.py      # --prints 300000, --repeat 5

The relay writes a child's lines only between the parent's own lines: on a
stream it writes to, the parent's writes go through a ``write`` that notes
where lines end (``procesos/_output/_turns.py``), as long as a child's
output is relayed to it. This times ``print("parent", "line", n)`` (six
writes) in one interpreter, the cases alternated: to a ``/dev/null`` stream
that a running child's output is relayed to (``sys.stdout`` at the child's
start; the child waits), and to another ``/dev/null`` stream that nothing is
relayed to (what a program without procesos pays, and the first stream
again once that child has been joined). Median of the repeats, microseconds
per ``print``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from typing import Any


def per_print(count: int, out: Any) -> float:
    start = time.perf_counter()
    for n in range(count):
        print("parent", "line", n, file=out)
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prints", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import procesos

    with open(os.devnull, "w") as relayed, open(os.devnull, "w") as plain:
        go = procesos.Event()
        with contextlib.redirect_stdout(relayed):
            child = procesos.Process(target=go.wait)
            child.start()
        assert "write" in vars(relayed) and "write" not in vars(plain)
        cases = {"a child relays to it": relayed, "nothing relayed to": plain}
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeat):
            for name, out in cases.items():
                times[name].append(per_print(args.prints, out))
        go.set()
        child.join()
        assert "write" not in vars(relayed)
    base = statistics.median(times["nothing relayed to"])
    print(f"# print('parent', 'line', n) to /dev/null, {args.prints} prints, "
          f"median of {args.repeat}, load {os.getloadavg()[0]:.2f}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:22s} {median:6.2f} µs a print  "
              f"({median / base:.2f}x, +{median - base:.2f} µs)")


if __name__ == "__main__":
    main()
