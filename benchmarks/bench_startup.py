"""Start-up of one process, side by side: procesos' start methods and the standard library's.

Four measurements, each in a fresh interpreter so that what one imports (numpy,
a running server) cannot change another:

1. create + start + join of a no-op process, median and p90 over many runs
   (interleaved across one library's methods, each library in interpreters of
   its own, the libraries taking turns for three rounds; warm-up runs
   excluded; the first start, which includes starting the zygote or the
   forkserver, reported on its own).
   procesos' rows use its default output mode (relayed through the parent);
   the "output inherited" rows let the child write to the parent's
   descriptors, as the standard library's children do;
2. with numpy imported in the parent (per library too), the time from ``Process(...).start()``
   to the child's value in the parent's hands, for a child that computes
   ``numpy.arange(10).sum()`` (procesos: ``result()``, which also waits for the
   exit; the standard library: a ``Pipe``, whose ``recv()`` does not);
3. the memory that only the server owns (USS) of procesos' zygote (without
   its spare children, which would share, and so hide, its pages) and of the
   standard library's forkserver, with and without numpy preloaded; and the
   spares' own USS, all of them together;
4. ``import procesos`` against ``import multiprocessing``, in a fresh
   interpreter each time (what a spawn child and the zygote pay first).

    python benchmarks/bench_startup.py [--quick]

``multiprocess`` and ``billiard`` rows appear when those packages are installed
(``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

GOAL_MEDIAN_MS = 2.0
GOAL_VS_FORKSERVER = 4.0
GOAL_VS_SPAWN = 12.0


# -- targets: module level, so that the standard library's spawn and forkserver
#    children can import them -----------------------------------------------------


def noop() -> None:
    """The no-op target."""


def numpy_sum() -> int:
    import numpy

    return int(numpy.arange(10).sum())


def numpy_sum_to(conn: object) -> None:
    import numpy

    conn.send(int(numpy.arange(10).sum()))  # type: ignore[attr-defined]


# -- the contexts ------------------------------------------------------------------


LIBRARIES = ("procesos", "stdlib", "multiprocess", "billiard")


def libraries() -> list[str]:
    """The libraries measured: procesos, the standard library, the peers installed."""
    return [name for name in LIBRARIES
            if name in ("procesos", "stdlib") or importlib.util.find_spec(name) is not None]


def contexts(library: str) -> dict[str, object]:
    """Label -> context, for every method of *library* (one library per interpreter:
    the standard library's fork from a parent that has imported procesos, with its
    after-fork hooks and its larger memory, was 0.4-0.5 ms slower than a user's)."""
    found: dict[str, object] = {}
    if library == "procesos":
        import procesos

        for method in ("zygote", "fork", "spawn"):
            found[f"procesos {method}"] = procesos.get_context(method)
            if method != "spawn":
                found[f"procesos {method}, output inherited"] = _Inherited(
                    procesos.get_context(method))
        return found
    module = __import__("multiprocessing" if library == "stdlib" else library)
    for method in ("fork", "forkserver", "spawn"):
        try:
            found[f"{library} {method}"] = module.get_context(method)
        except (ValueError, AttributeError):
            pass
    return found


class _Inherited:
    """A procesos context whose processes write straight to the parent's descriptors."""

    def __init__(self, ctx: object) -> None:
        self.ctx = ctx

    def Process(self, **kwargs: object) -> object:
        return self.ctx.Process(output="inherit", **kwargs)  # type: ignore[attr-defined]

    def Pipe(self, duplex: bool = True) -> object:
        return self.ctx.Pipe(duplex)  # type: ignore[attr-defined]


def is_slow(label: str) -> bool:
    return label.endswith("spawn")


# -- phase 1: create + start + join of a no-op process -------------------------------


def _start_join(ctx: object) -> float:
    t0 = time.perf_counter()
    p = ctx.Process(target=noop)  # type: ignore[attr-defined]
    p.start()
    p.join()
    elapsed = time.perf_counter() - t0
    p.close()
    return elapsed


FLOOR = "floor: os.fork() + os._exit() + waitpid()"


class _Floor:
    """The physical floor: a bare fork of this process (about the zygote's size), no Python
    in the child, reaped by its parent."""


def _fork_exit_wait() -> float:
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return time.perf_counter() - t0


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def phase_startup(library: str, fast_runs: int, slow_runs: int,
                  warmup: int) -> dict[str, object]:
    ctxs = contexts(library)
    if library == "procesos":
        ctxs[FLOOR] = _Floor()
    run: dict[str, Callable[[], float]] = {
        label: _fork_exit_wait if label == FLOOR else functools.partial(_start_join, ctx)
        for label, ctx in ctxs.items()}
    first = {label: measure() for label, measure in run.items()}
    for measure in run.values():
        for _ in range(warmup):
            measure()
    samples: dict[str, list[float]] = {label: [] for label in ctxs}
    # Interleaved, so that a burst of load elsewhere touches every method alike.
    for i in range(fast_runs):
        for label, measure in run.items():
            if i < (slow_runs if is_slow(label) else fast_runs):
                samples[label].append(measure())
    result: dict[str, object] = {"first": first, "samples": samples}
    if library == "procesos":
        import procesos

        zygote = procesos.zygote_pid()
        result["rss_kib"] = {
            "this process": _rss_kib(os.getpid()),
            "zygote": _rss_kib(zygote) if zygote and sys.platform == "linux" else 0}
    return result


# -- phase 2: first result of a fresh process, numpy imported in the parent -----------


def _numpy_procesos(ctx: object) -> float:
    t0 = time.perf_counter()
    p = ctx.Process(target=numpy_sum)  # type: ignore[attr-defined]
    p.start()
    value = p.result()
    elapsed = time.perf_counter() - t0
    assert value == 45, value
    p.close()
    return elapsed


def _numpy_pipe(ctx: object) -> float:
    reader, writer = ctx.Pipe(duplex=False)  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    p = ctx.Process(target=numpy_sum_to, args=(writer,))  # type: ignore[attr-defined]
    p.start()
    value = reader.recv()
    elapsed = time.perf_counter() - t0
    assert value == 45, value
    p.join()
    p.close()
    reader.close()
    writer.close()
    return elapsed


def phase_numpy(library: str, fast_runs: int, slow_runs: int,
                warmup: int) -> dict[str, object]:
    import numpy  # noqa: F401  (the parent has numpy imported: the point of this phase)

    # A forkserver preloads only __main__ unless told: with numpy preloaded, each shows
    # its best (procesos' zygote preloads what the parent imported, unasked).
    ctxs = {}
    for label, ctx in contexts(library).items():
        if label.endswith("forkserver"):
            ctx.set_forkserver_preload(["numpy"])  # type: ignore[attr-defined]
            label += "+preload"
        ctxs[label] = ctx
    run = {label: (_numpy_procesos if label.startswith("procesos") else _numpy_pipe)
           for label in ctxs}
    first = {label: run[label](ctx) for label, ctx in ctxs.items()}
    for label, ctx in ctxs.items():
        for _ in range(warmup):
            run[label](ctx)
    samples: dict[str, list[float]] = {label: [] for label in ctxs}
    for i in range(fast_runs):
        for label, ctx in ctxs.items():
            if i < (slow_runs if is_slow(label) else fast_runs):
                samples[label].append(run[label](ctx))
    return {"first": first, "samples": samples}


# -- phase 3: the servers' own memory ------------------------------------------------


def phase_uss(with_numpy: bool) -> dict[str, object]:
    import multiprocessing
    import multiprocessing.forkserver

    import procesos
    from procesos._launch import _zygote_client

    if with_numpy:
        import numpy  # noqa: F401  (the zygote preloads what the parent imported)

        multiprocessing.set_forkserver_preload(["numpy"])
    # The zygote alone first: a spare child shares its pages, so that neither
    # would count them as its own.
    os.environ["PROCESOS_ZYGOTE_SPARE"] = "0"
    _start_join(procesos.get_context("zygote"))
    _start_join(multiprocessing.get_context("forkserver"))
    # Imported only now: the zygote preloads what the parent had imported when it started.
    import psutil

    zygote = procesos.zygote_pid()
    forkserver = multiprocessing.forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    result = {}
    for label, pid in (("procesos zygote", zygote), ("stdlib forkserver", forkserver)):
        info = psutil.Process(pid).memory_full_info()
        result[label] = {"uss": info.uss, "rss": info.rss}
    # Then a zygote with its spares, the default: what they add (all of them).
    _zygote_client._zygote.stop()
    os.environ["PROCESOS_ZYGOTE_SPARE"] = "1"
    process = procesos.get_context("zygote").Process(target=noop)
    process.start()
    process.join()  # returns on the child's exit report: it may still be ending
    from procesos._launch._zygote_server import _SPARES_AT_FIRST

    spares: list[psutil.Process] = []
    deadline = time.monotonic() + 10
    while len(spares) < _SPARES_AT_FIRST and time.monotonic() < deadline:
        spares = [child for child in psutil.Process(procesos.zygote_pid()).children()
                  if child.pid != process.pid]
        time.sleep(0.01)
    assert spares, "the zygote keeps spare children while it is idle"
    infos = [spare.memory_full_info() for spare in spares]
    result["procesos zygote's spares"] = {"uss": sum(i.uss for i in infos),
                                          "rss": sum(i.rss for i in infos), "count": len(infos)}
    return result


def phase_import(runs: int) -> dict[str, object]:
    code = ("import time; t = time.perf_counter(); import {}; "
            "print(time.perf_counter() - t)")
    samples: dict[str, list[float]] = {"procesos": [], "multiprocessing": []}
    for _ in range(runs):
        for module in samples:
            out = subprocess.run([sys.executable, "-c", code.format(module)],
                                 capture_output=True, text=True, check=True)
            samples[module].append(float(out.stdout))
    return {label: statistics.median(values) for label, values in samples.items()}


# -- the driver ------------------------------------------------------------------------


def run_phase(args: list[str]) -> dict[str, object]:
    env = dict(os.environ)
    env.pop("PROCESOS_START_METHOD", None)
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--phase", *args],
        capture_output=True, text=True, env=env, timeout=900,
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"phase {args} failed with exit code {out.returncode}")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run_by_library(phase: str, counts: list[int], rounds: int) -> dict[str, object]:
    """*phase* for each library in an interpreter of its own (what a user of that
    library has), the libraries taking turns for *rounds* rounds; samples merged,
    first starts from the first round."""
    first: dict[str, float] = {}
    samples: dict[str, list[float]] = {}
    merged: dict[str, object] = {"first": first, "samples": samples}
    for _ in range(rounds):
        for library in libraries():
            result = run_phase([phase, library, *(str(n) for n in counts)])
            for label, value in result["first"].items():  # type: ignore[attr-defined]
                first.setdefault(label, value)
            for label, values in result["samples"].items():  # type: ignore[attr-defined]
                samples.setdefault(label, []).extend(values)
            if "rss_kib" in result:
                merged["rss_kib"] = result["rss_kib"]
    return merged


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else values[0]


def print_timing_table(title: str, result: dict[str, object], reference: str) -> dict[str, float]:
    first: dict[str, float] = result["first"]  # type: ignore[assignment]
    samples: dict[str, list[float]] = result["samples"]  # type: ignore[assignment]
    medians = {label: statistics.median(values) for label, values in samples.items()}
    print(f"\n{title}")
    print(f"| {'method':<34} | {'median ms':>9} | {'p90 ms':>8} | {'first start ms':>14} "
          f"| {'runs':>4} | {'time / ' + reference:>22} |")
    print(f"|{'-' * 36}|{'-' * 10}:|{'-' * 9}:|{'-' * 15}:|{'-' * 5}:|{'-' * 23}:|")
    for label, values in samples.items():
        ratio = medians[label] / medians[reference]
        print(f"| {label:<34} | {ms(medians[label]):>9} | {ms(p90(values)):>8} "
              f"| {ms(first[label]):>14} | {len(values):>4} | {ratio:>21.1f}x |")
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, *rest = args.phase
        if name == "uss":
            result = phase_uss(rest == ["numpy"])
        elif name == "import":
            result = phase_import(int(rest[0]))
        else:
            library, *counts = rest
            fast, slow, warmup = (int(x) for x in counts)
            result = (phase_startup if name == "startup" else phase_numpy)(
                library, fast, slow, warmup)
        print(json.dumps(result))
        return 0

    # The driver only, and imported here: the measured interpreters (phases,
    # and the standard library's spawn and forkserver children, which import
    # this file again) must not import procesos for it.
    from procesos._cli._bench import compile_bytecode

    compile_bytecode()  # as an installed procesos has it
    fast, slow, warmup = (30, 8, 2) if args.quick else (300, 40, 5)
    command = "python benchmarks/bench_startup.py" + (" --quick" if args.quick else "")
    print(f"{command}   ({datetime.datetime.now():%Y-%m-%d %H:%M})")
    print(f"Python {platform.python_version()}, {platform.system()} {platform.release()}, "
          f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rounds = 1 if args.quick else 3
    startup = run_by_library("startup", [fast // rounds, slow // rounds, warmup], rounds)
    numpy_result = run_by_library(
        "numpy", [max(fast // 3 // rounds, 10), max(slow // 2 // rounds, 5), warmup], rounds)
    uss = {"without numpy": run_phase(["uss"]), "numpy preloaded": run_phase(["uss", "numpy"])}
    imports = run_phase(["import", "5" if args.quick else "20"])

    medians = print_timing_table(
        "Create + start + join of a no-op process", startup, "procesos zygote")
    sizes: dict[str, int] = startup["rss_kib"]  # type: ignore[assignment]
    print(f"(the floor forks the measuring process, RSS {sizes['this process'] / 1024:.1f} MiB; "
          f"the zygote's RSS: {sizes['zygote'] / 1024:.1f} MiB)")
    print_timing_table(
        "First result of a fresh process, numpy imported in the parent "
        "(start -> numpy.arange(10).sum() in hand)", numpy_result, "procesos zygote")

    print("\nServer memory (USS: pages only the server owns; RSS for reference), MiB")
    print(f"| {'server':<30} | {'USS':>8} | {'RSS':>8} | {'USS, numpy':>10} | {'RSS, numpy':>10} |")
    print(f"|{'-' * 32}|{'-' * 9}:|{'-' * 9}:|{'-' * 11}:|{'-' * 11}:|")
    for label in ("procesos zygote", "procesos zygote's spares", "stdlib forkserver"):
        plain = uss["without numpy"][label]  # type: ignore[index]
        heavy = uss["numpy preloaded"][label]  # type: ignore[index]
        mib = [x / 2**20 for x in (plain["uss"], plain["rss"], heavy["uss"], heavy["rss"])]
        name = f"{label} ({plain['count']}, all)" if "count" in plain else label
        print(f"| {name:<30} | {mib[0]:>8.1f} | {mib[1]:>8.1f} | {mib[2]:>10.1f} "
              f"| {mib[3]:>10.1f} |")

    print("\nImport time, fresh interpreter, median of "
          f"{5 if args.quick else 20} runs: import procesos {ms(imports['procesos'])} ms, "  # type: ignore[arg-type]
          f"import multiprocessing {ms(imports['multiprocessing'])} ms")  # type: ignore[arg-type]

    print("\nGoals (issue 20): never slower than the standard library")
    for label, reference in (("procesos zygote", "stdlib fork"),
                             ("procesos zygote, output inherited", "stdlib fork"),
                             ("procesos spawn", "stdlib spawn")):
        ratio = medians[label] / medians[reference]
        print(f"    {'met   ' if ratio <= 1.0 else 'MISSED'} {label}: {ratio:.2f}x {reference}")

    print("\nGoals (issue 2):")
    for label in ("procesos zygote", "procesos zygote, output inherited"):
        zygote = medians[label]
        vs_forkserver = medians["stdlib forkserver"] / zygote
        vs_spawn = medians["stdlib spawn"] / zygote
        print(f"  {label}:")
        for text, ok in (
            (f"median {ms(zygote)} ms <= {GOAL_MEDIAN_MS} ms", zygote * 1000 <= GOAL_MEDIAN_MS),
            (f"{vs_forkserver:.1f}x faster than stdlib forkserver (goal >= {GOAL_VS_FORKSERVER}x)",
             vs_forkserver >= GOAL_VS_FORKSERVER),
            (f"{vs_spawn:.1f}x faster than stdlib spawn (goal >= {GOAL_VS_SPAWN}x)",
             vs_spawn >= GOAL_VS_SPAWN),
        ):
            print(f"    {'met   ' if ok else 'MISSED'} {text}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"startup": startup, "numpy": numpy_result, "uss": uss,
                       "import": imports}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
