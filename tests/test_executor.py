"""procesos.Executor: the concurrent.futures API on procesos' task engine."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from pathlib import Path

import pytest

import procesos
from conftest import run_script
from engine_tasks import (
    add,
    block_on_fifo,
    fail_on,
    get_state,
    openblas_threads,
    pid_of,
    set_state,
    square,
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


def test_workers_are_procesos_processes_and_end_with_the_executor() -> None:
    with procesos.Executor(2) as ex:
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
