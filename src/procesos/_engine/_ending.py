"""How the engine ends: shutdown, terminate, a break, and the release of its
workers and pipes.

``shutdown()`` lets the work given finish (CLOSING), ``terminate()`` kills the
workers that run tasks and asks the idle ones to exit (TERMINATING), a break
fails everything at once (BROKEN); the dispatcher asks :meth:`Ending.finished`
each round whether it may stop, and :meth:`Ending.release` ends the rest as
it leaves. The states are drawn in :mod:`._states`.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from .._pool_errors import BrokenExecutorError
from ._states import BROKEN, CLOSED, CLOSING, DISPATCHER, RUNNING, TERMINATING

if TYPE_CHECKING:
    from ._books import Books, EngineCalls
    from ._faults import Faults
    from ._jobs import Call
    from ._progress import Progress
    from ._sending import Sender
    from ._workers import WorkerHandle

__all__ = ["Ending", "cancelled"]

_TERMINATE_GRACE_S = 1.0  # for an idle worker asked to exit by terminate()


class Ending:
    """The engine's way out, over its books."""

    def __init__(self, books: Books, engine: EngineCalls, faults: Faults, sender: Sender,
                 progress: Progress | None) -> None:
        self.books = books
        self.engine = engine
        self.faults = faults
        self.sender = sender
        self.progress = progress
        self.terminate_by = 0.0  # monotonic time after which terminate() kills every worker
        self.cancel_inputs = False  # the next round ends the maps' input (end_cancelled_inputs)

    # -- under the lock ------------------------------------------------------------------
    def begin_shutdown(self, cancel_futures: bool) -> None:
        """No new work; with *cancel_futures*, the queued calls and maps' input too."""
        books = self.books
        if books.state == RUNNING:
            books.state = CLOSING
        if cancel_futures:
            queued: list[Call] = []
            while books.pending:  # popped one by one: submit() appends without the lock
                queued.append(books.pending.popleft())
            if queued:
                # After the lock: cancel() runs the futures' callbacks, which may submit().
                books.deferred.append(lambda: _cancel_all(queued))
            maps = [b for b in books.retry if b.is_map()]
            books.retry.clear()
            books.retry.extend(maps)
            self.cancel_inputs = True
        for job in books.jobs:
            job.collect = True  # nobody may read them before we stop: keep everything
        self.engine.wake()

    def end_cancelled_inputs(self) -> None:
        """In a round, after ``shutdown(cancel_futures=True)``: the maps read no more input."""
        if self.cancel_inputs:
            for job in self.books.jobs:
                if not job.exhausted:
                    job.end_input(cancelled())
            self.cancel_inputs = False

    def begin_terminate(self) -> None:
        """Kill the workers that run tasks; ask the idle ones to exit (killed after
        ``_TERMINATE_GRACE_S`` if they have not)."""
        books = self.books
        if books.state in (RUNNING, CLOSING):
            books.state = TERMINATING
            self.terminate_by = time.monotonic() + _TERMINATE_GRACE_S
            for worker in books.workers:
                if worker is None or worker.dead:
                    continue
                if (worker.idle() and worker.reader_role == DISPATCHER
                        and not worker.stopping):
                    worker.ask_to_stop()
                elif not worker.stopping:
                    worker.kill()
        self.engine.wake()

    def finished(self) -> bool:
        """Whether the dispatcher can stop; stops the workers once the work is done."""
        books = self.books
        if books.state == RUNNING or books.starting:
            return False
        if books.state == CLOSING:
            if books.pending or books.retry or any(w is not None and w.outstanding
                                                   for w in books.workers):
                return False
            if any(not (job.exhausted and job.finished()) and not job.cancelled
                   for job in books.jobs):
                return False
            for worker in books.workers:
                if worker is not None and not worker.stopping and not worker.dead:
                    worker.ask_to_stop()
        if books.state == TERMINATING and time.monotonic() >= self.terminate_by:
            self.kill_all()  # idle workers that did not exit when asked
        return all(w is None or w.dead for w in books.workers) and not books.leaving

    def break_down(self, error: BaseException, cause: BaseException | None) -> None:
        """The engine cannot go on; fail everything with *error*."""
        books = self.books
        if books.state in (BROKEN, CLOSED):
            return
        error.__cause__ = cause
        # The books keep a twin: *error* itself, raised by the futures' result(),
        # gets the callers' frames in its traceback, and the engine (which the
        # executor's finalizer keeps until the executor is garbage) would keep
        # them, and the executor that those frames hold, for good.
        books.error = BrokenExecutorError(str(error))
        books.error.__cause__ = cause
        books.state = BROKEN
        self.kill_all()
        self.faults.fail_everything(error)

    def kill_all(self) -> list[WorkerHandle]:
        """Kill every worker still alive (retired ones included); those killed."""
        alive = [w for w in [*self.books.workers, *self.books.leaving]
                 if w is not None and not w.dead]
        for worker in alive:
            worker.kill()
        return alive

    # -- without the lock ----------------------------------------------------------------
    def release(self) -> None:
        """As the dispatcher leaves: fail what is left, end the workers, close their
        handles (the wake pipe closes with the engine)."""
        books = self.books
        with books.lock:
            if books.state != BROKEN:
                books.state = CLOSED
            self.faults.fail_everything(cancelled())
            ending = self.kill_all()
        # Not under the lock, which a caller reading its own worker takes to give
        # it back; nothing else closes these handles (the dispatcher is here).
        for worker in ending:
            worker.process.join()
        with books.lock:
            for worker in ending:
                worker.discard_unread()
                worker.close()
            books.leaving.clear()
            self.sender.forget_functions()
        books.run_deferred()
        if self.progress is not None:
            self.progress.close()

    def forked_away(self, owner_pid: int) -> None:
        """In a child made by ``os.fork()``: the dispatcher and the workers are the
        parent's. New work raises :class:`BrokenExecutorError`; maps already
        under way end with it (futures made before the fork never finish here)."""
        books = self.books
        books.lock = threading.Lock()  # a thread that is not here may have held it
        books.error = BrokenExecutorError(
            f"this executor belongs to process {owner_pid}, which made it; a child "
            "made by os.fork() cannot use it (its workers are the parent's): make a new "
            "executor or pool in the child")
        books.state = BROKEN
        books.pending.clear()
        for job in books.jobs:
            job.cond = threading.Condition(threading.Lock())
            job.abort(books.error)
        books.jobs.clear()
        for worker in books.workers:
            if worker is not None:
                worker.disown()  # its pipes and process are the parent's


def _cancel_all(calls: list[Call]) -> None:
    for call in calls:
        call.future.cancel()


def cancelled() -> BaseException:
    """What a task that the pool ended before it ran fails with."""
    from concurrent.futures import CancelledError

    return CancelledError("the pool was shut down before this task ran")
