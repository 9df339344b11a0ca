"""The engine's sending side: what goes to which worker, and when.

``submit()`` writes a call straight to an idle worker (whose caller may then
read the answer itself, :mod:`._direct`), or queues it in the books; the
dispatcher's ``fill()`` gives each worker that can take work a batch: parts
to send again first, then queued calls, then chunks of maps. The function
cache (each function pickled once per engine) and the batch ids are kept
here. Everything runs under the books' lock but ``submit()``'s queueing once
calls already wait (see :meth:`Sender.submit`).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from .._compat import future_internals_known
from .._pool_errors import BrokenExecutorError
from .._serialization import discard
from ._direct import DirectFuture
from ._future import LightFuture
from ._jobs import Batch, Call, CallBatch, FnEntry
from ._messages import plain_call
from ._states import BROKEN, CLOSING, RUNNING

if TYPE_CHECKING:
    from ._books import Books
    from ._direct import DirectEngine
    from ._progress import Progress
    from ._workers import WorkerHandle

__all__ = ["LIGHT_FUTURES", "Sender"]

_FN_CACHE = 128
_PREFETCH_BELOW_S = 0.005  # send a second batch ahead only when batches are this quick
# LightFuture and the direct path rely on Future's private fields; where they
# differ, plain futures and every result through the dispatcher (see _compat).
LIGHT_FUTURES = future_internals_known()


class Sender:
    """Calls and batches on their way to the workers, over the engine's books."""

    def __init__(self, books: Books, engine: DirectEngine, *, timeout: float | None,
                 progress: Progress | None, closed_message: str,
                 closed_error: type[Exception]) -> None:
        self.books = books
        self.engine = engine  # what a DirectFuture reads through
        self.wake = engine.wake
        self.timeout = timeout
        self.progress = progress
        self.closed_message = closed_message
        self.closed_error = closed_error
        self.fns: OrderedDict[int, FnEntry] = OrderedDict()
        self.next_fn = self.next_batch = self.next_seq = 1

    # -- any thread ----------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Future[Any]:
        """Send ``fn(*args, **kwargs)`` to an idle worker now, or queue it.

        Its fast path, once calls already wait (no worker can be idle for this
        one), queues the call without the lock; what it keeps: the call goes
        into ``Books.pending`` as under the lock (an append is atomic; only the
        dispatcher pops, under the lock), its function's cache entry is one
        already made (else the lock is taken), and a call queued while the
        engine closed is withdrawn and refused under the lock (``_withdraw``)
        unless the dispatcher took it already. Without progress reporting
        only: ``progress.add`` needs the lock.
        """
        books = self.books
        if books.pending and self.progress is None and books.state == RUNNING:
            # Calls already wait: no worker can be idle for this one, so it joins
            # the queue without the lock (appends are atomic; the dispatcher pops).
            entry = self._known_entry(fn)
            if entry is not None:
                future: Future[Any] = LightFuture() if LIGHT_FUTURES else Future()
                call = Call(future, entry, args, kwargs)
                books.pending.append(call)
                if len(books.pending) == 1:  # else the dispatcher has more to come for it
                    self.wake()
                if books.state != RUNNING:
                    self._withdraw(call)
                return future
        with books.lock:
            if books.state != RUNNING:
                self.check_open()
            entry = self.entry(fn)
            if self.progress is not None:
                self.progress.add(1)
            if not books.pending and not books.retry:
                for worker in books.workers:
                    if worker is not None and not worker.outstanding and worker.accepts_work():
                        return self._send_now(worker, entry, args, kwargs)
            future = LightFuture() if LIGHT_FUTURES else Future()
            call = Call(future, entry, args, kwargs)
            books.pending.append(call)
            if len(books.pending) == 1:
                self.wake()
        return future

    def _known_entry(self, fn: Callable[..., Any]) -> FnEntry | None:
        """*fn*'s cache entry if it has one, without the lock (None: take the lock)."""
        entry = self.fns.get(id(fn))
        if entry is None or entry.function() is not fn:
            return None
        try:
            self.fns.move_to_end(id(fn))
        except (KeyError, RuntimeError):  # evicted meanwhile
            return None
        return entry

    def _withdraw(self, call: Call) -> None:
        """A call queued without the lock while the engine closed: refuse it, unless the
        dispatcher already took it (then it runs, or fails with the engine)."""
        with self.books.lock:
            try:
                self.books.pending.remove(call)
            except ValueError:
                return
            self.check_open()

    # -- under the lock ------------------------------------------------------------------
    def _send_now(self, worker: WorkerHandle, entry: FnEntry, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> Future[Any]:
        """Send one call to an idle worker; its caller may read the answer.

        The fast path of a call, which keeps the general path's books: the
        call is one tracked ``CallBatch`` sent through ``send`` (or, when the
        worker has its function and the arguments pickle plainly, through
        ``WorkerHandle.send_known_call``, which takes the same ids and keeps
        the same books of a batch in flight); the worker is lent to the
        caller only when nothing is left to write to it, and the dispatcher
        is woken otherwise, since it does not watch an idle worker's pipe.
        """
        direct = (worker.idle() and self.timeout is None and self.progress is None
                  and LIGHT_FUTURES)
        future: Future[Any] = (DirectFuture(self.engine) if direct
                               else LightFuture() if LIGHT_FUTURES else Future())
        future.set_running_or_notify_cancel()
        # Tracked: the worker records every call it starts, so a crash names this one.
        batch = CallBatch([Call(future, entry, args, kwargs)])
        payload = plain_call(args, kwargs) if direct and entry.fn_id in worker.known_fns else None
        if payload is None:
            self.send(worker, batch)
        else:  # the usual call: a round trip is mostly this Python, so the short way
            batch_id, seq = self.ids(1)
            worker.send_known_call(batch, batch_id, seq, payload)
        if direct and not worker.outbox and not worker.dead:
            worker.lend_to(future)
            future.worker = worker  # type: ignore[attr-defined]
        else:
            self.wake()  # the dispatcher does not watch an idle worker's pipe
        return future

    def entry(self, fn: Callable[..., Any]) -> FnEntry:
        """The function's cache entry (pickled once per engine)."""
        if not callable(fn):
            raise TypeError(f"a task must be callable, got {type(fn).__name__} {fn!r}")
        entry = self.fns.get(id(fn))
        if entry is not None and entry.function() is fn:
            if not entry.stale():
                self.fns.move_to_end(id(fn))
                return entry
            # A global it carries was assigned since: pickled again. Batches
            # that hold the old pickle may still send it (to a worker that
            # replaces one that died, say): its shared memory is freed once
            # the last of them has let go of it.
            weakref.finalize(entry, discard, entry.data)
        entry = FnEntry(fn, self.next_fn)
        self.next_fn += 1
        self.fns[id(fn)] = entry
        self.fns.move_to_end(id(fn))
        while len(self.fns) > _FN_CACHE:
            _, evicted = self.fns.popitem(last=False)
            evicted.discard()
        return entry

    def forget_functions(self) -> None:
        """The engine has ended: free every cached function's pickle."""
        for entry in self.fns.values():
            entry.discard()
        self.fns.clear()

    def check_open(self) -> None:
        """Raise what new work gets from an engine that is not running."""
        if self.books.state == BROKEN:
            error = self.books.error
            cause = error.__cause__ if error is not None else None
            raise BrokenExecutorError(str(error)) from cause
        if self.books.state != RUNNING:
            raise self.closed_error(self.closed_message)

    def ids(self, items: int) -> tuple[int, int]:
        """The next batch id, and the sequence number of its first item."""
        batch_id, seq = self.next_batch, self.next_seq
        self.next_batch += 1
        self.next_seq += items
        return batch_id, seq

    def send(self, worker: WorkerHandle, batch: Batch) -> None:
        """Send *batch* to *worker* (the general path)."""
        batch_id, seq = self.ids(batch.n)
        worker.send_batch(batch, batch_id, seq, self.timeout is not None)
        if worker.outbox:
            self.wake()  # the dispatcher must watch for the pipe to become writable

    def fill(self) -> None:
        """Give work to workers: one batch to each idle worker, then one ahead if quick."""
        books = self.books
        if books.state not in (RUNNING, CLOSING):
            return
        live = [w for w in books.workers if w is not None and w.accepts_work()]
        for depth in (1, 2):
            # Never one ahead while workers are still starting: each would find
            # the first worker holding what it could have run (tasks meant to run
            # side by side, a Barrier among them, would wait forever).
            if depth == 2 and (books.batch_s >= _PREFETCH_BELOW_S or books.starting):
                break
            for worker in live:
                if len(worker.outstanding) < depth and worker.accepts_work():
                    batch = self._next_batch(worker.budget)
                    if batch is None:
                        return
                    self.send(worker, batch)

    def _next_batch(self, budget: int | None) -> Batch | None:
        books = self.books
        limit = budget if budget is not None else 1 << 30
        while books.retry:
            batch = books.retry.popleft()
            if not batch.wanted():
                continue
            if batch.n > limit:
                books.retry.appendleft(batch.part(limit, batch.n, batch.tracked))
                batch = batch.part(0, limit, batch.tracked)
            return batch
        pending = books.pending
        if pending:
            calls: list[Call] = []
            size = min(books.call_sizer.next_size(None), limit)
            take, keep = pending.popleft, calls.append
            while pending and len(calls) < size:
                call = take()
                if call.future.set_running_or_notify_cancel():
                    keep(call)
            if calls:
                return CallBatch(calls)  # calls run tracked, whatever they take
        for job in list(books.jobs):
            if job.cancelled or (job.exhausted and job.finished()):
                books.jobs.remove(job)
                continue
            if job.wants_input():
                known = job.total is not None
                chunk = job.next_batch(limit)
                if not known and job.total is not None and self.progress is not None:
                    self.progress.resolve(job.total)
                if chunk is not None:
                    return chunk
        return None
