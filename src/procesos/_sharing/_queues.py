"""``Queue``, ``JoinableQueue``, ``SimpleQueue`` and ``Pipe`` that carry large data without copies.

The standard library's classes, with one change: objects are pickled by
:mod:`procesos._serialization` (cloudpickle, protocol 5, buffers of at least
1 MiB through shared memory) in ``put``/``send``, and unpickled in
``get``/``recv``. The API is the standard library's. Unlike the standard
library's queue, ``put`` pickles at once, in the caller's thread (small
immutable data excepted, which the feeder thread pickles as usual): an error
is raised there, and changing the object after ``put`` does not change what is
received.
"""

from __future__ import annotations

import multiprocessing.queues as mp_queues
from multiprocessing import connection, reduction
from multiprocessing.context import BaseContext
from typing import Any

from .._serialization import discard, dumps, loads

__all__ = ["Connection", "JoinableQueue", "Pipe", "Queue", "SimpleQueue"]


class _Frame:
    """What a procesos queue carries for anything but small immutable data."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        return _Frame, (self.data,)


_IMMUTABLE = frozenset({int, float, bool, complex, type(None)})
_SMALL_TEXT = 1 << 14


def _immutable_and_small(obj: Any) -> bool:
    # The standard library's feeder thread pickles these exactly as procesos
    # would, and later is the same as now for immutable data: no second pickling.
    kind = type(obj)
    if kind in _IMMUTABLE:
        return True
    if kind is str or kind is bytes:
        return len(obj) < _SMALL_TEXT
    if kind is not tuple or len(obj) > 32:
        return False
    for item in obj:
        kind = type(item)
        if kind not in _IMMUTABLE and not (
            (kind is str or kind is bytes) and len(item) < _SMALL_TEXT
        ):
            return False
    return True


def _wrap(obj: Any) -> Any:
    return obj if _immutable_and_small(obj) else _Frame(dumps(obj))


def _unwrap(item: Any) -> Any:
    return loads(item.data) if type(item) is _Frame else item


def _forget(item: Any) -> None:
    if type(item) is _Frame:
        discard(item.data)


_std_put = mp_queues.Queue.put
_std_get = mp_queues.Queue.get


class Queue(mp_queues.Queue):  # type: ignore[type-arg]
    """``multiprocessing.Queue``, with large buffers through shared memory."""

    # Small messages must cost no more than the standard library's: its methods
    # are called directly (no super() object), and what it returns is checked
    # inline (no extra call).
    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        if _immutable_and_small(obj):
            _std_put(self, obj, block, timeout)
            return
        item = _Frame(dumps(obj))
        try:
            _std_put(self, item, block, timeout)
        except BaseException:
            discard(item.data)
            raise

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        item = _std_get(self, block, timeout)
        return loads(item.data) if type(item) is _Frame else item


class JoinableQueue(mp_queues.JoinableQueue):  # type: ignore[type-arg]
    """``multiprocessing.JoinableQueue``, with large buffers through shared memory."""

    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        item = _wrap(obj)
        try:
            super().put(item, block, timeout)
        except BaseException:
            _forget(item)
            raise

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        return _unwrap(super().get(block, timeout))


class SimpleQueue(mp_queues.SimpleQueue):  # type: ignore[type-arg]
    """``multiprocessing.SimpleQueue``, with large buffers through shared memory.

    Its two connections are procesos :class:`Connection` objects too, so code
    that reads or writes ``_reader``/``_writer`` directly (``multiprocessing.Pool``,
    ``concurrent.futures``) speaks the same format as ``put``/``get``.
    """

    def __init__(self, *, ctx: BaseContext) -> None:
        super().__init__(ctx=ctx)
        self._reader: Connection = _adopt(self._reader)
        self._writer: Connection = _adopt(self._writer)
        self._poll = self._reader.poll

    def put(self, obj: Any) -> None:
        frame = dumps(obj)
        try:
            with self._wlock:  # type: ignore[attr-defined]
                self._writer.send_bytes(frame)
        except BaseException:
            discard(frame)
            raise

    def get(self) -> Any:
        with self._rlock:  # type: ignore[attr-defined]
            frame = self._reader.recv_bytes()
        return loads(frame)


class Connection(connection.Connection):
    """A ``multiprocessing`` connection whose ``send``/``recv`` use procesos' pickler."""

    def send(self, obj: Any) -> None:
        self._check_closed()  # type: ignore[attr-defined]
        self._check_writable()  # type: ignore[attr-defined]
        frame = dumps(obj)
        try:
            self.send_bytes(frame)
        except BaseException:
            discard(frame)
            raise

    def recv(self) -> Any:
        self._check_closed()  # type: ignore[attr-defined]
        self._check_readable()  # type: ignore[attr-defined]
        return loads(self.recv_bytes())


def _rebuild_connection(df: Any, readable: bool, writable: bool) -> Connection:
    return Connection(df.detach(), readable, writable)


def _reduce_connection(conn: Connection) -> tuple[Any, ...]:
    df = reduction.DupFd(conn.fileno())
    return _rebuild_connection, (df, conn.readable, conn.writable)


reduction.register(Connection, _reduce_connection)


def Pipe(duplex: bool = True) -> tuple[Connection, Connection]:
    """Two connected ends, like ``multiprocessing.Pipe``."""
    first, second = connection.Pipe(duplex)
    return _adopt(first), _adopt(second)


def _adopt(conn: Any) -> Connection:
    handle = conn._handle
    conn._handle = None  # ours now: the standard library's object must not close it
    return Connection(handle, conn.readable, conn.writable)


def make_queue(ctx: BaseContext, maxsize: int = 0) -> Queue:
    return Queue(maxsize, ctx=ctx)


def make_joinable_queue(ctx: BaseContext, maxsize: int = 0) -> JoinableQueue:
    return JoinableQueue(maxsize, ctx=ctx)


def make_simple_queue(ctx: BaseContext) -> SimpleQueue:
    return SimpleQueue(ctx=ctx)
