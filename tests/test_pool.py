"""procesos.Pool: the multiprocessing.Pool API on procesos' task engine."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest

import procesos
from conftest import START_METHODS
from engine_tasks import (
    add,
    block_on_fifo,
    die_on,
    fail_on,
    get_state,
    pid_of,
    put_square,
    set_state,
    square,
)


def test_apply_and_apply_async() -> None:
    with procesos.Pool(2) as pool:
        assert pool.apply(add, (1, 2)) == 3
        assert pool.apply(add, (1,), {"b": 5}) == 6
        result = pool.apply_async(square, (7,))
        assert result.get(timeout=30) == 49
        assert result.ready() and result.successful()


def test_apply_async_callbacks_run_with_the_result_or_the_error() -> None:
    got: list[object] = []
    done = threading.Event()

    def keep(value: object) -> None:
        got.append(value)
        if len(got) == 2:
            done.set()

    with procesos.Pool(2) as pool:
        pool.apply_async(square, (3,), callback=keep)
        pool.apply_async(fail_on, (2,), error_callback=keep)
        assert done.wait(30)
    assert 9 in got
    assert any(isinstance(v, ValueError) for v in got)


@pytest.mark.parametrize("call", ["apply_async", "apply_async error", "map_async",
                                  "map_async error"])
def test_get_and_wait_return_only_after_the_callback_has_run(
    ctx: procesos.ProcesosContext, call: str
) -> None:
    # As in multiprocessing: ready() is False, get() times out and wait()
    # returns unready while the callback runs.
    entered, release = threading.Event(), threading.Event()
    ran: list[object] = []

    def callback(value: object) -> None:
        entered.set()
        assert release.wait(30)
        ran.append(value)

    with ctx.Pool(1) as pool:
        if call == "apply_async":
            result: Any = pool.apply_async(square, (3,), callback=callback)
        elif call == "apply_async error":
            result = pool.apply_async(fail_on, (2,), error_callback=callback)
        elif call == "map_async":
            result = pool.map_async(square, range(3), callback=callback)
        else:
            result = pool.map_async(fail_on, range(3), error_callback=callback)
        assert entered.wait(30)
        assert not result.ready()
        result.wait(0.01)
        assert not result.ready() and not ran
        with pytest.raises(procesos.TimeoutError):
            result.get(0.01)
        release.set()
        if call.endswith("error"):
            with pytest.raises(ValueError):
                result.get(30)
        else:
            result.get(30)
        assert len(ran) == 1 and result.ready()


def test_a_callback_that_raises_is_logged_and_the_result_still_arrives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(value: object) -> None:
        raise RuntimeError("broken callback")

    with procesos.Pool(1) as pool:
        assert pool.apply_async(square, (3,), callback=broken).get(30) == 9
        assert pool.map_async(square, range(3), callback=broken).get(30) == [0, 1, 4]
    logged = [r for r in caplog.records if "exception calling callback" in r.getMessage()]
    assert len(logged) == 2 and all("broken callback" in (r.exc_text or "") for r in logged)


def test_map_starmap_and_their_async_forms() -> None:
    with procesos.Pool(2) as pool:
        assert pool.map(square, range(100)) == [i * i for i in range(100)]
        assert pool.map(square, range(100), chunksize=7) == [i * i for i in range(100)]
        assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
        assert pool.map_async(square, range(10)).get(30) == [i * i for i in range(10)]
        assert pool.starmap_async(add, zip(range(3), range(3), strict=True)).get(30) == [0, 2, 4]
        assert pool.map(square, []) == []


def test_map_async_callback_gets_the_list() -> None:
    got: list[list[int]] = []
    done = threading.Event()
    with procesos.Pool(2) as pool:
        pool.map_async(square, range(5), callback=lambda v: (got.append(v), done.set()))
        assert done.wait(30)
    assert got == [[0, 1, 4, 9, 16]]


def test_map_raises_the_first_failure_unless_return_exceptions() -> None:
    with procesos.Pool(2) as pool:
        with pytest.raises(ValueError, match="bad item 2"):
            pool.map(fail_on, range(5))
        results = pool.map(fail_on, range(5), return_exceptions=True)
        assert isinstance(results[2], ValueError)
        assert [r for i, r in enumerate(results) if i != 2] == [0, 1, 3, 4]
        async_result = pool.map_async(fail_on, range(5))
        async_result.wait(30)
        assert async_result.ready() and not async_result.successful()


def test_imap_and_imap_unordered() -> None:
    with procesos.Pool(2) as pool:
        assert list(pool.imap(square, range(500))) == [i * i for i in range(500)]
        assert sorted(pool.imap_unordered(square, iter(range(500)))) == [
            i * i for i in range(500)]
        iterator = pool.imap(square, range(3))
        assert iterator.next(timeout=30) == 0  # type: ignore[attr-defined]


def test_get_with_timeout_raises_multiprocessing_timeout_error(tmp_path: Path) -> None:
    fifo = str(tmp_path / "go")
    os.mkfifo(fifo)
    with procesos.Pool(1) as pool:
        result = pool.apply_async(block_on_fifo, (fifo, "late"))
        with pytest.raises(multiprocessing.TimeoutError) as info:
            result.get(timeout=0.1)
        assert isinstance(info.value, procesos.TimeoutError)
        assert not result.ready()
        with open(fifo, "w") as release:
            release.write("go")
        assert result.get(timeout=30) == "late"


def test_close_then_join_finishes_the_work() -> None:
    pool = procesos.Pool(2)
    result = pool.map_async(square, range(100))
    with pytest.raises(ValueError):
        pool.join()  # still running
    pool.close()
    pool.join()
    assert result.get(0) == [i * i for i in range(100)]
    assert not procesos.active_children()
    with pytest.raises(ValueError, match="Pool not running"):
        pool.map(square, range(3))


def test_terminate_stops_at_once(tmp_path: Path) -> None:
    fifo = str(tmp_path / "never")
    os.mkfifo(fifo)
    pool = procesos.Pool(1)
    result = pool.apply_async(block_on_fifo, (fifo,))
    pool.terminate()
    pool.join()
    assert result.ready()
    assert not procesos.active_children()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", START_METHODS)
def test_what_tasks_put_in_a_queue_arrives_after_the_with_block(method: str) -> None:
    # The with block ends with terminate(), the moment map() has returned: an
    # idle worker exits instead of being killed, so its queue's feeder thread
    # writes what the tasks put. Many pools: losing a message was a race.
    for _ in range(15):
        queue = procesos.Queue()
        with procesos.Pool(2, set_state, (queue,), context=method) as pool:
            assert pool.map(put_square, range(4)) == [0, 1, 2, 3]
        assert sorted(queue.get(timeout=30) for _ in range(4)) == [0, 1, 4, 9]
        queue.close()
        queue.join_thread()


def test_initializer_initargs_and_maxtasksperchild() -> None:
    with procesos.Pool(2, set_state, ("ready",), maxtasksperchild=2) as pool:
        assert set(pool.map(get_state, range(10), chunksize=1)) == {"ready"}
        pids = pool.map(pid_of, range(12), chunksize=1)
        assert max(pids.count(p) for p in set(pids)) <= 2


def test_a_crash_fails_one_task_instead_of_hanging() -> None:
    with procesos.Pool(2) as pool:
        results = pool.starmap(die_on, [(i, 7, "sigkill") for i in range(20)],
                               return_exceptions=True)
        assert isinstance(results[7], procesos.WorkerCrashedError)
        assert sum(isinstance(r, Exception) for r in results) == 1


def test_context_pool_uses_that_start_method() -> None:
    ctx = procesos.get_context("fork")
    with ctx.Pool(2) as pool:
        assert pool.map(square, range(5)) == [0, 1, 4, 9, 16]
        assert {p.start_method for p in procesos.active_children()} == {"fork"}


def test_stdlib_context_is_accepted() -> None:
    with procesos.Pool(1, context=multiprocessing.get_context("spawn")) as pool:
        assert pool.apply(square, (3,)) == 9
        assert {p.start_method for p in procesos.active_children()} == {"spawn"}


def test_apply_refuses_arguments_that_are_not_arguments_by_name() -> None:
    with procesos.Pool(1) as pool:
        with pytest.raises(TypeError, match=r"args must be a tuple of arguments, got 5"):
            pool.apply(abs, 5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"kwds must be a dict of keyword arguments"):
            pool.apply(abs, (), [1])  # type: ignore[arg-type]
        assert pool.apply(abs, (-2,)) == 2
