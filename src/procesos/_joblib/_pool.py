"""The pools behind procesos' joblib backend (:mod:`procesos.joblib`): the pool that
``Parallel`` calls share, and the feed that hands a call's batches to a pool."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent import futures
from typing import Any

from .._engine._executor import Executor
from ._batch import run_batch

__all__ = ["SHARED_POOL", "Feed", "SharedPool"]


class Feed:
    """Hands joblib's batches to an executor, one per worker at a time.

    The engine gives a busy worker its next call when calls are quick, and
    groups queued calls into one batch: a quick joblib batch queued behind one
    that hangs would wait for it while another worker idles (with loky, any
    free worker takes the next batch). So the batches beyond one per worker
    wait here, and each finished batch sends the next. Even one batch ahead
    while batches were quick let a batch that then hung hold one back
    (tests/test_joblib.py, test_unordered_generator_returns_what_is_ready_first).
    """

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._limit = executor.max_workers
        self._lock = threading.Lock()
        self._batches: dict[futures.Future[Any], Any] = {}  # every batch not yet read
        self._running: dict[futures.Future[Any], futures.Future[Any]] = {}  # ours -> engine's
        self._waiting: deque[futures.Future[Any]] = deque()
        self._cancelled = False

    def submit(self, batch: Any, callback: Callable[[futures.Future[Any]], object] | None,
               ) -> futures.Future[Any]:
        future: futures.Future[Any] = futures.Future()
        with self._lock:
            self._batches[future] = batch
            start = len(self._running) < self._limit and not self._waiting
            if start:
                self._running[future] = future  # a place held until the engine's future exists
            else:
                self._waiting.append(future)
        if callback is not None:
            future.add_done_callback(callback)
        future.add_done_callback(self._forget)  # after joblib's callback, which reads the batch
        if start:
            self._start(future, batch)
        return future

    def batch_of(self, future: futures.Future[Any]) -> Any:
        """The joblib batch that *future* ran (None once it has been read)."""
        with self._lock:
            return self._batches.get(future)

    def cancel(self) -> None:
        """Cancel the batches not yet sent, and the sent ones that have not started."""
        with self._lock:
            self._cancelled = True
            waiting, self._waiting = list(self._waiting), deque()
            running = list(self._running.values())
        for future in waiting:
            future.cancel()
        for inner in running:
            inner.cancel()

    def _start(self, future: futures.Future[Any], batch: Any) -> None:
        if not future.set_running_or_notify_cancel():
            self._next(future)
            return
        try:
            inner = self._executor.submit(run_batch, batch)
        except Exception as error:  # from joblib's callback thread it would be lost: fail the batch
            self._next(future)
            future.set_exception(error)
            return
        with self._lock:
            if future in self._running:
                self._running[future] = inner
        inner.add_done_callback(lambda done: self._settle(future, done))

    def _settle(self, future: futures.Future[Any], inner: futures.Future[Any]) -> None:
        self._next(future)  # first keep the worker busy, then tell joblib
        try:
            if inner.cancelled():
                future.set_exception(futures.CancelledError())
            elif inner.exception() is not None:
                future.set_exception(inner.exception())
            else:
                future.set_result(inner.result())
        except futures.InvalidStateError:  # cancelled meanwhile
            pass

    def _next(self, finished: futures.Future[Any]) -> None:
        """*finished* gives up its place: send the waiting batches that now fit."""
        while True:
            with self._lock:
                self._running.pop(finished, None)
                if (self._cancelled or not self._waiting
                        or len(self._running) >= self._limit):
                    return
                future = self._waiting.popleft()
                self._running[future] = future
                batch = self._batches.get(future)
            self._start(future, batch)

    def _forget(self, future: futures.Future[Any]) -> None:
        with self._lock:
            self._batches.pop(future, None)


class SharedPool:
    """The pool that ``Parallel`` calls share, kept warm between them (as loky's
    reusable executor), so that a call does not start workers, nor have them
    import what its tasks need, again.

    A call with other settings (*n_jobs*, thread limit, retries, timeout, start
    method, initializer) replaces it, or, while another call uses it, gets a
    pool of its own for its duration. It ends at exit (the engine's exit
    handler) or with :func:`procesos.joblib.shutdown`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: Executor | None = None
        self._options: dict[str, Any] = {}
        self._users = 0
        self._private: set[Executor] = set()  # pools of one call while the shared one was busy

    def acquire(self, options: dict[str, Any]) -> Executor:
        """A pool with *options* for one call; give it back with :meth:`release`."""
        retired = None
        with self._lock:
            if self._executor is not None and _same(options, self._options):
                self._users += 1
                return self._executor
            if self._executor is not None and self._users > 0:
                private = Executor(**options)
                self._private.add(private)
                return private
            retired, self._executor = self._executor, None
        if retired is not None:
            retired.shutdown(wait=True, cancel_futures=True)
        executor = Executor(**options)
        with self._lock:
            if self._executor is None:
                self._executor, self._options, self._users = executor, options, 1
                return executor
            self._private.add(executor)  # another call got there first
            return executor

    def release(self, executor: Executor) -> None:
        """A call is done with *executor*: the shared one stays warm, a private one stops."""
        with self._lock:
            if executor is self._executor:
                self._users -= 1
                return
            private = executor in self._private
            self._private.discard(executor)
        if private:
            executor.shutdown(wait=True, cancel_futures=True)

    def kill_if_sole_user(self, executor: Executor) -> bool:
        """Kill *executor*'s workers (a failed call) unless another call uses it;
        whether it was killed (the caller has then given it up)."""
        with self._lock:
            if executor is self._executor:
                if self._users > 1:
                    return False
                self._executor, self._users = None, 0
            else:
                self._private.discard(executor)
        executor.terminate()
        return True

    def shutdown(self) -> None:
        """Stop the shared pool now (it starts again at the next call)."""
        with self._lock:
            executor, self._executor, self._users = self._executor, None, 0
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def forget(self) -> None:
        """In a forked child: the parent's pools are not this process's."""
        self._lock = threading.Lock()
        self._executor, self._users, self._private = None, 0, set()


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    # Numbers and names by value; initializers, their arguments and contexts by
    # identity (equal-looking ones may differ, and arrays do not compare to a bool).
    return a.keys() == b.keys() and all(
        a[k] is b[k] or (type(a[k]) in (int, float, str) and a[k] == b[k]) for k in a)


SHARED_POOL = SharedPool()
os.register_at_fork(after_in_child=SHARED_POOL.forget)
