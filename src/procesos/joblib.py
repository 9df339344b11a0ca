"""procesos as a joblib parallel backend: ``import procesos.joblib`` registers ``"procesos"``.

Then ``with joblib.parallel_config(backend="procesos", n_jobs=4): ...`` runs
joblib's ``Parallel`` (and scikit-learn's ``n_jobs``) on a
:class:`procesos.Executor`. Each joblib batch is one procesos task, so:

* a worker that dies fails only its batch, with :class:`WorkerCrashedError`,
  which is also joblib's ``TerminatedWorkerError`` (``except`` clauses written
  for loky keep working); the pool is not broken (loky's is), and
  ``retries=N`` in ``parallel_config`` runs such a batch again (joblib itself
  stops a call at its first error);
* ``Parallel(timeout=)`` also stops the late batch: its worker is killed and
  replaced and the call raises :class:`procesos.TaskTimeoutError`, a
  ``TimeoutError`` as joblib's own;
* numpy arrays of 1 MiB or more travel through shared memory (procesos'
  transport), not through joblib's memmapping folder: ``max_nbytes``,
  ``temp_folder`` and ``mmap_mode`` are accepted and unused;
* calls share a pool kept warm between them, as loky's reusable executor
  (:func:`shutdown` stops it; it also ends at exit), or use the
  ``executor=`` you pass;
* each worker limits OpenMP/BLAS/MKL threads to *inner_max_num_threads*, by
  default ``joblib.cpu_count() // n_jobs`` as joblib's loky backend does.

joblib is not a dependency of procesos: this module is the only one that
imports it, and ``import procesos`` does not import this module.
"""

from __future__ import annotations

import os
import queue
import reprlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent import futures
from typing import Any

from joblib import cpu_count, register_parallel_backend
from joblib._parallel_backends import (
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    SequentialBackend,
)
from joblib.externals.loky.process_executor import TerminatedWorkerError

from . import _errors
from ._executor import Executor
from ._joblib_batch import run_batch

__all__ = ["BACKEND_NAME", "ProcesosBackend", "WorkerCrashedError", "register", "shutdown"]

BACKEND_NAME = "procesos"

# What joblib's Parallel passes to every backend's configure(); procesos moves
# arrays through shared memory and starts its workers with its own start
# method, so it has no use for them.
_JOBLIB_CONFIGURE_ARGUMENTS = frozenset(
    {"prefer", "require", "verbose", "max_nbytes", "temp_folder", "mmap_mode", "context",
     "idle_worker_timeout"})
_POOL_OPTIONS = ("retries", "context", "initializer", "initargs")


class WorkerCrashedError(_errors.WorkerCrashedError, TerminatedWorkerError):  # type: ignore[misc]
    """A worker died while it ran a joblib batch.

    Both procesos' :class:`~procesos.WorkerCrashedError` and joblib's
    ``TerminatedWorkerError`` (what the loky backend raises for a crashed
    worker), so code written for either catches it. Unlike loky, only this
    batch failed: the pool is not broken.
    """


class ProcesosBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]
    """joblib's parallel backend on a :class:`procesos.Executor`.

    Built by joblib from ``parallel_config(backend="procesos", **options)``;
    the options procesos adds:

    * *executor*: an :class:`~procesos.Executor` you own, used by every
      ``Parallel`` call (you shut it down). Without it, calls share a pool
      that stays warm between them (as loky's), stopped at exit or by
      :func:`shutdown`;
    * *retries*: how many times a batch whose worker died runs again
      (default 0);
    * *context*: procesos' start method (``"zygote"``, ``"fork"``, ``"spawn"``);
    * *initializer(\\*initargs)*: runs once in each worker (also accepted by
      ``Parallel``, as by joblib's loky backend).

    *inner_max_num_threads* limits the threads of numeric libraries in each
    worker (default: ``joblib.cpu_count() // n_jobs``, at least 1). Negative
    *n_jobs* count back from ``joblib.cpu_count()``, as for loky.
    """

    supports_retrieve_callback = True
    supports_inner_max_num_threads = True
    supports_sharedmem = False
    uses_threads = False

    def __init__(self, nesting_level: int | None = None,
                 inner_max_num_threads: int | None = None, *,
                 executor: Executor | None = None, retries: int = 0,
                 context: object = None, initializer: Callable[..., object] | None = None,
                 initargs: tuple[Any, ...] = (), **backend_kwargs: Any) -> None:
        if backend_kwargs:
            raise TypeError(f"unknown option(s) for the procesos joblib backend: "
                            f"{', '.join(sorted(backend_kwargs))}; it takes executor, "
                            f"{', '.join(_POOL_OPTIONS)} and inner_max_num_threads")
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(f"executor must be a procesos.Executor, got {executor!r}")
        if executor is not None and (retries or context is not None or initializer is not None
                                     or inner_max_num_threads is not None):
            raise ValueError("retries, context, initializer and inner_max_num_threads set up "
                             "a pool: give them to the Executor you pass as executor=")
        super().__init__(nesting_level=nesting_level,
                         inner_max_num_threads=inner_max_num_threads)
        self._given_executor = executor
        self._retries = retries
        self._context = context
        self._initializer = initializer
        self._initargs = initargs
        self._call_initializer: tuple[Callable[..., object] | None, tuple[Any, ...]] = (
            initializer, initargs)
        self._executor: Executor | None = None
        self._n_jobs = 1
        self._timeout: float | None = None
        self._feed: _Feed | None = None

    # joblib's ParallelBackendBase API

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """The number of workers a ``Parallel(n_jobs=...)`` call gets."""
        if self._given_executor is not None:
            return self._given_executor.max_workers
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            return max(int(cpu_count()) + 1 + n_jobs, 1)
        return n_jobs

    def configure(self, n_jobs: int | None = 1, parallel: Any = None,
                  initializer: Callable[..., object] | None = None,
                  initargs: tuple[Any, ...] = (), **joblib_kwargs: Any) -> int:
        """Start the pool for a ``Parallel`` call; its number of workers."""
        unknown = set(joblib_kwargs) - _JOBLIB_CONFIGURE_ARGUMENTS
        if unknown:
            raise TypeError(f"unknown Parallel option(s) for the procesos joblib backend: "
                            f"{', '.join(sorted(unknown))}")
        if initializer is not None and self._given_executor is not None:
            raise ValueError("initializer sets up a pool: give it to the Executor you "
                             "pass as executor=")
        count = self.effective_n_jobs(n_jobs)
        if count == 1 and self._given_executor is None:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self.parallel = parallel
        self._n_jobs = count
        self._timeout = getattr(parallel, "timeout", None)
        if initializer is not None:
            self._call_initializer = (initializer, initargs)
        else:
            self._call_initializer = (self._initializer, self._initargs)
        if self._executor is None:
            self._executor = self._given_executor or self._acquire_executor()
        if self._feed is None:
            self._feed = _Feed(self._executor)
        return count

    def start_call(self) -> None:
        """Start of a ``Parallel`` call: drop the batches an aborted call left behind.

        joblib (1.6) slices its input ahead into ``Parallel._ready_batches`` and
        never empties it when a call fails: a ``with Parallel(...)`` block that
        calls again after an error would get the failed call's leftover tasks
        first, their results mixed into the new call's (loky too).
        """
        ready = getattr(self.parallel, "_ready_batches", None)
        if isinstance(ready, queue.Queue):
            while True:
                try:
                    ready.get_nowait()
                except queue.Empty:
                    break

    def submit(self, func: Any, callback: Any = None) -> futures.Future[Any]:
        """Run one joblib batch in a worker; *callback(future)* runs when it is done."""
        assert self._feed is not None, "submit() before configure()"
        return self._feed.submit(func, callback)

    def retrieve_result_callback(self, out: futures.Future[Any]) -> Any:
        """The batch's results, or its exception (a crash as :class:`WorkerCrashedError`)."""
        try:
            return out.result()
        except (_errors.WorkerCrashedError, _errors.TaskTimeoutError) as error:
            if isinstance(error, WorkerCrashedError):
                raise
            batch = self._feed.batch_of(out) if self._feed is not None else None
            raise _as_joblib_error(error, batch) from error

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Stop what is left of a failed ``Parallel`` call.

        The shared pool, when this call is its only user, is killed (running
        batches included, as loky does) and, if *ensure_ready*, a new one
        started; on an executor you passed, or a pool another call is using,
        the batches that have not started are cancelled and the running ones
        left to end.
        """
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.cancel()
        executor = self._executor
        if executor is None:
            return
        if executor is not self._given_executor and SHARED_POOL.kill_if_sole_user(executor):
            self._executor = None
            if ensure_ready:
                self._executor = self._acquire_executor()
        if ensure_ready and self._executor is not None:
            self._feed = _Feed(self._executor)

    def terminate(self) -> None:
        """End of a ``Parallel`` call: give the shared pool back, warm, for the next."""
        executor, self._executor = self._executor, None
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.cancel()
        if executor is not None and executor is not self._given_executor:
            SHARED_POOL.release(executor)
        self.reset_batch_stats()

    # helpers

    def _acquire_executor(self) -> Executor:
        threads = self.inner_max_num_threads
        if threads is None:
            threads = max(int(cpu_count()) // self._n_jobs, 1)
        initializer, initargs = self._call_initializer
        options: dict[str, Any] = {
            "max_workers": self._n_jobs, "threads_per_worker": threads,
            "retries": self._retries, "timeout": self._timeout, "context": self._context,
            "initializer": initializer, "initargs": initargs}
        return SHARED_POOL.acquire(options)


class _SharedPool:
    """The pool that ``Parallel`` calls share, kept warm between them (as loky's
    reusable executor), so that a call does not start workers, nor have them
    import what its tasks need, again.

    A call with other settings (*n_jobs*, thread limit, retries, timeout, start
    method, initializer) replaces it, or, while another call uses it, gets a
    pool of its own for its duration. It ends at exit (the engine's exit
    handler) or with :func:`shutdown`.
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


SHARED_POOL = _SharedPool()
os.register_at_fork(after_in_child=SHARED_POOL.forget)


def shutdown() -> None:
    """Stop the workers that ``Parallel`` calls on procesos keep warm between calls.

    They also stop at exit; the next call starts new ones.
    """
    SHARED_POOL.shutdown()


class _Feed:
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


def _describe_batch(batch: Any) -> str:
    """``f(1, 2), g(3) and 5 more calls``: what a joblib batch held."""
    items = getattr(batch, "items", None)
    if not isinstance(items, list):
        return reprlib.repr(batch)
    shown = []
    for func, args, kwargs in items[:2]:
        name = getattr(func, "__qualname__", None) or reprlib.repr(func)
        arguments = [reprlib.repr(a) for a in args]
        arguments += [f"{k}={reprlib.repr(v)}" for k, v in kwargs.items()]
        shown.append(f"{name}({', '.join(arguments)})")
    text = ", ".join(shown)
    if len(items) > 2:
        text += f" and {len(items) - 2} more call(s)"
    return text


def _as_joblib_error(error: _errors.WorkerCrashedError | _errors.TaskTimeoutError,
                     batch: Any) -> BaseException:
    """*error* naming the joblib calls of *batch* instead of the engine's ``run_batch``;
    a crash as this module's :class:`WorkerCrashedError`."""
    label = getattr(error, "task", None)
    calls = f"a joblib batch: {_describe_batch(batch)}" if batch is not None else None
    if isinstance(error, _errors.TaskTimeoutError):
        text = str(error)
        if label and calls:
            text = text.replace(label, calls, 1)
        return _errors.TaskTimeoutError(text)
    hint = error.hint
    if label and calls:
        hint = hint.replace(label, calls, 1)
    return WorkerCrashedError(error.name, error.pid, error.exitcode, hint)


def register() -> None:
    """Register the ``"procesos"`` backend with joblib (done by ``import procesos.joblib``)."""
    register_parallel_backend(BACKEND_NAME, ProcesosBackend)


register()
