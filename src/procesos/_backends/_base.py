"""What the cluster backends share: tasks, futures, maps, progress, shutdown.

A :class:`ClusterExecutor` keeps one :class:`Task` per call: the
``concurrent.futures.Future`` the caller holds, the call and its arguments
(kept for a retry), and the backend's handle. A backend implements four
steps — :meth:`~ClusterExecutor._launch` a batch of tasks, report each
task's end through :meth:`~ClusterExecutor._settle`, ``_cancel`` tasks and
``_close`` its connection — and everything else is here, once for all
backends. A task's future stays pending until the task ends (the cluster does
not say when a task starts), so ``cancel()`` always succeeds before then: a
task that already started goes on in the cluster and its result is dropped.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Literal, TypeVar

from .._engine import WorkerStats
from .._engine._executor import AsyncMap, Executor
from .._engine._jobs import raisable
from .._engine._progress import Progress
from .._options import check_count, check_flag, check_seconds
from .._outcome import decode
from .._pool_errors import ClusterWorkerCrashedError
from ._task import Failure, RemoteCall

__all__ = ["DEFAULT_SCATTER_THRESHOLD", "ClusterExecutor", "Task"]

T = TypeVar("T")

DEFAULT_SCATTER_THRESHOLD = 1 << 20
"""numpy arguments of at least this many bytes go to the cluster once (scatter, put)."""

MAP_WINDOW = 4096
"""Tasks a map keeps in the cluster at once; it reads more input as results are taken."""

_UNSUPPORTED_DEFAULTS: dict[str, object] = {
    "initializer": None, "initargs": (), "max_tasks_per_worker": None,
    "max_memory_per_worker": None, "context": None, "mp_context": None,
}


@dataclass(eq=False)
class Task:
    """One call in the cluster: the caller's future and what a retry needs."""

    future: futures.Future[Any]
    call: RemoteCall
    args: tuple[Any, ...]
    label: str
    key: str = ""
    attempts: int = 0
    handle: Any = field(default=None, repr=False)


class ClusterExecutor(Executor):
    """``procesos.Executor`` on a cluster; a backend subclasses it.

    Subclasses set :attr:`backend`, connect in ``__init__`` (after
    :meth:`_setup`) and implement :meth:`_launch`, :meth:`_cancel`,
    :meth:`_share`, :meth:`_close` and :attr:`max_workers`.
    """

    backend: ClassVar[str] = ""
    retries_note: ClassVar[str] = ""
    native_retries: ClassVar[bool] = False
    """True when the cluster itself runs a task again after its worker died
    (*retries* times); otherwise :meth:`_settle` launches it again."""
    future_class: ClassVar[type[futures.Future[Any]]] = futures.Future
    """The class of the futures handed out (a backend may refine it)."""

    # -- set-up -----------------------------------------------------------
    def _setup(self, *, timeout: float | None, retries: int, progress: bool,
                scatter_threshold: int | None, threads_per_worker: int | None,
                connect_timeout: float, options: dict[str, Any]) -> None:
        check_seconds("connect_timeout", connect_timeout)
        for name, value in options.items():
            if name not in _UNSUPPORTED_DEFAULTS:
                raise TypeError(f"Executor() got an unexpected keyword argument {name!r}")
            if value != _UNSUPPORTED_DEFAULTS[name]:
                raise NotImplementedError(
                    f"{name}= is not supported by backend={self.backend!r}; "
                    "see docs/scaling.md for what each backend supports")
        if threads_per_worker not in (1, None):
            raise NotImplementedError(
                f"threads_per_worker={threads_per_worker} is not supported by "
                f"backend={self.backend!r}: its workers limit numeric libraries to one thread "
                "per task already")
        self._timeout = check_seconds("timeout", timeout)
        self._retries = check_count("retries", retries, 0)
        self._threshold = (DEFAULT_SCATTER_THRESHOLD if scatter_threshold is None
                           else check_count("scatter_threshold", scatter_threshold, 0))
        self._progress = Progress() if check_flag("progress", progress) else None
        self._lock = threading.Lock()
        self._state: Literal["running", "closing", "closed"] = "running"
        self._tasks: set[Task] = set()
        self._maps: weakref.WeakSet[_MapRun] = weakref.WeakSet()
        self._shared: dict[int, tuple[weakref.ref[Any], Any]] = {}
        self._closer: threading.Thread | None = None

    # -- what a backend implements ------------------------------------------
    def _launch(self, tasks: list[Task]) -> None:
        """Send *tasks* to the cluster; each ends later with one :meth:`_settle`."""
        raise NotImplementedError

    def _cancel(self, tasks: list[Task]) -> None:
        """Ask the cluster to drop *tasks* (they may still settle)."""
        raise NotImplementedError

    def _share(self, value: Any) -> Any:
        """Put a large *value* in the cluster once; what tasks receive in its place."""
        raise NotImplementedError

    def _close(self, terminate: bool) -> None:
        """Disconnect; stop the cluster when this executor started it."""
        raise NotImplementedError

    # -- the API ------------------------------------------------------------
    @property
    def max_workers(self) -> int:
        raise NotImplementedError

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> futures.Future[T]:
        """Run ``fn(*args, **kwargs)`` on a cluster worker; its future.

        The future's ``result()`` re-raises the task's exception with its own
        type and the worker's traceback as ``__cause__``.
        """
        call = RemoteCall(fn, self._timeout, kwargs)
        task = self._task(call, self._prepare(args, {}), fn)
        self._submit([task], from_map=False)
        return task.future

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | Literal["auto"] = "auto",
        return_exceptions: bool = False,
    ) -> Iterator[T]:
        """``fn`` over the items of *iterables* (zipped), results in input order.

        The input is read lazily, up to a few thousand tasks ahead of what has
        been consumed; ``TimeoutError`` if a result is not ready *timeout*
        seconds after this call. Closing the iterator, or dropping it once a
        result was read from it, cancels what has not run; dropped unread,
        the map runs to its end.
        """
        run = self._map_run(fn, iterables, chunksize, return_exceptions)
        deadline = None if timeout is None else time.monotonic() + timeout
        return run.results(deadline)

    def amap(self, fn: Callable[..., T], *iterables: Iterable[Any],
             chunksize: int | Literal["auto"] = "auto",
             return_exceptions: bool = False) -> AsyncMap[T]:
        """``map()`` for asyncio: ``async for`` over the results, or ``await`` the list."""
        return _ClusterAsyncMap(self._map_run(fn, iterables, chunksize, return_exceptions))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new work; finish what was submitted; then disconnect.

        Maps that are still reading their input read the rest of it first
        (unless *cancel_futures*). A cluster this executor started is stopped;
        a cluster it connected to (``address=``) is left running.
        *cancel_futures*: tasks not finished are cancelled (those already
        running go on in the cluster; their results are dropped).
        """
        with self._lock:
            if self._state != "running":
                closer = self._closer
                if wait and closer is not None and closer is not threading.current_thread():
                    closer.join()
                return
            self._state = "closing"
            runs = list(self._maps)
        if cancel_futures:
            for run in runs:
                run.cancel()
            with self._lock:
                pending = [task.future for task in self._tasks]
            for future in pending:
                future.cancel()
        else:
            for run in runs:
                run.drain()
        with self._lock:
            pending = [task.future for task in self._tasks]
        if wait:
            futures.wait(pending)
            self._finish(terminate=False)
        else:
            self._closer = threading.Thread(
                target=self._finish_when_done, args=(pending,),
                name=f"procesos-{self.backend}-shutdown")
            self._closer.start()

    def terminate(self) -> None:
        """Cancel every task not finished and disconnect now (a cluster this
        executor started is stopped; its running tasks with it)."""
        with self._lock:
            if self._state == "closed":
                return
            self._state = "closing"
            runs = list(self._maps)
            pending = [task.future for task in self._tasks]
        for run in runs:
            run.cancel()
        for future in pending:
            future.cancel()
        self._finish(terminate=True)

    def stats(self) -> list[WorkerStats]:
        """Not available on a cluster backend (its dashboard shows the workers)."""
        raise NotImplementedError(
            f"stats() is not supported by backend={self.backend!r}; "
            "the cluster's own dashboard shows its workers")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception):
            self.terminate()
        else:
            self.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"<procesos.Executor backend={self.backend!r} state={self._state}>"

    # -- tasks --------------------------------------------------------------
    def _task(self, call: RemoteCall, args: tuple[Any, ...], fn: Callable[..., Any]) -> Task:
        name = getattr(fn, "__name__", type(fn).__name__)
        key = f"{name}-{uuid.uuid4().hex}"
        return Task(self.future_class(), call, args, label=f"{key} ({name})", key=key)

    def _submit(self, tasks: list[Task], from_map: bool, counted: bool = False) -> None:
        with self._lock:
            if self._state == "closed" or (self._state == "closing" and not from_map):
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._tasks.update(tasks)
        for task in tasks:
            task.future.add_done_callback(self._make_cancel_hook(task))
        if self._progress is not None and not counted:
            self._progress.add(len(tasks))
        try:
            self._launch(tasks)
        except BaseException:
            with self._lock:
                self._tasks.difference_update(tasks)
            for task in tasks:
                task.future.cancel()
            raise

    def _make_cancel_hook(self, task: Task) -> Callable[[futures.Future[Any]], None]:
        def hook(future: futures.Future[Any]) -> None:
            if future.cancelled():
                with self._lock:
                    self._tasks.discard(task)
                if self._progress is not None:
                    self._progress.advance(0, 1)
                self._cancel([task])
        return hook

    def _settle(self, task: Task, kind: Literal["done", "crashed", "error"], value: Any) -> None:
        """A task ended in the cluster: *kind* ``"done"`` with what
        :class:`RemoteCall` returned (a value or a :class:`Failure`),
        ``"crashed"`` with the words saying which worker died, or ``"error"``
        with an exception raised by the cluster itself."""
        future = task.future
        if kind == "crashed" and self.native_retries:
            task.attempts = self._retries
        elif kind == "crashed" and task.attempts < self._retries and not future.done():
            task.attempts += 1
            task.key = f"{task.key.rsplit('-retry', 1)[0]}-retry{task.attempts}"
            try:
                self._launch([task])
                return
            except Exception as exc:  # the cluster went away
                kind, value = "error", exc
        ok = False
        result: Any
        if kind == "done":
            ok, result = not isinstance(value, Failure), value
            if not ok:
                _, result = decode(value.frame, f"the exception of task {task.label}")
        elif kind == "crashed":
            tries = f" (it ran {task.attempts + 1} times)" if task.attempts else ""
            result = ClusterWorkerCrashedError(
                f"{self.backend} worker {value} died while it ran task {task.label}{tries}; "
                "a worker dies when it is killed (by a signal or for using too much memory), "
                f"crashes in native code or loses its connection. {self.retries_note}",
                worker=str(value), task=task.label)
        else:
            result = value
        with self._lock:
            self._tasks.discard(task)
        if not future.set_running_or_notify_cancel():
            return  # cancelled by the caller: the cancel hook counted it
        if ok:
            future.set_result(result)
        else:
            future.set_exception(result)
        if self._progress is not None:
            self._progress.advance(int(ok), int(not ok))
            self._progress.tick()

    def _prepare(self, args: tuple[Any, ...], memo: dict[int, Any]) -> tuple[Any, ...]:
        """*args* with each large numpy array replaced by its handle in the cluster."""
        numpy = sys.modules.get("numpy")
        if numpy is None or not any(isinstance(a, numpy.ndarray) for a in args):
            return args
        return tuple(self._shared_handle(a)
                     if isinstance(a, numpy.ndarray) and a.nbytes >= self._threshold else a
                     for a in args)

    def _shared_handle(self, array: Any) -> Any:
        key = id(array)
        with self._lock:
            entry = self._shared.get(key)
            if entry is not None and entry[0]() is array:
                return entry[1]
        handle = self._share(array)

        def forget(_: object, key: int = key) -> None:
            with self._lock:
                self._shared.pop(key, None)

        with self._lock:
            self._shared[key] = (weakref.ref(array, forget), handle)
        return handle

    # -- maps -----------------------------------------------------------------
    def _map_run(self, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...],
                 chunksize: int | Literal["auto"], return_exceptions: bool) -> _MapRun:
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        if chunksize not in ("auto", 1):
            raise NotImplementedError(
                f"chunksize={chunksize!r} is not supported by backend={self.backend!r}: "
                "each item is one task of the cluster")
        with self._lock:
            if self._state != "running":
                raise RuntimeError("cannot schedule new futures after shutdown")
        source = zip(*iterables, strict=False) if len(iterables) > 1 else (
            (item,) for item in iterables[0])
        run = _MapRun(self, fn, iter(source), return_exceptions)
        with self._lock:
            self._maps.add(run)
        if self._progress is not None and len(iterables) == 1:
            try:
                count = len(iterables[0])  # type: ignore[arg-type]
            except TypeError:
                pass
            else:
                self._progress.add(count)
                run.counted = True
        run.fill()
        return run

    # -- closing --------------------------------------------------------------
    def _finish_when_done(self, pending: list[futures.Future[Any]]) -> None:
        futures.wait(pending)
        self._finish(terminate=False)

    def _finish(self, terminate: bool) -> None:
        with self._lock:
            if self._state == "closed":
                return
            self._state = "closed"
            self._shared.clear()
        try:
            self._close(terminate)
        finally:
            if self._progress is not None:
                self._progress.close()


class _MapRun:
    """One ``map()``: reads the input, keeps a window of tasks in the cluster,
    hands the futures out in input order."""

    def __init__(self, executor: ClusterExecutor, fn: Callable[..., Any],
                 source: Iterator[tuple[Any, ...]], return_exceptions: bool) -> None:
        self.executor = executor
        self.call = RemoteCall(fn, executor._timeout, {})
        self.fn = fn
        self.source: Iterator[tuple[Any, ...]] | None = source
        self.return_exceptions = return_exceptions
        self.pending: deque[futures.Future[Any]] = deque()
        self.input_error: BaseException | None = None
        self.memo: dict[int, Any] = {}
        self.window = MAP_WINDOW  # tasks kept in the cluster at once
        self.started = False  # someone has asked for a result
        # Dropped unread: runs to its end, its results dropped; the tasks in
        # the cluster are counted, not kept, and each one that ends asks for more.
        self.detached = False
        self.in_flight = 0
        self.refill_wanted = False
        self.lock = threading.Lock()
        self.counted = False

    def fill(self, everything: bool = False) -> None:
        """Read input until a window of tasks is in the cluster (*everything*: all
        of it) and send them."""
        limit = None if everything else self.window
        while True:
            self.refill_wanted = False
            sent = self._fill(limit)
            if sent and self.detached:
                for future in sent:
                    future.add_done_callback(self._ended_detached)
            if not (self.detached and self.refill_wanted):
                return

    def _fill(self, limit: int | None) -> list[futures.Future[Any]]:
        with self.lock:
            held = len(self.pending) + self.in_flight
            if self.source is None or (limit is not None and held > limit // 2):
                return []
            executor = self.executor
            tasks: list[Task] = []
            try:
                while limit is None or held + len(tasks) < limit:
                    try:
                        args = next(self.source)
                    except StopIteration:
                        self.source = None
                        break
                    tasks.append(executor._task(self.call, executor._prepare(args, self.memo),
                                                self.fn))
            except BaseException as exc:  # the input itself raised
                self.input_error = exc
                self.source = None
            if not tasks:
                return []
            executor._submit(tasks, from_map=True, counted=self.counted)
            sent = [task.future for task in tasks]
            if self.detached:
                self.in_flight += len(sent)
            else:
                self.pending.extend(sent)
            return sent

    def detach(self) -> None:
        """Its iterator was dropped unread: run the whole input, results dropped
        (as ``concurrent.futures`` runs every task of a map nobody reads)."""
        with self.lock:
            if self.detached or (self.source is None and not self.pending):
                return
            self.detached = True
            held = list(self.pending)
            self.pending.clear()
            self.in_flight += len(held)
        for future in held:
            future.add_done_callback(self._ended_detached)
        self.fill()

    def _ended_detached(self, future: futures.Future[Any]) -> None:
        with self.lock:
            self.in_flight -= 1
        # Set before trying: a fill() that holds the lock now (in this thread
        # or another) sees it once it lets go, and goes round again.
        self.refill_wanted = True
        if self.lock.acquire(blocking=False):
            self.lock.release()
            self.fill()

    def drain(self) -> None:
        """Send the rest of the input now (the executor is shutting down)."""
        self.fill(everything=True)

    def cancel(self) -> None:
        with self.lock:
            self.source = None
            pending = list(self.pending)
        for future in pending:
            future.cancel()

    def next_future(self) -> futures.Future[Any] | None:
        """The next result's future, in input order; None at the end."""
        with self.lock:
            future = self.pending.popleft() if self.pending else None
        if future is None:
            if self.input_error is not None:
                error, self.input_error = self.input_error, None
                raise error
            return None
        self.fill()
        return future

    def results(self, deadline: float | None) -> Iterator[Any]:
        return _MapResults(self, deadline)


class _MapResults(Iterator[Any]):
    """The iterator ``map()`` returns; closing it, or dropping it once a result
    was asked for, cancels the tasks that have not ended; dropped unread, the
    map runs to its end (:meth:`_MapRun.detach`)."""

    def __init__(self, run: _MapRun, deadline: float | None) -> None:
        self._run: _MapRun | None = run
        self._deadline = deadline

    def __iter__(self) -> _MapResults:
        return self

    def __next__(self) -> Any:
        run = self._run
        if run is None:
            raise StopIteration
        run.started = True
        try:
            future = run.next_future()
        except BaseException:
            self.close()
            raise
        if future is None:
            self.close()
            raise StopIteration
        deadline = self._deadline
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return future.result(remaining)
        except futures.TimeoutError:
            self.close()
            raise
        except Exception as exc:
            if not run.return_exceptions or isinstance(exc, futures.CancelledError):
                self.close()
                error = raisable(exc)
                if error is exc:
                    raise
                raise error from exc
            return exc

    def close(self) -> None:
        run, self._run = self._run, None
        if run is not None:
            run.cancel()

    def __del__(self) -> None:
        run = self._run
        if run is not None and not run.started:
            self._run = None
            run.detach()
        else:
            self.close()


class _ClusterAsyncMap(AsyncMap[T]):
    """``amap()`` of a cluster backend: the same object as the local one."""

    def __init__(self, run: _MapRun) -> None:
        self._run = run
        self._iterator: AsyncIterator[T] | None = None

    async def _iterate(self) -> AsyncIterator[T]:
        run = self._run
        try:
            while (future := run.next_future()) is not None:
                try:
                    yield await asyncio.wrap_future(future)
                except Exception as exc:
                    if not run.return_exceptions or isinstance(exc, asyncio.CancelledError):
                        raise
                    yield exc  # type: ignore[misc]
        finally:
            run.cancel()
