"""``procesos.Executor(backend="dask")``: the executor on a ``dask.distributed`` cluster.

Tasks go out with ``Client.submit`` (one call) or ``Client.map`` (a map's
batch), one task per call, keys named after the function. Every future is a
:class:`DaskDirectFuture`; that of a task submitted while nothing else of the
executor is in the cluster (one call at a time, no progress bar) is direct:
nothing watches the task, and the caller's ``result()`` fetches its result
itself, as ``distributed.Future.result()`` does, without the hops through a
collector thread; any other way of waiting for it hands it to the collector.
Other submitted tasks are settled by one collector thread that takes them
from a ``distributed.as_completed`` and fetches the results of what ended
together in one ``gather``; a map's batch is settled in input order by a
thread of its own that gathers parts of growing size (the map's caller reads
in that order anyway). Whoever settles a task first claims it
(:meth:`DaskExecutor._claim`), so each task is settled once. A task whose
worker died ends in ``KilledWorker``: procesos runs it again up to *retries*
times (the collector watches it then), then fails it with
:class:`~procesos.WorkerCrashedError`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent import futures
from typing import Any

import distributed

from .._engine import default_workers
from .._engine._direct import HandBackFuture
from .._errors import ClusterConnectionError
from ._base import ClusterExecutor, Task
from ._dask_local import LocalDaskCluster

__all__ = ["DaskDirectFuture", "DaskExecutor"]

FETCH_MAX = 1024
"""The most results of a map that one ``gather`` fetches."""


class _QuietRescheduling(logging.Filter):
    """Drops distributed's "Couldn't gather N keys, rescheduling" warning: a result
    lost with a dead worker is the executor's to report (its future says what
    happened), not noise on the user's stderr. Shown at DEBUG level, when the
    user asked ``distributed.client`` for everything."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Couldn't gather"):
            return logging.getLogger("distributed.client").isEnabledFor(logging.DEBUG)
        return True


_QUIET = _QuietRescheduling()


class DaskDirectFuture(HandBackFuture):
    """A ``concurrent.futures.Future`` whose ``result()`` may fetch its task's result.

    While :attr:`direct` (changed under the executor's lock), nothing else
    watches the task: ``result()`` and ``exception()`` fetch its result on the
    caller's thread and settle it; ``add_done_callback``, ``wait``,
    ``as_completed``, ``done()`` and asyncio hand it to the collector first.
    """

    def __init__(self) -> None:
        super().__init__()
        self.direct = False
        self.owner: tuple[DaskExecutor, Task] | None = None

    def hand_back(self) -> None:
        """Someone waits other than in ``result()``: the collector must settle the task."""
        if self.direct and self.owner is not None and not futures.Future.done(self):
            executor, task = self.owner
            executor._hand_back(self, task)

    def _read(self, timeout: float | None) -> float | None:
        """Fetch the result here if nobody else does; the time left of *timeout*."""
        if not self.direct or self.owner is None or futures.Future.done(self):
            return timeout
        executor, task = self.owner
        return executor._read_direct(task, timeout)


class DaskExecutor(ClusterExecutor):
    """``procesos.Executor`` on Dask; see :class:`procesos.Executor` and docs/scaling.md.

    *address*: a scheduler (``"tcp://host:8786"``) to connect to, which
    shutdown never stops; None starts a local cluster of *max_workers*
    worker processes (one thread each) that shutdown stops
    (:mod:`._dask_local`).
    *connect_timeout*: seconds to reach the scheduler before
    :class:`~procesos.ClusterConnectionError`. *scatter_threshold*: numpy
    arguments of at least this many bytes are scattered to the cluster once
    and tasks receive them from there.
    """

    backend = "dask"
    future_class = DaskDirectFuture
    retries_note = ("Executor(retries=N) runs such a task again N times; the scheduler "
                    "itself retries it first up to its 'allowed-failures' setting "
                    "(0 on the cluster procesos starts).")

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        backend: str = "dask",
        address: str | None = None,
        connect_timeout: float = 10.0,
        timeout: float | None = None,
        retries: int = 0,
        progress: bool = False,
        scatter_threshold: int | None = None,
        threads_per_worker: int | None = 1,
        **options: Any,
    ) -> None:
        self._setup(timeout=timeout, retries=retries, progress=progress,
                    scatter_threshold=scatter_threshold, threads_per_worker=threads_per_worker,
                    connect_timeout=connect_timeout, options=options)
        self._cluster: LocalDaskCluster | None = None
        if address is None:
            workers = default_workers() if max_workers is None else max_workers
            if workers < 1:
                raise ValueError(f"the number of workers must be at least 1, got {workers}")
            self._cluster = LocalDaskCluster(workers, start_timeout=max(connect_timeout, 60.0))
            self._client = self._cluster.client
        else:
            if max_workers is not None:
                raise ValueError("max_workers= is for the local cluster; a cluster at an "
                                 "address has the workers it has")
            try:
                self._client = distributed.Client(address, timeout=connect_timeout,
                                                  set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ClusterConnectionError(
                    f"could not reach the Dask scheduler at {address} within "
                    f"{connect_timeout:g} s ({exc}); check that it is running and that the "
                    "address is right, or give it longer with connect_timeout=") from exc
        logging.getLogger("distributed.client").addFilter(_QUIET)  # added once, however often
        self._completed = distributed.as_completed(loop=self._client.loop)
        self._by_key: dict[str, Task] = {}
        self._fetchers: set[threading.Thread] = set()
        self._watching = 0
        self._stopping = False
        self._wake = threading.Condition()
        self._collector = threading.Thread(target=self._collect, name="procesos-dask-collector",
                                           daemon=True)
        self._collector.start()

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` this executor uses."""
        return self._client

    @property
    def max_workers(self) -> int:
        """Threads in the cluster now (workers come and go)."""
        return sum(self._client.nthreads().values())

    # -- the backend's steps ----------------------------------------------------
    def _launch(self, tasks: list[Task]) -> None:
        if len(tasks) == 1:
            self._launch_one(tasks[0])
            return
        # A map's batch: one message to the scheduler, the call pickled once;
        # a thread of its own fetches the results in input order.
        columns = list(zip(*(task.args for task in tasks), strict=True))
        handles = self._client.map(tasks[0].call, *columns,
                                   key=[task.key for task in tasks], pure=False)
        for task, handle in zip(tasks, handles, strict=True):
            task.handle = handle
        fetcher = threading.Thread(target=self._fetch_in_order, args=(tasks,),
                                   name="procesos-dask-fetcher", daemon=True)
        with self._wake:
            self._fetchers.add(fetcher)
        fetcher.start()

    def _launch_one(self, task: Task) -> None:
        handle = self._client.submit(task.call, *task.args, key=task.key, pure=False)
        future = task.future
        assert isinstance(future, DaskDirectFuture)
        # The caller's result() fetches the result of a first attempt sent
        # alone (one call at a time); in a burst the collector fetches what
        # ended together in one gather, fewer round trips than one each. A
        # progress bar counts a task when it ends, so the collector watches it.
        direct = task.attempts == 0 and self._progress is None and self._alone()
        with self._wake:
            task.handle = handle
            future.owner = (self, task)
            future.direct = direct
            if not direct:
                self._watch(task)

    def _alone(self) -> bool:
        """Whether the executor has no other task in the cluster."""
        with self._lock:
            return len(self._tasks) == 1

    def _watch(self, task: Task) -> None:
        """Give *task* to the collector (the caller holds ``_wake``)."""
        self._by_key[task.key] = task
        self._completed.update([task.handle])
        self._watching += 1
        self._wake.notify()

    def _hand_back(self, future: DaskDirectFuture, task: Task) -> None:
        """A direct task's future is waited for otherwise than in ``result()``."""
        with self._wake:
            if not future.direct:
                return
            future.direct = False
            if task.handle is not None:  # else its reader settles it (or launched it again)
                self._watch(task)

    def _read_direct(self, task: Task, timeout: float | None) -> float | None:
        """``result()`` of a direct task, on the caller's thread: fetch the result
        and settle the task unless another thread claimed it first; the time
        left of *timeout*."""
        handle = task.handle
        if handle is None:
            return timeout
        started = time.monotonic()
        value, error = self._outcome(handle, timeout)
        if isinstance(error, TimeoutError) and timeout is not None:
            return 0.0  # not ended yet: result() raises its TimeoutError
        if self._claim(task, handle):
            self._settle_outcome(task, value, error)
        return None if timeout is None else max(0.0, timeout - (time.monotonic() - started))

    def _claim(self, task: Task, handle: Any) -> bool:
        """Whether this thread settles *task*, which ended with *handle*: the first to ask."""
        with self._wake:
            if handle is None or task.handle is not handle:
                return False
            task.handle = None
            return True

    def _fetch_in_order(self, tasks: list[Task]) -> None:
        """Settle a batch of tasks in order, fetching results in parts that grow
        from 1 to :data:`FETCH_MAX` tasks: the first result comes as soon as it
        is ready, and a long map costs few round trips (as ``gather`` would)."""
        try:
            start, size = 0, 1
            while start < len(tasks):
                part = [(task, task.handle) for task in tasks[start:start + size]]
                start, size = start + size, min(2 * size, FETCH_MAX)
                self._settle_batch([(task, handle) for task, handle in part
                                    if handle is not None], in_order=True)
        finally:
            with self._wake:
                self._fetchers.discard(threading.current_thread())

    def _cancel(self, tasks: list[Task]) -> None:
        handles = [task.handle for task in tasks if task.handle is not None]
        if handles and self._client.status == "running":
            self._client.cancel(handles)

    def _share(self, value: Any) -> Any:
        return self._client.scatter(value, hash=False)

    def _close(self, terminate: bool) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        try:
            if self._cluster is not None:
                self._cluster.close()  # its client with it
            else:
                self._client.close()
        finally:
            with self._wake:
                fetchers = list(self._fetchers)
            for thread in [self._collector, *fetchers]:
                thread.join(timeout=10)

    # -- the collector thread ---------------------------------------------------
    def _collect(self) -> None:
        completed = self._completed
        while True:
            with self._wake:
                while self._watching == 0 and not self._stopping:
                    self._wake.wait()
                if self._stopping and self._watching == 0:
                    return
            try:
                batch = completed.next_batch(block=True)
            except StopIteration:
                if self._stopping:
                    return
                continue
            tasks = []
            with self._wake:
                self._watching -= len(batch)
                for handle in batch:
                    task = self._by_key.pop(handle.key, None)
                    if task is not None and task.handle is handle:
                        tasks.append((task, handle))
            self._settle_batch(tasks)

    def _settle_batch(self, tasks: list[tuple[Task, Any]], in_order: bool = False) -> None:
        """Settle ended tasks (or, *in_order*, tasks as they end), fetching the
        results of those that succeed in one ``gather``; the others one by one."""
        ready = tasks if in_order else [(t, h) for t, h in tasks if h.status == "finished"]
        results: list[Any] | None = None
        if ready:
            try:
                results = self._client.gather([handle for _, handle in ready])
            except Exception:
                results = None  # an error, a death or a cancel among them
        if results is not None:
            for (task, handle), result in zip(ready, results, strict=True):
                if self._claim(task, handle):
                    self._settle(task, "done", result)
        for task, handle in tasks:
            if self._claim(task, handle):
                self._settle_outcome(task, *self._outcome(handle))

    @staticmethod
    def _outcome(handle: Any, timeout: float | None = None) -> tuple[Any, BaseException | None]:
        """What a Dask future ended with: ``(result, None)`` or ``(None, what it raised)``."""
        try:
            return handle.result(timeout), None
        except (Exception, asyncio.CancelledError) as exc:
            return None, exc

    def _settle_outcome(self, task: Task, result: Any, error: BaseException | None) -> None:
        if isinstance(error, distributed.KilledWorker):
            self._settle(task, "crashed", getattr(error.last_worker, "address", "?"))
        elif isinstance(error, (futures.CancelledError, asyncio.CancelledError)):
            task.future.cancel()
        elif error is not None:
            self._settle(task, "error", error)
        else:
            self._settle(task, "done", result)
