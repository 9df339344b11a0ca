"""What runs on a cluster worker: the user's call, its outcome in procesos' terms.

The cluster (Dask, Ray) sees every task succeed: :class:`RemoteCall` returns
the call's value as it is (so the cluster moves it as it would move any
result), or a :class:`Failure` holding an outcome frame of
:mod:`procesos._outcome` (``("error", pickled exception, type name, message,
traceback text, the exception's state)``), so the parent rebuilds the
exception exactly as the local engine does, with the worker's traceback as
``__cause__``. Task errors therefore never trigger the cluster's own retries,
which are left to worker deaths. This module is imported on the workers: it
imports nothing heavy and never uses procesos' shared memory (the worker may
be on another machine).
"""

from __future__ import annotations

import pickle
import threading
import traceback
from collections.abc import Callable
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

from .._errors import TaskTimeoutError
from .._exception_state import pack_if_needed

__all__ = ["Failure", "RemoteCall", "error_frame"]


class Failure:
    """What a task that raised returns: its outcome frame."""

    __slots__ = ("frame",)

    def __init__(self, frame: bytes) -> None:
        self.frame = frame

    def __reduce__(self) -> tuple[type[Failure], tuple[bytes]]:
        return (Failure, (self.frame,))


def error_frame(exc: BaseException, traceback_text: str | None = None) -> bytes:
    """The outcome frame of *exc*, pickled with cloudpickle alone."""
    if traceback_text is None:
        traceback_text = "".join(traceback.format_exception(exc))
    try:
        # The traceback travels as text; some clusters make traceback objects
        # picklable (tblib), which would show the worker's frames twice.
        payload: bytes | None = cloudpickle.dumps(exc.with_traceback(None))
    except Exception:
        payload = None
    cls = type(exc)
    by_state = pack_if_needed(exc, pickled=payload is not None)
    return pickle.dumps(("error", payload, f"{cls.__module__}.{cls.__qualname__}", str(exc),
                         traceback_text, by_state))


class RemoteCall:
    """``fn(*args, **kwargs)`` on a worker, with an optional time limit.

    The keyword arguments travel with the call (so that they never collide
    with the cluster's own ``submit()`` keywords); the positional ones are the
    task's, where the cluster replaces its handles of shared data by the data.

    With a *timeout*, the call runs in a thread of its own and the task ends
    with :class:`~procesos.TaskTimeoutError` when the limit passes; a Python
    thread cannot be stopped from outside, so the call itself goes on in the
    worker process until it returns, and its result is dropped.
    """

    def __init__(self, fn: Callable[..., Any], timeout: float | None,
                 kwargs: dict[str, Any]) -> None:
        self.fn = fn
        self.timeout = timeout
        self.kwargs = kwargs

    def __call__(self, *args: Any) -> Any:
        kwargs = self.kwargs
        if self.timeout is None:
            try:
                return self.fn(*args, **kwargs)
            except BaseException as exc:
                return Failure(error_frame(exc))
        return self._with_timeout(self.timeout, args, kwargs)

    def _with_timeout(self, timeout: float, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(self.fn(*args, **kwargs))
            except BaseException as exc:
                outcome.append(Failure(error_frame(exc)))

        thread = threading.Thread(target=run, name="procesos-task", daemon=True)
        thread.start()
        thread.join(timeout)
        if outcome:
            return outcome[0]
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        error = TaskTimeoutError(
            f"task {name} ran longer than its timeout of {timeout:g} s; the cluster cannot "
            "stop a running task, so it goes on in the worker until it returns (its result "
            "is dropped)")
        return Failure(error_frame(error, "".join(traceback.format_exception_only(error))))
