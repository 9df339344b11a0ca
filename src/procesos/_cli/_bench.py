"""``procesos bench``: the task engine side by side with the standard library and its peers.

Workloads (2 workers each): bulk ``map`` of tiny tasks, ordered streaming with
each library's default chunking, independent ``submit()`` calls, the warm round
trip of one trivial task, CPU-bound tasks (parallel efficiency: the CPU time
the tasks report, over workers x wall time), a fresh pool's first result,
and the memory of an idle pool. Peers that are not
installed are skipped. The "raw pipe" column is no library: a byte to a
forked echo process and back, both ends sleeping until it arrives; nor is
"polling pipe", the same with both ends polling (awake): the floor under any
round trip, where the raw pipe mostly measures wake-ups. Nor is the
"ceiling" column: the bulk map's best possible rate on this machine for any
library that pickles, from the CPU time that pickling the arguments and
results and calling the function take alone (see :func:`bulk_ceiling`). Figures
depend on the machine and its load: compare columns of one run, never runs
on different machines.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import functools
import gc
import importlib.util
import multiprocessing
import os
import select
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._bench_tasks import spin, square

__all__ = ["bulk_ceiling", "compile_bytecode", "main", "spin", "square"]

WORKERS = 2


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _best(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def bulk_ceiling(n: int, repeat: int = 5) -> float:
    """The best rate (tasks/s) at which *n* tasks ``square(x)`` can be mapped here.

    Whatever the library, the parent pickles the arguments and unpickles the
    results, and the workers unpickle the arguments, call the function and
    pickle the results. Those five steps are run one after the other in this
    process, each timed; the map takes at least the parent's part, one
    worker's share of the workers' part, and the whole spread over the CPUs
    that the parent and the workers can use at once. The best of *repeat*
    runs of the five steps, each run taken whole (never the best of each step
    from different runs, which would ask for a machine faster than it is).
    """
    import pickle

    data = list(range(n))
    cpus = min(os.cpu_count() or 1, WORKERS + 1)
    clock = time.perf_counter
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = clock()
        args_blob = pickle.dumps(data, 5)
        t1 = clock()
        items = pickle.loads(args_blob)
        results = list(map(square, items))
        results_blob = pickle.dumps(results, 5)
        t2 = clock()
        pickle.loads(results_blob)
        t3 = clock()
        parent, workers = (t1 - t0) + (t3 - t2), t2 - t1
        best = min(best, max(parent, workers / WORKERS, (parent + workers) / cpus))
    return n / best


def _median_round_trip(call: Callable[[], object], count: int) -> float:
    for _ in range(count // 5):
        call()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# -- the libraries, each as a context manager giving a small adapter ---------------
class _Adapter:
    """What a workload needs from a library; None where the library has no such thing."""

    bulk: Callable[[list[int]], object] | None = None
    stream: Callable[[list[int]], Iterator[Any]] | None = None
    stream_items: int | None = None  # fewer items for slow default chunking
    submit_many: Callable[[int], object] | None = None
    submit_items: int | None = None
    call_one: Callable[[], object] | None = None
    spin_all: Callable[[list[int]], Iterable[float]] | None = None


@contextlib.contextmanager
def _procesos() -> Iterator[_Adapter]:
    import procesos

    with procesos.Pool(WORKERS) as pool, procesos.Executor(WORKERS) as ex:
        a = _Adapter()
        a.bulk = lambda data: pool.map(square, data)
        a.stream = lambda data: ex.map(square, iter(data))

        def submit_many(n: int) -> None:
            futures = [ex.submit(square, i) for i in range(n)]
            for f in futures:
                f.result()

        a.submit_many = submit_many
        a.call_one = lambda: ex.submit(square, 3).result()
        a.spin_all = lambda its: pool.map(spin, its)
        yield a


@contextlib.contextmanager
def _stdlib_pool() -> Iterator[_Adapter]:
    with multiprocessing.get_context().Pool(WORKERS) as pool:
        a = _Adapter()
        a.bulk = lambda data: pool.map(square, data)
        a.stream = lambda data: pool.imap(square, data, chunksize=1)
        a.stream_items = 20_000

        def submit_many(n: int) -> None:
            results = [pool.apply_async(square, (i,)) for i in range(n)]
            for r in results:
                r.get()

        a.submit_many = submit_many
        a.call_one = lambda: pool.apply(square, (3,))
        a.spin_all = lambda its: pool.map(spin, its, chunksize=1)
        yield a


def _futures_adapter(ex: Any, stream_items: int, submit_items: int) -> _Adapter:
    a = _Adapter()
    a.bulk = lambda data: list(ex.map(square, data, chunksize=len(data) // (4 * WORKERS)))
    a.stream = lambda data: ex.map(square, data)
    a.stream_items = stream_items

    def submit_many(n: int) -> None:
        futures = [ex.submit(square, i) for i in range(n)]
        for f in futures:
            f.result()

    a.submit_many = submit_many
    a.submit_items = submit_items
    a.call_one = lambda: ex.submit(square, 3).result()
    a.spin_all = lambda its: list(ex.map(spin, its))
    return a


@contextlib.contextmanager
def _ppe() -> Iterator[_Adapter]:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(WORKERS) as ex:
        yield _futures_adapter(ex, 5_000, 20_000)


@contextlib.contextmanager
def _loky() -> Iterator[_Adapter]:
    from loky import get_reusable_executor

    ex = get_reusable_executor(WORKERS)
    try:
        yield _futures_adapter(ex, 5_000, 20_000)
    finally:
        ex.shutdown(wait=True, kill_workers=True)


@contextlib.contextmanager
def _joblib() -> Iterator[_Adapter]:
    from joblib import Parallel, delayed

    with Parallel(n_jobs=WORKERS) as parallel, \
            Parallel(n_jobs=WORKERS, return_as="generator") as generator:
        a = _Adapter()
        a.bulk = lambda data: parallel(delayed(square)(x) for x in data)
        a.stream = lambda data: generator(delayed(square)(x) for x in data)
        a.stream_items = 50_000
        a.spin_all = lambda its: parallel(delayed(spin)(x) for x in its)
        a.call_one = lambda: parallel([delayed(square)(3)])
        yield a


@contextlib.contextmanager
def _mpire() -> Iterator[_Adapter]:
    from mpire import WorkerPool  # type: ignore[attr-defined,unused-ignore]

    with WorkerPool(WORKERS, keep_alive=True) as pool:
        a = _Adapter()
        a.bulk = lambda data: pool.map(square, data)
        a.stream = lambda data: pool.imap(square, data)

        def submit_many(n: int) -> None:
            results = [pool.apply_async(square, (i,)) for i in range(n)]
            for r in results:
                r.get()

        a.submit_many = submit_many
        a.submit_items = 20_000
        a.call_one = lambda: pool.apply(square, (3,))
        a.spin_all = lambda its: pool.map(spin, its, chunk_size=1)
        yield a


@contextlib.contextmanager
def _pebble() -> Iterator[_Adapter]:
    from pebble import ProcessPool

    with ProcessPool(WORKERS) as pool:
        a = _Adapter()
        a.bulk = lambda data: list(pool.map(square, data,
                                            chunksize=len(data) // (4 * WORKERS)).result())
        a.stream = lambda data: pool.map(square, data).result()
        a.stream_items = 5_000

        def submit_many(n: int) -> None:
            futures = [pool.schedule(square, (i,)) for i in range(n)]
            for f in futures:
                f.result()

        a.submit_many = submit_many
        a.submit_items = 5_000
        a.call_one = lambda: pool.schedule(square, (3,)).result()
        a.spin_all = lambda its: list(pool.map(spin, its).result())
        pool.schedule(square, (1,)).result()
        yield a


def _echo(conn: Any) -> None:
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            return
        conn.send_bytes(message)


@contextlib.contextmanager
def _raw_pipe() -> Iterator[_Adapter]:
    """Not a library: one byte to a forked echo process and back through a pipe,
    both ends sleeping until the byte arrives."""
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    echo = ctx.Process(target=_echo, args=(theirs,), daemon=True)
    echo.start()
    theirs.close()

    def call_one() -> None:
        ours.send_bytes(b"x")
        ours.recv_bytes()

    a = _Adapter()
    a.call_one = call_one
    try:
        yield a
    finally:
        ours.close()
        _end_echo(echo)


def _end_echo(echo: Any) -> None:
    """Wait for an echo process whose input was closed; kill it if it lingers."""
    echo.join(5)
    if echo.is_alive():
        echo.kill()
        echo.join()


def _echo_polling(inbox: int, outbox: int) -> None:
    from .._engine._messages import poll_briefly

    poller = select.poll()
    poller.register(inbox, select.POLLIN)
    while True:
        poll_briefly(poller.poll, 1_000_000)  # awake for 1 ms after each message
        message = os.read(inbox, 1)
        if not message:
            return
        os.write(outbox, message)


@contextlib.contextmanager
def _polling_pipe() -> Iterator[_Adapter]:
    """Not a library: the raw pipe with both ends polling instead of sleeping, the
    floor under a round trip whose two ends are awake (a sleeping end pays for
    its wake-up, which is most of the raw pipe's figure on a virtual machine)."""
    ctx = multiprocessing.get_context("fork")
    to_echo_r, to_echo_w = os.pipe()
    from_echo_r, from_echo_w = os.pipe()
    echo = ctx.Process(target=_echo_polling, args=(to_echo_r, from_echo_w), daemon=True)
    echo.start()
    os.close(to_echo_r)
    os.close(from_echo_w)
    poller = select.poll()
    poller.register(from_echo_r, select.POLLIN)

    def call_one() -> None:
        os.write(to_echo_w, b"x")
        while not poller.poll(0):
            pass
        os.read(from_echo_r, 1)

    a = _Adapter()
    a.call_one = call_one
    try:
        yield a
    finally:
        os.close(to_echo_w)
        _end_echo(echo)
        os.close(from_echo_r)


_Factory = Callable[[], contextlib.AbstractContextManager[_Adapter]]
LIBRARIES: dict[str, tuple[str | None, _Factory]] = {
    "procesos": (None, _procesos),
    "stdlib Pool": (None, _stdlib_pool),
    "PPE": (None, _ppe),
    "loky": ("loky", _loky),
    "joblib": ("joblib", _joblib),
    "mpire": ("mpire", _mpire),
    "pebble": ("pebble", _pebble),
    "raw pipe": (None, _raw_pipe),
    "polling pipe": (None, _polling_pipe),
}

# -- measurements ------------------------------------------------------------------
ROWS = [
    ("bulk map, 200k x*x", "M tasks/s"),
    ("ordered streaming, default chunks", "M tasks/s"),
    ("independent submit()", "k tasks/s"),
    ("warm round trip, median", "us"),
    ("16 CPU tasks of 50 ms, efficiency", "%"),
    ("fresh pool, first result", "ms"),
    ("idle pool of 2, USS", "MiB"),
]


def _calibrate_spin(seconds: float) -> int:
    iterations = 100_000
    while True:
        took = _best(functools.partial(spin, iterations), 3)
        if took > 0.01:
            return int(iterations * seconds / took)
        iterations *= 4


def _measure(adapter: _Adapter, quick: bool, spin_its: int) -> dict[str, float]:
    out: dict[str, float] = {}
    n = 50_000 if quick else 200_000
    data = list(range(n))
    repeat = 2 if quick else 5
    if adapter.bulk is not None:
        bulk = adapter.bulk
        bulk(data[:1000])
        out[ROWS[0][0]] = n / _best(lambda: bulk(data), repeat) / 1e6
    if adapter.stream is not None:
        stream = adapter.stream
        items = data[: min(n, adapter.stream_items or n)]
        out[ROWS[1][0]] = len(items) / _best(lambda: sum(1 for _ in stream(items)), 2) / 1e6
    if adapter.submit_many is not None:
        count = min(adapter.submit_items or 100_000, 20_000 if quick else 100_000)
        submit_many = adapter.submit_many
        out[ROWS[2][0]] = count / _best(lambda: submit_many(count), 2) / 1e3
    if adapter.call_one is not None:
        out[ROWS[3][0]] = _median_round_trip(adapter.call_one, 300 if quick else 2000) * 1e6
    if adapter.spin_all is not None:
        # Efficiency: the CPU time the tasks took, over what the workers had
        # (workers x wall time). Measured against the tasks' own CPU time, not a
        # run in this process: a worker's CPU may be faster or slower than ours.
        spin_all = adapter.spin_all
        efficiency = 0.0
        for _ in range(1 if quick else 2):
            gc.collect()
            start = time.perf_counter()
            cpu = sum(spin_all([spin_its] * 16))
            efficiency = max(efficiency, 100 * cpu / (WORKERS * (time.perf_counter() - start)))
        out[ROWS[4][0]] = efficiency
    return out


def _first_result(name: str) -> float | None:
    """Constructor to first result, with whatever helper the library keeps warm."""
    start = time.perf_counter()
    if name == "procesos":
        import procesos

        with procesos.Executor(WORKERS) as ex:
            ex.submit(square, 1).result()
            took = time.perf_counter() - start
        return took
    if name == "stdlib Pool":
        with multiprocessing.get_context().Pool(WORKERS) as pool:
            pool.apply(square, (1,))
            return time.perf_counter() - start
    if name == "PPE":
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(WORKERS) as ppe:
            ppe.submit(square, 1).result()
            return time.perf_counter() - start
    if name == "pebble":
        from pebble import ProcessPool

        with ProcessPool(WORKERS) as pebble_pool:
            pebble_pool.schedule(square, (1,)).result()
            return time.perf_counter() - start
    if name == "mpire":
        from mpire import WorkerPool  # type: ignore[attr-defined,unused-ignore]

        with WorkerPool(WORKERS) as mpire_pool:
            mpire_pool.map(square, [1])
            return time.perf_counter() - start
    return None


def _uss(pids: list[int]) -> float:
    import psutil

    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_full_info().uss
    return total / (1 << 20)


def _idle_memory() -> dict[str, float]:
    """USS of workers plus parent-side helpers (zygote; forkserver) of an idle pool."""
    if not _has("psutil"):
        return {}
    import psutil

    import procesos

    out = {}
    with procesos.Pool(WORKERS) as pool:
        pool.map(square, range(100))
        pids = [s.pid for s in pool.stats() if s.pid] + [procesos.zygote_pid() or 0]
        out["procesos"] = _uss(pids)
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    with multiprocessing.get_context("forkserver").Pool(WORKERS) as std:
        std.map(square, range(100))
        pids = [p.pid for p in me.children(recursive=True) if p.pid not in before]
        out["stdlib Pool"] = _uss(pids)
    return out


def _format(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("us", "ms", "%"):
        return f"{value:,.0f}"
    return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


def _keep_best(into: dict[str, float], new: dict[str, float]) -> None:
    for row, unit in ROWS:
        if row in new:
            lower_is_better = unit in ("us", "ms", "MiB")
            old = into.get(row)
            if old is None or (new[row] < old if lower_is_better else new[row] > old):
                into[row] = new[row]


def run(quick: bool = False, libraries: list[str] | None = None,
        log: Callable[[str], None] | None = None, rounds: int = 1,
        ) -> dict[str, dict[str, float]]:
    """Measure every workload for every installed library; ``{library: {row: value}}``.

    With several *rounds*, the libraries take turns once per round and each
    figure is the best of its rounds (on a shared machine, a burst of other
    load then hurts no library more than another).
    """
    say = log or (lambda _: None)
    names = [n for n, (module, _) in LIBRARIES.items()
             if (libraries is None or n in libraries) and (module is None or _has(module))]
    results: dict[str, dict[str, float]] = {n: {} for n in names}
    spin_its = _calibrate_spin(0.05)
    for round_ in range(rounds):
        say(f"round {round_ + 1} of {rounds}: idle memory ...")
        for name, value in _idle_memory().items():
            if name in results:
                _keep_best(results[name], {ROWS[6][0]: value})
        for name in names:
            say(f"{name} ...")
            measured: dict[str, float] = {}
            with LIBRARIES[name][1]() as adapter:
                measured.update(_measure(adapter, quick, spin_its))
            first = _first_result(name)
            if first is not None:
                measured[ROWS[5][0]] = first * 1e3
            _keep_best(results[name], measured)
        if "procesos" in results:
            say("ceiling ...")
            ceiling = bulk_ceiling(50_000 if quick else 200_000, 2 if quick else 5)
            _keep_best(results.setdefault("ceiling", {}), {ROWS[0][0]: ceiling / 1e6})
    return results


def table(results: dict[str, dict[str, float]]) -> str:
    """The results as a Markdown table, with procesos' ratio to the standard library."""
    names = list(results)
    header = ["workload", "unit", *names]
    if "procesos" in results and "stdlib Pool" in results:
        header.append("procesos vs stdlib")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, unit in ROWS:
        cells = [row, unit] + [_format(results[n].get(row), unit) for n in names]
        if "procesos vs stdlib" in header:
            ours, theirs = results["procesos"].get(row), results["stdlib Pool"].get(row)
            ratio = "-"
            if ours and theirs:
                better = theirs / ours if unit in ("us", "ms", "MiB") else ours / theirs
                ratio = f"{better:.1f}x"
            cells.append(ratio)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot(results: dict[str, dict[str, float]], path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(len(ROWS), 1, figsize=(8, 2.2 * len(ROWS)))
    for ax, (row, unit) in zip(axes, ROWS, strict=True):
        names = [n for n in results if row in results[n]]
        ax.barh(names, [results[n][row] for n in names])
        ax.set_title(f"{row} ({unit})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return True


def compile_bytecode() -> None:
    """Compile procesos' modules to bytecode, as installing a package does.

    An editable install run with ``PYTHONDONTWRITEBYTECODE=1`` has none, so
    every fresh interpreter (a spawn child, a zygote child importing what its
    zygote did not preload) would compile procesos from source, which no
    installed copy does; the standard library and the peers have theirs.
    The whole package: this module's own directory alone (what this did once
    the module moved into ``_cli``) left the modules that a child imports stale.
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    compileall.compile_dir(package, quiet=1)


def main(argv: list[str] | None = None) -> int:
    """``procesos bench [--quick] [--only LIB ...] [--plot FILE.png]``; 0 on success."""
    compile_bytecode()
    parser = argparse.ArgumentParser(
        prog="procesos bench",
        description="The task engine side by side with the standard library and its peers "
                    "(loky, mpire, pebble, multiprocess, billiard where installed).")
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a quick look)")
    parser.add_argument("--only", nargs="+", metavar="LIB", choices=list(LIBRARIES),
                        help="measure only these libraries")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the figures (matplotlib)")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="measure every library N times, taking turns; keep the best")
    args = parser.parse_args(argv)
    command = "procesos bench " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"# {command.strip()}  (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{WORKERS} workers)", flush=True)
    results = run(args.quick, args.only, log=lambda s: print(s, file=sys.stderr, flush=True),
                  rounds=max(1, args.rounds))
    print(table(results))
    ceiling = results.get("ceiling", {}).get(ROWS[0][0])
    stdlib = results.get("stdlib Pool", {}).get(ROWS[0][0])
    if ceiling and stdlib:
        print(f"\nBulk map: no library that pickles can pass {ceiling:.2f} M tasks/s here, "
              f"{ceiling / stdlib:.1f}x the standard library's Pool.map.")
    if args.plot and not _plot(results, args.plot):
        print("matplotlib is not installed: no plot", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
