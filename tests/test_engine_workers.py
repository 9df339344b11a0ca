"""The parent's handle on a worker keeps its own state: its life only moves
forward, its result pipe has one reader at a time, and a kill says why."""

from __future__ import annotations

import select
from collections.abc import Iterator
from multiprocessing.sharedctypes import RawArray

import pytest

import procesos
from procesos._engine._messages import READY, SLOT_WIDTH
from procesos._engine._results_log import LOG_BYTES
from procesos._engine._worker import WorkerConfig
from procesos._engine._workers import (
    DEAD,
    DISPATCHER,
    READING,
    RETIRING,
    SERVING,
    STOPPING,
    WAITING,
    WorkerHandle,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def worker() -> Iterator[WorkerHandle]:
    handle = WorkerHandle(procesos.get_context("fork"), 0, RawArray("q", SLOT_WIDTH),
                          WorkerConfig(None, (), None, None, None), None,
                          RawArray("b", LOG_BYTES))
    try:
        yield handle
    finally:
        if not handle.dead:
            handle.kill()
            handle.process.join()
            handle.close()


def _wait_ready(worker: WorkerHandle) -> None:
    while True:
        select.select([worker.fd], [], [])
        frames, eof = worker.reader.read_available()
        assert not eof, "the worker ended before it said READY"
        if any(header[0] == READY for header, _ in frames):
            worker.mark_ready()
            return


def _end(worker: WorkerHandle) -> int | None:
    """Wait for the worker's exit and close its handle; its exit code."""
    worker.process.join()
    exitcode: int | None = worker.process.exitcode
    worker.close()
    return exitcode


def test_a_worker_that_retires_and_is_then_asked_to_stop_never_goes_back(
        worker: WorkerHandle) -> None:
    assert (worker.life, worker.ready, worker.accepts_work()) == (SERVING, False, True)
    _wait_ready(worker)
    assert worker.ready and worker.idle()
    worker.retire()
    assert (worker.life, worker.retiring, worker.accepts_work()) == (RETIRING, True, False)
    worker.ask_to_stop()
    assert (worker.life, worker.stopping, worker.retiring) == (STOPPING, True, False)
    worker.retire()  # a RETIRE that was on its way: it stays stopping
    assert worker.life == STOPPING
    assert _end(worker) == 0  # STOP made it exit
    assert (worker.life, worker.dead, worker.accepts_work()) == (DEAD, True, False)


def test_a_worker_lent_to_a_caller_is_read_by_that_caller_alone(worker: WorkerHandle) -> None:
    caller, other = object(), object()
    worker.lend_to(caller)
    assert (worker.reader_role, worker.accepts_work()) == (WAITING, False)
    assert not worker.caller_reads(other)
    assert worker.caller_reads(caller)
    assert worker.reader_role == READING
    assert not worker.take_back()  # the dispatcher waits for the caller to give it back
    assert worker.reader_role == READING
    worker.give_back()
    assert (worker.reader_role, worker.accepts_work()) == (DISPATCHER, True)
    assert not worker.caller_reads(caller)  # given back: the dispatcher reads

    worker.lend_to(caller)
    assert worker.take_back()  # nobody came for it: the dispatcher's again
    assert worker.reader_role == DISPATCHER
    assert not worker.caller_reads(caller)
    assert not worker.take_back()


def test_a_worker_killed_for_a_timeout_keeps_the_first_item_it_was_killed_for(
        worker: WorkerHandle) -> None:
    worker.kill_for_timeout(5)
    worker.kill_for_timeout(6)
    assert (worker.timed_out_seq, worker.stopped_for_interrupt) == (5, False)
    assert _end(worker) == -9


def test_a_worker_killed_for_an_interrupt_says_so(worker: WorkerHandle) -> None:
    worker.kill_for_interrupt()
    assert (worker.stopped_for_interrupt, worker.timed_out_seq) == (True, None)
    assert _end(worker) == -9


def test_time_on_item_counts_from_when_the_item_was_first_seen(worker: WorkerHandle) -> None:
    assert worker.time_on_item(7, 10.0) == 0.0
    assert worker.time_on_item(7, 10.5) == 0.5
    assert worker.time_on_item(8, 11.0) == 0.0  # another item: counted afresh
    worker.forget_item()
    assert worker.time_on_item(8, 12.0) == 0.0
