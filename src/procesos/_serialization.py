"""Layer 1: the one pickler for everything that crosses a process boundary.

cloudpickle (functions and classes from ``__main__``, lambdas and closures by
value, importable objects by reference) extended with the reducers that
``multiprocessing`` registers for its own objects (connections, sockets,
shared-memory arenas), so that queues, locks, pipes and manager proxies can be
passed to a child.

Every frame uses pickle protocol 5; buffers of at least the threshold (1 MiB,
``PROCESOS_SHM_THRESHOLD``) travel through shared memory, written once and
mapped by the receiver (:mod:`procesos._shm`). A frame that carries shared
memory is meant to be loaded once; ``dumps(obj, reusable=True)`` makes one that
can be loaded by many receivers, until :func:`discard`.

cloudpickle is imported on the first :func:`dumps` of something that is not
plain data (importing it and what it imports takes 20 to 30 ms): a program
that only imports procesos, and a ``spawn`` child whose result is plain data,
never pay for it.

Functions sent by value share their module's globals once unpickled, as they
did where they were defined: cloudpickle alone gives each pickle its own copy,
so a worker's ``initializer`` that sets a global of ``__main__`` set it for
itself only, and the tasks sent later never saw it. Here every function of a
module shares one namespace per process (in a child of procesos, the real
``__main__`` for ``__main__``'s functions; in the parent, a private one).
A name takes the value that arrives with each new function, as cloudpickle
would give it, unless code in this process has assigned it since: that value
stays (see :func:`_set_function_state`).
"""

from __future__ import annotations

import copyreg
import io
import pickle
import types
from collections import ChainMap
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler
from typing import Any

from ._shm import _transport
from ._shm._client import DataAbandoned
from ._shm._transport import (
    PendingCopy,
    copies_deferred,
    discard,
    finish_copies,
    get_threshold,
    plain_if_simple,
    reap,
    send_then_copy,
    set_threshold,
)

__all__ = [
    "PROTOCOL",
    "DataAbandoned",
    "FastPickler",
    "PendingCopy",
    "copies_deferred",
    "discard",
    "dumps",
    "dumps_deferred",
    "dumps_fast",
    "finish_copies",
    "get_threshold",
    "loads",
    "plain_if_simple",
    "reap",
    "send_then_copy",
    "set_threshold",
    "share_main_namespace",
]

PROTOCOL = _transport.PROTOCOL

_MISSING = object()
_OWNED = object()  # a name code in this process has assigned: arriving values leave it
# module name -> (the namespace its functions share here, name -> what we last
# put there, or _OWNED)
_namespaces: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}


def share_main_namespace() -> None:
    """In a child of procesos: functions of ``__main__`` live in the real ``__main__``.

    Called by every start method before the child unpickles anything. (In the
    parent, the real ``__main__`` is the user's script: never written to.)
    """
    import sys

    main = sys.modules.get("__main__")
    if main is not None:
        # Replaces the parent's private one, inherited by a fork. What is
        # there now (a fork's copy of the parent's script, the interpreter's
        # own names) is replaced by what arrives, unless assigned again here.
        _namespaces["__main__"] = (main.__dict__, dict(main.__dict__))


def _shared_globals(base: dict[str, Any]) -> dict[str, Any]:
    """The namespace that functions sent by value from module ``base["__name__"]`` share."""
    name = base["__name__"]
    entry = _namespaces.get(name)
    if entry is None:
        namespace = dict(base)
        entry = _namespaces[name] = (namespace, dict(namespace))
    # Nothing of *base* goes into a namespace that exists already: a child's
    # real __main__ must not get the parent's __file__ (the standard library's
    # spawn would then run the parent's script again in a grandchild).
    return entry[0]


class _SharedGlobals:
    """Stands for a function's globals in a pickle: the receiver's shared namespace."""

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base

    def __reduce__(self) -> tuple[Any, ...]:
        return _shared_globals, (self.base,)


def _set_function_state(func: types.FunctionType, state: tuple[Any, Any]) -> None:
    """cloudpickle's ``_function_setstate``, with the globals merged into the shared
    namespace: a name assigned by code in this process since a pickle last set it
    (a worker's initializer, say) keeps its value."""
    import cloudpickle  # type: ignore[import-untyped]

    attributes, slots = state
    namespace = func.__globals__
    entry = _namespaces.get(namespace.get("__name__", _MISSING))
    if entry is not None and entry[0] is namespace:
        installed = entry[1]
        for name, value in slots["__globals__"].items():
            previous = installed.get(name, _MISSING)
            current = namespace.get(name, _MISSING)
            if previous is _OWNED or (current is not _MISSING and current is not previous):
                installed[name] = _OWNED
                continue
            namespace[name] = installed[name] = value
        slots = {**slots, "__globals__": {}}
    cloudpickle.cloudpickle._function_setstate(func, (attributes, slots))


def _reduce_text_file(file: Any) -> tuple[Any, ...]:
    # cloudpickle sends a text file open for reading as a StringIO of what it
    # holds now: a snapshot that silently stops following the file. An open
    # file is refused as the standard pickler refuses a binary one; the
    # standard streams still travel by name.
    import sys

    if file is sys.stdout or file is sys.stderr:
        return getattr, (sys, "stdout" if file is sys.stdout else "stderr")
    raise TypeError(
        f"cannot pickle '{type(file).__module__}.{type(file).__qualname__}' object: an open "
        "file; pass its path and open it where it is used"
    )


def _rebuild_code(rebuild: Callable[..., types.CodeType], args: tuple[Any, ...],
                  filename: str) -> types.CodeType:
    return rebuild(*args).replace(co_filename=filename)


def _reduce_code_keeping_its_file(code: types.CodeType) -> tuple[Any, ...]:
    # cloudpickle names every function sent by value "<dynamic-code>"; keep
    # the real file so that a child's traceback shows where the code is (and
    # its source lines, when the file is there).
    import cloudpickle

    rebuild, args = cloudpickle.cloudpickle._code_reduce(code)
    return _rebuild_code, (rebuild, args, code.co_filename)


_pickler: type | None = None


def _cloud_pickler() -> type:
    """cloudpickle's pickler with multiprocessing's reducers, made (and
    cloudpickle imported) on first use."""
    global _pickler
    if _pickler is None:
        import cloudpickle

        class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
            """cloudpickle with multiprocessing's reducers for its own types, and
            functions sent by value sharing their module's globals once unpickled."""

            dispatch_table = ChainMap(
                {types.CodeType: _reduce_code_keeping_its_file,
                 io.TextIOWrapper: _reduce_text_file},
                _transport.reducers,
                ForkingPickler._extra_reducers,  # type: ignore[attr-defined]
                cloudpickle.Pickler.dispatch_table,
            )

            def _dynamic_function_reduce(self, func: types.FunctionType) -> tuple[Any, ...]:
                reduced = super()._dynamic_function_reduce(func)
                # As cloudpickle 3 makes it; anything else goes as cloudpickle made it.
                if (len(reduced) != 6
                        or reduced[5] is not cloudpickle.cloudpickle._function_setstate
                        or not isinstance(reduced[1][1], dict)
                        or not isinstance(reduced[1][1].get("__name__"), str)):
                    return reduced  # type: ignore[no-any-return]
                make, (code, base, *rest), state, items, mapping, _ = reduced
                return (make, (code, _SharedGlobals(base), *rest), state, items, mapping,
                        _set_function_state)

        Pickler.__module__, Pickler.__qualname__ = __name__, "Pickler"
        _pickler = Pickler
    return _pickler


class FastPickler(pickle.Pickler):
    """The C pickler with the same reducers, minus cloudpickle: functions by reference."""

    dispatch_table = ChainMap(
        _transport.reducers,
        ForkingPickler._extra_reducers,  # type: ignore[attr-defined]
        copyreg.dispatch_table,  # type: ignore[arg-type]
    )


def _fast_pickler() -> type:
    return FastPickler


def dumps(obj: Any, reusable: bool = False, channel: str | None = None) -> bytes:
    """Pickle *obj* for another process (*reusable*, *channel*: see ``_transport.pack``)."""
    return _transport.pack(obj, _cloud_pickler, reusable, channel)


def dumps_fast(obj: Any, channel: str | None = None) -> bytes:
    """Like :func:`dumps` with the C pickler: faster, but functions and classes
    travel by reference only (fine towards the parent, which has ``__main__``)."""
    return _transport.pack(obj, _fast_pickler, False, channel)


def dumps_deferred(obj: Any) -> tuple[bytes, list[PendingCopy]]:
    """:func:`dumps`, with the copy of its large parts into shared memory still to
    make: send the frame, then call ``finish_copies`` on the list (or, if it is
    never sent, ``abandon()`` each and :func:`discard` the frame)."""
    return _transport.pack_deferred(obj, _cloud_pickler)


def loads(data: bytes | bytearray | memoryview) -> Any:
    """Unpickle what :func:`dumps` produced."""
    return _transport.unpack(data)
