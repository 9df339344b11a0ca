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

import queue
import reprlib
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

from . import _errors, _pool_errors
from ._engine._executor import Executor
from ._engine._jobs import call_parts, unpicklable_part
from ._joblib._batch import run_batch
from ._joblib._pool import SHARED_POOL, Feed

__all__ = ["BACKEND_NAME", "SHARED_POOL", "ProcesosBackend", "WorkerCrashedError", "register",
           "shutdown"]

BACKEND_NAME = "procesos"

# What joblib's Parallel passes to every backend's configure(); procesos moves
# arrays through shared memory and starts its workers with its own start
# method, so it has no use for them.
_JOBLIB_CONFIGURE_ARGUMENTS = frozenset(
    {"prefer", "require", "verbose", "max_nbytes", "temp_folder", "mmap_mode", "context",
     "idle_worker_timeout"})
_POOL_OPTIONS = ("retries", "context", "initializer", "initargs")


class WorkerCrashedError(_pool_errors.WorkerCrashedError, TerminatedWorkerError):  # type: ignore[misc]
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
        self._feed: Feed | None = None

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
            self._feed = Feed(self._executor)
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
        except (_pool_errors.WorkerCrashedError, _errors.TaskTimeoutError) as error:
            if isinstance(error, WorkerCrashedError):
                raise
            batch = self._feed.batch_of(out) if self._feed is not None else None
            raise _as_joblib_error(error, batch) from error
        except _errors.PicklingError as error:
            batch = self._feed.batch_of(out) if self._feed is not None else None
            culprit = _unpicklable_call(batch) if _RUN_BATCH in str(error) else None
            if culprit is None:
                raise
            raise _errors.PicklingError.caused_by(
                f"a joblib batch: {_describe_batch(batch)}: {culprit}",
                error.__cause__ or error) from error
        except BaseException as error:
            _name_the_calls_in_notes(error, self._feed.batch_of(out) if self._feed else None)
            raise

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
            self._feed = Feed(self._executor)

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


def shutdown() -> None:
    """Stop the workers that ``Parallel`` calls on procesos keep warm between calls.

    They also stop at exit; the next call starts new ones.
    """
    SHARED_POOL.shutdown()


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


def _as_joblib_error(error: _pool_errors.WorkerCrashedError | _errors.TaskTimeoutError,
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


_RUN_BATCH = f"{run_batch.__name__}("
_RAISED_BY = f"(raised by {_RUN_BATCH}"


def _unpicklable_call(batch: Any) -> str | None:
    """What of a joblib batch's calls cannot be pickled, in the batch's words
    (``len: argument 0, a builtins.list object, cannot be pickled (...)``)."""
    items = getattr(batch, "items", None)
    if not isinstance(items, list):
        return None
    for func, args, kwargs in items:
        name = getattr(func, "__qualname__", None) or reprlib.repr(func)
        culprit = unpicklable_part([(f"{name}: the function", func),
                                    *call_parts(args, kwargs, f"{name}: ")])
        if culprit is not None:
            return culprit
    return None


def _name_the_calls_in_notes(error: BaseException, batch: Any) -> None:
    """The engine notes which task raised *error*: here the joblib calls of the
    batch, not the engine's ``run_batch(<joblib.parallel.BatchedCalls ...>)``."""
    notes = getattr(error, "__notes__", None)
    if not isinstance(notes, list) or batch is None:
        return
    for index, note in enumerate(notes):
        if isinstance(note, str) and note.startswith(_RAISED_BY):
            worker = note.rfind(" in worker pid ")
            notes[index] = (f"(raised in a joblib batch: {_describe_batch(batch)}"
                            + (note[worker:] if worker >= 0 else ")"))


def register() -> None:
    """Register the ``"procesos"`` backend with joblib (done by ``import procesos.joblib``)."""
    register_parallel_backend(BACKEND_NAME, ProcesosBackend)


register()
