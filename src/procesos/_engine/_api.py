"""The parent's entry points into the engine: options checked, engines started and ended.

Imported only by the parent (through :mod:`procesos._engine`'s lazy names), so a
worker, which imports :mod:`._worker` alone, never loads the dispatcher.
"""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Callable, Iterable
from multiprocessing import util
from typing import Any

from .._compat import call_before_threads_join
from .._options import check_args, check_bytes, check_count, check_flag, check_seconds
from .._proc._context import resolve_context
from ._dispatcher import Engine
from ._jobs import MapJob
from ._progress import Progress
from ._states import CLOSING, RUNNING
from ._stats import WorkerStats
from ._task_fork import SUPPORTED as TASK_FORK_SUPPORTED
from ._worker import WorkerConfig

__all__ = ["Engine", "MapJob", "WorkerStats", "create_engine", "default_workers"]

_live: weakref.WeakSet[Engine] = weakref.WeakSet()
_terminate_at_exit: weakref.WeakSet[Engine] = weakref.WeakSet()


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


SPIN_ENV = "PROCESOS_SPIN_US"
DEFAULT_SPIN_US = 100


def spin_ns() -> int:
    """How long a worker waiting for work, and a caller waiting for a quick result,
    poll before they sleep (``PROCESOS_SPIN_US`` microseconds; 0 with one CPU)."""
    text = os.environ.get(SPIN_ENV, "").strip()
    try:
        micros = int(text) if text else DEFAULT_SPIN_US
    except ValueError:
        micros = -1
    if micros < 0:
        raise ValueError(f"{SPIN_ENV} must be a whole number of microseconds (0 turns "
                         f"polling off), got {text!r}")
    return micros * 1000 if default_workers() > 1 else 0


FORK_PER_TASK_ENV = "PROCESOS_FORK_PER_TASK"


def fork_per_task(max_tasks: int | None, max_memory: int | None) -> bool:
    """Whether workers run each task in a fork of themselves (:mod:`._task_fork`):
    one task per worker, no memory limit (a child's memory is not the worker's),
    Linux, and ``PROCESOS_FORK_PER_TASK`` not ``0``."""
    if max_tasks != 1 or max_memory is not None or not TASK_FORK_SUPPORTED:
        return False
    return os.environ.get(FORK_PER_TASK_ENV, "1").strip() not in ("0", "")


def create_engine(*, max_workers: int | None, initializer: Callable[..., object] | None,
                  initargs: Iterable[Any], max_tasks_per_worker: int | None,
                  max_memory_per_worker: int | str | None, timeout: float | None, retries: int,
                  progress: bool, context: object, threads_per_worker: int | None,
                  closed_message: str, terminate_at_exit: bool,
                  closed_error: type[Exception] = RuntimeError) -> Engine:
    """Check the options shared by ``Executor`` and ``Pool`` and start an engine."""
    workers = default_workers() if max_workers is None else check_count(
        "the number of workers (max_workers, processes)", max_workers, 1)
    if max_tasks_per_worker is not None:
        check_count("max_tasks_per_worker", max_tasks_per_worker, 1)
    memory_limit = check_bytes("max_memory_per_worker", max_memory_per_worker)
    timeout = check_seconds("timeout", timeout)
    retries = check_count("retries", retries, 0)
    if threads_per_worker is not None:
        check_count("threads_per_worker", threads_per_worker, 1)
    if initializer is not None and not callable(initializer):
        raise TypeError(f"initializer must be callable, got {initializer!r}")
    initargs = check_args("initargs", initargs)
    progress = check_flag("progress", progress)
    config = WorkerConfig(initializer, initargs, max_tasks_per_worker,
                          memory_limit, threads_per_worker, spin_ns(),
                          fork_per_task(max_tasks_per_worker, memory_limit))
    engine = Engine(resolve_context(context), workers, config, timeout=timeout,
                    retries=retries, progress=Progress() if progress else None,
                    closed_message=closed_message, closed_error=closed_error)
    _live.add(engine)
    if terminate_at_exit:
        _terminate_at_exit.add(engine)
    # In a child process, multiprocessing's exit handler joins the child's own
    # children (these workers among them) before the interpreter's exit
    # handlers run (_at_exit): it would wait for good on an engine nobody shut
    # down. Its finalizers run first, so the engine ends there.
    util.Finalize(engine, _end_at_exit, args=(weakref.ref(engine),), exitpriority=10)
    return engine


def _interrupted() -> bool:
    last = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    return isinstance(last, KeyboardInterrupt)


def _end(engine: Engine, interrupted: bool) -> None:
    if engine.owner_pid != os.getpid() or engine.state not in (RUNNING, CLOSING):
        return
    if interrupted or engine in _terminate_at_exit:
        engine.terminate()
    else:
        with engine.lock:
            jobs = [job for job in engine.books.jobs if not job.collect and job.started]
        for job in jobs:
            job.cancel()
        engine.shutdown(wait=True, cancel_futures=False)


def _end_at_exit(ref: weakref.ref[Engine]) -> None:
    engine = ref()
    if engine is not None:
        _end(engine, _interrupted())


def _at_exit() -> None:
    """Before the interpreter exits: end every engine still open.

    After an uncaught Ctrl-C, and for pools (as ``multiprocessing.Pool`` does),
    workers are killed; an executor finishes its submitted tasks first, as
    ``concurrent.futures`` does, and its maps, but not those whose results
    someone had begun to read: nobody can read the rest any more.
    """
    interrupted = _interrupted()
    for engine in list(_live):
        _end(engine, interrupted)


def _forget_in_child() -> None:
    # A forked child (a ``fork`` worker, or the user's own fork) does not own them:
    # their dispatcher thread and workers stayed with the parent.
    if not _live and not _terminate_at_exit:
        return  # the zygote's spares: nothing to touch
    for engine in list(_live):
        engine.forked_away()
    _live.clear()
    _terminate_at_exit.clear()


call_before_threads_join(_at_exit)
os.register_at_fork(after_in_child=_forget_in_child)
