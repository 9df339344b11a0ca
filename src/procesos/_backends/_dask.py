"""``procesos.Executor(backend="dask")``: the executor on a ``dask.distributed`` cluster.

Tasks go out with ``Client.submit`` (one call) or ``Client.map`` (a map's
batch), one task per call, keys named after the function. Submitted tasks are
settled by one collector thread that takes them from a
``distributed.as_completed`` and fetches the results of what ended together in
one ``gather``; a map's batch is settled in input order by a thread of its
own that gathers parts of growing size (the map's caller reads in that order
anyway). A task whose worker died ends in ``KilledWorker``:
procesos runs it again up to *retries* times, then fails it with
:class:`~procesos.WorkerCrashedError`.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent import futures
from typing import Any

import distributed

from .._engine import default_workers
from .._errors import ClusterConnectionError
from ._base import ClusterExecutor, Task
from ._dask_local import LocalDaskCluster

__all__ = ["DaskExecutor"]

FETCH_MAX = 1024
"""The most results of a map that one ``gather`` fetches."""


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
            task = tasks[0]
            task.handle = self._client.submit(task.call, *task.args, key=task.key, pure=False)
            with self._wake:
                self._by_key[task.key] = task
                self._completed.update([task.handle])
                self._watching += 1
                self._wake.notify()
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
                if task.handle is handle:
                    task.handle = None
                    self._settle(task, "done", result)
        for task, handle in tasks:
            if task.handle is handle and handle is not None:
                task.handle = None
                self._settle_one(task, handle)

    def _settle_one(self, task: Task, handle: Any) -> None:
        try:
            result = handle.result()
        except distributed.KilledWorker as exc:
            self._settle(task, "crashed", getattr(exc.last_worker, "address", "?"))
        except (futures.CancelledError, asyncio.CancelledError):
            task.future.cancel()
        except Exception as exc:
            self._settle(task, "error", exc)
        else:
            self._settle(task, "done", result)
