"""The engine's promises (docs/executor.md, "Guarantees"), each stated as a test:
every future resolves, no task runs twice unless retries say so, finished
results are not held back, and the engine keeps nothing alive."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import weakref
from multiprocessing.sharedctypes import RawArray
from pathlib import Path
from typing import Any

import pytest

import procesos
from conftest import START_METHODS, still_alive
from engine_tasks import (
    Items,
    KillsWhenLoaded,
    Payload,
    count_run,
    counted,
    die_on,
    identity,
    quick_unless_told,
    runs_of,
    set_state,
    size_of,
    square,
)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", START_METHODS)
def test_an_argument_that_kills_its_worker_while_unpickled_fails_its_task(method: str) -> None:
    with procesos.Executor(2, context=method) as ex:
        doomed = ex.submit(identity, KillsWhenLoaded())
        with pytest.raises(procesos.WorkerCrashedError, match=r"identity\(") as caught:
            doomed.result()
        assert "unpickl" in str(caught.value)
        results = list(ex.map(identity, [1, KillsWhenLoaded(), 3], chunksize=3,
                              return_exceptions=True))
        assert results[0] == 1 and results[2] == 3
        assert isinstance(results[1], procesos.WorkerCrashedError)
        assert "task 1 of map(identity)" in str(results[1])
        assert ex.submit(square, 3).result() == 9


@pytest.mark.timeout(90)
def test_with_retries_an_argument_that_kills_its_worker_fails_after_the_last_attempt() -> None:
    with procesos.Executor(2, retries=2) as ex:
        with pytest.raises(procesos.WorkerCrashedError, match=r"\(attempt 3\)"):
            ex.submit(identity, KillsWhenLoaded()).result()
        assert sum(s.crashes for s in ex.stats()) == 3
        assert sum(s.replacements for s in ex.stats()) == 3


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["executor", "pool"])
@pytest.mark.parametrize("killer", [-1, -2])
def test_a_crash_inside_an_explicit_chunk_runs_no_task_twice(kind: str, killer: int,
                                                             tmp_path: Path) -> None:
    task = functools.partial(counted, str(tmp_path))
    items = [1, 2, killer, 3]
    if kind == "executor":
        with procesos.Executor(2) as ex:
            results = list(ex.map(task, items, chunksize=4, return_exceptions=True))
            stats = ex.stats()
    else:
        with procesos.Pool(2) as pool:
            results = pool.map(task, items, chunksize=4, return_exceptions=True)
            stats = pool.stats()
    assert runs_of(str(tmp_path)) == {1: 1, 2: 1, killer: 1, 3: 1}
    assert results[0] == 10 and results[1] == 20 and results[3] == 30
    assert isinstance(results[2], procesos.WorkerCrashedError)
    assert "task 2 of map(" in str(results[2])
    assert sum(s.crashes for s in stats) == 1
    assert sum(s.replacements for s in stats) == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("chunksize", ["auto", 3])
@pytest.mark.parametrize("kind", ["executor", "pool"])
def test_finished_results_are_not_held_behind_a_slow_item(kind: str, chunksize: str | int,
                                                          workers: int, tmp_path: Path) -> None:
    # With one worker, "auto" puts the items in one chunk, large enough to run
    # as quick items do (no record per item): a slow one hides among them.
    fifo = str(tmp_path / "release")
    os.mkfifo(fifo)
    task = functools.partial(quick_unless_told, fifo)
    items = [*range(200), "block"]
    with contextlib.ExitStack() as stack:
        if kind == "executor":
            ex = stack.enter_context(procesos.Executor(workers))
            list(ex.map(task, range(2000)))  # the engine learns that the task is quick
            results = ex.map(task, items, chunksize=chunksize)
        else:
            pool = stack.enter_context(procesos.Pool(workers))
            pool.map(task, range(2000))
            results = pool.imap(task, items, chunksize=None if chunksize == "auto"
                                else int(chunksize))
        # The quick results come while the last item still waits (this test
        # times out if they wait for it).
        try:
            assert [next(results) for _ in range(200)] == list(range(200))
        finally:
            _release(fifo)
        assert list(results) == ["block"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["executor", "pool"])
def test_results_a_quick_chunk_sent_before_its_worker_died_are_delivered(
        kind: str, tmp_path: Path) -> None:
    fifo = str(tmp_path / "release")
    os.mkfifo(fifo)
    task = functools.partial(quick_unless_told, fifo)
    with contextlib.ExitStack() as stack:
        if kind == "executor":
            ex = stack.enter_context(procesos.Executor(1))
            list(ex.map(task, range(2000)))
            results = ex.map(task, [*range(200), "die"], return_exceptions=True)
        else:
            pool = stack.enter_context(procesos.Pool(1))
            pool.map(task, range(2000))
            results = pool.imap(task, [*range(200), "die"], chunksize=None)
        # One chunk of quick items: their results were sent while the last waited.
        try:
            assert [next(results) for _ in range(200)] == list(range(200))
        finally:
            _release(fifo)
        if kind == "executor":
            error = next(results)
            assert isinstance(error, procesos.WorkerCrashedError)
        else:
            with pytest.raises(procesos.WorkerCrashedError) as caught:
                next(results)
            error = caught.value
        # The only one not reported when the worker died: named.
        assert "task 200 of map(partial(quick_unless_told))" in str(error), str(error)
        assert "'die'" in str(error)
        assert "which one is unknown" not in str(error)


def _release(fifo: str) -> None:
    """Let the task waiting on *fifo* go (if none waits yet, the next one will not)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # nobody reads it yet
        return
    os.close(fd)


def _gone(ref: weakref.ref[Any]) -> bool:
    gc.collect()
    return ref() is None


@pytest.mark.timeout(60)
def test_the_engine_keeps_no_callable_argument_or_input_of_finished_work() -> None:
    with procesos.Executor(2) as ex, procesos.Pool(2) as pool:
        target = Payload()
        method_owner = weakref.ref(target)
        assert ex.submit(target.size, 1).result() == 2
        assert pool.apply(target.size, (1,)) == 2
        del target
        assert _gone(method_owner)  # the cache of callables held it

        argument = Payload()
        watched = weakref.ref(argument)
        assert ex.submit(size_of, argument).result() == 1
        del argument
        assert _gone(watched)

        items = Items(Payload() for _ in range(10))
        watched_input = weakref.ref(items)
        assert pool.map(size_of, items) == [1] * 10
        assert list(ex.map(size_of, items)) == [1] * 10
        del items
        assert _gone(watched_input)  # an idle pool kept a map's input


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["executor", "pool"])
def test_a_dropped_executor_or_pool_ends_its_workers(kind: str) -> None:
    if kind == "executor":
        ex = procesos.Executor(2)
        future = ex.submit(square, 4)
        pids = [s.pid for s in ex.stats()]
        del ex
        gc.collect()
        assert future.result() == 16  # submitted work still finishes
    else:
        pool = procesos.Pool(2)
        assert pool.apply(square, (4,)) == 16
        pids = [s.pid for s in pool.stats()]
        with pytest.warns(ResourceWarning, match="unclosed running multiprocessing pool"):
            del pool
            gc.collect()
    assert not still_alive([pid for pid in pids if pid is not None])


def test_with_on_a_terminated_or_closed_pool_raises_value_error() -> None:
    pool = procesos.Pool(1)
    pool.terminate()
    with pytest.raises(ValueError, match="Pool not running"):
        with pool:
            pass
    closed = procesos.Pool(1)
    closed.close()
    closed.join()
    with pytest.raises(ValueError, match="Pool not running"):
        with closed:
            pass


@pytest.mark.timeout(90)
@pytest.mark.parametrize("retries", [0, 1])
def test_a_crash_in_an_automatic_chunk_of_quick_tasks_runs_none_twice(retries: int) -> None:
    n, bad = 20_000, 15_000
    counts = RawArray("i", n)
    with procesos.Executor(2, retries=retries, initializer=set_state,
                           initargs=(counts,)) as ex:
        list(ex.map(count_run, range(n), [-1] * n))  # quick: chunks of thousands, untracked
        counts[:] = [0] * n
        results = list(ex.map(count_run, range(n), [bad] * n, return_exceptions=True))
        failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
        assert bad in failed
        assert all(isinstance(results[i], procesos.WorkerCrashedError) for i in failed)
        assert [r for i, r in enumerate(results) if i not in set(failed)] == [
            i for i in range(n) if i not in set(failed)]
        if retries == 0:
            # Which item ended the worker is unknown and the chunk's finished
            # results were lost: its items fail, none runs again.
            assert max(counts) == 1
            assert "one of them ended it" in str(results[bad])
        else:
            # With a retry, the chunk's items run again one by one, and the
            # culprit is named alone.
            assert failed == [bad]
            assert max(counts[i] for i in range(n) if i != bad) <= 2
        assert sum(s.crashes for s in ex.stats()) == retries + 1


@pytest.mark.timeout(90)
@pytest.mark.parametrize("chunksize", ["auto", 1, 3])
def test_stats_count_one_crash_and_one_replacement_per_death(chunksize: Any) -> None:
    with procesos.Executor(2) as ex:
        n = 5000
        list(ex.map(die_on, range(n), [-1] * n, ["exit"] * n))  # history: a quick task
        results = list(ex.map(die_on, [7, 7, 7], [7] * 3, ["exit"] * 3, chunksize=chunksize,
                              return_exceptions=True))
        assert all(isinstance(r, procesos.WorkerCrashedError) for r in results)
        assert "task 2 of map(die_on)" in str(results[2])
        assert sum(s.crashes for s in ex.stats()) == 3
        assert sum(s.replacements for s in ex.stats()) == 3
