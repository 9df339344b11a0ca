"""Layer 5: the task engine behind ``procesos.Executor`` and ``procesos.Pool``.

Modules: :mod:`._api` (options, engines started and ended), :mod:`._messages`
(the wire format), :mod:`._worker` (the worker loop), :mod:`._workers` (the
parent's handle on a worker), :mod:`._dispatcher` (the engine and its
dispatcher thread), :mod:`._direct` (a caller reading its own result),
:mod:`._faults` (deaths, timeouts, retries), :mod:`._jobs` (calls, maps,
batches), :mod:`._batching` (chunk sizes), :mod:`._progress`, :mod:`._stats`,
:mod:`._crash` (why a worker died), :mod:`._threads` (thread limits).

The names below load :mod:`._api` on first use: a worker imports
:mod:`._worker` and what it needs, never the parent's machinery, so that it
starts quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._api import (
        Engine,
        MapJob,
        WorkerStats,
        create_engine,
        default_workers,
    )

__all__ = ["Engine", "MapJob", "WorkerStats", "create_engine", "default_workers"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import _api

        return getattr(_api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
