"""Contexts: the ``multiprocessing`` context API, bound to procesos' start methods.

``get_context("zygote" | "fork" | "spawn")`` returns a context whose
``Process``, ``Queue``, ``Lock``, ``Value``, ``Manager``, ... all use that
start method, exactly as ``multiprocessing.get_context`` does for the standard
library's. The default context follows ``set_start_method()``, else the
``PROCESOS_START_METHOD`` environment variable, else ``zygote``.
"""

from __future__ import annotations

import os
import sys
from multiprocessing.context import BaseContext
from typing import Any

from ._launch import START_METHODS
from ._launch._fork import ForkPopen
from ._launch._popen import BasePopen
from ._launch._spawn import SpawnPopen
from ._launch._zygote_client import ZygotePopen
from ._process import Process

__all__ = [
    "DefaultContext",
    "ProcesosContext",
    "default_context",
    "default_start_method",
    "popen_class",
]

_POPENS: dict[str, type[BasePopen]] = {
    "zygote": ZygotePopen,
    "fork": ForkPopen,
    "spawn": SpawnPopen,
}

ENV_START_METHOD = "PROCESOS_START_METHOD"


# The standard library's name for a fork server (its default on Linux from
# Python 3.14): a program that asks for one gets procesos' own.
_ALIASES = {"forkserver": "zygote"}


def _check_method(method: str) -> str:
    """*method*, or the method it names; ValueError when procesos has no such method."""
    method = _ALIASES.get(method, method)
    if method not in _POPENS:
        raise ValueError(
            f"unknown start method {method!r}; procesos offers {', '.join(START_METHODS)} "
            f"('forkserver' names zygote)"
        )
    return method


class ProcesosContext(BaseContext):
    """A context bound to one start method; its ``Process`` and sharing objects use it."""

    def __init__(self, method: str) -> None:
        self._name = _check_method(method)
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
        return _CONCRETE[_check_method(method)]

    def get_start_method(self, allow_none: bool = False) -> str:
        return self._name

    def Pool(
        self, processes: int | None = None, initializer: Any = None, initargs: Any = (),
        maxtasksperchild: int | None = None, **options: Any,
    ) -> Any:
        """A :class:`procesos.Pool` whose workers use this context's start method."""
        from ._pool import Pool  # layer 5, imported on use

        return Pool(processes, initializer, initargs, maxtasksperchild, context=self, **options)

    def get_all_start_methods(self) -> list[str]:
        """The start methods procesos offers, the default first."""
        first = default_start_method()
        return [first, *(m for m in START_METHODS if m != first)]

    # Queues and pipes whose large data travels through shared memory (layer 4,
    # imported when used, as the standard library's context does).
    def Queue(self, maxsize: int = 0) -> Any:
        """A ``multiprocessing.Queue`` whose large buffers travel without copies."""
        from ._sharing._queues import make_queue

        return make_queue(self.get_context(), maxsize)

    def JoinableQueue(self, maxsize: int = 0) -> Any:
        """A ``multiprocessing.JoinableQueue`` whose large buffers travel without copies."""
        from ._sharing._queues import make_joinable_queue

        return make_joinable_queue(self.get_context(), maxsize)

    def SimpleQueue(self) -> Any:
        """A ``multiprocessing.SimpleQueue`` whose large buffers travel without copies."""
        from ._sharing._queues import make_simple_queue

        return make_simple_queue(self.get_context())

    def Pipe(self, duplex: bool = True) -> Any:
        """A ``multiprocessing.Pipe`` whose ``send``/``recv`` carry large buffers without copies."""
        from ._sharing._queues import Pipe

        return Pipe(duplex)

    def __repr__(self) -> str:
        return f"<procesos context {self._name!r}>"


_CONCRETE = {method: ProcesosContext(method) for method in START_METHODS}


class DefaultContext(ProcesosContext):
    """The context behind the module-level functions of :mod:`procesos`."""

    def __init__(self) -> None:
        self._name = "default"
        self.Process = Process
        self._actual: ProcesosContext | None = None

    def get_context(self, method: str | None = None) -> ProcesosContext:  # type: ignore[override]
        if method is not None:
            return _CONCRETE[_check_method(method)]
        if self._actual is None:
            env = os.environ.get(ENV_START_METHOD, "").strip()
            if env:
                try:
                    self._actual = _CONCRETE[_check_method(env)]
                except ValueError as exc:
                    raise ValueError(f"{ENV_START_METHOD}={env!r}: {exc}") from None
            else:
                self._actual = _CONCRETE[START_METHODS[0]]
        return self._actual

    def set_start_method(self, method: str | None, force: bool = False) -> None:
        """Choose the default start method, once (again only with ``force=True``)."""
        if self._actual is not None and not force:
            raise RuntimeError("context has already been set")
        self._actual = None if method is None else _CONCRETE[_check_method(method)]

    def get_start_method(self, allow_none: bool = False) -> str:
        """The default start method (None only with ``allow_none`` and none chosen yet)."""
        if self._actual is None and allow_none:
            return None  # type: ignore[return-value]
        return self.get_context()._name

    def __repr__(self) -> str:
        return f"<procesos default context ({self.get_start_method()!r})>"


default_context = DefaultContext()


def default_start_method() -> str:
    """The start method a plain ``Process`` uses now."""
    return default_context.get_start_method()


def popen_class(method: str | None) -> type[BasePopen]:
    """The popen class of *method* (None: the default start method)."""
    return _POPENS[method or default_start_method()]


if sys.platform == "win32":  # pragma: no cover
    raise ImportError("procesos supports Linux and macOS; Windows is not supported yet")
