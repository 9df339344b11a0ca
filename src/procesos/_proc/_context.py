"""Contexts: the ``multiprocessing`` context API, bound to procesos' start methods.

``get_context("zygote" | "fork" | "spawn")`` returns a context whose
``Process``, ``Queue``, ``Lock``, ``Value``, ``Manager``, ... all use that
start method, exactly as ``multiprocessing.get_context`` does for the standard
library's. The default context follows ``set_start_method()``, else the
``PROCESOS_START_METHOD`` environment variable, else ``zygote``.
"""

from __future__ import annotations

import sys
from multiprocessing.context import BaseContext
from typing import Any

from .._launch import START_METHODS
from .._launch._methods import (
    ENV_START_METHOD,
    check_method,
    chosen_method,
    default_method,
    set_default,
)
from ._process import Process

__all__ = [
    "ENV_START_METHOD",
    "DefaultContext",
    "ProcesosContext",
    "default_context",
    "default_start_method",
    "resolve_context",
]


class ProcesosContext(BaseContext):
    """A context bound to one start method; its ``Process`` and sharing objects use it."""

    def __init__(self, method: str) -> None:
        self._name = check_method(method)
        # A Process subclass per method, like multiprocessing's ForkProcess & co.,
        # importable from this module so that it is pickled by reference (by
        # value, every child would rebuild the class: a millisecond per start).
        name = f"{method.capitalize()}Process"
        self.Process = type(
            name,
            (Process,),
            {"_method": method, "__module__": __name__, "__qualname__": name,
             "__doc__": Process.__doc__},
        )
        globals()[name] = self.Process

    def get_context(self, method: str | None = None) -> ProcesosContext:  # type: ignore[override]
        if method is None:
            return self
        return _CONCRETE[check_method(method)]

    def get_start_method(self, allow_none: bool = False) -> str:
        return self._name

    def Pool(
        self, processes: int | None = None, initializer: Any = None, initargs: Any = (),
        maxtasksperchild: int | None = None, **options: Any,
    ) -> Any:
        """A :class:`procesos.Pool` whose workers use this context's start method."""
        from .._engine._pool import Pool  # layer 5, imported on use

        return Pool(processes, initializer, initargs, maxtasksperchild, context=self, **options)

    def get_all_start_methods(self) -> list[str]:
        """The start methods procesos offers, the default first."""
        first = default_start_method()
        return [first, *(m for m in START_METHODS if m != first)]

    # Queues and pipes whose large data travels through shared memory (layer 4,
    # imported when used, as the standard library's context does).
    def Queue(self, maxsize: int = 0) -> Any:
        """A ``multiprocessing.Queue`` whose large buffers travel without copies."""
        from .._sharing._queues import make_queue

        return make_queue(self.get_context(), maxsize)

    def JoinableQueue(self, maxsize: int = 0) -> Any:
        """A ``multiprocessing.JoinableQueue`` whose large buffers travel without copies."""
        from .._sharing._queues import make_joinable_queue

        return make_joinable_queue(self.get_context(), maxsize)

    def SimpleQueue(self) -> Any:
        """A ``multiprocessing.SimpleQueue`` whose large buffers travel without copies."""
        from .._sharing._queues import make_simple_queue

        return make_simple_queue(self.get_context())

    def Pipe(self, duplex: bool = True) -> Any:
        """A ``multiprocessing.Pipe`` whose ``send``/``recv`` carry large buffers without copies."""
        from .._sharing._queues import Pipe

        return Pipe(duplex)

    def Manager(self) -> Any:
        """A started :class:`procesos.managers.SyncManager` whose server this
        context's start method starts; proxies' calls send ``__main__``'s
        functions and classes by value (the server never runs your script)."""
        from .._sharing._managers import start_manager

        return start_manager(self.get_context())

    def __repr__(self) -> str:
        return f"<procesos context {self._name!r}>"


_CONCRETE = {method: ProcesosContext(method) for method in START_METHODS}


class DefaultContext(ProcesosContext):
    """The context behind the module-level functions of :mod:`procesos`."""

    def __init__(self) -> None:
        self._name = "default"
        self.Process = Process

    def get_context(self, method: str | None = None) -> ProcesosContext:  # type: ignore[override]
        if method is not None:
            return _CONCRETE[check_method(method)]
        return _CONCRETE[default_method()]

    def set_start_method(self, method: str | None, force: bool = False) -> None:
        """Choose the default start method, once (again only with ``force=True``)."""
        if chosen_method() is not None and not force:
            raise RuntimeError("context has already been set")
        set_default(method)

    def get_start_method(self, allow_none: bool = False) -> str:
        """The default start method (None only with ``allow_none`` and none chosen yet)."""
        if allow_none:
            return chosen_method()  # type: ignore[return-value]
        return default_method()

    def __repr__(self) -> str:
        return f"<procesos default context ({self.get_start_method()!r})>"


default_context = DefaultContext()


def default_start_method() -> str:
    """The start method a plain ``Process`` uses now."""
    return default_method()


def resolve_context(context: object) -> ProcesosContext:
    """A procesos context from None, a start method name, or any multiprocessing context."""
    if context is None:
        return default_context.get_context()
    if isinstance(context, ProcesosContext):
        return context.get_context()
    if isinstance(context, str):
        return default_context.get_context(context)
    method = getattr(context, "get_start_method", None)
    if callable(method):
        name = method()
        return default_context.get_context("zygote" if name == "forkserver" else name)
    raise TypeError(f"context must be a start method name or a context, got {context!r}")


if sys.platform == "win32":  # pragma: no cover
    raise ImportError("procesos supports Linux and macOS; Windows is not supported yet")
