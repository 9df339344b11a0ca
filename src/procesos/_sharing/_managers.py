"""Managers whose server and clients understand the user's script: the standard
library's managers, their connections sending ``__main__``'s objects by value.

A manager's server started by procesos never imports the user's script (no
child of procesos does), so a proxy call whose arguments the standard library
pickles by reference into ``__main__`` (an instance of a class defined there,
one of its functions for ``Pool.map``) could not be unpickled in the server
(``AttributeError: Can't get attribute``). The managers here send, through
connections of their own serializer ``"procesos"``, the C pickler's stream as
the standard library does, else cloudpickle's, in-band
(:func:`~procesos._serialization.dumps_in_band`); both sides read it with
``pickle.loads`` as before, so a client of these managers can also talk to a
standard-library server. A class sent by value comes back as the sender's own.
"""

from __future__ import annotations

from multiprocessing import connection
from multiprocessing import managers as _managers
from multiprocessing.context import BaseContext
from typing import Any

from .._proc._context import default_context
from .._serialization import dumps_in_band

__all__ = ["SERIALIZER", "BaseManager", "SharedMemoryManager", "SyncManager",
           "serializer_for", "start_manager"]


class ManagerConnection(connection.Connection):
    """A manager's connection: ``send`` pickles with :func:`dumps_in_band`."""

    def send(self, obj: Any) -> None:
        """Send a picklable object (``__main__``'s functions and classes by value)."""
        self._check_closed()  # type: ignore[attr-defined]
        self._check_writable()  # type: ignore[attr-defined]
        self._send_bytes(dumps_in_band(obj))  # type: ignore[attr-defined]


class ManagerListener(connection.Listener):
    """The server's listener: the connections it accepts are :class:`ManagerConnection`."""

    def accept(self) -> ManagerConnection:
        conn = super().accept()
        conn.__class__ = ManagerConnection  # the same object, another send()
        return conn  # type: ignore[return-value]


def manager_client(address: Any, family: str | None = None,
                   authkey: bytes | None = None) -> ManagerConnection:
    """``multiprocessing.connection.Client``, returning a :class:`ManagerConnection`."""
    conn = connection.Client(address, family, authkey)
    conn.__class__ = ManagerConnection
    return conn  # type: ignore[return-value]


class _SerializerName(str):
    """The serializer's name, which a token's process must know: pickled as the
    call that registers it (importing this module) where it is unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _registered_serializer, ()


def _registered_serializer() -> str:
    return SERIALIZER


#: The serializer of procesos' managers (and of their proxies, which carry it
#: into every process they are sent to).
SERIALIZER = _SerializerName("procesos")
# Public in CPython (3.11 to 3.14), absent from typeshed.
_managers.listener_client[SERIALIZER] = (  # type: ignore[attr-defined]
    ManagerListener, manager_client)


def serializer_for(serializer: str) -> str:
    """procesos' serializer for ``"pickle"`` (its own flavour of it); others as given."""
    return SERIALIZER if serializer == "pickle" else serializer


def _context(ctx: BaseContext | None) -> BaseContext:
    return ctx or default_context.get_context()


class _StartedByProcesos:
    """The ``__init__`` of procesos' managers: the standard library's, with
    procesos' default context and serializer unless given others."""

    def __init__(self, address: Any = None, authkey: bytes | None = None,
                 serializer: str = "pickle", ctx: BaseContext | None = None,
                 **options: Any) -> None:
        super().__init__(address, authkey, serializer_for(serializer),  # type: ignore[call-arg]
                         _context(ctx), **options)


class BaseManager(_StartedByProcesos, _managers.BaseManager):
    """``multiprocessing.managers.BaseManager``, its server started by procesos."""


class SyncManager(_StartedByProcesos, _managers.SyncManager):
    """``multiprocessing.managers.SyncManager`` (what ``procesos.Manager()`` returns)."""


class SharedMemoryManager(_StartedByProcesos, _managers.SharedMemoryManager):
    """``multiprocessing.managers.SharedMemoryManager``, its server started by procesos."""


def _pool(processes: int | None = None, initializer: Any = None, initargs: Any = (),
          maxtasksperchild: int | None = None, context: Any = None) -> Any:
    """What a manager's ``Pool()`` makes in its server: the standard library's
    ``Pool`` on procesos' default context there, whose queues send ``__main__``'s
    functions by value (the standard library's would look them up in the
    server's ``__main__``, which is not the user's script)."""
    from multiprocessing.pool import Pool

    return Pool(processes, initializer, initargs, maxtasksperchild,
                context=context or default_context.get_context())


SyncManager.register("Pool", _pool, _managers.PoolProxy)  # type: ignore[attr-defined]


def start_manager(ctx: BaseContext) -> SyncManager:
    """A started :class:`SyncManager` whose server *ctx* starts (a context's ``Manager()``)."""
    manager = SyncManager(ctx=ctx)
    manager.start()
    return manager
