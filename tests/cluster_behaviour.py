"""The Executor behaviour every cluster backend must show, whatever the cluster.

A backend's test module subclasses :class:`ClusterExecutorBehaviour` and
provides the ``make_executor`` fixture (a factory of connected executors) and
``script_prelude`` (the lines a script needs to create one).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import procesos
from cluster_tasks import add, fail_on, sleep_then, sleep_then_mark, square, stop_on, total
from conftest import run_script

MakeExecutor = Callable[..., Any]


class ClusterExecutorBehaviour:
    """Specification of ``Executor(backend=...)``, shared by the backends."""

    script_prelude = ""

    def test_is_a_procesos_and_concurrent_futures_executor(
            self, make_executor: MakeExecutor) -> None:
        with make_executor() as ex:
            assert isinstance(ex, procesos.Executor)
            assert isinstance(ex, concurrent.futures.Executor)
            assert ex.max_workers >= 1

    def test_submit_returns_a_future_with_the_result(self, make_executor: MakeExecutor) -> None:
        with make_executor() as ex:
            future = ex.submit(add, 2, b=3)
            assert isinstance(future, concurrent.futures.Future)
            assert future.result(timeout=30) == 5

    def test_map_keeps_input_order_and_zips_iterables(self, make_executor: MakeExecutor) -> None:
        with make_executor() as ex:
            assert list(ex.map(square, range(200))) == [i * i for i in range(200)]
            assert list(ex.map(add, range(5), range(10, 20))) == [10, 12, 14, 16, 18]
            assert list(ex.map(square, iter(range(30)))) == [i * i for i in range(30)]
            assert list(ex.map(square, [])) == []

    def test_exception_keeps_its_type_and_the_workers_traceback(
            self, make_executor: MakeExecutor) -> None:
        with make_executor() as ex:
            with pytest.raises(ValueError, match="bad item 2") as info:
                ex.submit(fail_on, 2).result(timeout=30)
        cause = info.value.__cause__
        assert isinstance(cause, procesos.RemoteTraceback)
        assert "in fail_on" in cause.text and "ValueError: bad item 2" in cause.text

    def test_lambdas_and_closures_work(self, make_executor: MakeExecutor) -> None:
        offset = 10
        with make_executor() as ex:
            assert ex.submit(lambda x: x + offset, 1).result(timeout=30) == 11
            assert list(ex.map(lambda x: x * offset, range(5))) == [0, 10, 20, 30, 40]

    def test_map_raises_a_failed_tasks_exception_where_it_occurs(
            self, make_executor: MakeExecutor) -> None:
        with make_executor() as ex:
            results = ex.map(fail_on, range(5))
            assert next(results) == 0
            assert next(results) == 1
            with pytest.raises(ValueError, match="bad item 2"):
                next(results)

    def test_map_return_exceptions_puts_the_exception_in_place(
            self, make_executor: MakeExecutor) -> None:
        with make_executor() as ex:
            results = list(ex.map(fail_on, range(5), return_exceptions=True))
        assert results[:2] == [0, 1] and results[3:] == [3, 4]
        assert isinstance(results[2], ValueError)

    def test_map_input_that_raises_ends_the_results_there(
            self, make_executor: MakeExecutor) -> None:
        def broken():
            yield 1
            yield 2
            raise KeyError("input broke")

        with make_executor() as ex:
            results = ex.map(square, broken())
            assert next(results) == 1 and next(results) == 4
            with pytest.raises(KeyError, match="input broke"):
                next(results)

    def test_map_timeout_raises_timeout_error(self, make_executor: MakeExecutor) -> None:
        with make_executor() as ex:
            results = ex.map(sleep_then, [3.0], timeout=0.2)
            with pytest.raises(TimeoutError):
                next(results)

    def test_futures_work_with_wait_and_as_completed(self, make_executor: MakeExecutor) -> None:
        with make_executor() as ex:
            futures = [ex.submit(square, i) for i in range(30)]
            _, not_done = concurrent.futures.wait(futures, timeout=60)
            assert not not_done
            assert sorted(f.result() for f in concurrent.futures.as_completed(futures)) == [
                i * i for i in range(30)]

    def test_asyncio_wrap_future_asubmit_and_amap(self, make_executor: MakeExecutor) -> None:
        async def main(ex: Any) -> tuple[int, int, list[int], list[int]]:
            wrapped = await asyncio.wrap_future(ex.submit(square, 4))
            awaited = await ex.asubmit(square, 5)
            collected = await ex.amap(square, range(20))
            streamed = [x async for x in ex.amap(square, range(5))]
            return wrapped, awaited, collected, streamed

        with make_executor() as ex:
            wrapped, awaited, collected, streamed = asyncio.run(main(ex))
        assert (wrapped, awaited) == (16, 25)
        assert collected == [i * i for i in range(20)]
        assert streamed == [i * i for i in range(5)]

    def test_timeout_fails_the_task_with_task_timeout_error(
            self, make_executor: MakeExecutor) -> None:
        with make_executor(timeout=0.5) as ex:
            slow = ex.submit(sleep_then, 3.0, "finished")  # a result, had it not timed out
            fast = ex.submit(square, 3)
            with pytest.raises(procesos.TaskTimeoutError, match="goes on in the worker"):
                slow.result(timeout=30)
            assert fast.result(timeout=30) == 9

    def test_large_numpy_argument_goes_to_the_cluster_once(
            self, make_executor: MakeExecutor) -> None:
        numpy = pytest.importorskip("numpy")
        array = numpy.ones(512 * 1024)  # 4 MiB
        with make_executor() as ex:
            assert list(ex.map(total, [array] * 4, range(4))) == [array.size + i for i in range(4)]
            assert ex.submit(total, array).result(timeout=30) == array.size
            assert len(ex._shared) == 1
            small = numpy.ones(10)
            assert ex.submit(total, small).result(timeout=30) == 10
            assert len(ex._shared) == 1

    def test_shutdown_cancel_futures_cancels_what_has_not_finished(
            self, make_executor: MakeExecutor) -> None:
        ex = make_executor()
        futures = [ex.submit(sleep_then, 1.0, i) for i in range(8)]
        ex.shutdown(wait=True, cancel_futures=True)
        assert all(f.done() for f in futures)
        assert any(f.cancelled() for f in futures)
        with pytest.raises(RuntimeError, match="after shutdown"):
            ex.submit(square, 1)
        ex.shutdown()  # harmless

    def test_shutdown_finishes_a_map_not_read_yet(self, make_executor: MakeExecutor) -> None:
        with make_executor() as ex:
            results = ex.map(square, range(50))
        assert list(results) == [i * i for i in range(50)]

    def test_dropping_a_map_iterator_once_read_cancels_its_tasks(
            self, make_executor: MakeExecutor, tmp_path: Path) -> None:
        markers = [str(tmp_path / f"ran-{i}") for i in range(40)]
        with make_executor() as ex:
            results = ex.map(sleep_then_mark, [0.5] * 40, markers)
            assert ex._tasks
            next(results)
            del results
            gc.collect()
            assert not ex._tasks
        # shutdown() waited for what was running; the cancelled rest never ran.
        ran = [m for m in markers if Path(m).exists()]
        assert len(ran) < len(markers)

    def test_a_map_dropped_unread_runs_every_task(self, make_executor: MakeExecutor,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        # ex.map(save, items) for its effects: concurrent.futures runs them all;
        # here more items than a map keeps in the cluster at once (each that
        # ends asks for the next), and all of them before shutdown() drains.
        from procesos._backends import _base

        monkeypatch.setattr(_base, "MAP_WINDOW", 8)
        count = 40
        markers = [str(tmp_path / f"ran-{i}") for i in range(count)]
        with make_executor() as ex:
            ex.map(sleep_then_mark, [0.0] * count, markers)
            gc.collect()
            deadline = time.monotonic() + 60
            while ex._tasks or not all(Path(m).exists() for m in markers):
                assert time.monotonic() < deadline, "a dropped map stopped reading its input"
                time.sleep(0.01)  # polling a condition, with a bound
        assert all(Path(m).exists() for m in markers)

    def test_a_task_that_raises_stop_iteration_does_not_end_a_map_silently(
            self, make_executor: MakeExecutor) -> None:
        with make_executor() as ex:
            with pytest.raises(RuntimeError, match="StopIteration") as caught:
                list(ex.map(stop_on, [1, 2, 3]))
            assert isinstance(caught.value.__cause__, StopIteration)
            values = list(ex.map(stop_on, [1, 2, 3], return_exceptions=True))
            assert values[0] == 10 and isinstance(values[1], StopIteration) and values[2] == 30

    def test_options_the_backend_cannot_honour_raise_not_implemented(
            self, make_executor: MakeExecutor) -> None:
        with pytest.raises(NotImplementedError, match="initializer"):
            make_executor(initializer=print)
        with pytest.raises(NotImplementedError, match="threads_per_worker"):
            make_executor(threads_per_worker=4)
        with make_executor() as ex:
            with pytest.raises(NotImplementedError, match="chunksize"):
                ex.map(square, range(3), chunksize=10)
            with pytest.raises(NotImplementedError, match="stats"):
                ex.stats()

    def test_a_script_maps_a_main_function_and_a_lambda_with_progress(
            self, tmp_path: Path) -> None:
        result = run_script(
            "import procesos\n"
            "def cube(x):\n"
            "    return x ** 3\n"
            + self.script_prelude +
            "with procesos.Executor(progress=True, **OPTIONS) as ex:\n"
            "    print(sum(ex.map(cube, range(100))), sum(ex.map(lambda x: -x, range(10))))\n",
            tmp_path, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "24502500 -45\n"
        assert "procesos: 110/110 tasks done (100%)" in result.stderr
        assert "0 failed" in result.stderr
