"""``Queue``, ``JoinableQueue``, ``SimpleQueue`` and ``Pipe`` that carry large data without copies.

The standard library's classes, with one change: objects are pickled by
:mod:`procesos._serialization` (cloudpickle, protocol 5, buffers of at least
1 MiB through shared memory) in ``put``/``send``, and unpickled in
``get``/``recv``. The API is the standard library's. Unlike the standard
library's queue, ``put`` pickles at once, in the caller's thread (small
immutable data excepted, which the feeder thread pickles as usual): an error
is raised there, and changing the object after ``put`` does not change what is
received.

``Queue``, ``SimpleQueue`` and ``Connection`` send a message before its large
parts are copied into shared memory, and copy them after (``put``/``send``
still return only then): the receiver maps the memory meanwhile. A message
whose copy fails (an error, Ctrl-C, the sender killed) is skipped by
``get``/``recv``, as if never sent. ``JoinableQueue`` copies first: a
skipped message would leave its ``task_done()`` owed forever.

The feeder thread of ``Queue`` and ``JoinableQueue`` is procesos' own: what it
is given is already plain (small immutable data, or a pickled frame), so it
pickles with ``pickle.dumps`` (the standard library's ``ForkingPickler.dumps``
costs ten times more for a small tuple) and writes every message waiting in
its buffer with one system call, in the format ``Connection.recv_bytes``
reads.
"""

from __future__ import annotations

import errno
import multiprocessing.queues as mp_queues
import os
import pickle
import struct
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from multiprocessing import connection, reduction, util
from multiprocessing.context import BaseContext
from typing import Any

from .._compat import queue_internals_known, queue_sentinel
from .._serialization import (
    PROTOCOL,
    DataAbandoned,
    dumps_frame,
    is_small_immutable,
    is_small_plain,
    loads,
    register_descriptor_reducer,
)

__all__ = ["Connection", "JoinableQueue", "Pipe", "Queue", "SimpleQueue"]


class _Frame:
    """What a procesos queue carries for anything but small immutable data."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        return _Frame, (self.data,)


_BATCH_BYTES = 1 << 16
_HEADER = struct.Struct("!i").pack
_SENTINEL = queue_sentinel()
# The batching feeder and get()'s fast path rely on Queue's private fields;
# where they differ, the standard library's own (see _compat).
_INTERNALS_KNOWN = queue_internals_known()


def _feed(
    buffer: deque[Any],
    notempty: threading.Condition,
    send_bytes: Callable[[bytes], None],
    write: Callable[[bytes], None],
    writelock: Any,
    reader_close: Callable[[], None],
    writer_close: Callable[[], None],
    ignore_epipe: bool,
    onerror: Callable[[BaseException, Any], None],
    queue_sem: Any,
) -> None:
    """The feeder thread: the standard library's ``Queue._feed``, batched.

    Everything in *buffer* was put there by procesos' ``put``: small immutable
    data or a :class:`_Frame`, both of which ``pickle.dumps`` handles. The
    messages waiting are framed as ``send_bytes`` frames them and written
    together, up to 64 KiB a write; a larger message goes alone.
    """
    popleft = buffer.popleft
    dumps_plain = pickle.dumps
    pending: list[Any] = []  # the messages of the write being prepared, for onerror
    chunks: list[bytes] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if chunks:
            data = b"".join(chunks)
            with writelock:
                write(data)
        chunks.clear()
        pending.clear()
        size = 0

    def lost(exc: Exception, objs: list[Any]) -> bool:
        """Report *objs* as not sent, as the standard library does; True: stop feeding."""
        if ignore_epipe and getattr(exc, "errno", 0) == errno.EPIPE:
            return True
        if util.is_exiting():
            util.info("error in queue thread: %s", exc)
            return True
        # Each message not sent counts as taken off the queue, so that its
        # size stays right.
        for obj in objs:
            queue_sem.release()
            onerror(exc, obj)
        return False

    while True:
        try:
            with notempty:
                if not buffer:
                    notempty.wait()
            while buffer:
                obj = popleft()
                if obj is _SENTINEL:
                    try:
                        flush()
                    except Exception as exc:
                        lost(exc, pending[:])
                    reader_close()
                    writer_close()
                    return
                try:
                    data = dumps_plain(obj, 5)
                except Exception as exc:  # put() lets through nothing that fails here
                    if lost(exc, [obj]):
                        return
                    continue
                if len(data) >= _BATCH_BYTES:
                    try:
                        flush()
                    finally:
                        pending.append(obj)  # not sent either, if that write failed
                    with writelock:
                        send_bytes(data)
                    pending.clear()
                    continue
                pending.append(obj)
                chunks.append(_HEADER(len(data)))
                chunks.append(data)
                size += len(data)
                if size >= _BATCH_BYTES:
                    flush()
            flush()
        except Exception as exc:
            objs = pending[:]
            chunks.clear()
            pending.clear()
            size = 0
            if lost(exc, objs):
                return


class _BatchingFeeder(mp_queues.Queue):  # type: ignore[type-arg]
    """Starts :func:`_feed` where the standard library starts its own feeder."""

    def _start_thread(self) -> None:
        if not _INTERNALS_KNOWN:
            super()._start_thread()  # type: ignore[misc]
            return
        # The standard library's _start_thread (3.11 to 3.13), with our _feed.
        self._buffer.clear()  # type: ignore[attr-defined]
        writer = self._writer  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=_feed,
            args=(self._buffer, self._notempty,  # type: ignore[attr-defined]
                  writer.send_bytes, writer._send,
                  self._wlock, self._reader.close, writer.close,  # type: ignore[attr-defined]
                  self._ignore_epipe, self._on_queue_feeder_error,  # type: ignore[attr-defined]
                  self._sem),  # type: ignore[attr-defined]
            name="QueueFeederThread",
            daemon=True,
        )
        try:
            self._thread.start()
        except BaseException:
            # gh-109047: starting a thread can fail at shutdown.
            self._thread = None  # type: ignore[assignment]
            raise
        if not self._joincancelled:  # type: ignore[attr-defined]
            self._jointhread = util.Finalize(
                self._thread, mp_queues.Queue._finalize_join,  # type: ignore[attr-defined]
                [weakref.ref(self._thread)], exitpriority=-5,
            )
        self._close = util.Finalize(
            self, mp_queues.Queue._finalize_close,  # type: ignore[attr-defined]
            [self._buffer, self._notempty], exitpriority=10,  # type: ignore[attr-defined]
        )


_std_put = mp_queues.Queue.put
_std_get = mp_queues.Queue.get
_read = os.read
_SIZE = struct.Struct("!i").unpack
_LONG_SIZE = struct.Struct("!Q").unpack


def _read_rest(fd: int, first: bytes, size: int) -> bytes:
    """*first* completed to *size* bytes from *fd* (as ``Connection._recv``)."""
    chunks = [first]
    remaining = size - len(first)
    while remaining > 0:
        chunk = _read(fd, remaining)
        if not chunk:
            if remaining == size:
                raise EOFError
            raise OSError("got end of file during message")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _recv_message(fd: int) -> bytes:
    """One message, read as ``Connection.recv_bytes`` reads it, in fewer steps."""
    header = _read(fd, 4)
    if len(header) != 4:
        header = _read_rest(fd, header, 4)
    (size,) = _SIZE(header)
    if size == -1:
        (size,) = _LONG_SIZE(_read_rest(fd, b"", 8))
    data = _read(fd, size)
    return data if len(data) == size else _read_rest(fd, data, size)


class Queue(_BatchingFeeder):
    """``multiprocessing.Queue``, with large buffers through shared memory."""

    # Small messages must cost no more than the standard library's: its methods
    # are called directly (no super() object), and what it returns is checked
    # inline (no extra call).
    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        if is_small_immutable(obj):
            _std_put(self, obj, block, timeout)
            return
        # Small immutable data pickles the same later, in the feeder thread, as now;
        # anything else now, its large parts copied once it is in the buffer.
        dumps_frame(obj).send(lambda data: _std_put(self, _Frame(data), block, timeout))

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if (block and timeout is None and _INTERNALS_KNOWN
                    and not self._closed):  # type: ignore[attr-defined]
                with self._rlock:  # type: ignore[attr-defined]
                    data = _recv_message(self._reader.fileno())  # type: ignore[attr-defined]
                self._sem.release()  # type: ignore[attr-defined]
                item = pickle.loads(data)
            else:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                item = _std_get(self, block, remaining)
            if type(item) is not _Frame:
                return item
            try:
                return loads(item.data)
            except DataAbandoned:
                continue  # its put() failed: as if it had never been put


class JoinableQueue(_BatchingFeeder, mp_queues.JoinableQueue):  # type: ignore[type-arg]
    """``multiprocessing.JoinableQueue``, with large buffers through shared memory."""

    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        if is_small_immutable(obj):
            super().put(obj, block, timeout)
            return
        # Copied first: a message whose copy failed after it was put would be
        # skipped by get(), and its task_done() owed forever.
        dumps_frame(obj).send(lambda data: super(JoinableQueue, self).put(
            _Frame(data), block, timeout), copy_first=True)

    get = Queue.get


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
        if is_small_plain(obj):  # what dumps() would make, without its deferral's cost
            frame = pickle.dumps(obj, PROTOCOL)
            with self._wlock:  # type: ignore[attr-defined]
                self._writer.send_bytes(frame)
            return

        def send(data: bytes) -> None:
            with self._wlock:  # type: ignore[attr-defined]
                self._writer.send_bytes(data)

        dumps_frame(obj).send(send)

    def get(self) -> Any:
        while True:
            with self._rlock:  # type: ignore[attr-defined]
                frame = _recv_message(self._reader.fileno())
            try:
                return loads(frame)
            except DataAbandoned:
                continue  # its put() failed: as if it had never been put


class Connection(connection.Connection):
    """A ``multiprocessing`` connection whose ``send``/``recv`` use procesos' pickler."""

    def send(self, obj: Any) -> None:
        self._check_closed()  # type: ignore[attr-defined]
        self._check_writable()  # type: ignore[attr-defined]
        if is_small_plain(obj):  # what dumps() would make, without its deferral's cost
            self.send_bytes(pickle.dumps(obj, PROTOCOL))
            return
        dumps_frame(obj).send(self.send_bytes)

    def recv(self) -> Any:
        """The next object sent. A message whose ``send()`` failed while its large
        parts were copied (an error, Ctrl-C, the sender killed) is skipped, as if
        never sent (``poll()`` may have counted it)."""
        self._check_closed()  # type: ignore[attr-defined]
        self._check_readable()  # type: ignore[attr-defined]
        while True:
            try:
                return loads(_recv_message(self.fileno()))
            except DataAbandoned:
                continue


def _rebuild_connection(df: Any, readable: bool, writable: bool) -> Connection:
    return Connection(df.detach(), readable, writable)


def _reduce_connection(conn: Connection) -> tuple[Any, ...]:
    df = reduction.DupFd(conn.fileno())
    return _rebuild_connection, (df, conn.readable, conn.writable)


register_descriptor_reducer(Connection, _reduce_connection)


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
