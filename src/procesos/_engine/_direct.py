"""The short way back for one call sent to an idle worker: its caller reads the result.

Through the dispatcher, a result costs a thread hop (worker -> dispatcher ->
caller). When ``submit()`` finds an idle worker and nothing queued, it sends
the call at once and returns a :class:`DirectFuture`; the dispatcher does not
watch that worker's pipe (``WAITING``). A caller that then waits in
``result()`` or ``exception()`` reads the worker's answer itself
(``READING``) and hands it over exactly as the dispatcher would. Anything
else that waits for the future (``add_done_callback``, ``wait``,
``as_completed``, ``done()``, asyncio) wakes the dispatcher, which takes the
worker back; so does any other work the dispatcher gets, and the worker's
death. The roles are described in :mod:`._workers`.

The caller's side is here, behind a few calls of the engine's
(:class:`DirectEngine`): :func:`read_answer` reads, :func:`_settle_answer`
handles the usual answer in one step, and anything else goes to the engine's
general path (``handle_frames``); both keep the books with the same
``record_done`` (:mod:`._receiving`'s), under the books' lock.
"""

from __future__ import annotations

import math
import pickle
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, FINISHED
from typing import TYPE_CHECKING, Any, Protocol

from .._outcome import PICKLING_FAILURES
from .._trace import _state as _trace_state
from ._future import LightFuture
from ._jobs import CallBatch
from ._messages import is_shared, poll_briefly
from ._states import DONE

if TYPE_CHECKING:
    from ._books import Books
    from ._jobs import Batch
    from ._worker import WorkerConfig
    from ._workers import WorkerHandle

__all__ = ["DirectEngine", "DirectFuture", "HandBackFuture", "read_answer"]


class DirectEngine(Protocol):
    """What the direct path asks of the engine."""

    books: Books
    config: WorkerConfig

    def wake(self) -> None:
        """Make the dispatcher look at the books again."""

    #: Under the lock: the books of items done (the general path's too):
    #: ``record_done(worker, batch, offset, count, busy_ns, nbytes)``.
    record_done: Callable[[WorkerHandle, Batch, int, int, int, int], None]
    #: What *worker* sent, handed over as the dispatcher would:
    #: ``handle_frames(worker, frames)``.
    handle_frames: Callable[[WorkerHandle, list[tuple[Any, memoryview]]], None]


class _HandBackWaiters(list):  # type: ignore[type-arg]
    """``Future._waiters``: ``wait()``/``as_completed()`` add a waiter, and then
    the result must be delivered by whoever delivers it when nobody reads it.

    It names its future weakly: a strong reference back would make every such
    future a reference cycle, so that its result (a large array's shared
    memory among them) lived on until the cyclic garbage collector ran, long
    after the caller had let go of it.
    """

    __slots__ = ("_future",)  # made per future: no __init__ of its own, no __dict__
    _future: weakref.ref[HandBackFuture]

    def append(self, waiter: Any) -> None:
        super().append(waiter)
        future = self._future()
        if future is not None:
            future.hand_back()


class HandBackFuture(LightFuture):
    """A ``concurrent.futures.Future`` whose caller may fetch the result itself.

    ``result()`` and ``exception()`` call :meth:`_read` first, which may fetch
    and set the result on the caller's thread. Any other way of waiting
    (``add_done_callback``, ``wait``, ``as_completed``, ``done()``, asyncio)
    calls :meth:`hand_back`: from then on, something else must deliver it.
    Subclasses implement both (without calling ``done()``, which hands back).
    """

    def __init__(self) -> None:
        super().__init__()
        self._waiters = waiters = _HandBackWaiters()
        waiters._future = weakref.ref(self)

    def hand_back(self) -> None:
        """Nobody will read the result in ``result()``: the usual path must deliver it."""
        raise NotImplementedError

    def _read(self, timeout: float | None) -> float | None:
        """Fetch the result here if nobody else does; the time left of *timeout*."""
        raise NotImplementedError

    def result(self, timeout: float | None = None) -> Any:
        return super().result(self._read(timeout))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return super().exception(self._read(timeout))

    def add_done_callback(self, fn: Callable[[Future[Any]], object]) -> None:
        super().add_done_callback(fn)
        self.hand_back()

    def done(self) -> bool:
        finished = super().done()
        if not finished:
            self.hand_back()
        return finished


class DirectFuture(HandBackFuture):
    """The future of a call sent straight to an idle worker: ``result()`` may read
    the worker's answer."""

    def __init__(self, engine: DirectEngine) -> None:
        super().__init__()
        self._engine = engine
        self.worker: WorkerHandle | None = None

    def finished(self) -> bool:
        """Done, without handing anything back (``done()`` hands back)."""
        return self._state in (FINISHED, CANCELLED_AND_NOTIFIED)

    def hand_back(self) -> None:
        """Nobody will read the answer in ``result()``: the dispatcher must."""
        if not self.finished():
            self._engine.wake()

    def _read(self, timeout: float | None) -> float | None:
        """Read the answer here if nobody else does; the time left of *timeout*."""
        if self.finished() or self.worker is None:
            return timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        read_answer(self._engine, self, deadline)
        return None if deadline is None else max(0.0, deadline - time.monotonic())


def read_answer(engine: DirectEngine, future: DirectFuture, deadline: float | None) -> None:
    """In the caller's thread: read *future*'s answer from its worker, unless the
    dispatcher took the worker back; until done, the deadline, or trouble."""
    worker = future.worker
    lock = engine.books.lock
    with lock:
        if worker is None or not worker.caller_reads(future):
            return
    given_back = False
    try:
        poll = worker.poller.poll
        fd = worker.fd
        spin_ns = engine.config.spin_ns
        events = []
        if spin_ns and (deadline is None or deadline - time.monotonic() > spin_ns / 1e9):
            events = poll_briefly(poll, spin_ns)
        while not future.finished():
            if not events:
                wait_ms = None
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    wait_ms = math.ceil(left * 1000)
                events = poll(wait_ms)
            readable = died = False
            for event_fd, _ in events:
                if event_fd == fd:
                    readable = True
                else:
                    died = True
            events = []
            if readable:
                frames, eof = worker.reader.read_available()
                if not eof and _settle_answer(engine, worker, future, frames):
                    given_back = True
                    return
                engine.handle_frames(worker, frames)
                if eof:
                    return
            if died:
                return  # it died: the dispatcher settles that
    finally:
        if not given_back:
            with lock:
                busy = _give_back(engine, worker)
            if busy or not future.finished():
                engine.wake()


def _give_back(engine: DirectEngine, worker: WorkerHandle) -> bool:
    """Under the lock: a direct reader is done with *worker*; whether the dispatcher
    has something to do."""
    worker.give_back()
    return not worker.idle() or engine.books.work_waits()


def _settle_answer(engine: DirectEngine, worker: WorkerHandle, future: DirectFuture,
                   frames: list[tuple[Any, memoryview]]) -> bool:
    """The usual answer to a direct call, handled in one step: the books, the worker
    given back, the result set. False (nothing done) for anything else, which
    ``handle_frames`` and ``read_answer``'s ending do in several.

    What it keeps: only this caller reads the worker's pipe (``READING``); the
    books change under the engine's lock through ``record_done``, as on the
    general path, and the worker is given back in the same locked step, so the
    dispatcher never finds it lent with nothing in flight.
    """
    if len(frames) != 1:
        return False
    header, payload = frames[0]
    if header[0] != DONE:  # every header starts with its kind
        return False
    _, batch_id, offset, count, errors, busy_ns, ended_ns, pickle_ns = header
    if count != 1 or errors or is_shared(payload):
        return False  # not one plain result: errors, shared memory
    batch = worker.outstanding.get(batch_id)
    if (not isinstance(batch, CallBatch) or batch.n != 1 or batch.skips
            or batch.calls[0].future is not future):
        return False
    try:
        value = pickle.loads(payload)[0]
    except PICKLING_FAILURES:
        return False  # handle_frames reports it
    with engine.books.lock:
        engine.record_done(worker, batch, offset, 1, busy_ns, 0)
        busy = _give_back(engine, worker)
    recorder = _trace_state.recorder
    if recorder is not None:
        from .._trace import _tasks

        _tasks.ran(recorder, worker, batch, offset, 1, (), busy_ns, ended_ns, pickle_ns,
                   len(payload))
    worker.sync_output()
    try:
        future.set_result(value)
    except InvalidStateError:  # cancelled by shutdown meanwhile
        pass
    if busy:
        engine.wake()
    return True
