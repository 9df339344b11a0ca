"""The wire format between the engine and its workers: the only place that defines it.

Each worker has two pipes, one each way (``multiprocessing.Pipe(duplex=False)``),
used by nobody else, so a worker killed mid-write can never corrupt another's
channel.
A message is one frame::

    !Q  length of header + payload
    !I  length of header
    header    marshal dump of a tuple of plain values whose first element is a tag
    payload   the rest of the body: user objects (see :func:`encode_objects`)

The tags (``RUN``, ``DONE``, ...), the call styles and the progress slot's
layout are constants of :mod:`._states`, which the engine and the worker both
import.

A payload is a plain pickle stream, or, when it holds a buffer of at least the
shared-memory threshold, a :mod:`procesos._serialization` frame whose large
buffers wait in shared memory (:func:`is_shared`): the receiver maps them. The
sender discards such a frame when its receiver can no longer load it (a
worker that died or retired before reading its batch).

Parent -> worker

``(RUN, batch_id, seq_base, style, tracked, timed, fns)`` + payload *items*
    Run a batch. *fns* lists ``(fn_id, pickled fn or None)`` in the order in
    which both sides update their function caches (None: the worker has it).
    *style*: ``ONE`` calls ``fn(item)``, ``STAR`` calls ``fn(*item)`` (fn is
    ``fns[0]``), ``CALL`` items are ``(index into fns, args, kwargs)``.
    *tracked*: write the sequence number ``seq_base + i`` of each item into the
    worker's progress slot before running it (else only ``seq_base``, once);
    *timed*: also write its start time.
``(STOP,)``
    Finish and exit.

Worker -> parent

``(READY, pid)``
    The initializer has run; the worker is about to read work.
``(INIT_FAILED, error_frame)``
    The initializer raised; the worker exits.
``(DONE, batch_id, offset, count, errors, busy_ns, ended_ns, pickle_ns)`` + payload *values*
    Items ``offset .. offset+count-1`` of a batch have run (in order; a batch
    reports in one or more pieces). *errors*: ``((i, error_frame), ...)``
    with *i* relative to *offset* (its value is None). *busy_ns*: the time
    they ran, ending at *ended_ns* (``time.monotonic_ns()``, one clock for
    every process); *pickle_ns*: the time their values took to pickle (what
    a trace shows, :mod:`procesos._trace._tasks`).
``(UNREADABLE, batch_id, error_frame)``
    The items of a batch could not be unpickled; none ran.
``(RETIRE, batch_id or None, next_offset)``
    The worker leaves (memory or task limit): items from *next_offset* of
    *batch_id* and every later batch never ran.

Error frames are :mod:`procesos._outcome` frames. A progress slot is
``SLOT_WIDTH`` int64 in shared memory per worker: current item's sequence
number (0 before the first; minus a batch's first sequence number while the
worker unpickles that batch), its start (``time.monotonic_ns``), the worker's
resident memory, and the pid of the process that runs the item when it is
not the worker (one task per worker: :mod:`._task_fork`). Beside it, each
worker logs the outcomes of a tracked batch's finished items in shared
memory before it starts the next (:mod:`._results_log`).
"""

from __future__ import annotations

import marshal
import os
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .._serialization import (
    Frame,
    discard,
    dumps_for_child,
    dumps_for_parent,
    is_shared,
    plain_for_child,
)

__all__ = [
    "RESULTS_CHANNEL", "SKIP", "FrameReader", "discard_shared", "encode_objects",
    "encode_values", "frame", "is_shared", "plain_call", "poll_briefly", "write_all",
]

#: The channel (``_transport.pack``) of what a worker sends the parent, read
#: by the engine: reaped when the worker ends (``WorkerHandle.close``).
RESULTS_CHANNEL = "results"

_PREFIX = struct.Struct("!QI")
_READ_SIZE = 1 << 16


class _Skip:
    """Stands for an argument that could not be pickled (the parent reports it)."""

    def __reduce__(self) -> str:
        return "SKIP"


SKIP = _Skip()


def encode_objects(obj: Any) -> bytes | Frame:
    """Pickle user objects for a worker (``_serialization.dumps_for_child``: the C
    pickler, else cloudpickle; plain ``bytes``, or a ``Frame`` whose large buffers
    go through shared memory once it is sent). Raises what the pickler raised
    when *obj* cannot be pickled."""
    return dumps_for_child(obj)


def plain_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes | None:
    """The items of a CALL batch of one call, ``[(0, args, kwargs)]``, as one plain
    pickle; None when they need :func:`encode_objects` (a large buffer, a reference
    to ``__main__``, something the C pickler refuses)."""
    return plain_for_child([(0, args, kwargs)])


def encode_values(values: Any) -> bytes:
    """Pickle results for the parent (``_serialization.dumps_for_parent``: the C
    pickler, else cloudpickle). Raises what cloudpickle raised."""
    return dumps_for_parent(values, RESULTS_CHANNEL, True)


def discard_shared(payload: bytes | memoryview | None) -> None:
    """*payload* will never be loaded: free its shared memory now, if it has any."""
    if payload is not None and is_shared(payload):
        discard(payload)


def frame(header: tuple[Any, ...], payload: bytes = b"") -> list[bytes]:
    """The parts of one frame, ready for ``os.writev``."""
    head = marshal.dumps(header)  # a third quicker than pickle for these small tuples
    return [_PREFIX.pack(len(head) + len(payload), len(head)), head, payload]


def write_all(fd: int, parts: list[bytes]) -> None:
    """Write *parts* to a blocking descriptor."""
    written = os.writev(fd, parts)
    if written == sum(map(len, parts)):
        return
    # The pipe took part of a large frame: the copy costs less than the writes.
    rest = memoryview(b"".join(parts))[written:]
    while rest:
        rest = rest[os.write(fd, rest):]


def write_some(fd: int, views: deque[memoryview]) -> None:
    """Write what a non-blocking descriptor takes now from *views* (consumed in place)."""
    while views:
        try:
            written = os.writev(fd, list(views)[:64])
        except BlockingIOError:
            return
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.popleft()
        if written:
            views[0] = views[0][written:]
            return


def poll_briefly(poll: Callable[[int], list[Any]], spin_ns: int) -> list[Any]:
    """Call ``poll(0)`` until it reports something or *spin_ns* have passed; its events.

    Both ends of a worker's pipes do this before they sleep: waking a sleeping
    process costs more than the Python on both sides of a quick call, so an
    answer that comes soon finds its reader awake.
    """
    clock = time.monotonic_ns
    until = clock() + spin_ns
    events = poll(0)
    while not events and clock() < until:
        events = poll(0)
    return events


class FrameReader:
    """Split the byte stream of one descriptor into ``(header, payload)`` frames.

    Frames are parsed in the bytes just read, without copying. A frame that
    has not fully arrived gets a buffer of its whole size, which the next
    reads fill in place.
    """

    __slots__ = ("_fd", "_filled", "_partial")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._partial: bytearray | None = None  # a frame begun (its prefix, until known)
        self._filled = 0

    def _split(self, data: bytes | bytearray) -> list[tuple[Any, memoryview]]:
        """The complete frames in *data*; an incomplete last one becomes ``_partial``."""
        frames = []
        view = memoryview(data)
        pos, total = 0, len(data)
        while total - pos >= _PREFIX.size:
            size, head = _PREFIX.unpack_from(data, pos)
            start = pos + _PREFIX.size
            end = start + size
            if end > total:
                break
            frames.append((marshal.loads(view[start:start + head]), view[start + head:end]))
            pos = end
        if pos < total:
            self._begin(view[pos:])
        return frames

    def _begin(self, first: memoryview) -> None:
        known = len(first) >= _PREFIX.size
        self._partial = bytearray(_PREFIX.size + _PREFIX.unpack_from(first)[0] if known
                                  else _PREFIX.size)
        self._partial[:len(first)] = first
        self._filled = len(first)

    def _read(self) -> tuple[list[tuple[Any, memoryview]], int, bool]:
        """One read: the frames it completed, how many bytes (0: end of file), and
        whether it got all it asked for (more may be waiting)."""
        partial = self._partial
        if partial is None:
            # At most 64 KiB: a larger buffer is mapped and unmapped by the
            # allocator at every read.
            data = os.read(self._fd, _READ_SIZE)
            return (self._split(data) if data else []), len(data), len(data) == _READ_SIZE
        with memoryview(partial) as view:
            count = os.readv(self._fd, [view[self._filled:]])
        asked = len(partial) - self._filled
        self._filled += count
        if self._filled < len(partial):
            return [], count, count == asked
        self._partial = None
        return self._split(partial), count, True  # a prefix alone begins the frame

    def read_blocking(self) -> list[tuple[Any, memoryview]]:
        """Wait for at least one frame (blocking descriptor); EOFError at end of file."""
        while True:
            frames, count, _ = self._read()
            if not count:
                raise EOFError
            if frames:
                return frames

    def read_available(self) -> tuple[list[tuple[Any, memoryview]], bool]:
        """Read what a non-blocking descriptor has: the complete frames, and whether EOF."""
        frames: list[tuple[Any, memoryview]] = []
        while True:
            try:
                got, count, more = self._read()
            except BlockingIOError:
                return frames, False
            except OSError:  # ConnectionResetError and the like
                return frames, True
            if not count:
                return frames, True
            frames += got
            if not more:
                return frames, False
