"""A ``concurrent.futures.Future`` that costs less when nobody waits: a bare lock per future.

The standard library's ``Future`` makes a ``threading.Condition`` (a Python
object holding an RLock and a deque) for every future and enters it through
Python-level methods at each step. The engine makes one future per
``submit()`` and changes its state three times, mostly while nobody waits on
it. :class:`LightFuture` guards its state with a C ``RLock`` alone and makes
the condition (over that same lock) only when asked for it: by a thread about
to wait in ``result()``/``exception()``, or by ``wait()``/``as_completed()``,
which reach for ``_condition`` directly.

Why no notification is lost: a waiter makes the condition before it takes the
lock to look at the state, and whoever changes the state notifies the
condition, if there is one, while holding the lock. So, under the lock, either
the state is already final or the condition exists. Everything else (and the
slow paths) is the standard library's own code, which sees a ``_condition``
like any other; the attribute names are those of CPython 3.11 to 3.13.
"""

from __future__ import annotations

import threading
from _thread import RLock
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    LOGGER,
    PENDING,
    RUNNING,
)
from typing import Any

__all__ = ["LightFuture"]

_DONE = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)
_CANCELLED = (CANCELLED, CANCELLED_AND_NOTIFIED)
_making = threading.Lock()  # one condition per future, whichever thread asks first


class LightFuture(Future[Any]):
    """A ``concurrent.futures.Future`` whose condition is made on first wait."""

    _cond: threading.Condition | None = None

    def __init__(self) -> None:  # not Future.__init__: that makes the condition
        self._lock = RLock()
        self._state = PENDING
        self._result = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[Future[Any]], object]] = []

    @property
    def _condition(self) -> threading.Condition:
        cond = self._cond
        if cond is None:
            with _making:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition(self._lock)
        return cond

    @_condition.setter
    def _condition(self, cond: threading.Condition) -> None:
        raise AttributeError("a LightFuture's condition is made over its own lock; "
                             "it cannot be replaced")

    def _invoke_callbacks(self) -> None:
        for callback in self._done_callbacks:
            try:
                callback(self)
            except Exception:
                LOGGER.exception("exception calling callback for %r", self)

    def cancel(self) -> bool:
        with self._lock:
            if self._state in (RUNNING, FINISHED):
                return False
            if self._state in _CANCELLED:
                return True
            self._state = CANCELLED
            if self._cond is not None:  # someone waits
                self._cond.notify_all()
        self._invoke_callbacks()
        return True

    def cancelled(self) -> bool:
        with self._lock:
            return self._state in _CANCELLED

    def running(self) -> bool:
        with self._lock:
            return self._state == RUNNING

    def done(self) -> bool:
        with self._lock:
            return self._state in _DONE

    def add_done_callback(self, fn: Callable[[Future[Any]], object]) -> None:
        with self._lock:
            if self._state not in _DONE:
                self._done_callbacks.append(fn)
                return
        try:
            fn(self)
        except Exception:
            LOGGER.exception("exception calling callback for %r", self)

    def result(self, timeout: float | None = None) -> Any:
        with self._lock:
            if self._state == FINISHED and self._exception is None:
                return self._result
        return super().result(timeout)  # waits, raises: the standard library's code

    def exception(self, timeout: float | None = None) -> BaseException | None:
        with self._lock:
            if self._state == FINISHED:
                return self._exception
        return super().exception(timeout)

    def set_running_or_notify_cancel(self) -> bool:
        with self._lock:
            if self._state == PENDING:
                self._state = RUNNING
                return True
        return super().set_running_or_notify_cancel()  # cancelled, or a bug: as it says

    def set_result(self, result: Any) -> None:
        with self._lock:
            if self._state in _DONE:
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._state = FINISHED
            for waiter in self._waiters:
                waiter.add_result(self)
            if self._cond is not None:
                self._cond.notify_all()
        if self._done_callbacks:
            self._invoke_callbacks()

    def set_exception(self, exception: BaseException | None) -> None:
        with self._lock:
            if self._state in _DONE:
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._exception = exception
            self._state = FINISHED
            for waiter in self._waiters:
                waiter.add_exception(self)
            if self._cond is not None:
                self._cond.notify_all()
        if self._done_callbacks:
            self._invoke_callbacks()
