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
"""

from __future__ import annotations

import copyreg
import pickle
import types
from collections import ChainMap
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler
from typing import Any

from ._shm import _transport
from ._shm._transport import discard, get_threshold, set_threshold

__all__ = [
    "PROTOCOL",
    "FastPickler",
    "discard",
    "dumps",
    "dumps_fast",
    "get_threshold",
    "loads",
    "set_threshold",
]

PROTOCOL = _transport.PROTOCOL


def _rebuild_code(rebuild: Callable[..., types.CodeType], args: tuple[Any, ...],
                  filename: str) -> types.CodeType:
    return rebuild(*args).replace(co_filename=filename)


def _reduce_code_keeping_its_file(code: types.CodeType) -> tuple[Any, ...]:
    # cloudpickle names every function sent by value "<dynamic-code>"; keep
    # the real file so that a child's traceback shows where the code is (and
    # its source lines, when the file is there).
    import cloudpickle  # type: ignore[import-untyped]

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
            """cloudpickle with multiprocessing's reducers for its own types."""

            dispatch_table = ChainMap(
                {types.CodeType: _reduce_code_keeping_its_file},
                _transport.reducers,
                ForkingPickler._extra_reducers,  # type: ignore[attr-defined]
                cloudpickle.Pickler.dispatch_table,
            )

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


def dumps(obj: Any, reusable: bool = False) -> bytes:
    """Pickle *obj* for another process."""
    return _transport.pack(obj, _cloud_pickler, reusable)


def dumps_fast(obj: Any) -> bytes:
    """Like :func:`dumps` with the C pickler: faster, but functions and classes
    travel by reference only (fine towards the parent, which has ``__main__``)."""
    return _transport.pack(obj, _fast_pickler)


def loads(data: bytes | bytearray | memoryview) -> Any:
    """Unpickle what :func:`dumps` produced."""
    return _transport.unpack(data)
