"""The engine's LightFuture behaves as a concurrent.futures.Future, however it is waited for."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from concurrent.futures import CancelledError, Future, InvalidStateError

import pytest

from procesos._engine._future import LightFuture

WAIT = 30  # seconds: a bound on every wait, never reached when things work


def _set_when(event: threading.Event, action: object) -> threading.Thread:
    """A thread that runs *action* once *event* is set."""

    def run() -> None:
        assert event.wait(WAIT)
        action()  # type: ignore[operator]

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_has_every_attribute_the_standard_future_sets() -> None:
    # The standard library's wait(), as_completed() and asyncio read them directly.
    assert set(vars(Future())) - {"_condition"} <= set(vars(LightFuture()))
    assert isinstance(LightFuture(), Future)


def test_no_condition_is_made_while_nobody_waits() -> None:
    future = LightFuture()
    assert future.set_running_or_notify_cancel()
    assert future.running() and not future.done()
    future.set_result(7)
    assert future.done() and not future.cancelled()
    assert future.result() == 7 and future.exception() is None
    assert future._cond is None
    assert "finished" in repr(future)


def test_result_waits_for_a_result_set_by_another_thread() -> None:
    future = LightFuture()
    future.set_running_or_notify_cancel()
    go = threading.Event()
    setter = _set_when(go, lambda: future.set_result("x"))
    go.set()
    assert future.result(timeout=WAIT) == "x"
    setter.join(WAIT)


def test_every_thread_waiting_in_result_or_exception_is_woken() -> None:
    future = LightFuture()
    started = threading.Barrier(9)
    results: list[object] = []

    def wait_result() -> None:
        started.wait(WAIT)
        results.append(future.result(timeout=WAIT))

    def wait_exception() -> None:
        started.wait(WAIT)
        results.append(future.exception(timeout=WAIT))

    threads = [threading.Thread(target=wait_result if i % 2 else wait_exception)
               for i in range(8)]
    for thread in threads:
        thread.start()
    started.wait(WAIT)
    future.set_result(5)
    for thread in threads:
        thread.join(WAIT)
    assert sorted(results, key=repr) == sorted([5] * 4 + [None] * 4, key=repr)


def test_a_result_set_while_a_thread_starts_waiting_is_never_missed() -> None:
    for _ in range(300):
        future = LightFuture()
        go = threading.Barrier(2)
        setter = threading.Thread(target=lambda f=future, b=go: (b.wait(WAIT), f.set_result(1)))
        setter.start()
        go.wait(WAIT)
        assert future.result(timeout=WAIT) == 1
        setter.join()


def test_exceptions_are_raised_by_result_and_returned_by_exception() -> None:
    future = LightFuture()
    error = ValueError("bad")
    future.set_exception(error)
    with pytest.raises(ValueError, match="bad"):
        future.result()
    assert future.exception() is error


def test_result_and_exception_time_out_while_pending() -> None:
    future = LightFuture()
    with pytest.raises(TimeoutError):
        future.result(timeout=0)
    with pytest.raises(TimeoutError):
        future.exception(timeout=0)


def test_a_second_outcome_is_refused() -> None:
    future = LightFuture()
    future.set_result(1)
    with pytest.raises(InvalidStateError):
        future.set_result(2)
    with pytest.raises(InvalidStateError):
        future.set_exception(ValueError())
    assert future.result() == 1


def test_cancel_succeeds_only_before_it_runs_and_wakes_waiters() -> None:
    running = LightFuture()
    running.set_running_or_notify_cancel()
    assert not running.cancel()
    assert not running.cancelled()

    pending = LightFuture()
    woken: list[BaseException] = []
    waiting = threading.Event()

    def wait() -> None:
        cond = pending._condition
        with cond:
            waiting.set()
            cond.wait(WAIT)  # woken by cancel()
        try:
            pending.result(timeout=WAIT)
        except CancelledError as exc:
            woken.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    assert waiting.wait(WAIT)
    with pending._condition:  # the waiter is inside wait() once we hold the lock
        pass
    assert pending.cancel() and pending.cancel()
    thread.join(WAIT)
    assert len(woken) == 1 and pending.cancelled() and pending.done()
    assert not pending.set_running_or_notify_cancel()
    with pytest.raises(CancelledError):
        pending.exception()


def test_wait_and_as_completed_see_results_set_from_other_threads() -> None:
    futures = [LightFuture() for _ in range(6)]
    for future in futures[:3]:
        future.set_running_or_notify_cancel()
    futures[0].set_result(0)
    go = threading.Event()
    setters = [_set_when(go, lambda f=f, i=i: f.set_result(i))
               for i, f in enumerate(futures) if i]
    done, not_done = concurrent.futures.wait(futures, timeout=0)
    assert done == {futures[0]} and len(not_done) == 5
    go.set()
    assert sorted(f.result() for f in concurrent.futures.as_completed(futures, timeout=WAIT)) == [
        0, 1, 2, 3, 4, 5]
    for setter in setters:
        setter.join(WAIT)
    done, not_done = concurrent.futures.wait(futures, timeout=WAIT)
    assert len(done) == 6 and not not_done


def test_wait_first_completed_and_first_exception_wake_on_another_thread() -> None:
    first, second = LightFuture(), LightFuture()
    go = threading.Event()
    setter = _set_when(go, lambda: second.set_exception(KeyError("k")))
    waiter_result: list[set[Future[object]]] = []

    def wait() -> None:
        done, _ = concurrent.futures.wait([first, second], timeout=WAIT,
                                          return_when=concurrent.futures.FIRST_EXCEPTION)
        waiter_result.append(done)

    waiter = threading.Thread(target=wait)
    waiter.start()
    go.set()
    waiter.join(WAIT)
    setter.join(WAIT)
    assert waiter_result == [{second}]
    cancelled = LightFuture()
    assert cancelled.cancel()
    assert not cancelled.set_running_or_notify_cancel()  # as an executor does
    done, _ = concurrent.futures.wait([first, cancelled], timeout=WAIT,
                                      return_when=concurrent.futures.FIRST_COMPLETED)
    assert done == {cancelled}


def test_as_completed_yields_a_future_cancelled_while_it_waits() -> None:
    future = LightFuture()
    seen: list[Future[object]] = []
    iterator_started = threading.Event()

    def collect() -> None:
        iterator = concurrent.futures.as_completed([future], timeout=WAIT)
        iterator_started.set()
        seen.extend(iterator)

    thread = threading.Thread(target=collect)
    thread.start()
    assert iterator_started.wait(WAIT)
    future.cancel()
    future.set_running_or_notify_cancel()  # what an executor does with a cancelled one
    thread.join(WAIT)
    assert seen == [future]


def test_done_callbacks_run_once_in_order_and_their_errors_are_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    future = LightFuture()
    calls: list[str] = []
    future.add_done_callback(lambda f: calls.append("first"))

    def broken(_: Future[object]) -> None:
        raise RuntimeError("callback failed")

    future.add_done_callback(broken)
    future.add_done_callback(lambda f: calls.append(f"last {f.result()}"))
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        future.set_result(3)
    assert calls == ["first", "last 3"]
    assert "callback failed" in caplog.text
    future.add_done_callback(lambda f: calls.append("after"))
    assert calls == ["first", "last 3", "after"]


def test_asyncio_wrap_future_gets_results_errors_and_cancels() -> None:
    async def main() -> None:
        ok, failing, cancelled = LightFuture(), LightFuture(), LightFuture()
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: threading.Thread(target=ok.set_result, args=(9,)).start())
        assert await asyncio.wait_for(asyncio.wrap_future(ok), WAIT) == 9
        failing.set_exception(OSError("no"))
        with pytest.raises(OSError, match="no"):
            await asyncio.wrap_future(failing)
        wrapped = asyncio.wrap_future(cancelled)
        wrapped.cancel()
        with pytest.raises(asyncio.CancelledError):
            await wrapped
        await asyncio.sleep(0)  # one loop turn: asyncio passes the cancel on in a callback
        assert cancelled.cancelled()

    asyncio.run(main())


def test_the_condition_cannot_be_replaced() -> None:
    future = LightFuture()
    with pytest.raises(AttributeError):
        future._condition = threading.Condition()
