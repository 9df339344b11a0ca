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
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, FINISHED
from typing import TYPE_CHECKING, Any

from ._future import LightFuture

if TYPE_CHECKING:
    from ._dispatcher import Engine
    from ._workers import WorkerHandle

__all__ = ["DirectFuture", "HandBackFuture"]


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

    def __init__(self, engine: Engine) -> None:
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
        self._engine.read_direct(self, deadline)
        return None if deadline is None else max(0.0, deadline - time.monotonic())
