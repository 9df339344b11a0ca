"""``procesos.Executor``: the task engine as a ``concurrent.futures.Executor``."""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from concurrent import futures
from types import TracebackType
from typing import Any, Literal, TypeVar

from ._api import Engine, MapJob, WorkerStats, create_engine
from ._jobs import ResultIterator

__all__ = ["AsyncMap", "Executor", "ProcessPoolExecutor"]

T = TypeVar("T")


class Executor(futures.Executor):
    """A pool of worker processes behind the ``concurrent.futures`` API.

    ``submit()`` returns a ``concurrent.futures.Future`` (usable with
    ``wait``, ``as_completed`` and ``asyncio.wrap_future``); ``map()`` streams
    results in order while reading its input lazily; ``asubmit()`` and
    ``amap()`` serve asyncio code. Any callable works, lambdas and functions
    from ``__main__`` included; a function is pickled once per executor (again
    once a global it uses has been assigned in the parent), and the globals it
    uses arrive with it (or with a later function that uses them), unless code
    in the worker has assigned them: an *initializer* can set globals for the
    tasks.

    Options:

    * *max_workers*: worker processes (default: the CPUs this process may use);
    * *initializer(\\*initargs)*: runs once in each worker before any task; if
      it raises, the executor breaks and every call raises
      :class:`~procesos.BrokenExecutorError` with its traceback attached;
    * *max_tasks_per_worker*: a worker is replaced after that many tasks
      (``max_tasks_per_child``, ``ProcessPoolExecutor``'s name, is accepted);
      with 1, on Linux, each task runs in a fork of a worker that stays (the
      initializer runs in each), faster than a new worker per task;
    * *max_memory_per_worker*: bytes, or a size such as ``"2GB"`` or
      ``"512MiB"``; a worker whose resident memory is above it after a task
      is replaced;
    * *timeout*: seconds per task; a task running longer is stopped (its
      worker is killed and replaced) and fails with
      :class:`~procesos.TaskTimeoutError`;
    * *retries*: how many times a task whose worker died under it runs again
      before failing with :class:`~procesos.WorkerCrashedError`;
    * *progress*: a progress bar on stderr (a plain line when it is not a terminal);
    * *context*: a start method name (``"zygote"``, ``"fork"``, ``"spawn"``)
      or a context (``mp_context`` is accepted as an alias);
    * *threads_per_worker*: thread limit for OpenMP, BLAS, MKL and numexpr in
      each worker (default 1; None leaves them alone).

    A worker that dies fails only the tasks it held; a replacement is started
    and the other tasks go on. An unpicklable argument or result fails its task
    alone with :class:`~procesos.SerializationError`.

    *backend* ``"dask"`` or ``"ray"`` (with *address* of a cluster, or None
    for a local one) runs the same calls on a cluster: see docs/scaling.md.
    """

    def __new__(cls, *args: Any, backend: str = "local", **kwargs: Any) -> Executor:
        if cls is Executor and backend != "local":
            from .._backends import executor_class  # layer 6, only when asked for

            cls = executor_class(backend)
        return super().__new__(cls)

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        backend: str = "local",
        address: str | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        max_tasks_per_worker: int | None = None,
        max_memory_per_worker: int | str | None = None,
        timeout: float | None = None,
        retries: int = 0,
        progress: bool = False,
        context: object = None,
        mp_context: object = None,
        threads_per_worker: int | None = 1,
        max_tasks_per_child: int | None = None,
    ) -> None:
        if address is not None:
            raise ValueError("address= needs a cluster backend: backend='dask' or 'ray'")
        if type(max_workers) is int and max_workers < 1:  # in ProcessPoolExecutor's words
            raise ValueError(f"max_workers must be greater than 0, got {max_workers}")
        if max_tasks_per_child is not None:
            if max_tasks_per_worker not in (None, max_tasks_per_child):
                raise TypeError("max_tasks_per_child is ProcessPoolExecutor's name for "
                                "max_tasks_per_worker: give one of them")
            max_tasks_per_worker = max_tasks_per_child
        self._engine: Engine = create_engine(
            max_workers=max_workers, initializer=initializer, initargs=initargs,
            max_tasks_per_worker=max_tasks_per_worker,
            max_memory_per_worker=max_memory_per_worker, timeout=timeout, retries=retries,
            progress=progress, context=context if context is not None else mp_context,
            threads_per_worker=threads_per_worker,
            closed_message="cannot schedule new futures after shutdown",
            terminate_at_exit=False,
        )
        # Dropped without shutdown(): its workers end once the submitted work is
        # done, as with concurrent.futures.
        weakref.finalize(self, self._engine.abandon, False).atexit = False

    @property
    def max_workers(self) -> int:
        """The number of worker processes."""
        return self._engine.size

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> futures.Future[T]:
        """Run ``fn(*args, **kwargs)`` in a worker; its future.

        The future's ``result()`` re-raises the task's exception with its own
        type and the worker's traceback as ``__cause__``. ``cancel()``
        succeeds while the task waits for a worker. Raises ``RuntimeError``
        after ``shutdown()``, :class:`~procesos.BrokenExecutorError` when the
        executor broke, :class:`~procesos.SerializationError` when *fn*
        cannot be pickled.
        """
        return self._engine.submit(fn, args, kwargs)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | Literal["auto"] = "auto",
        return_exceptions: bool = False,
    ) -> Iterator[T]:
        """``fn`` over the items of *iterables* (zipped), results in input order.

        The input is read lazily, a few chunks per worker ahead of what has
        been consumed, so an endless generator works. ``chunksize="auto"``
        sizes chunks from measured task durations. Iterating raises the first
        failed task's exception where it occurs, unless *return_exceptions*
        (then the exception object takes the result's place); ``TimeoutError``
        if a result is not ready *timeout* seconds after this call. Closing
        the iterator, or dropping it once a result was read from it, cancels
        what has not run; a map whose iterator is dropped unread (called for
        its effects) runs to its end, as in ``concurrent.futures``.
        """
        job = self._map_job(fn, iterables, chunksize, return_exceptions, collect=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        return ResultIterator(job, deadline)

    def _map_job(self, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...],
                 chunksize: int | Literal["auto"], return_exceptions: bool,
                 collect: bool) -> MapJob:
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        if chunksize != "auto" and (not isinstance(chunksize, int) or chunksize < 1):
            raise ValueError(f"chunksize must be 'auto' or a positive integer, got {chunksize!r}")
        star = len(iterables) > 1
        source = zip(*iterables, strict=False) if star else iterables[0]
        return self._engine.map_job(
            fn, source, star=star, ordered=True, return_exceptions=return_exceptions,
            collect=collect, chunksize=None if chunksize == "auto" else chunksize)

    async def asubmit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``await`` the result of ``fn(*args, **kwargs)`` (asyncio); cancelling it cancels the task
        if it has not started."""
        # Imported here: a coroutine runs in asyncio's loop, which has loaded it;
        # at the top it cost every program's first Executor 19 ms.
        import asyncio

        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def amap(self, fn: Callable[..., T], *iterables: Iterable[Any],
             chunksize: int | Literal["auto"] = "auto",
             return_exceptions: bool = False) -> AsyncMap[T]:
        """``map()`` for asyncio: ``async for`` over the results, or ``await`` the list."""
        return AsyncMap(self._map_job(fn, iterables, chunksize, return_exceptions,
                                      collect=False))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new work; finish what was submitted; then stop the workers.

        *wait*: return only once every task has finished and every worker has
        ended. *cancel_futures*: cancel the tasks that have not started (their
        futures report ``cancelled()``; maps stop reading their input and their
        iterators end with ``CancelledError``). Calling it again is harmless.
        """
        self._engine.shutdown(wait, cancel_futures)

    def terminate(self) -> None:
        """Kill the workers now; unfinished futures raise ``CancelledError``."""
        self._engine.terminate()

    def stats(self) -> list[WorkerStats]:
        """Per worker slot: tasks done, busy and idle time, crashes and replacements.

        For when and where each task ran, and what waited: :func:`procesos.trace`.
        """
        return self._engine.stats()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception):
            self.terminate()  # Ctrl-C or SystemExit: do not wait for the tasks
        else:
            self.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"<procesos.Executor max_workers={self._engine.size} state={self._engine.state}>"


class AsyncMap(AsyncIterator[T]):
    """The results of ``Executor.amap()``: ``async for`` them, or ``await`` the list."""

    def __init__(self, job: MapJob) -> None:
        self._job = job
        self._iterator: AsyncIterator[T] | None = None

    def __aiter__(self) -> AsyncMap[T]:
        return self

    async def __anext__(self) -> T:
        if self._iterator is None:
            self._iterator = self._iterate()
        return await self._iterator.__anext__()

    def __await__(self) -> Generator[Any, None, list[T]]:
        return self._collect().__await__()

    async def _collect(self) -> list[T]:
        return [item async for item in self]

    async def _iterate(self) -> AsyncIterator[T]:
        import asyncio  # loaded already: this runs in its loop

        job = self._job
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def listener() -> None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop has closed
                pass

        job.listeners.append(listener)
        try:
            while True:
                event.clear()
                ready, finished = job.take_ready()
                got = bool(ready)
                # Popped as they go, never bound here across a yield: a result
                # the caller has dropped is freed (test_free_reference, issue 14406).
                ready.reverse()
                while ready:
                    ok, value = ready[-1]
                    if ok or (job.return_exceptions and not (
                            finished and len(ready) == 1 and job._terminal(value))):
                        del value
                        yield ready.pop()[1]
                    else:
                        raise value
                if finished:
                    return
                if not got:
                    await event.wait()
        finally:
            job.listeners.remove(listener)
            if not job.finished():
                job.cancel()


class ProcessPoolExecutor(Executor):
    """:class:`Executor` under ``concurrent.futures.ProcessPoolExecutor``'s name and
    constructor, for code written for it: ``ProcessPoolExecutor(max_workers,
    mp_context, initializer, initargs, *, max_tasks_per_child)``.

    *mp_context* may be a procesos context, a standard library context (its
    start method is used: ``forkserver`` means the zygote) or a start method
    name. :class:`Executor`'s other options are accepted as keywords.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: object = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(max_workers, mp_context=mp_context, initializer=initializer,
                         initargs=initargs, max_tasks_per_child=max_tasks_per_child, **options)
