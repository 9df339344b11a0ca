"""Frames: a pickle stream whose large parts travel through shared memory.

:func:`pack` pickles with protocol 5 into a writer that keeps references
instead of copying. Out-of-band buffers (PEP 574: numpy arrays, ``memoryview``,
pandas and Arrow objects) and large parts of the stream itself (``bytes``,
``bytearray``, ``str``) of at least the threshold are then copied, once, into
one segment from the tracker's pool; the frame holds the rest of the stream and
where each part lies. An array this process sent before, still in use by its
receivers and unchanged since, is not copied again: the frame points at the
segment it already lies in (``_sent.py``). :func:`unpack` claims the segments
and maps them: out-of-band buffers become views on the mappings (copy on
write: what the receiver writes stays its own), stream parts are read from
them. The receiver's hold on a segment ends when the last object viewing its
mapping is garbage.

Frame layout::

    MAGIC (4 bytes) | header length (4 bytes, big-endian) | header (pickle) | inline stream

    header  = (VERSION, token, tickets, plan, buffers, pending)
    tickets = [ticket, ...]                    # one per segment the frame uses
    plan    = [(segment, start, length), ...]  # the stream, in order; segment -1: inline
    buffers = [(segment, offset, length), ...] # out-of-band buffers, in order
    pending = segment, or -1                   # still being written when the frame left

``segment`` is a position in ``tickets``.

A :class:`Frame` (:func:`pack_frame`) leaves before its copy into the new
segment is made: its sender writes it, then copies (:meth:`Frame.send`).
Its receiver claims the segments at once and, if the copy still runs, faults
the pending one's pages in meanwhile, then waits for the writer's seal (the
tracker's ``await``) before it reads: the copy and the receiver's page faults
overlap. A frame read after its copy was done costs nothing more.
A writer that gives up or dies first makes :func:`unpack` raise
:class:`DataAbandoned`.

Data with nothing large is a plain pickle stream (it starts with ``0x80``),
readable by :func:`pickle.loads`.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from multiprocessing import context
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _tree  # noqa: F401  (joins or founds the process tree now: see _tree)
from ._errors import DataAbandoned, ShmError

if TYPE_CHECKING:
    from ._sent import Location

# The tracker's client and the segments' code (``_client``, ``_tracker``,
# ``_sent``, ``_write_cache``, ``_copy``) load at the first frame that has a
# part in shared memory: a process that only sends small data (a spawn child
# that runs its target) never pays their 10 ms of imports.

__all__ = [
    "MAGIC",
    "PROTOCOL",
    "THRESHOLD_ENV",
    "Frame",
    "PendingCopy",
    "discard",
    "get_threshold",
    "is_shared",
    "pack",
    "pack_frame",
    "reap",
    "reducers",
    "set_threshold",
    "ticket_made",
    "unpack",
]

PROTOCOL = 5
MAGIC = b"\xfePR5"
VERSION = 3
THRESHOLD_ENV = "PROCESOS_SHM_THRESHOLD"
DEFAULT_THRESHOLD = 1 << 20
_ALIGN = 64
_HEADER = struct.Struct("!I")


def _threshold_from_env() -> int:
    try:
        return max(1, int(os.environ.get(THRESHOLD_ENV, DEFAULT_THRESHOLD)))
    except ValueError:
        return DEFAULT_THRESHOLD


_threshold = _threshold_from_env()


def get_threshold() -> int:
    """Buffers of at least this many bytes travel through shared memory."""
    return _threshold


def set_threshold(nbytes: int) -> None:
    """Set the threshold here and in the processes started from now on."""
    global _threshold
    _threshold = max(1, int(nbytes))
    os.environ[THRESHOLD_ENV] = str(_threshold)


# Reducers that every procesos pickler puts first in its dispatch table.
reducers: dict[type, Any] = {}
_numpy_registered = False


class _Collector:
    """A file for the pickler that keeps large writes by reference, and its buffer callback."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.chunks: list[Any] = []  # bytes, or a large object to copy later
        self.large: set[int] = set()  # indexes of the large chunks
        self.buffers: list[Any] = []  # out-of-band: a memoryview, or an array to copy
        self.deferred: dict[int, Any] = {}  # id(placeholder) -> strided array
        self.keep: list[Any] = []
        self.tickets: list[tuple[str, int]] = []  # made by reducers (a SharedArray's)

    def write(self, data: Any) -> int:
        if type(data) is bytes:
            size = len(data)
            if size >= self.threshold:
                self.large.add(len(self.chunks))
            self.chunks.append(data)
            return size
        view = memoryview(data)
        size = view.nbytes
        if size >= self.threshold and view.obj is not None:
            self.large.add(len(self.chunks))
            self.chunks.append(view)  # the user's bytearray: copied once, later
        else:
            self.chunks.append(view.tobytes())  # a temporary: copy it now
        return size

    def callback(self, buffer: pickle.PickleBuffer) -> bool:
        array = self.deferred.get(id(buffer))
        if array is not None:
            self.buffers.append(array)
            return False
        raw = buffer.raw()
        if raw.nbytes < self.threshold:
            return True
        self.buffers.append(raw)
        return False

    def defer(self, array: Any) -> pickle.PickleBuffer:
        placeholder = pickle.PickleBuffer(bytearray())
        self.keep.append(placeholder)
        self.deferred[id(placeholder)] = array
        return placeholder

    @property
    def spilled(self) -> bool:
        return bool(self.large or self.buffers)

    def plain(self) -> bytes:
        return b"".join(self.chunks)


_local = threading.local()


def _current() -> _Collector | None:
    stack: list[_Collector] = getattr(_local, "stack", [])
    return stack[-1] if stack else None


def _run(obj: Any, pickler: type, collector: _Collector) -> None:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(collector)
    try:
        pickler(collector, PROTOCOL, buffer_callback=collector.callback).dump(obj)
    finally:
        stack.pop()


def pack(obj: Any, make_pickler: Callable[[], type], reusable: bool = False,
         channel: str | None = None) -> bytes:
    """Pickle *obj* into one frame, with the ``pickle.Pickler`` subclass that
    *make_pickler* returns. Which pickler, and whether a plain ``pickle.dumps``
    does instead, is for the caller to say (``procesos._serialization``).

    A frame with shared memory can be loaded once; with *reusable*, any number
    of times, until :func:`discard` (or the end of the process tree). A frame
    for a *channel* that one process reads (a worker's results, a child's
    outcome) that this process never sends, because it dies first, goes back
    when that reader calls :func:`reap`; any other such frame that is never
    loaded waits for :func:`discard` or the end of the process tree (a sender
    that must know its fate asks :func:`pack_frame` for a :class:`Frame`).
    """
    collector, pickler = _collect(obj, make_pickler)
    if not collector.spilled:
        return collector.plain()
    try:
        return _spill(collector, reusable, channel, False)[0]
    except ShmError:
        return _without_shared_memory(obj, pickler, collector).plain()


def pack_frame(obj: Any, make_pickler: Callable[[], type]) -> Frame:
    """:func:`pack`, as a :class:`Frame` whose copy into shared memory is left for
    after it is written (:meth:`Frame.send`) and whose segments, and the tickets
    of the shared arrays it carries, it gives back if it is never sent."""
    collector, pickler = _collect(obj, make_pickler)
    if not collector.spilled:
        return Frame(collector.plain(), None, [], None, collector.tickets)
    try:
        data, token, tickets, pending = _spill(collector, False, None, True)
    except ShmError:
        collector = _without_shared_memory(obj, pickler, collector)
        return Frame(collector.plain(), None, [], None, collector.tickets)
    return Frame(data, token, tickets, pending, collector.tickets)


def _collect(obj: Any, make_pickler: Callable[[], type]) -> tuple[_Collector, type]:
    pickler = make_pickler()
    if not _numpy_registered and "numpy" in sys.modules:
        _register_numpy()
    collector = _Collector(_threshold)
    _run(obj, pickler, collector)
    return collector, pickler


def _without_shared_memory(obj: Any, pickler: type, first: _Collector) -> _Collector:
    # No shared memory to be had: the slow way still works. The tickets the
    # first pickling made (a SharedArray's) are made again by this one.
    Frame(b"", None, [], None, first.tickets).discard()
    collector = _Collector(sys.maxsize)
    _run(obj, pickler, collector)
    return collector


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def _spill(collector: _Collector, reusable: bool, channel: str | None, deferred: bool
           ) -> tuple[bytes, str, list[int], PendingCopy | None]:
    """The frame of what *collector* holds, its tree token, its tickets, and its
    copy into the new segment when *deferred* left it to make."""
    from ._client import client, tree_token
    from ._tracker import ALLOC, DISCARD, DROP, OK, SEAL

    # Every large part (a stream chunk or an out-of-band buffer), in order: the
    # stream's parts first, then the buffers.
    inline: list[bytes] = []
    inline_size = 0
    stream: list[tuple[int, int, int]] = []  # (part or -1 for inline, start, length)
    parts: list[Any] = []
    for index, chunk in enumerate(collector.chunks):
        size = len(chunk) if type(chunk) is bytes else memoryview(chunk).nbytes
        if index in collector.large:
            stream.append((len(parts), 0, size))
            parts.append(chunk)
        elif stream and stream[-1][0] < 0:
            stream[-1] = (-1, stream[-1][1], stream[-1][2] + size)
            inline.append(chunk)
            inline_size += size
        else:
            stream.append((-1, inline_size, size))
            inline.append(chunk)
            inline_size += size
    first_buffer = len(parts)
    parts.extend(collector.buffers)

    token = tree_token()
    tracker = client()
    tickets: list[int] = []  # the frame's: reused segments', then the new one's
    places: list[tuple[int, int] | None] = [None] * len(parts)  # (ticket index, offset)
    sent = False
    new_ticket = seg = None
    pending: PendingCopy | None = None
    deferred = deferred and not reusable
    try:
        if not reusable:
            _reuse(tracker, token, parts, tickets, places, channel)
        copies: list[tuple[int, Any]] = []
        offset = 0
        for index, part in enumerate(parts):
            if places[index] is None:
                copies.append((offset, part))
                places[index] = (len(tickets), offset)  # the new segment, added last
                offset = _aligned(offset + _nbytes(part))
        if copies:
            if channel is not None:
                reply = tracker.request(ALLOC, max(offset, 1), reusable, channel)
            else:
                reply = tracker.request(ALLOC, max(offset, 1), reusable)
            if reply[0] != OK:
                raise ShmError(str(reply[1]))
            _, seg, new_ticket, path, capacity = reply
            tickets.append(new_ticket)
            pending = PendingCopy(token, seg, new_ticket, path, capacity, copies)
            if not deferred:
                pending.copy()
        spots = [place for place in places if place is not None]  # every part's, by now
        plan = [(-1, start, length) if part < 0 else (*spots[part], length)
                for part, start, length in stream]
        layout = [(*spot, _nbytes(part))
                  for spot, part in zip(spots[first_buffer:], parts[first_buffer:], strict=True)]
        pending_seg = len(tickets) - 1 if deferred and new_ticket is not None else -1
        header = pickle.dumps((VERSION, token, tickets, plan, layout, pending_seg), PROTOCOL)
        frame = b"".join([MAGIC, _HEADER.pack(len(header)), header, *inline])
        if new_ticket is not None and not deferred:
            tracker.notify(SEAL, new_ticket, seg)
            pending = None
        sent = True
    finally:
        if not sent:  # an error or Ctrl-C: give the segments back
            if new_ticket is not None:
                tracker.notify(DROP, new_ticket, seg)
            reused = [t for t in tickets if t != new_ticket]
            if reused:
                tracker.notify(DISCARD, reused)
    return frame, token, tickets, pending


class PendingCopy:
    """The copy into a new segment that a :class:`Frame` still needs:
    :meth:`copy` then :meth:`seal`, or :meth:`abandon`.

    The tracker hears of the segment once, by whichever of :meth:`seal` and
    :meth:`abandon` comes first: a second word could reach the segment after it
    went back to the pool and to another writer of this process.
    """

    def __init__(self, token: str, seg: int, ticket: int, path: str, capacity: int,
                 copies: list[tuple[int, Any]]) -> None:
        self.token, self.seg, self.ticket = token, seg, ticket
        self.path, self.capacity, self.copies = path, capacity, copies
        self.settled = False

    def copy(self) -> None:
        """Write the data (the frame's receiver may already map the segment)."""
        from . import _sent

        _copy_into(self.token, self.seg, self.path, self.capacity, self.copies)
        for start, part in self.copies:
            _sent.remember(_exporter(part), _nbytes(part), _sent.Location(
                self.token, self.seg, self.ticket, self.path, self.capacity, start))

    def seal(self) -> None:
        """Say that the writing is done (after :meth:`copy`)."""
        from ._tracker import SEAL

        self._settle(SEAL)

    def abandon(self) -> None:
        """The frame will never be read (or its reader was told to give up): give
        the new segment back."""
        from ._tracker import DROP

        self._settle(DROP)

    def _settle(self, word: str) -> None:
        from ._client import client

        if not self.settled:
            self.settled = True
            self.copies = []
            client(self.token).notify(word, self.ticket, self.seg)


class Frame:
    """A frame made by :func:`pack_frame`, and who answers for its shared memory.

    Until it is written the frame's segments are its own: :meth:`send` writes
    it, then makes its copy into shared memory and seals it; :meth:`discard`
    (or the end of a ``with`` block that neither sent nor handed it over) gives
    everything back. :meth:`hand_over` makes another the owner: a batch that
    discards it if its worker dies before reading it, or a popen whose child
    may never read its arguments (the frame goes back when the popen does).
    A copy not made by the end of the ``with`` block is given up in any case
    (its receiver raises :class:`DataAbandoned`).
    """

    __slots__ = ("_copy", "_owned", "_tickets", "_token", "data", "extra")

    def __init__(self, data: bytes, token: str | None, tickets: list[int],
                 copy: PendingCopy | None, extra: list[tuple[str, int]]) -> None:
        self.data = data
        self._token = token
        self._tickets = tickets
        self._copy = copy
        self.extra = extra  # (token, ticket) of the shared arrays pickled into it
        self._owned = False  # sent or handed over: not discarded by the with block

    @property
    def shared(self) -> bool:
        """Whether it holds anything in shared memory (segments or shared arrays)."""
        return bool(self._tickets or self.extra)

    def __len__(self) -> int:
        return len(self.data)

    def send(self, write: Callable[[bytes], object], copy_first: bool = False) -> None:
        """``write(data)``, then :meth:`copy`; with *copy_first*, the other way
        round (for a receiver that must not skip the message: a ``JoinableQueue``'s
        would owe its ``task_done()`` forever). If either fails (an error,
        Ctrl-C) before the frame is written, it is discarded and the error raised."""
        try:
            if copy_first:
                self.copy()
                self._owned = False
            write(self.data)
        except BaseException:
            self.discard()
            raise
        self.copy()

    def copy(self) -> None:
        """Make the copy into shared memory and seal it, now that the frame is
        written; on an error or Ctrl-C, give the segment up (the receiver raises
        :class:`DataAbandoned`) and raise."""
        self._owned = True
        pending, self._copy = self._copy, None
        if pending is None:
            return
        done = False
        try:
            pending.copy()
            done = True
        finally:
            if done:
                pending.seal()
            else:
                pending.abandon()

    def hand_over(self, owner: object | None = None) -> Frame:
        """Whoever holds the frame now answers for it (calls :meth:`discard` when it
        will not be loaded); with *owner*, its shared memory goes back when *owner*
        is garbage instead. Returns the frame."""
        self._owned = True
        if owner is not None:
            for token, ticket in self._all_tickets():
                weakref.finalize(owner, _discard_ticket, token, ticket).atexit = False
        return self

    def discard(self) -> None:
        """It will never be loaded (again): its shared memory may go. Idempotent."""
        pending, self._copy = self._copy, None
        if pending is not None:
            pending.abandon()
        tickets = self._all_tickets()
        self._tickets, self.extra = [], []
        by_token: dict[str, list[int]] = {}
        for token, ticket in tickets:
            by_token.setdefault(token, []).append(ticket)
        if by_token:
            from ._client import client
            from ._tracker import DISCARD

            for token, some in by_token.items():
                client(token).notify(DISCARD, some)

    def _all_tickets(self) -> list[tuple[str, int]]:
        token = self._token
        return [(token, t) for t in self._tickets if token is not None] + self.extra

    def __enter__(self) -> Frame:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if not self._owned:
            self.discard()
        elif self._copy is not None:
            pending, self._copy = self._copy, None
            pending.abandon()


def reap(pid: int, channel: str, kept: Iterable[bytes | bytearray | memoryview] = ()) -> None:
    """Process *pid* has ended, and this process has read everything it sent on
    *channel*: the frames it made for *channel* (:func:`pack`) were either
    received (claimed already, or among *kept*: received and not loaded yet)
    or never sent, and those go back to the tracker now."""
    from ._client import client
    from ._tracker import REAP

    tracker = client()
    if not tracker.may_be_running():
        return  # *pid* made no frame: it would have started one
    tickets: list[int] = []
    for frame in kept:
        parsed = _parse(frame)
        if parsed is not None:
            tickets.extend(parsed[0][2])
    tracker.notify(REAP, pid, channel, tickets)


def _nbytes(part: Any) -> int:
    return len(part) if type(part) is bytes else int(part.nbytes)


def _exporter(part: Any) -> Any:
    return part.obj if isinstance(part, memoryview) else None


def _reuse(tracker: Any, token: str, parts: list[Any], tickets: list[int],
           places: list[tuple[int, int] | None], channel: str | None) -> None:
    """Point the parts sent before, unchanged, at the segments they already lie in."""
    from . import _sent
    from . import _write_cache as write_cache
    from ._tracker import DISCARD, OK, TICKET

    found: dict[int, list[tuple[int, Location]]] = {}
    for index, part in enumerate(parts):
        if isinstance(part, memoryview) and part.obj is not None:
            where = _sent.find(part.obj, part.nbytes, token)
            if where is not None:
                found.setdefault(where.seg, []).append((index, where))
    for seg, hits in found.items():
        where = hits[0][1]
        reply = tracker.request(TICKET, seg, where.origin, channel)
        if reply[0] != OK:
            continue  # freed, or another sender's data now: copy
        ticket = int(reply[1])
        mapping = write_cache.take(token, seg, where.path, where.capacity)
        try:
            same = [(index, spot) for index, spot in hits
                    if _sent.same_bytes(parts[index], mapping, spot.offset)]
        except BaseException:
            tracker.notify(DISCARD, [ticket])
            try:
                mapping.close()
            except BufferError:
                pass  # a view of it lives on in the traceback: unmapped when that goes
            raise
        write_cache.give_back(token, seg, mapping)
        if not same:
            tracker.notify(DISCARD, [ticket])
            continue
        for index, spot in same:
            places[index] = (len(tickets), spot.offset)
        tickets.append(ticket)


def _copy_into(token: str, seg: int, path: str, capacity: int,
               copies: list[tuple[int, Any]]) -> None:
    """Copy each ``(offset, data)`` into the segment through a writable mapping;
    strided numpy arrays in one strided copy each, C-ordered."""
    from . import _write_cache as write_cache
    from ._copy import copy_into

    mapping = write_cache.take(token, seg, path, capacity)
    try:
        for start, data in copies:
            copy_into(mapping, start, data)
    except BaseException:
        try:
            mapping.close()
        except BufferError:
            pass  # an interrupted copy's window holds it (a copy thread may still write)
        raise
    write_cache.give_back(token, seg, mapping)


def ticket_made(token: str, ticket: int) -> None:
    """A reducer (a shared array's) made *ticket* while pickling: the frame being
    made answers for it (:class:`Frame`). Pickled by another pickler (the
    standard library's, for its own start methods), it is tied to the popen of
    the child being started, if any."""
    collector = _current()
    if collector is not None:
        collector.tickets.append((token, ticket))
        return
    popen = context.get_spawning_popen()
    if popen is not None:
        try:
            weakref.finalize(popen, _discard_ticket, token, ticket).atexit = False
        except TypeError:
            pass


def _discard_ticket(token: str, ticket: int) -> None:
    from ._client import client
    from ._tracker import DISCARD

    client(token).notify(DISCARD, [ticket])


def is_shared(data: bytes | bytearray | memoryview) -> bool:
    """Whether *data* is a frame with parts in shared memory (to discard if it is
    never loaded), not a plain pickle."""
    return data[:4] == MAGIC


def _parse(data: bytes | bytearray | memoryview) -> tuple[tuple[Any, ...], memoryview] | None:
    if not is_shared(data):
        return None
    view = memoryview(data)
    (size,) = _HEADER.unpack_from(view, 4)
    header = pickle.loads(view[8:8 + size])
    if header[0] != VERSION:
        raise ShmError(f"a frame of version {header[0]} cannot be read by this procesos")
    return header, view[8 + size:]


def shared_bytes(data: bytes | bytearray | memoryview) -> int:
    """How many bytes of the frame *data* lie in shared memory (0 for a plain pickle)."""
    parsed = _parse(data)
    if parsed is None:
        return 0
    (_, _, _, plan, layout, _), _ = parsed
    return int(sum(length for segment, _, length in plan if segment >= 0)
               + sum(length for _, _, length in layout))


def discard(data: bytes | bytearray | memoryview) -> None:
    """Say that the frame *data* will never be loaded (again): its shared memory may go."""
    parsed = _parse(data)
    if parsed is not None:
        from ._client import client
        from ._tracker import DISCARD

        (_, token, tickets, *_rest), _ = parsed
        client(token).notify(DISCARD, list(tickets))


_FAULT_STRIDE = 1 << 16  # the kernel maps 64 KiB of a file around each fault (fault_around_bytes)


def _fault_in(view: memoryview) -> None:
    # While the sender copies: a read every 64 KiB maps the pages written so far
    # (or allocates them), so that the data is then read from mapped memory.
    # Reading makes no private copies.
    for offset in range(0, view.nbytes, _FAULT_STRIDE):
        view[offset]


_ABANDONED_TEXT = ("the process that sent this message gave up (an error or Ctrl-C) or "
                   "died before its large parts were written: the message is lost")


def unpack(data: bytes | bytearray | memoryview) -> Any:
    """Load a frame made by :func:`pack` (or any pickle stream).

    Raises :class:`DataAbandoned` when the frame's sender gave up or died before
    its data was written (a :class:`Frame` whose copy was given up).
    """
    parsed = _parse(data)
    if parsed is None:
        return pickle.loads(data)
    (_, token, tickets, plan, layout, pending), inline = parsed
    from ._client import client, map_segment, track_mapping
    from ._tracker import ABANDONED, CLAIM, OK, RELEASE, WRITING, WRITTEN

    tracker = client(token)
    reply = tracker.request(CLAIM, list(tickets), pending >= 0)
    if reply[0] != OK:
        if reply[1] == ABANDONED:
            raise DataAbandoned(_ABANDONED_TEXT)
        raise ShmError(
            f"cannot load this data: {reply[1]}. A frame with shared memory can be loaded "
            "once (dumps(..., reusable=True) makes one that can be loaded many times)."
        )
    views: list[memoryview] = []
    for index, (seg, path, size) in enumerate(reply[1]):
        try:
            mapping = map_segment(path, size, "private")
        except BaseException:
            for later_seg, _, _ in reply[1][index:]:
                tracker.notify(RELEASE, later_seg)
            raise
        track_mapping(mapping, token, seg)
        views.append(memoryview(mapping))
    if pending >= 0:
        state = reply[2][pending]
        if state == WRITING:  # fault the pages in while the sender copies, then wait
            _fault_in(views[pending])
            if not tracker.await_written(reply[1][pending][0]):
                raise DataAbandoned(_ABANDONED_TEXT)
        elif state != WRITTEN:
            raise DataAbandoned(_ABANDONED_TEXT)
    buffers = [views[where][offset:offset + length] for where, offset, length in layout]
    if any(where >= 0 for where, _, _ in plan):
        parts = [(inline if where < 0 else views[where])[start:start + length]
                 for where, start, length in plan]
        return pickle.Unpickler(_Reader(parts), buffers=buffers).load()
    return pickle.loads(inline, buffers=buffers)


class _Reader:
    """A read-only file over the parts of a stream, for ``pickle.Unpickler``."""

    def __init__(self, parts: list[memoryview]) -> None:
        self.parts = parts
        self.index = 0
        self.position = 0

    def readinto(self, target: Any) -> int:
        out = memoryview(target).cast("B")
        done = 0
        while done < out.nbytes and self.index < len(self.parts):
            part = self.parts[self.index]
            take = min(out.nbytes - done, part.nbytes - self.position)
            out[done:done + take] = part[self.position:self.position + take]
            done += take
            self.position += take
            if self.position == part.nbytes:
                self.index += 1
                self.position = 0
        return done

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = sum(p.nbytes for p in self.parts[self.index:]) - self.position
        buffer = bytearray(size)
        done = self.readinto(buffer)
        return bytes(buffer[:done])

    def readline(self) -> bytes:
        line = bytearray()
        while self.index < len(self.parts):
            part = self.parts[self.index]
            rest = bytes(part[self.position:])
            end = rest.find(b"\n")
            if end >= 0:
                line += rest[:end + 1]
                self.position += end + 1
                return bytes(line)
            line += rest
            self.index += 1
            self.position = 0
        return bytes(line)


# -- reducers for what protocol 5 leaves in-band ---------------------------------------------

def _rebuild_memoryview(buffer: Any, fmt: str, shape: tuple[int, ...]) -> memoryview:
    view = memoryview(buffer)
    if view.format != fmt or view.shape != shape:
        try:
            view = view.cast("B").cast(fmt, shape)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            pass  # a format memoryview cannot cast to: the bytes, flat
    return view


def _reduce_memoryview(view: memoryview) -> tuple[Any, ...]:
    if view.c_contiguous:
        return _rebuild_memoryview, (pickle.PickleBuffer(view), view.format, view.shape)
    data = view.tobytes()
    return _rebuild_memoryview, (data if view.readonly else bytearray(data), view.format,
                                 view.shape)


reducers[memoryview] = _reduce_memoryview


def _rebuild_ndarray(buffer: Any, dtype: Any, shape: tuple[int, ...]) -> Any:
    numpy = sys.modules.get("numpy") or __import__("numpy")
    return numpy.frombuffer(buffer, dtype=dtype).reshape(shape)


def _reduce_ndarray(array: Any) -> Any:
    collector = _current()
    if (
        collector is None
        or array.nbytes < collector.threshold
        or array.dtype.hasobject
        or array.flags.c_contiguous
        or array.flags.f_contiguous
    ):
        return array.__reduce_ex__(PROTOCOL)
    # A strided view: copied once, straight into shared memory, C-ordered.
    return _rebuild_ndarray, (collector.defer(array), array.dtype, array.shape)


def _rebuild_memmap(filename: str, dtype: Any, mode: str, offset: int, shape: tuple[int, ...],
                    order: str, span: int, first: int, strides: tuple[int, ...] | None) -> Any:
    numpy = sys.modules.get("numpy") or __import__("numpy")
    if strides is None:
        return numpy.memmap(filename, dtype=dtype, mode=mode, offset=offset, shape=shape,
                            order=order)
    window = numpy.memmap(filename, dtype=numpy.uint8, mode=mode, offset=offset, shape=(span,))
    return numpy.ndarray(shape, dtype, buffer=window, offset=first, strides=strides)


def _reduce_memmap(array: Any) -> Any:
    """A ``numpy.memmap``, or a view of one, travels as where its bytes lie in
    its file: the receiver maps the same file, so what it writes under mode
    ``r+`` or ``w+`` reaches the file and the sender's memmap, as joblib's
    workers do (a private copy would lose those writes); ``r`` arrives
    read-only, ``c`` private. Without its file (closed, deleted), as an array."""
    numpy = sys.modules["numpy"]
    import mmap

    original = array
    while isinstance(original.base, numpy.memmap):
        original = original.base
    filename = getattr(original, "filename", None)
    if isinstance(filename, os.PathLike):  # opened by a Path
        filename = os.fspath(filename)
    mode = getattr(original, "mode", None)
    mapping: Any = original.base
    if (
        not isinstance(mapping, mmap.mmap)
        or getattr(original, "_mmap", None) is not mapping
        or bool(getattr(mapping, "closed", True))
        or not isinstance(filename, str)
        or mode not in ("r", "r+", "w+", "c")
        or array.size == 0
        or array.dtype.hasobject
        or not os.path.exists(filename)
    ):
        return _reduce_ndarray(numpy.asarray(array))
    if mode == "w+":
        mode = "r+"  # not made again: that would empty the file
    if not array.flags.writeable:
        mode = "r"
    start = array.__array_interface__["data"][0]
    steps = [(n - 1) * s for n, s in zip(array.shape, array.strides, strict=True)]
    low = start + sum(step for step in steps if step < 0)
    high = start + sum(step for step in steps if step > 0)
    offset = original.offset + (low - original.__array_interface__["data"][0])
    if array.flags.c_contiguous or array.flags.f_contiguous:
        order = "C" if array.flags.c_contiguous else "F"
        return _rebuild_memmap, (filename, array.dtype, mode, offset, array.shape, order,
                                 0, 0, None)
    return _rebuild_memmap, (filename, array.dtype, mode, offset, array.shape, "C",
                             high + array.itemsize - low, start - low, array.strides)


def _register_numpy() -> None:
    global _numpy_registered
    numpy = sys.modules["numpy"]
    reducers[numpy.ndarray] = _reduce_ndarray
    reducers[numpy.memmap] = _reduce_memmap
    _numpy_registered = True


def plain_pickle(obj: Any) -> bytes:
    """Protocol 5 in-band, for callers that need bytes with no shared memory."""
    out = io.BytesIO()
    pickle.Pickler(out, PROTOCOL).dump(obj)
    return out.getvalue()
