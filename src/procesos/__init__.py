"""procesos: process-based parallelism, the ``multiprocessing`` model without its traps.

``import procesos as mp`` in place of ``import multiprocessing as mp``: the
same names, plus results handed back by processes, any callable as a target,
no ``if __name__ == "__main__":`` guard, and a fast, safe default start method
(``zygote``).
"""

from __future__ import annotations

import importlib
import multiprocessing as _mp
import os as _os
from multiprocessing.context import (
    AuthenticationError,
    BufferTooShort,
    ProcessError,
)
from multiprocessing.process import active_children, current_process, parent_process
from typing import TYPE_CHECKING, Any

from ._compat import keep_the_current_directory_out_of_helpers as _keep_cwd_out
from ._errors import (
    ClusterConnectionError,
    PicklingError,
    ProcesosError,
    ProcessCrashedError,
    RemoteError,
    RemoteTraceback,
    SerializationError,
    TaskTimeoutError,
    TimeoutError,
    UnpicklingError,
)
from ._output import get_output, set_output
from ._proc import _exit  # noqa: F401  (registers the Ctrl-C exit handler)
from ._proc._context import ProcesosContext, default_context
from ._proc._process import Process

# Which process tree this process is in, decided now, before any start: the
# zygote is spawned with this environment (see _shm/_tree.py).
from ._shm import _tree  # noqa: F401

if TYPE_CHECKING:
    from . import shared_memory
    from ._engine._executor import Executor, ProcessPoolExecutor
    from ._engine._pool import Pool
    from ._launch._zygote_client import set_zygote_exclude, set_zygote_preload, zygote_pid
    from ._pool_errors import BrokenExecutorError, WorkerCrashedError
    from ._sharing._shared_array import SharedArray
    from ._trace._api import trace

__version__ = "0.1.0"

_keep_cwd_out()  # the standard library's resource tracker is started with -P too

_ctx = default_context

get_context = _ctx.get_context
get_start_method = _ctx.get_start_method
set_start_method = _ctx.set_start_method
get_all_start_methods = _ctx.get_all_start_methods
cpu_count = _ctx.cpu_count

Queue = _ctx.Queue
SimpleQueue = _ctx.SimpleQueue
JoinableQueue = _ctx.JoinableQueue
Pipe = _ctx.Pipe
Lock = _ctx.Lock
RLock = _ctx.RLock
Semaphore = _ctx.Semaphore
BoundedSemaphore = _ctx.BoundedSemaphore
Condition = _ctx.Condition
Event = _ctx.Event
Barrier = _ctx.Barrier
Value = _ctx.Value
Array = _ctx.Array
RawValue = _ctx.RawValue
RawArray = _ctx.RawArray
Manager = _ctx.Manager

freeze_support = _ctx.freeze_support
get_logger = _ctx.get_logger
log_to_stderr = _ctx.log_to_stderr
allow_connection_pickling = _ctx.allow_connection_pickling
set_executable = _ctx.set_executable
reducer = _mp.reducer


# Imported on first use, so that ``import procesos`` stays light: a spawn child
# and the zygote import procesos, and the engine pulls in asyncio, SharedArray
# numpy. Name -> (module, attribute).
_LAZY = {
    "Executor": ("procesos._engine._executor", "Executor"),
    "ProcessPoolExecutor": ("procesos._engine._executor", "ProcessPoolExecutor"),
    "Pool": ("procesos._engine._pool", "Pool"),
    "SharedArray": ("procesos._sharing._shared_array", "SharedArray"),
    "shared_memory": ("procesos.shared_memory", None),
    "trace": ("procesos._trace._api", "trace"),
    # Also concurrent.futures' BrokenProcessPool, whose module costs a child 13 ms.
    "BrokenExecutorError": ("procesos._pool_errors", "BrokenExecutorError"),
    "WorkerCrashedError": ("procesos._pool_errors", "WorkerCrashedError"),
    # The zygote's client (its socket, spawning it, the module mirror) loads at
    # a program's first start: not in a program or a child that starts nothing.
    "set_zygote_exclude": ("procesos._launch._zygote_client", "set_zygote_exclude"),
    "set_zygote_preload": ("procesos._launch._zygote_client", "set_zygote_preload"),
    "zygote_pid": ("procesos._launch._zygote_client", "zygote_pid"),
}


def set_forkserver_preload(module_names: list[str]) -> None:
    """The standard library's name for :func:`set_zygote_preload`.

    The zygote is procesos' forkserver: the modules named here are imported
    by the next zygote, so that every process it starts has them loaded.
    """
    from ._launch._zygote_client import set_zygote_preload

    set_zygote_preload(list(module_names))


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'procesos' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


if _os.environ.get("PROCESOS_TRACE"):  # a whole program recorded, from here to its exit
    from ._trace._api import trace_from_environment

    trace_from_environment()


__all__ = [
    "Array",
    "AuthenticationError",
    "Barrier",
    "BoundedSemaphore",
    "BrokenExecutorError",
    "BufferTooShort",
    "ClusterConnectionError",
    "Condition",
    "Event",
    "Executor",
    "JoinableQueue",
    "Lock",
    "Manager",
    "PicklingError",
    "Pipe",
    "Pool",
    "ProcesosContext",
    "ProcesosError",
    "Process",
    "ProcessCrashedError",
    "ProcessError",
    "ProcessPoolExecutor",
    "Queue",
    "RLock",
    "RawArray",
    "RawValue",
    "RemoteError",
    "RemoteTraceback",
    "Semaphore",
    "SerializationError",
    "SharedArray",
    "SimpleQueue",
    "TaskTimeoutError",
    "TimeoutError",
    "UnpicklingError",
    "Value",
    "WorkerCrashedError",
    "active_children",
    "allow_connection_pickling",
    "cpu_count",
    "current_process",
    "freeze_support",
    "get_all_start_methods",
    "get_context",
    "get_logger",
    "get_output",
    "get_start_method",
    "log_to_stderr",
    "parent_process",
    "set_executable",
    "set_forkserver_preload",
    "set_output",
    "set_start_method",
    "set_zygote_exclude",
    "set_zygote_preload",
    "shared_memory",
    "trace",
    "zygote_pid",
]
