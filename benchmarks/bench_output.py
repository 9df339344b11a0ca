"""Child output: lines per second from 2 children, relayed by procesos vs straight to a pipe.

    .venv/bin/python benchmarks/bench_output.py      # --lines 200000 per child, --repeat 3

Each case runs in a fresh interpreter whose stdout is a pipe that this script
drains (1 MiB reads, counting lines), so every case ends in the same kind of
pipe. The case times from the children's start to the last line written to
its stdout (both joined, the parent's stdout flushed) and checks that every
line arrived. Two ways for the children to write:

* ``print``: ``print()`` per line, with what each mode gives the child: relayed
  children are line-buffered (one write per line, like a terminal), direct
  ones block-buffered (many lines per write, and lines torn between children);
* ``print-lb``: ``print()`` per line, line-buffered in every case;
* ``os.write``: one unbuffered ``os.write`` per line in every case.

The last two make the same system calls on both sides: the relay's own cost.

Cases: procesos ``output="relay"`` (zygote); procesos ``output="inherit"``
(zygote: the children write straight to the pipe, "direct"); the standard
library's ``fork`` children writing to the inherited descriptor (reference).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

LINE = "line {:07d} from child {} " + "x" * 40  # about 70 bytes with the newline


def child_print(tag: int, count: int) -> None:
    for n in range(count):
        print(LINE.format(n, tag))
    sys.stdout.flush()


def child_print_line_buffered(tag: int, count: int) -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    child_print(tag, count)


def child_write(tag: int, count: int) -> None:
    for n in range(count):
        os.write(1, (LINE.format(n, tag) + "\n").encode())


WRITERS = {"print": child_print, "print-lb": child_print_line_buffered, "os.write": child_write}


def run_case(case: str, writer: str, count: int) -> float:
    """In the case's own interpreter: start 2 children, wait for them; the seconds taken."""
    target = WRITERS[writer]
    if case == "stdlib":
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        children = [ctx.Process(target=target, args=(tag, count)) for tag in (1, 2)]
    else:
        import procesos

        mode = "relay" if case == "relay" else "inherit"
        # Warm the zygote (and the relay) up, out of the timing.
        warm = procesos.Process(target=print, args=("warm-up",), output=mode)
        warm.start()
        warm.join()
        children = [procesos.Process(target=target, args=(tag, count), output=mode)
                    for tag in (1, 2)]
    sys.stdout.flush()
    start = time.perf_counter()
    for p in children:
        p.start()
    for p in children:
        p.join()
    sys.stdout.flush()
    return time.perf_counter() - start


def measure(case: str, writer: str, count: int) -> dict[str, float]:
    """Run one case in a fresh interpreter, drain its stdout; its figures."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as result:
        child = subprocess.Popen(
            [sys.executable, __file__, "--case", case, "--writer", writer,
             "--lines", str(count), "--result", result.name],
            stdout=subprocess.PIPE,
            # Python's own buffering choices (PYTHONUNBUFFERED would make every
            # print() two unbuffered writes in every case).
            env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
        )
        assert child.stdout is not None
        counted = {"lines": 0}

        def drain() -> None:
            fd = child.stdout.fileno()  # type: ignore[union-attr]
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return
                counted["lines"] += chunk.count(b"\n")

        reader = threading.Thread(target=drain)
        reader.start()
        code = child.wait(timeout=600)
        reader.join()
        if code != 0:
            raise RuntimeError(f"case {case}/{writer} failed with exit code {code}")
        seconds = json.load(result)["seconds"]
    expected = 2 * count + (0 if case == "stdlib" else 1)
    if counted["lines"] != expected:
        raise RuntimeError(f"case {case}/{writer}: {counted['lines']} lines, expected {expected}")
    return {"seconds": seconds, "lines_per_s": 2 * count / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000, help="lines per child")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median shown)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--writer", default="print", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        seconds = run_case(args.case, args.writer, args.lines)
        with open(args.result, "w") as out:
            json.dump({"seconds": seconds}, out)
        return

    # The driver only, and imported here: the measured interpreters (phases,
    # and the standard library's spawn and forkserver children, which import
    # this file again) must not import procesos for it.
    from procesos._cli._bench import compile_bytecode

    compile_bytecode()  # as an installed procesos has it
    print(f"$ {sys.executable} {' '.join(sys.argv)}")
    print(f"2 children x {args.lines:,} lines of ~70 bytes, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores, median of {args.repeat} interleaved runs\n")
    rows = []
    for writer in WRITERS:
        runs: dict[str, list[dict[str, float]]] = {"relay": [], "direct": [], "stdlib": []}
        for _ in range(args.repeat):  # interleaved, so that a busy moment hits every case
            for case, results in runs.items():
                results.append(measure(case, writer, args.lines))
        figures = {case: sorted(results, key=lambda f: f["seconds"])[len(results) // 2]
                   for case, results in runs.items()}
        for case, label in (("relay", "procesos relay (zygote)"),
                            ("direct", "procesos inherit = direct pipe (zygote)"),
                            ("stdlib", "stdlib fork, inherited fd")):
            f = figures[case]
            ratio = f["lines_per_s"] / figures["direct"]["lines_per_s"]
            rows.append((writer, label, f["lines_per_s"], f["seconds"], ratio))
    print(f"| {'writer':<8} | {'case':<40} | {'k lines/s':>10} | {'s':>6} | {'vs direct':>9} |")
    print(f"|{'-' * 10}|{'-' * 42}|{'-' * 11}:|{'-' * 7}:|{'-' * 10}:|")
    for writer, label, rate, seconds, ratio in rows:
        print(f"| {writer:<8} | {label:<40} | {rate / 1000:>10,.0f} | {seconds:>6.2f} "
              f"| {ratio:>8.0%} |")


if __name__ == "__main__":
    main()
