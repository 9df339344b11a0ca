"""A user module with a slow import, side by side: how often it is imported, and what it costs.

The program a new user writes: their own module (here ``slowmod``, whose
import takes 0.3 s and records the pid that imports it) imported at the top,
then a fresh ``Executor(4)`` (the standard library's: a
``ProcessPoolExecutor(4)``) mapping one of its functions over 64 items. Each
method runs in a fresh interpreter; the time is from the executor's creation
to the last result, for a first executor (which, under the zygote, starts
the zygote) and for a second one in the same program. The import count is
over the whole program: the parent's own import is one.

    python benchmarks/bench_imports.py [--runs N]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

IMPORT_SECONDS = 0.3
TASKS = 64
WORKERS = 4
GOAL_VS_FORK = 1.2

SLOWMOD = f"""
import os, time
with open(os.environ["SLOWMOD_LOG"], "a") as log:
    log.write(f"{{os.getpid()}}\\n")
time.sleep({IMPORT_SECONDS})

def task(x):
    return x * 2
"""

METHODS = ("procesos zygote", "stdlib fork", "stdlib forkserver", "stdlib spawn",
           "procesos spawn")


def run_one(method: str) -> dict[str, object]:
    """In the child interpreter: the two executors, timed; the pids that imported slowmod."""
    import slowmod  # the parent's own import, as the user's program does

    def executor() -> object:
        kind, name = method.split()
        if kind == "procesos":
            import procesos

            return procesos.Executor(WORKERS, mp_context=procesos.get_context(name))
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context(name))

    times = []
    for _ in range(2):
        start = time.perf_counter()
        with executor() as ex:  # type: ignore[attr-defined]
            results = list(ex.map(slowmod.task, range(TASKS)))
        times.append(time.perf_counter() - start)
        assert results == [x * 2 for x in range(TASKS)]
    with open(os.environ["SLOWMOD_LOG"]) as log:
        imports = len(log.read().split())
    return {"first": times[0], "second": times[1], "imports": imports}


def measure(method: str, directory: str) -> dict[str, object]:
    log = os.path.join(directory, f"log-{os.getpid()}-{time.monotonic_ns()}")
    env = dict(os.environ, SLOWMOD_LOG=log,
               PYTHONPATH=os.pathsep.join([directory, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", method],
                         env=env, capture_output=True, text=True, check=True, cwd=directory)
    os.unlink(log)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh programs per method")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child)))
        return 0
    from procesos._cli._bench import compile_bytecode

    compile_bytecode()  # as an installed procesos has it
    with tempfile.TemporaryDirectory() as directory:
        with open(os.path.join(directory, "slowmod.py"), "w") as f:
            f.write(SLOWMOD)
        rows: dict[str, list[dict[str, object]]] = {m: [] for m in METHODS}
        for _ in range(args.runs):  # interleaved, so that load falls on every method
            for method in METHODS:
                rows[method].append(measure(method, directory))
    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
          f"load average {os.getloadavg()[0]:.2f}, Python {sys.version.split()[0]}, "
          f"{args.runs} programs per method")
    print(f"# python benchmarks/bench_imports.py --runs {args.runs}")
    fork = {k: statistics.median(float(r[k]) for r in rows["stdlib fork"])  # type: ignore[arg-type]
            for k in ("first", "second")}
    print(f"{'method':<20} {'first executor':>15} {'second':>15} {'imports':>8}")
    for method, results in rows.items():
        first = statistics.median(float(r["first"]) for r in results)  # type: ignore[arg-type]
        second = statistics.median(float(r["second"]) for r in results)  # type: ignore[arg-type]
        imports = sorted({int(r["imports"]) for r in results})  # type: ignore[call-overload]
        print(f"{method:<20} {first * 1e3:8.0f} ms {first / fork['first']:4.1f}x "
              f"{second * 1e3:8.0f} ms {second / fork['second']:4.1f}x "
              f"{'/'.join(map(str, imports)):>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
