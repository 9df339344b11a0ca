"""procesos.Executor: the concurrent.futures API on procesos' task engine."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import gc
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import procesos
from conftest import run_script, wait_for_the_zygote
from engine_tasks import (
    add,
    block_on_fifo,
    counted,
    engine_modules,
    fail_on,
    found_libraries_without_a_scan,
    get_state,
    make_payload,
    openblas_threads,
    pid_of,
    runs_of,
    set_state,
    square,
    stop_on,
    thread_limits,
)


def test_executor_is_a_concurrent_futures_executor() -> None:
    with procesos.Executor(2) as ex:
        assert isinstance(ex, concurrent.futures.Executor)
        assert ex.max_workers == 2


def test_submit_returns_a_future_with_the_result() -> None:
    with procesos.Executor(2) as ex:
        future = ex.submit(add, 2, b=3)
        assert isinstance(future, concurrent.futures.Future)
        assert future.result(timeout=30) == 5


def test_futures_work_with_wait_and_as_completed() -> None:
    with procesos.Executor(2) as ex:
        futures = [ex.submit(square, i) for i in range(50)]
        _, not_done = concurrent.futures.wait(futures, timeout=30)
        assert not not_done
        assert sorted(f.result() for f in concurrent.futures.as_completed(futures)) == [
            i * i for i in range(50)]


def test_many_submits_all_complete() -> None:
    with procesos.Executor(2) as ex:
        futures = [ex.submit(square, i) for i in range(20_000)]
        assert [f.result() for f in futures] == [i * i for i in range(20_000)]


def test_submit_and_result_from_many_threads_at_once() -> None:
    # Each caller reads its answer itself; the output of the worker that ran
    # it is checked first, and was checked with one poll object for all
    # threads: a second thread's check while one was under way raised
    # RuntimeError("concurrent poll() invocation") and broke the executor.
    with procesos.Executor(2) as ex, concurrent.futures.ThreadPoolExecutor(8) as callers:
        results = list(callers.map(lambda x: ex.submit(square, x).result(timeout=60),
                                   range(1000)))
    assert results == [x * x for x in range(1000)]


def test_lambdas_and_closures_work() -> None:
    offset = 10
    with procesos.Executor(2) as ex:
        assert ex.submit(lambda x: x + offset, 1).result() == 11
        assert list(ex.map(lambda x: x * offset, range(5))) == [0, 10, 20, 30, 40]


def test_map_keeps_input_order_and_zips_iterables() -> None:
    with procesos.Executor(2) as ex:
        assert list(ex.map(square, range(1000))) == [i * i for i in range(1000)]
        assert list(ex.map(add, range(5), range(10, 20))) == [10, 12, 14, 16, 18]
        assert list(ex.map(square, iter(range(300)), chunksize=7)) == [i * i for i in range(300)]
        assert list(ex.map(square, [])) == []


def test_map_raises_a_failed_tasks_exception_where_it_occurs() -> None:
    with procesos.Executor(2) as ex:
        results = ex.map(fail_on, range(5))
        assert next(results) == 0
        assert next(results) == 1
        with pytest.raises(ValueError, match="bad item 2"):
            next(results)


def test_map_return_exceptions_puts_the_exception_in_place() -> None:
    with procesos.Executor(2) as ex:
        results = list(ex.map(fail_on, range(5), return_exceptions=True))
        assert results[:2] == [0, 1] and results[3:] == [3, 4]
        assert isinstance(results[2], ValueError)


def test_map_input_that_raises_ends_the_results_there() -> None:
    def broken():
        yield 1
        yield 2
        raise KeyError("input broke")

    with procesos.Executor(2) as ex:
        results = ex.map(square, broken())
        assert next(results) == 1 and next(results) == 4
        with pytest.raises(KeyError, match="input broke"):
            next(results)


def test_items_read_in_the_chunk_where_the_input_raised_still_run() -> None:
    # A chunk of 3 reads 1 and 2, then the input raises: 1 and 2 are not lost.
    def broken():
        yield 1
        yield 2
        raise KeyError("input broke")

    with procesos.Executor(2) as ex:
        results = ex.map(square, broken(), chunksize=3)
        assert next(results) == 1 and next(results) == 4
        with pytest.raises(KeyError, match="input broke"):
            next(results)
    with procesos.Pool(2) as pool:
        pool_results = pool.imap(square, broken(), chunksize=3)
        assert next(pool_results) == 1 and next(pool_results) == 4
        with pytest.raises(KeyError, match="input broke"):
            next(pool_results)


def test_map_timeout_raises_timeout_error(tmp_path: Path) -> None:
    fifo = str(tmp_path / "go")
    os.mkfifo(fifo)
    with procesos.Executor(1) as ex:
        results = ex.map(block_on_fifo, [fifo], timeout=0.2)
        with pytest.raises(TimeoutError):
            next(results)
        with open(fifo, "w") as release:
            release.write("go")


def test_shutdown_waits_for_submitted_tasks() -> None:
    ex = procesos.Executor(2)
    futures = [ex.submit(square, i) for i in range(100)]
    ex.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert not procesos.active_children()
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)
    ex.shutdown()  # harmless


def test_submit_from_a_callback() -> None:
    with procesos.Executor(2) as ex:
        chained: concurrent.futures.Future[concurrent.futures.Future[int]] = \
            concurrent.futures.Future()
        first = ex.submit(square, 3)
        first.add_done_callback(lambda f: chained.set_result(ex.submit(square, f.result())))
        assert chained.result(timeout=30).result(timeout=30) == 81


def test_asyncio_wrap_future_asubmit_and_amap() -> None:
    async def main() -> tuple[int, int, list[int], list[int]]:
        with procesos.Executor(2) as ex:
            wrapped = await asyncio.wrap_future(ex.submit(square, 4))
            awaited = await ex.asubmit(square, 5)
            collected = await ex.amap(square, range(100))
            streamed = [x async for x in ex.amap(square, range(10))]
            return wrapped, awaited, collected, streamed

    wrapped, awaited, collected, streamed = asyncio.run(main())
    assert (wrapped, awaited) == (16, 25)
    assert collected == [i * i for i in range(100)]
    assert streamed == [i * i for i in range(10)]


def test_an_executor_imports_neither_asyncio_nor_a_cluster_library(tmp_path: Path) -> None:
    # asyncio: 19 ms of a program's first Executor; asubmit()/amap() run in its
    # loop, so such a program has imported it (the test above runs them).
    # Dask and Ray: only for Executor(backend=...).
    result = run_script(
        "import sys, procesos\n"
        "with procesos.Executor(1) as ex:\n"
        "    assert ex.submit(abs, -3).result() == 3\n"
        "print(sorted(m for m in ('asyncio', 'dask', 'distributed', 'ray') if m in sys.modules))\n",
        tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def warm_executor(workers: int = 1) -> procesos.Executor:
    """An executor whose workers are all ready (so that a submit goes straight to one)."""
    ex = procesos.Executor(workers)
    list(ex.map(pid_of, range(4 * workers)))
    return ex


def test_one_call_on_an_idle_worker_completes_however_it_is_waited_for() -> None:
    with warm_executor() as ex:
        assert ex.submit(square, 2).result(timeout=30) == 4
        assert ex.submit(square, 3).exception(timeout=30) is None
        done, _ = concurrent.futures.wait([ex.submit(square, 4)], timeout=30)
        assert [f.result() for f in done] == [16]
        assert [f.result() for f in concurrent.futures.as_completed(
            [ex.submit(square, 5)], timeout=30)] == [25]
        called = threading.Event()
        future = ex.submit(square, 6)
        future.add_done_callback(lambda f: called.set())
        assert called.wait(30) and future.result() == 36
        polled = ex.submit(square, 7)
        deadline = time.monotonic() + 30
        while not polled.done():  # polling done() alone must be enough
            assert time.monotonic() < deadline
        assert polled.result() == 49
        assert asyncio.run(ex.asubmit(square, 8)) == 64
        # Nobody waits: shutdown still collects it.
        forgotten = ex.submit(square, 9)
    assert forgotten.result(timeout=0) == 81


def test_result_timeout_on_an_idle_worker_leaves_the_call_running(tmp_path: Path) -> None:
    fifo = str(tmp_path / "go")
    os.mkfifo(fifo)
    with warm_executor() as ex:
        future = ex.submit(block_on_fifo, fifo, "done")
        with pytest.raises(TimeoutError):
            future.result(timeout=0.05)
        with open(fifo, "w") as release:
            release.write("go")
        assert future.result(timeout=30) == "done"
        assert ex.submit(square, 3).result(timeout=30) == 9


@pytest.mark.parametrize("spin", ["0", "5000"])
def test_round_trips_work_with_polling_off_and_long(spin: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESOS_SPIN_US", spin)
    with procesos.Executor(max_workers=1) as ex:
        assert [ex.submit(square, n).result(timeout=30) for n in range(20)] == [
            n * n for n in range(20)]
        assert list(ex.map(square, range(100))) == [n * n for n in range(100)]
        with pytest.raises(TimeoutError):
            ex.submit(time.sleep, 0.5).result(timeout=0.001)  # shorter than the polling


@pytest.mark.parametrize("value", ["fast", "-1", "1.5"])
def test_a_bad_polling_setting_is_refused_by_name(value: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESOS_SPIN_US", value)
    with pytest.raises(ValueError, match="PROCESOS_SPIN_US must be a whole number"):
        procesos.Executor(max_workers=1)
    with pytest.raises(ValueError, match="PROCESOS_SPIN_US"):
        procesos.Pool(1)


def test_the_result_is_read_by_one_thread_while_others_wait() -> None:
    with warm_executor(2) as ex:
        for _ in range(20):
            future = ex.submit(square, 11)
            with concurrent.futures.ThreadPoolExecutor(4) as threads:
                assert list(threads.map(lambda _: future.result(timeout=30), range(4))) == [121] * 4


def test_submits_racing_shutdown_either_run_or_are_refused() -> None:
    for _ in range(5):
        ex = procesos.Executor(2)
        futures: list[concurrent.futures.Future[int]] = []
        refused = threading.Event()

        def submit_until_refused() -> None:
            while True:
                try:
                    futures.append(ex.submit(square, 2))
                except RuntimeError:
                    refused.set()
                    return

        thread = threading.Thread(target=submit_until_refused)
        thread.start()
        deadline = time.monotonic() + 30
        while len(futures) < 200:  # let submits queue up behind busy workers
            assert time.monotonic() < deadline
        ex.shutdown(wait=True)
        thread.join(30)
        assert refused.is_set()
        assert all(f.result(timeout=30) == 4 for f in futures)


def test_initializer_prepares_each_worker() -> None:
    with procesos.Executor(2, initializer=set_state, initargs=("ready",)) as ex:
        assert set(ex.map(get_state, range(20))) == {"ready"}


def test_stats_count_tasks_per_worker() -> None:
    with procesos.Executor(2) as ex:
        list(ex.map(square, range(1000)))
        stats = ex.stats()
    assert [s.slot for s in stats] == [0, 1]
    assert sum(s.tasks for s in stats) == 1000
    assert all(s.busy_s >= 0 and s.idle_s >= 0 and s.crashes == 0 for s in stats)


def test_threads_per_worker_limits_numeric_libraries() -> None:
    with procesos.Executor(1, threads_per_worker=1) as ex:
        limits = ex.submit(thread_limits).result()
        assert set(limits.values()) == {"1"}
        pytest.importorskip("numpy")
        assert ex.submit(openblas_threads).result() in (1, None)


def test_a_worker_of_the_zygote_limits_threads_without_reading_its_memory_map() -> None:
    # The zygote read its loaded libraries once; its workers, which load none
    # before their first task, use that list (400 µs of each start otherwise).
    wait_for_the_zygote()  # it takes that list once its start-up imports are done
    with procesos.Executor(2, context="zygote", threads_per_worker=1) as ex:
        assert all(ex.map(found_libraries_without_a_scan, range(4)))
        assert set(ex.submit(thread_limits).result().values()) == {"1"}


def test_workers_are_procesos_processes_and_end_with_the_executor() -> None:
    # Under fork the constructor starts every worker (under the zygote the
    # second may still be starting when a short map is done).
    with procesos.Executor(2, context="fork") as ex:
        list(ex.map(square, range(100)))
        pids = {s.pid for s in ex.stats()}
        assert pids == {p.pid for p in procesos.active_children()}
        assert ex.submit(pid_of).result() in pids
    assert not procesos.active_children()


@pytest.mark.parametrize("method", ["zygote", "fork", "spawn"])
def test_a_script_without_main_guard_maps_a_lambda(method: str, tmp_path: Path) -> None:
    result = run_script(
        "import procesos\n"
        "with procesos.Executor(2) as ex:\n"
        "    print(sum(ex.map(lambda x: x * x, range(100))))\n",
        tmp_path, method=method,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "328350\n"


def test_progress_goes_to_stderr_not_stdout(tmp_path: Path) -> None:
    result = run_script(
        "import procesos\n"
        "with procesos.Executor(2, progress=True) as ex:\n"
        "    total = sum(ex.map(abs, range(1000)))\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "procesos: 1000/1000 tasks done (100%)" in result.stderr
    assert "0 failed" in result.stderr


def test_progress_bar_on_a_terminal() -> None:
    import io

    from procesos._engine._progress import Progress

    stream = io.StringIO()
    progress = Progress(stream, fancy=True)
    progress.add(10)
    progress.advance(9, 1)
    progress.close()
    text = stream.getvalue()
    assert "10/10" in text and "1 failed" in text


def test_a_map_of_a_function_already_measured_starts_from_what_was_learned() -> None:
    from procesos._engine._batching import MAX_CHUNK, TARGET_S, ChunkSizer

    assert ChunkSizer(2).size == 1  # nothing known: one item first
    assert ChunkSizer(2, learned_s=1e-6).size == min(MAX_CHUNK, int(TARGET_S / 1e-6)) // 16
    assert ChunkSizer(2, learned_s=1.0).size == 1
    assert ChunkSizer(2, fixed=7, learned_s=1e-6).size == 7
    with procesos.Executor(2) as ex:
        for _ in range(3):
            assert list(ex.map(square, range(20_000))) == [i * i for i in range(20_000)]


def test_a_chunksize_you_give_is_kept_and_its_quick_items_are_not_tracked_one_by_one() -> None:
    # Tracking each item of a chunk (its result logged before the next starts)
    # made Executor.map(square, ..., chunksize=25000) three times slower than
    # automatic chunks: quick items of a fixed size are now run like theirs.
    from procesos._engine._batching import TRACK_ABOVE_S, ChunkSizer

    fixed = ChunkSizer(2, fixed=25_000)
    assert fixed.tracked  # nothing measured yet
    fixed.record(25_000, 25_000 * 1e-7)
    assert not fixed.tracked and fixed.next_size(None) == 25_000
    slow = ChunkSizer(2, fixed=4)
    slow.record(4, 4 * 10 * TRACK_ABOVE_S)
    assert slow.tracked
    assert not ChunkSizer(2, fixed=25_000, learned_s=1e-7).tracked  # measured before
    with procesos.Executor(2) as ex:
        for _ in range(2):
            assert list(ex.map(square, range(50_000), chunksize=25_000)) == [
                i * i for i in range(50_000)]


def test_chunks_of_items_that_carry_data_are_sized_by_their_bytes_too() -> None:
    from procesos._engine._batching import TARGET_BYTES, ChunkSizer

    sizer = ChunkSizer(2)
    for _ in range(20):
        sizer.record(1000, 1000 * 1e-6)  # quick items: by time alone, large chunks
    assert sizer.next_size(None) > 10_000
    sizer.record_bytes(100, 100 * 1000, results=False)  # 1 kB of arguments each
    sizer.record_bytes(100, 100 * 1000, results=True)  # and of results
    assert sizer.next_size(None) == TARGET_BYTES // 2000
    sizer.record_bytes(1, 10 * TARGET_BYTES, results=True)  # one item over the target
    assert sizer.next_size(None) == 1
    fixed = ChunkSizer(2, fixed=5000)
    fixed.record_bytes(100, 100 * 1000, results=False)
    assert fixed.next_size(None) == 5000  # an explicit chunksize is honoured
    with procesos.Executor(2) as ex:
        blobs = [bytes([i % 251]) * 4000 for i in range(3000)]
        assert list(ex.map(len, blobs)) == [4000] * 3000
        assert list(ex.map(bytes.upper, blobs)) == [b.upper() for b in blobs]


def test_workers_load_only_their_side_of_the_engine() -> None:
    with procesos.Executor(1, context="zygote") as ex:
        assert ex.submit(engine_modules).result(timeout=30) == []


MAIN_GLOBALS_SCRIPT = """
import procesos

queue = None  # set in each worker by the initializer, as with multiprocessing.Pool
factor = 2

def init(q):
    global queue
    queue = q

def report(x):
    queue.put(x)
    return x * factor

q = procesos.Queue()
with procesos.Executor(2, initializer=init, initargs=(q,)) as ex:
    print(sorted(ex.map(report, range(4))), sorted(q.get(timeout=30) for _ in range(4)))
    factor = 3
    times = lambda x: x * factor  # a new function brings the parent's value of now
    print(list(ex.map(times, range(3))))
with procesos.Pool(2, initializer=init, initargs=(q,)) as pool:
    print(pool.map(report, range(3)), sorted(q.get(timeout=30) for _ in range(3)))
"""


def printed_by(source: str, tmp_path: Path, method: str) -> list[str]:
    """The lines a script printed, run under *method*; it must succeed."""
    result = run_script(source, tmp_path, method=method)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("method", ["zygote", "fork", "spawn"])
def test_an_initializer_sets_globals_of_main_for_the_tasks_sent_later(
        tmp_path: Path, method: str) -> None:
    # The functions of a script travel by value, each in its own pickle; once
    # unpickled they share __main__'s globals again, as in the parent.
    assert printed_by(MAIN_GLOBALS_SCRIPT, tmp_path, method) == [
        "[0, 2, 4, 6] [0, 1, 2, 3]",
        "[0, 3, 6]",
        "[0, 3, 6] [0, 1, 2]",
    ]


WORKER_STATE_SCRIPT = """
import procesos

calls = 0

def count(_):
    global calls
    calls += 1
    return calls

def read(_):
    return calls

def main():
    return "the script's main"

def call_main():
    return main()

with procesos.Executor(1) as ex:
    print([ex.submit(count, i).result() for i in range(3)], ex.submit(read, 0).result())
    print(ex.submit(call_main).result())
p = procesos.Process(target=call_main)
p.start()
print(p.result(timeout=30))
p.join()
"""


@pytest.mark.parametrize("method", ["zygote", "fork", "spawn"])
def test_what_a_worker_assigns_to_a_global_stays_for_its_next_tasks(
        tmp_path: Path, method: str) -> None:
    # count() raised the worker's "calls"; read(), sent later with the
    # parent's 0, sees the worker's 3. And a name the child's own __main__
    # had (a zygote's "main") is the script's once a function brings it.
    assert printed_by(WORKER_STATE_SCRIPT, tmp_path, method) == [
        "[1, 2, 3] 3",
        "the script's main",
        "the script's main",
    ]


REBOUND_GLOBALS_SCRIPT = """
import procesos

K = 1

def g(x):
    return x + K

def h(x):
    return g(x) * 10  # K through g

with procesos.Executor(1) as ex:
    first = ex.submit(g, 0).result(), list(ex.map(h, [0]))
    K = 100
    print(first, ex.submit(g, 0).result(), list(ex.map(h, [0])))
with procesos.Pool(1) as pool:
    K = 5
    before = pool.apply(g, (0,))
    K = 6
    print(before, pool.apply(g, (0,)), pool.map(h, [0]))
"""


@pytest.mark.parametrize("method", ["zygote", "fork", "spawn"])
def test_a_global_assigned_in_the_parent_reaches_the_functions_sent_again(
        tmp_path: Path, method: str) -> None:
    # An executor pickles a function once; one that uses a global assigned
    # since (a notebook's next cell) gave the old value, until some other
    # function that uses it happened to be sent.
    assert printed_by(REBOUND_GLOBALS_SCRIPT, tmp_path, method) == [
        "(1, [10]) 100 [1000]",
        "5 6 [60]",
    ]


REBOUND_LARGE_GLOBAL_SCRIPT = """
import gc
import numpy as np
import procesos
from procesos._shm import tracker_stats

BIG = np.zeros(1 << 18)  # 2 MiB: its pickle lies in shared memory

def total(_):
    return float(BIG.sum())

with procesos.Executor(1) as ex:
    sums = []
    for i in range(12):
        BIG = np.full(1 << 18, float(i))
        sums.append(ex.submit(total, 0).result(timeout=60))
    gc.collect()
    print(sums == [float(i << 18) for i in range(12)], tracker_stats()["segments"])
"""


def test_pickles_replaced_because_a_global_was_assigned_free_their_shared_memory(
        tmp_path: Path) -> None:
    # Only the current pickle of total() (with the last BIG) stays in use.
    assert printed_by(REBOUND_LARGE_GLOBAL_SCRIPT, tmp_path, "zygote") == ["True 1"]


INITIALIZER_STATE_SCRIPT = """
import types
import procesos

REGISTRY = {}
SPACE = types.SimpleNamespace()

class Holder:
    value = None

held = None

def init(value):
    global held
    REGISTRY["value"] = value
    SPACE.value = value
    Holder.value = value
    held = value

def read(_):
    return REGISTRY.get("value"), getattr(SPACE, "value", None), Holder.value, held

with procesos.Pool(2, initializer=init, initargs=(7,)) as pool:
    print(pool.map(read, range(2)))
REGISTRY["value"] = "the parent's, changed inside"
with procesos.Pool(1, initializer=init, initargs=(8,)) as pool:
    print(pool.map(read, range(1)))
"""


@pytest.mark.parametrize("method", ["zygote", "fork", "spawn"])
def test_what_an_initializer_puts_into_a_global_object_stays_for_the_tasks(
        tmp_path: Path, method: str) -> None:
    # The standard library's idioms beside `global`: a dict filled, an
    # attribute set. Each task's function carried the parent's empty object,
    # which replaced the worker's (KeyError, AttributeError).
    assert printed_by(INITIALIZER_STATE_SCRIPT, tmp_path, method) == [
        "[(7, 7, 7, 7), (7, 7, 7, 7)]",
        "[(8, 8, 8, 8)]",
    ]


def test_max_tasks_per_child_is_accepted_as_in_process_pool_executor() -> None:
    with procesos.Executor(2, max_tasks_per_child=1) as ex:
        pids = [ex.submit(pid_of, i).result() for i in range(4)]
    assert len(set(pids)) == 4  # a fresh worker for every task
    with pytest.raises(TypeError, match=r"max_tasks_per_child .* max_tasks_per_worker"):
        procesos.Executor(2, max_tasks_per_child=1, max_tasks_per_worker=2)


# -- options checked by name --------------------------------------------------------------

BAD_OPTIONS = [
    ({"max_workers": "2"}, TypeError, r"processes.*whole number, got '2' \(str\)"),
    ({"max_workers": 2.5}, TypeError, r"processes.*whole number, got 2.5"),
    ({"max_workers": 0}, ValueError,
     r"max_workers must be greater than 0|(?i:processes.* at least 1)"),
    ({"timeout": "1"}, TypeError, r"timeout must be a number of seconds"),
    ({"timeout": 0}, ValueError, r"timeout must be positive"),
    ({"timeout": float("nan")}, ValueError, r"timeout must be positive"),
    ({"retries": 1.5}, TypeError, r"retries must be a whole number"),
    ({"retries": True}, TypeError, r"retries must be a whole number"),
    ({"retries": -1}, ValueError, r"retries must be at least 0"),
    ({"max_tasks_per_worker": 0}, ValueError, r"max_tasks_per_worker must be at least 1"),
    ({"max_tasks_per_worker": "3"}, TypeError, r"max_tasks_per_worker must be a whole number"),
    ({"max_memory_per_worker": 0}, ValueError, r"max_memory_per_worker must be a positive"),
    ({"max_memory_per_worker": "lots"}, ValueError, r"max_memory_per_worker .* such as '2GB'"),
    ({"max_memory_per_worker": "2 parsecs"}, ValueError, r"max_memory_per_worker"),
    ({"max_memory_per_worker": [1]}, TypeError, r"max_memory_per_worker must be a number"),
    ({"threads_per_worker": 0}, ValueError, r"threads_per_worker must be at least 1"),
    ({"initializer": print, "initargs": 5}, TypeError,
     r"initargs must be a tuple of arguments, got 5 \(int\)"),
    ({"progress": "yes"}, TypeError, r"progress must be True or False, got 'yes'"),
]


@pytest.mark.parametrize(("options", "error", "message"), BAD_OPTIONS)
def test_a_bad_option_is_refused_by_name_before_any_worker_starts(
        options: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        procesos.Executor(**({"max_workers": 1} | options))  # type: ignore[arg-type]
    pool_options = {("processes" if k == "max_workers" else k): v for k, v in options.items()}
    with pytest.raises(error, match=message):
        procesos.Pool(**({"processes": 1} | pool_options))  # type: ignore[arg-type]


@pytest.mark.parametrize("number", [0, -1])
def test_too_few_workers_are_refused_in_concurrent_futures_words(number: int) -> None:
    # CPython's test_max_workers_negative matches ProcessPoolExecutor's message.
    for executor_type in (procesos.Executor, procesos.ProcessPoolExecutor):
        with pytest.raises(ValueError, match=r"^max_workers must be greater than 0"):
            executor_type(max_workers=number)


@pytest.mark.parametrize(("size", "expected"), [
    (1 << 30, 1 << 30), (1.5e9, 1_500_000_000), ("2GB", 2_000_000_000), ("2 gb", 2_000_000_000),
    ("512MiB", 512 << 20), ("1.5GiB", 3 << 29), ("700k", 700_000), ("123", 123),
])
def test_a_memory_limit_may_be_a_size_with_its_unit(size: object, expected: int) -> None:
    from procesos._options import check_bytes

    assert check_bytes("max_memory_per_worker", size) == expected
    with procesos.Executor(1, max_memory_per_worker=size) as ex:  # type: ignore[arg-type]
        assert ex.submit(abs, -3).result(timeout=60) == 3


def _maps_of_the_two_apis(
    kind: str, directory: str, items: Any,
) -> tuple[Any, Callable[[], Iterator[int]]]:
    """An open executor or pool, and a function that starts a map of
    ``counted(directory, x)`` over *items* on it (Executor.map, Pool.imap or
    Pool.imap_unordered) and returns its iterator."""
    fn = functools.partial(counted, directory)
    if kind == "executor":
        ex = procesos.Executor(2)
        return ex, lambda: ex.map(fn, items)
    pool = procesos.Pool(2)
    method = pool.imap if kind == "imap" else pool.imap_unordered
    return pool, lambda: method(fn, items)


def _finish(owner: Any) -> None:
    if isinstance(owner, procesos.Executor):
        owner.shutdown(wait=True)
    else:
        owner.close()
        owner.join()


@pytest.mark.parametrize("kind", ["executor", "imap", "imap_unordered"])
def test_a_map_keeps_no_result_it_has_handed_out(kind: str) -> None:
    # CPython's test_free_reference (issue 14406): once the caller drops a
    # result, nothing of the map's holds it, though the rest of its chunk
    # (one message here) is still to be read.
    with procesos.Executor(1) as ex, procesos.Pool(1) as pool:
        if kind == "executor":
            results = ex.map(make_payload, range(10), chunksize=10)
        else:
            results = getattr(pool, kind)(make_payload, range(10), chunksize=10)
        for result in results:
            watched = weakref.ref(result)
            del result
            gc.collect()
            assert watched() is None


def test_amap_keeps_no_result_it_has_handed_out() -> None:
    # test_a_map_keeps_no_result_it_has_handed_out, for asyncio.
    async def main() -> list[bool]:
        freed = []
        with procesos.Executor(1) as ex:
            async for result in ex.amap(make_payload, range(10), chunksize=10):
                watched = weakref.ref(result)
                del result
                gc.collect()
                freed.append(watched() is None)
        return freed

    assert asyncio.run(main()) == [True] * 10


@pytest.mark.parametrize("kind", ["executor", "imap", "imap_unordered"])
@pytest.mark.parametrize("source", ["list", "generator"])
def test_a_map_called_for_its_effects_and_dropped_unread_runs_every_task(
    kind: str, source: str, tmp_path: Path,
) -> None:
    # ex.map(record, items) with its iterator never read: concurrent.futures
    # and multiprocessing run every task, so must procesos, however long the
    # input (here far more than it reads ahead of a consumer).
    count = 3000
    items: Any = list(range(count)) if source == "list" else (i for i in range(count))
    owner, start_map = _maps_of_the_two_apis(kind, str(tmp_path), items)
    start_map()  # the iterator is dropped at once
    gc.collect()
    _finish(owner)
    assert runs_of(str(tmp_path)) == {i: 1 for i in range(count)}


@pytest.mark.parametrize("kind", ["executor", "imap", "imap_unordered"])
def test_a_map_dropped_after_its_first_result_cancels_the_rest(
    kind: str, tmp_path: Path,
) -> None:
    # The loop that breaks out: the tasks not started yet do not run (as a
    # concurrent.futures map's generator cancels its futures when closed).
    count = 100_000
    owner, start_map = _maps_of_the_two_apis(kind, str(tmp_path), iter(range(count)))
    results = start_map()
    next(results)
    del results
    gc.collect()
    _finish(owner)
    runs = runs_of(str(tmp_path))
    assert 0 < len(runs) < count
    assert set(runs.values()) == {1}


def test_a_script_that_ends_with_a_map_unread_runs_every_task(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    script = f"""
import procesos
from pathlib import Path

def touch(i):
    Path({str(markers)!r}, str(i)).touch()

ex = procesos.Executor(2)
results = ex.map(touch, range(20))  # never read, never shut down
"""
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(int(p.name) for p in markers.iterdir()) == list(range(20))


@pytest.mark.parametrize("kind", ["executor", "imap", "imap_unordered"])
def test_a_task_that_raises_stop_iteration_does_not_end_a_map_silently(kind: str) -> None:
    # A class-based iterator that re-raised it would end the loop early, the
    # later results lost: concurrent.futures' map raises RuntimeError instead.
    with procesos.Executor(2) as ex, procesos.Pool(2) as pool:
        start = {"executor": ex.map, "imap": pool.imap,
                 "imap_unordered": pool.imap_unordered}[kind]
        with pytest.raises(RuntimeError, match="StopIteration") as caught:
            list(start(stop_on, [1, 2, 3]))
        assert isinstance(caught.value.__cause__, StopIteration)
