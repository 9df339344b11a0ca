"""The task engine's exceptions that are also ``concurrent.futures``' ``BrokenProcessPool``.

Apart from :mod:`procesos._errors` because their base imports
``concurrent.futures.process`` (13 ms): the engine loads them, a child that
only runs a :class:`~procesos.Process` target does not.
"""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ._errors import ProcesosError, ProcessCrashedError, UnpicklingError

__all__ = ["BrokenExecutorError", "ClusterWorkerCrashedError", "TaskUnpicklingError",
           "WorkerCrashedError"]


class WorkerCrashedError(ProcessCrashedError, BrokenProcessPool):
    """A pool worker died while it held a task; only that task fails.

    It is also the standard library's ``BrokenProcessPool``, so that code written
    for ``concurrent.futures`` catches it; unlike there, the pool goes on.
    """


class TaskUnpicklingError(UnpicklingError, BrokenProcessPool):
    """A task's function or arguments could not be loaded in its worker, or its
    result in the parent; only that task fails.

    It is also the standard library's ``BrokenProcessPool``, which
    ``ProcessPoolExecutor`` raises then (the failure breaks its pool), so that
    code written for ``concurrent.futures`` catches it; unlike there, the pool
    goes on.
    """


class BrokenExecutorError(ProcesosError, BrokenProcessPool):
    """The task engine itself cannot go on (not raised for a single task's failure).

    It is also the standard library's ``concurrent.futures.BrokenExecutor``
    and ``BrokenProcessPool`` (what ``ProcessPoolExecutor`` raises when its
    initializer fails), so that code written for it catches it.
    """


class ClusterWorkerCrashedError(WorkerCrashedError):
    """A cluster worker (Dask, Ray) died while it held a task.

    The cluster reports which worker died, not how: ``pid`` and ``exitcode``
    are None; ``name`` is the worker's address or id, ``task`` the task.
    """

    def __init__(self, message: str, worker: str, task: str) -> None:
        ProcesosError.__init__(self, message)
        self.name = worker
        self.pid = None
        self.exitcode = None
        self.hint = ""
        self.task = task

    def __reduce__(self) -> tuple[type[ProcessCrashedError], tuple[Any, ...]]:
        return (type(self), (str(self), self.name, self.task))
