"""``procesos.Pool``: the task engine behind the ``multiprocessing.Pool`` API."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Generic, TypeVar

from .._errors import TimeoutError as WaitTimeoutError
from .._options import check_args, check_count, check_kwargs
from ._api import Engine, MapJob, WorkerStats, create_engine
from ._jobs import ResultIterator
from ._states import RUNNING

__all__ = ["ApplyResult", "AsyncResult", "MapResult", "Pool"]

T = TypeVar("T")
_logger = logging.getLogger("procesos")


class AsyncResult(Generic[T]):
    """The result of ``apply_async`` / ``map_async``, as in ``multiprocessing``."""

    def ready(self) -> bool:
        """Whether the call has finished."""
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the call has finished, or *timeout* seconds."""
        raise NotImplementedError

    def get(self, timeout: float | None = None) -> T:
        """The result; re-raises the task's exception; ``procesos.TimeoutError``
        if it is not ready within *timeout* seconds."""
        raise NotImplementedError

    def successful(self) -> bool:
        """Whether the call finished without raising (``ValueError`` if not finished)."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        try:
            self.get(0)
        except Exception:
            return False
        return True


class ApplyResult(AsyncResult[T]):
    """One ``apply_async`` call."""

    def __init__(self, future: Future[T], callback: Callable[[T], object] | None,
                 error_callback: Callable[[BaseException], object] | None) -> None:
        self._future = future
        # As in multiprocessing, the call is ready (get() and wait() return)
        # only once its callback has run.
        self._called_back = threading.Event()
        if callback is None and error_callback is None:
            self._called_back.set()
            return

        def done(f: Future[T]) -> None:
            try:
                if f.cancelled():
                    return
                error = f.exception()
                if error is None:
                    if callback is not None:
                        _call_back(callback, f.result(), self)
                elif error_callback is not None:
                    _call_back(error_callback, error, self)
            finally:
                self._called_back.set()

        future.add_done_callback(done)

    def ready(self) -> bool:
        return self._called_back.is_set() and self._future.done()

    def wait(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._future.exception(timeout)
        except (TimeoutError, Exception):
            pass
        self._called_back.wait(_left(deadline))

    def get(self, timeout: float | None = None) -> T:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            result = self._future.result(timeout)
        except TimeoutError:
            if not self._future.done():
                raise WaitTimeoutError from None
            raise
        except BaseException:
            if not self._future.done():
                raise  # Ctrl-C while waiting
            if not self._called_back.wait(_left(deadline)):
                raise WaitTimeoutError from None
            raise
        if not self._called_back.wait(_left(deadline)):
            raise WaitTimeoutError
        return result


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _call_back(callback: Callable[[Any], object], value: Any, result: AsyncResult[Any]) -> None:
    # Raised in the pool's own thread, the error would reach nobody: it is
    # logged, as concurrent.futures logs a done-callback's.
    try:
        callback(value)
    except Exception:
        _logger.exception("exception calling callback for %r", result)


class MapResult(AsyncResult[list[T]]):
    """One ``map_async`` / ``starmap_async`` call."""

    def __init__(self, job: MapJob, callback: Callable[[list[T]], object] | None,
                 error_callback: Callable[[BaseException], object] | None) -> None:
        self._job = job
        self._lock = threading.Lock()
        self._outcome: tuple[bool, Any] | None = None
        self._callbacks = (callback, error_callback)
        # As in multiprocessing, the map is ready (get() and wait() return)
        # only once its callback has run.
        self._called_back = threading.Event()
        if callback is not None or error_callback is not None:
            job.listeners.append(self._on_progress)
            self._on_progress()
        else:
            self._called_back.set()

    def _on_progress(self) -> None:
        with self._job.cond:
            if not self._job.finished():
                return
        with self._lock:
            if self._callbacks == (None, None):
                return
            callback, error_callback = self._callbacks
            self._callbacks = (None, None)
        try:
            ok, value = self._settle()
            if ok and callback is not None:
                _call_back(callback, value, self)
            elif not ok and error_callback is not None:
                _call_back(error_callback, value, self)
        finally:
            self._called_back.set()

    def _settle(self) -> tuple[bool, Any]:
        with self._lock:
            if self._outcome is None:
                values, errors, end = self._job.results()
                if errors and not self._job.return_exceptions:
                    self._outcome = (False, errors[min(errors)])
                elif end is not None:
                    self._outcome = (False, end)
                else:
                    for index, error in errors.items():
                        values[index] = error
                    self._outcome = (True, values)
            return self._outcome

    def ready(self) -> bool:
        with self._job.cond:
            return self._job.finished() and self._called_back.is_set()

    def wait(self, timeout: float | None = None) -> None:
        self._wait(timeout)

    def _wait(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._job.wait(timeout) and self._called_back.wait(_left(deadline))

    def _get_or_stop(self) -> list[T]:
        # For map() and starmap(), whose caller cannot wait again: Ctrl-C stops the tasks.
        try:
            self._job.wait(None)
        except KeyboardInterrupt:
            self._job.stop()
            raise
        return self.get()

    def get(self, timeout: float | None = None) -> list[T]:
        if not self._wait(timeout):
            raise WaitTimeoutError
        ok, value = self._settle()
        if ok:
            return value  # type: ignore[no-any-return]
        raise value


class Pool:
    """A pool of worker processes with the ``multiprocessing.Pool`` API.

    ``Pool(processes, initializer, initargs, maxtasksperchild, context)`` as in
    the standard library, plus the options of :class:`procesos.Executor`
    (*max_tasks_per_worker*, *max_memory_per_worker*, *timeout*, *retries*,
    *progress*, *threads_per_worker*) and ``return_exceptions=True`` on the
    map family. Any callable works. Unlike the standard library's, a worker
    that dies fails only the tasks it held (with
    :class:`~procesos.WorkerCrashedError`) instead of hanging the pool; the
    input of ``imap`` is read lazily; ``chunksize=None`` (the default) sizes
    chunks from measured task durations. Leaving a ``with`` block terminates
    the pool, as in the standard library; after ``close()`` or
    ``terminate()`` new work raises ``ValueError``.
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: object = None,
        *,
        max_tasks_per_worker: int | None = None,
        max_memory_per_worker: int | str | None = None,
        timeout: float | None = None,
        retries: int = 0,
        progress: bool = False,
        threads_per_worker: int | None = 1,
    ) -> None:
        if processes is not None:
            check_count("processes", processes, 1)
        if maxtasksperchild is not None:
            check_count("maxtasksperchild", maxtasksperchild, 1)
        self._engine: Engine = create_engine(
            max_workers=processes, initializer=initializer, initargs=initargs,
            max_tasks_per_worker=(maxtasksperchild if max_tasks_per_worker is None
                                  else max_tasks_per_worker),
            max_memory_per_worker=max_memory_per_worker, timeout=timeout, retries=retries,
            progress=progress, context=context, threads_per_worker=threads_per_worker,
            closed_message="Pool not running: it was closed or terminated; create a new Pool",
            closed_error=ValueError, terminate_at_exit=True,
        )
        self._processes = self._engine.size

    # -- single calls -------------------------------------------------------------
    def apply(self, func: Callable[..., T], args: Iterable[Any] = (),
              kwds: Mapping[str, Any] | None = None) -> T:
        """``func(*args, **kwds)`` in a worker; waits and returns (or raises) its result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable[..., T], args: Iterable[Any] = (),
                    kwds: Mapping[str, Any] | None = None,
                    callback: Callable[[T], object] | None = None,
                    error_callback: Callable[[BaseException], object] | None = None,
                    ) -> ApplyResult[T]:
        """Start ``func(*args, **kwds)``; callbacks run in the pool's dispatcher thread."""
        future = self._engine.submit(func, check_args("args", args), check_kwargs("kwds", kwds))
        return ApplyResult(future, callback, error_callback)

    # -- maps ---------------------------------------------------------------------
    def _job(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None,
             *, star: bool, ordered: bool, collect: bool, return_exceptions: bool) -> MapJob:
        if chunksize is not None and chunksize < 1:
            raise ValueError(f"chunksize must be a positive integer or None, got {chunksize!r}")
        return self._engine.map_job(func, iterable, star=star, ordered=ordered,
                                    return_exceptions=return_exceptions, collect=collect,
                                    chunksize=chunksize)

    def map(self, func: Callable[..., T], iterable: Iterable[Any],
            chunksize: int | None = None, *, return_exceptions: bool = False) -> list[T]:
        """``[func(x) for x in iterable]`` in the workers; raises the first failed task's
        exception (in input order) once all have finished, unless *return_exceptions*."""
        return self.map_async(func, iterable, chunksize,
                              return_exceptions=return_exceptions)._get_or_stop()

    def map_async(self, func: Callable[..., T], iterable: Iterable[Any],
                  chunksize: int | None = None,
                  callback: Callable[[list[T]], object] | None = None,
                  error_callback: Callable[[BaseException], object] | None = None, *,
                  return_exceptions: bool = False) -> MapResult[T]:
        """Start a ``map``; its :class:`MapResult`."""
        job = self._job(func, iterable, chunksize, star=False, ordered=True, collect=True,
                        return_exceptions=return_exceptions)
        return MapResult(job, callback, error_callback)

    def starmap(self, func: Callable[..., T], iterable: Iterable[Iterable[Any]],
                chunksize: int | None = None, *, return_exceptions: bool = False) -> list[T]:
        """Like :meth:`map` with ``func(*args)`` for each tuple of arguments."""
        return self.starmap_async(func, iterable, chunksize,
                                  return_exceptions=return_exceptions)._get_or_stop()

    def starmap_async(self, func: Callable[..., T], iterable: Iterable[Iterable[Any]],
                      chunksize: int | None = None,
                      callback: Callable[[list[T]], object] | None = None,
                      error_callback: Callable[[BaseException], object] | None = None, *,
                      return_exceptions: bool = False) -> MapResult[T]:
        """Like :meth:`map_async` with ``func(*args)`` for each tuple of arguments."""
        job = self._job(func, iterable, chunksize, star=True, ordered=True, collect=True,
                        return_exceptions=return_exceptions)
        return MapResult(job, callback, error_callback)

    def imap(self, func: Callable[..., T], iterable: Iterable[Any],
             chunksize: int | None = None, *, return_exceptions: bool = False) -> Iterator[T]:
        """Results in input order as they come; the input is read lazily (endless works).

        The iterator has ``next(timeout)``; a failed task raises its exception at
        its place and iteration can go on. Closing the iterator, or dropping it
        once a result was read from it, cancels the rest; dropped unread, the
        map runs to its end (as every ``multiprocessing`` ``imap`` does).
        """
        return ResultIterator(self._job(func, iterable, chunksize, star=False, ordered=True,
                                        collect=False, return_exceptions=return_exceptions),
                              timeout_error=WaitTimeoutError)

    def imap_unordered(self, func: Callable[..., T], iterable: Iterable[Any],
                       chunksize: int | None = None, *,
                       return_exceptions: bool = False) -> Iterator[T]:
        """Like :meth:`imap`, results in the order they finish."""
        return ResultIterator(self._job(func, iterable, chunksize, star=False, ordered=False,
                                        collect=False, return_exceptions=return_exceptions),
                              timeout_error=WaitTimeoutError)

    # -- lifetime ----------------------------------------------------------------
    def close(self) -> None:
        """Accept no more work; the workers exit once the submitted work is done."""
        self._engine.shutdown(wait=False, cancel_futures=False)

    def terminate(self) -> None:
        """Kill the workers now; unfinished results raise ``CancelledError``."""
        self._engine.terminate()

    def join(self) -> None:
        """Wait for the workers to exit (after :meth:`close` or :meth:`terminate`)."""
        if self._engine.state == RUNNING:
            raise ValueError("Pool is still running: call close() or terminate() before join()")
        self._engine.join()

    def stats(self) -> list[WorkerStats]:
        """Per worker slot: tasks done, busy and idle time, crashes and replacements.

        For when and where each task ran, and what waited: :func:`procesos.trace`.
        """
        return self._engine.stats()

    def __enter__(self) -> Pool:
        if self._engine.state != RUNNING:
            raise ValueError("Pool not running: it was closed or terminated; create a new Pool")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.terminate()

    def __del__(self, _warn: Callable[..., None] = warnings.warn,
                _running: str = RUNNING) -> None:
        # As multiprocessing.Pool: a pool dropped while running warns, and ends
        # (what it uses bound here: at the interpreter's exit, globals may be gone).
        engine = getattr(self, "_engine", None)
        if engine is not None and engine.state == _running:
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning,
                  source=self)
            engine.abandon(terminate=True)

    def __repr__(self) -> str:
        return f"<procesos.Pool processes={self._processes} state={self._engine.state}>"
