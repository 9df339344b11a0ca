"""Data without copies (issue 5): procesos side by side with the standard library, loky and joblib.

    .venv/bin/python benchmarks/bench_transport.py [--mb 200] [--repeat 5] [--big-gb 2]

Each row is one scenario; each figure the median (and best) wall time of
``--repeat`` runs after two warm-up runs, in one process, in one run. Prints two
Markdown tables for ``BENCHMARKS.md``: the large-data rows side by side with the
standard library's figure over each (same run), then every row.

Each large-data row says what travels. The headline rows move a *new* array
each call, as users do: a result the task computed (its ``np.ones`` is in the
time), an argument made for this call (made before the clock starts). The rows
marked "sent-once path" move the *same unchanged* array again, which procesos
recognises and does not copy while an earlier receiver still holds it
(``docs/data.md``); the other libraries copy it as always.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import psutil  # type: ignore[import-untyped]

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _transport_tasks as tasks
import procesos
from procesos._cli._bench import compile_bytecode

Row = tuple[str, str, list[float] | None, str]  # scenario, who, times, note
rows: list[Row] = []


def measure(fn: Callable[[], object], repeat: int, warmup: int = 2,
            self_timed: bool = False) -> list[float]:
    """Wall times of *fn*; with *self_timed*, the seconds that *fn* returns (the part
    of its work it timed itself).

    No ``gc.collect()`` between runs: users do not call it, and a result kept
    alive by a reference cycle until the collector runs is part of what a user
    pays (it kept procesos from reusing its shared memory until issue 24).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        timed = fn()
        times.append(float(timed) if self_timed else time.perf_counter() - start)  # type: ignore[arg-type]
    return times


def record(scenario: str, who: str, fn: Callable[[], object] | None, repeat: int,
           note: str = "", warmup: int = 2, self_timed: bool = False) -> None:
    times = None
    if fn is not None:
        try:
            times = measure(fn, repeat, warmup, self_timed)
        except Exception as exc:  # a peer that cannot do it: say so in the table
            note = f"failed: {type(exc).__name__}: {exc}"[:80]
    rows.append((scenario, who, times, note))
    shown = "-" if times is None else f"{statistics.median(times):.4f}"
    print(f"  {scenario:<52} {who:<38} {shown:>8} {note}", flush=True)


# -- the scenarios ------------------------------------------------------------------------------

def scenarios(mb: int) -> dict[str, str]:
    """The large-data rows, by what the task returns or is given. A *new* array is
    what users have (a result the task computed, an argument made for this call);
    the *same* array again, unchanged, is procesos' sent-once path (``docs/data.md``)."""
    return {
        "ret_new": f"task returns a new {mb} MB array",
        "ret_same": f"task returns the same {mb} MB array again (sent-once path)",
        "arg_new": f"a new {mb} MB argument per call -> its sum",
        "arg_same": f"the same {mb} MB argument again -> its sum (sent-once path)",
        "queue_new": f"Queue: a new {mb} MB array in, sum back",
        "queue_same": f"Queue: the same {mb} MB array in, sum back (sent-once path)",
    }


def with_new_array(nbytes: int, call: Callable[[np.ndarray], object]) -> Callable[[], float]:
    """A run that makes a new array (untimed, as the caller's own work), then times
    *call* with it."""
    def run() -> float:
        fresh = np.ones(nbytes // 8)
        start = time.perf_counter()
        call(fresh)
        return time.perf_counter() - start
    return run


def keeping_the_last(call: Callable[[], object]) -> Callable[[], None]:
    """A run that keeps the value *call* returned until the next one has arrived, as a
    caller that holds on to its last result: then procesos' sent-once path applies
    (the segment is still in use)."""
    last: list[object] = []

    def run() -> None:
        value = call()
        last[:] = [value]
    return run


def bench_arguments_and_results(mb: int, repeat: int) -> None:
    import joblib  # type: ignore[import-untyped]
    import loky  # type: ignore[import-untyped]

    nbytes = mb * 1_000_000
    a = np.random.default_rng(0).random(nbytes // 8)
    expected = float(a.sum())
    s = scenarios(mb)
    task_makes = "includes the task's np.ones"

    record("reference", "np.copy in one process", lambda: np.copy(a), repeat)
    warm = np.empty_like(a)
    warm.fill(0)  # its pages touched: what a reused shared-memory segment is
    record("reference", "np.copyto into warm pages in one process (one copy: with np.ones, "
           "the floor of a new result)", lambda: np.copyto(warm, a), repeat)
    record("reference", "np.ones in one process (what a task that makes it pays)",
           lambda: np.ones(nbytes // 8), repeat)
    record("reference", "a.sum() in one process", lambda: a.sum(), repeat)

    # Processes first: a fork after the pools below started threads is another story.
    # Two rows each: until result() hands the value back (the process may still be
    # exiting: a child that mapped 200 MB unmaps them), and the whole life, join() and
    # close() included.
    def process_with(target: Callable[..., Any], *args: Any, context: Any = procesos,
                     to_result: bool = True, new_array: bool = False) -> Callable[[], object]:
        def run() -> object:
            given = (np.ones(nbytes // 8),) if new_array else args
            start = time.perf_counter()
            p = context.Process(target=target, args=given)
            p.start()
            p.result()
            valued = time.perf_counter()
            p.join()
            p.close()
            return (valued if to_result else time.perf_counter()) - start
        return run

    name = f"procesos.Process ({procesos.get_start_method()})"
    forked = "procesos.Process (fork: inherits a)"
    fork = procesos.get_context("fork")
    for scenario, who, target, args, note, new_array in [
        ("Process: start, tiny arg, result", name, tasks.echo, (1,), "", False),
        (s["arg_new"], name, tasks.total, (), "", True),
        (s["ret_new"], name, tasks.fresh_array, (nbytes,), task_makes + ", in a new process",
         False),
        ("argument inherited through fork -> its sum", forked, tasks.total, (a,), "", False),
    ]:
        context = fork if who == forked else procesos
        for to_result, until in ((True, "start() to result()"),
                                 (False, "start() to join() and close()")):
            record(scenario, who, process_with(target, *args, context=context,
                                               to_result=to_result, new_array=new_array),
                   repeat, ", ".join(filter(None, [until, note])), self_timed=True)

    def both_ways(who: str, run: Callable[[Callable[..., Any], tuple[Any, ...]], Any]) -> None:
        """The four large-data rows for one library; *run(fn, args)* calls a task and
        returns its value."""
        record(s["ret_new"], who, lambda: run(tasks.fresh_array, (nbytes,)), repeat, task_makes)
        record(s["ret_same"], who, keeping_the_last(lambda: run(tasks.cached_array, (nbytes,))),
               repeat, "the worker's cached array; the caller keeps the last one")
        record(s["arg_new"], who, with_new_array(nbytes, lambda x: run(tasks.total, (x,))),
               repeat, "the array made before the clock starts", self_timed=True)
        record(s["arg_same"], who, lambda: run(tasks.total, (a,)), repeat)

    with multiprocessing.Pool(1) as pool:
        both_ways(f"multiprocessing.Pool ({multiprocessing.get_start_method()})", pool.apply)

    executor = loky.get_reusable_executor(max_workers=1)
    both_ways("loky", lambda fn, args: executor.submit(fn, *args).result())
    executor.shutdown(wait=True)

    with joblib.Parallel(n_jobs=2, max_nbytes="1M") as parallel:
        both_ways("joblib (loky, memmapping)",
                  lambda fn, args: parallel([joblib.delayed(fn)(*args)])[0])

    with procesos.Executor(max_workers=1) as ex:
        both_ways("procesos.Executor", lambda fn, args: ex.submit(fn, *args).result())

    with procesos.Pool(1) as ppool:
        both_ways(f"procesos.Pool ({procesos.get_start_method()})", ppool.apply)

    # A long-lived worker fed through queues: the same task, through a procesos
    # Queue and through the standard library's.
    for who, ctx in (("procesos.Queue", procesos), ("multiprocessing.Queue", multiprocessing)):
        inbox, outbox = ctx.Queue(), ctx.Queue()
        worker = ctx.Process(target=tasks.queue_worker, args=(inbox, outbox))
        worker.start()

        def round_trip(array: np.ndarray, inbox: Any = inbox, outbox: Any = outbox) -> None:
            inbox.put(array)
            assert outbox.get() == (expected if array is a else nbytes // 8)

        record(s["queue_new"], who, with_new_array(nbytes, round_trip), repeat,
               "the array made before the clock starts", self_timed=True)
        record(s["queue_same"], who, lambda: round_trip(a), repeat)
        inbox.put(None)
        worker.join()
        for q in (inbox, outbox):
            q.close()
            q.join_thread()


@contextlib.contextmanager
def peak_used_memory() -> Iterator[dict[str, int]]:
    """Sample the machine's used memory (total - available) every 2 ms."""
    result = {"base": psutil.virtual_memory().total - psutil.virtual_memory().available}
    result["peak"] = result["base"]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            vm = psutil.virtual_memory()
            result["peak"] = max(result["peak"], vm.total - vm.available)
            stop.wait(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield result
    finally:
        stop.set()
        sampler.join()


def settle_shared_memory(limit: float = 30.0) -> None:
    """Wait until procesos' tracker has freed what the previous scenario used
    (it learns that a child let go when it sees the child's socket close), so
    that the next scenario's baseline does not include it."""
    from procesos._shm import tracker_stats

    deadline = time.monotonic() + limit
    while tracker_stats(trim=True)["segments"] and time.monotonic() < deadline:
        time.sleep(0.05)


def bench_peak_memory(gb: float) -> list[tuple[str, float, str]]:
    import joblib
    import loky

    nbytes = int(gb * 1e9)
    if psutil.virtual_memory().available < 5 * nbytes:
        print(f"  (skipped: less than {5 * gb:.0f} GB available)")
        return []
    a = np.ones(nbytes // 8)
    expected = float(a.sum())
    results: list[tuple[str, float, str]] = []

    def run(who: str, fn: Callable[[], list[tuple[float, int, int]]]) -> None:
        gc.collect()
        settle_shared_memory()
        try:
            with peak_used_memory() as mem:
                answers = fn()
        except Exception as exc:
            results.append((who, float("nan"), f"failed: {exc!r}"[:60]))
            return
        assert all(s == expected for s, _, _ in answers), answers
        copies = (mem["peak"] - mem["base"]) / nbytes
        pss = ", ".join(f"{p / 1e9:.2f}" for _, _, p in answers)
        rss = ", ".join(f"{r / 1e9:.2f}" for _, r, _ in answers)
        results.append((who, copies, f"workers' RSS {rss} GB, PSS {pss} GB"))
        print(f"  {who:<44} +{copies:.2f} copies  ({results[-1][2]})", flush=True)

    def procesos_processes(arg: Any) -> list[tuple[float, int, int]]:
        ps = [procesos.Process(target=tasks.total_and_memory, args=(arg,)) for _ in range(2)]
        for p in ps:
            p.start()
        answers = [p.result() for p in ps]
        for p in ps:
            p.join()
            p.close()
        return answers

    def shared_array() -> list[tuple[float, int, int]]:
        with procesos.SharedArray.from_array(a) as shared:
            return procesos_processes(shared)

    with multiprocessing.Pool(2) as pool:
        pool.map(abs, range(4))
        run("multiprocessing.Pool(2).map", lambda: pool.map(tasks.total_and_memory, [a, a], 1))
    executor = loky.get_reusable_executor(max_workers=2)
    executor.submit(abs, 1).result()
    run("loky (2 workers)", lambda: list(executor.map(tasks.total_and_memory, [a, a])))
    executor.shutdown(wait=True)
    with joblib.Parallel(n_jobs=2, max_nbytes="1M") as parallel:
        parallel([joblib.delayed(abs)(1)])
        run("joblib (memmapping)",
            lambda: parallel(joblib.delayed(tasks.total_and_memory)(a) for _ in range(2)))
    run("procesos: 2 Processes, the array as argument", lambda: procesos_processes(a))
    with procesos.Pool(2) as ppool:
        ppool.map(abs, range(4))
        run("procesos.Pool(2).map", lambda: ppool.map(tasks.total_and_memory, [a, a], 1))
    run("procesos: SharedArray.from_array + 2 Processes", shared_array)
    return results


def bench_small_messages(count: int, rounds: int = 6) -> None:
    """Each queue in turn, *rounds* times, the order reversed every other round:
    which library goes first moves this figure by more than 10%."""
    cases: list[tuple[str, Callable[[], Any], Any]] = []
    for who, ctx in (("procesos.Queue", procesos), ("multiprocessing.Queue", multiprocessing),
                     ("procesos.SimpleQueue", None), ("multiprocessing.SimpleQueue", None)):
        if ctx is None:
            maker = procesos if who.startswith("procesos") else multiprocessing
            cases.append((who, maker.SimpleQueue, maker.Process))
        else:
            cases.append((who, ctx.Queue, ctx.Process))

    def run(make_queue: Callable[[], Any], process_cls: Any) -> None:
        queue = make_queue()
        producer = process_cls(target=tasks.queue_produce, args=(queue, count))
        producer.start()
        for _ in range(count):
            queue.get()
        producer.join()

    times: dict[str, list[float]] = {who: [] for who, _, _ in cases}
    for _, make_queue, process_cls in cases:
        run(make_queue, process_cls)  # warm-up
    for round_ in range(rounds):
        for who, make_queue, process_cls in (cases if round_ % 2 == 0 else cases[::-1]):
            gc.collect()
            start = time.perf_counter()
            run(make_queue, process_cls)
            times[who].append(time.perf_counter() - start)
    for who, _, _ in cases:
        scenario = f"{who.split('.')[1]}: {count} small messages"
        median = statistics.median(times[who])
        rows.append((scenario, who, times[who], f"{count / median:,.0f} msg/s"))
        print(f"  {scenario:<34} {who:<38} {median:8.4f} {count / median:,.0f} msg/s",
              flush=True)


# -- the report -----------------------------------------------------------------------------------

def _baseline(scenario: str) -> float | None:
    """The standard library's median for *scenario* in this run (its Pool, or its Queue)."""
    for row_scenario, who, times, _ in rows:
        if row_scenario == scenario and times and who.startswith("multiprocessing"):
            return statistics.median(times)
    return None


SIDE_BY_SIDE = ["multiprocessing.Pool", "loky", "joblib", "procesos.Executor", "procesos.Pool",
                "procesos.Process", "procesos.Queue", "multiprocessing.Queue"]


def summary(mb: int) -> str:
    """The large-data rows side by side: median seconds, and the standard library's
    median over it (same run); a ``Process`` row is start() to result()."""
    wanted = list(scenarios(mb).values())
    present = [who for who in SIDE_BY_SIDE
               if any(w.startswith(who) and t for sc, w, t, _ in rows if sc in wanted)]
    lines = ["| what | " + " | ".join(present) + " |",
             "|---|" + "---:|" * len(present)]
    for scenario in wanted:
        cells = []
        base = _baseline(scenario)
        for who in present:
            found = [(w, t, n) for sc, w, t, n in rows if sc == scenario and w.startswith(who)
                     and t and "join()" not in n]
            if not found:
                cells.append("")
                continue
            median = statistics.median(found[0][1])
            ratio = f" ({base / median:.1f}x)" if base and not who.startswith("multiprocessing") \
                else ""
            cells.append(f"{median:.4f}{ratio}")
        if any(cells):
            lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(peaks: list[tuple[str, float, str]]) -> str:
    lines = ["| scenario | who | median s | best s | vs stdlib | note |",
             "|---|---|---:|---:|---:|---|"]
    for scenario, who, times, note in rows:
        if times is None:
            lines.append(f"| {scenario} | {who} | - | - | - | {note} |")
            continue
        median = statistics.median(times)
        base = _baseline(scenario)
        ratio = f"{base / median:.1f}x" if base else ""
        lines.append(f"| {scenario} | {who} | {median:.4f} | {min(times):.4f} | {ratio} | {note} |")
    if peaks:
        lines += ["", "| 2 workers receive one large array | machine's used memory | workers |",
                  "|---|---:|---|"]
        for who, copies, note in peaks:
            lines.append(f"| {who} | +{copies:.2f} copies | {note} |")
    return "\n".join(lines)


def main() -> None:
    compile_bytecode()  # as an installed procesos has it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the large array (MB)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--big-gb", type=float, default=2.0, help="array for the memory test")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--skip", default="", help="comma-separated: times,memory,messages")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    import joblib
    import loky

    print(f"Python {platform.python_version()}, {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, numpy {np.__version__}, "
          f"loky {loky.__version__}, joblib {joblib.__version__}, procesos "
          f"{procesos.__version__}")
    print("command: .venv/bin/python benchmarks/bench_transport.py " + " ".join(sys.argv[1:]))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    if "times" not in skip:
        bench_arguments_and_results(args.mb, args.repeat)
    if "messages" not in skip:
        bench_small_messages(args.messages)
    peaks = [] if "memory" in skip else bench_peak_memory(args.big_gb)
    print()
    if "times" not in skip:
        print(summary(args.mb))
        print()
    print(table(peaks))


if __name__ == "__main__":
    main()
