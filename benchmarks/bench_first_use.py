"""The lesson's program run once, as a user runs it: the first start of a program, side by side.

Each run is a fresh interpreter running a script of the lesson's kind: import
the library, start two processes whose target prints its pid and parent's
pid, join both. Two figures a run: the **first use**, from the first
``Process()`` to the last ``join()`` (the script measures it), and the
**whole program**, from launching the interpreter to its exit (measured
here). procesos' default start method (the zygote, which the first start
boots) against the standard library's ``fork``, ``forkserver`` and
``spawn``; the libraries take turns run by run. ``--numpy`` imports numpy at
the top of each script too (a parent that imported a large package).

Every other start benchmark warms up first and so leaves this cost out: a
short script pays it every time it runs.

    python benchmarks/bench_first_use.py [--runs N] [--numpy]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time

SCRIPT = '''
import os, sys, time
{numpy}
if sys.argv[1] == "procesos":
    import procesos as mp
    ctx = mp
else:
    import multiprocessing as mp
    ctx = mp.get_context(sys.argv[1])

def work(n):
    print(f"process {{n}}: pid {{os.getpid()}}, ppid {{os.getppid()}}", flush=True)

if __name__ == "__main__":
    t = time.perf_counter()
    ps = [ctx.Process(target=work, args=(i,)) for i in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    print(f"FIRST_USE {{time.perf_counter() - t:.6f}}", file=sys.stderr)
'''

WAYS = ("procesos", "fork", "forkserver", "spawn")
LABELS = {"procesos": "procesos (zygote, the default)", "fork": "stdlib fork",
          "forkserver": "stdlib forkserver", "spawn": "stdlib spawn"}


def run_once(script: str, way: str) -> tuple[float, float]:
    """(first use, whole program) in seconds, of one run of *script* for *way*."""
    t = time.perf_counter()
    done = subprocess.run([sys.executable, script, way], capture_output=True, text=True,
                          timeout=120, check=True)
    whole = time.perf_counter() - t
    lines = [line for line in done.stderr.splitlines() if line.startswith("FIRST_USE ")]
    if len(lines) != 1 or done.stdout.count("process ") != 2:
        raise RuntimeError(f"{way}: unexpected output:\n{done.stdout}\n{done.stderr}")
    return float(lines[0].split()[1]), whole


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--numpy", action="store_true",
                        help="import numpy at the top of each script")
    args = parser.parse_args(argv)
    from procesos._cli._bench import compile_bytecode

    compile_bytecode()  # as an installed procesos has it
    samples: dict[str, tuple[list[float], list[float]]] = {way: ([], []) for way in WAYS}
    with tempfile.TemporaryDirectory() as directory:
        script = os.path.join(directory, "lesson.py")
        with open(script, "w") as f:
            f.write(SCRIPT.format(numpy="import numpy" if args.numpy else ""))
        for way in WAYS:  # a first run each, not counted: the files in the page cache
            run_once(script, way)
        load = os.getloadavg()[0]
        for _ in range(args.runs):
            for way in WAYS:
                first, whole = run_once(script, way)
                samples[way][0].append(first)
                samples[way][1].append(whole)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# bench_first_use{' --numpy' if args.numpy else ''}: {args.runs} runs each, "
          f"{now}, load {load:.2f} -> {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}")
    print("median ms (p90); ratio: to the standard library's fork in the same run\n")
    print("| way | first use: two started, then joined | ratio | whole program | ratio |")
    print("|---|---:|---:|---:|---:|")
    fork_first = statistics.median(samples["fork"][0])
    fork_whole = statistics.median(samples["fork"][1])
    for way in WAYS:
        first, whole = samples[way]
        med_first, med_whole = statistics.median(first), statistics.median(whole)
        p90_first = sorted(first)[int(0.9 * (len(first) - 1))]
        p90_whole = sorted(whole)[int(0.9 * (len(whole) - 1))]
        print(f"| {LABELS[way]} | {med_first * 1e3:.1f} ({p90_first * 1e3:.1f}) | "
              f"{med_first / fork_first:.1f}x | {med_whole * 1e3:.1f} ({p90_whole * 1e3:.1f}) | "
              f"{med_whole / fork_whole:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
