"""The shared-memory tracker: one small server per process tree that owns every segment.

It runs as a script (``python -I _tracker.py ...``, standard library only, so
it starts in a few tens of milliseconds and never imports the user's code).
Its socket lies in a directory private to the user (see ``_client._runtime_dir``);
it accepts only connections of its own user (``SO_PEERCRED``) whose first
message proves that they belong to the tree (``hello`` with the tree's secret,
which reaches the tracker on its standard input, never its command line).
Every procesos process of the tree keeps one connection to it; a process's
holds on segments live on that connection, so a process that dies, however it
dies (SIGKILL included), gives them back when the kernel closes its socket.

Segments are ``memfd`` files on Linux: they have no name in ``/dev/shm``; the
tracker holds their descriptors and clients open them through
``/proc/<tracker pid>/fd/<n>``. The kernel frees a segment's memory once the
tracker has closed its descriptor and no process maps it, so even a SIGKILLed
tracker leaves nothing behind. Elsewhere segments are POSIX shared memory
(``/procesos-<tree name>-<n>``) that the tracker unlinks.

The wire format, in one place: each message is a 4-byte big-endian length and
a JSON array whose first item names it (plain data: nothing a peer sends can
make either side run code). A connection's first message must be
``["hello", secret]``, answered ``["ok", tracker pid]``; a wrong secret, a
malformed message or one over 1 MiB closes the connection. Segment and ticket
numbers start at a random 60-bit value in each tracker, so that numbers a
dead tracker gave out mean nothing to its successor.

=================================  ==========================================
client -> tracker                  reply
=================================  ==========================================
``("hello", secret)``              ``("ok", pid)``: always the first message
``("alloc", nbytes, reusable[,``  ``("ok", seg, ticket, path, capacity)``: a
``channel])``                      segment to write, with an unclaimed ticket
                                   (*channel*: see ``reap``)
``("seal", ticket, seg)``          none: the writer is done, the frame is sent
``("drop", ticket, seg)``          none: the frame will never be sent, or its
                                   writer gave up before it was written
``("claim", [ticket, ...][, early])``  ``("ok", [(seg, path, size), ...])`` or
                                   ``("err", text)``: tickets become holds of
                                   this connection (a reusable ticket stays);
                                   *early*: the writer may still be writing
                                   (it seals when done), and the reply has a
                                   third item, each segment's state (WRITTEN,
                                   WRITING, ABANDONED_WRITING); ``("err",
                                   ABANDONED)`` for a ticket dropped so
``("await", seg)``                 ``("ok",)`` once *seg*'s writer has sealed
                                   it, ``("err", ABANDONED)`` if it dropped it
                                   or died first (a frame sent before its copy
                                   was made, claimed early)
``("discard", [ticket, ...])``     none: these frames will never be loaded
``("release", seg)``               none: this connection lets go of one hold
``("create", nbytes)``             ``("ok", seg, path)``: a segment for a
                                   ``SharedArray``, held by this connection
``("ticket", seg[, origin[,``     ``("ok", ticket)`` or ``("err", text)``: a
``channel]])``                     new ticket on a segment in use; with
                                   *origin* (the ticket it was allocated
                                   under), only if it was not reused since
``("reap", pid, channel,``         none: process *pid* has ended and the
``[ticket, ...])``                 sender of this has read all it sent on
                                   *channel*: its tickets made for *channel*
                                   but the ones listed will never be claimed
                                   (it died between making a frame and
                                   sending it)
``("poison", [seg, ...])``         none: never pool these (a fork maps them)
``("sync",)`` / ``("trim",)``      ``("ok", stats)``, after everything that
                                   was pending (``trim`` also empties the pool)
=================================  ==========================================

A segment is freed (or returned to the pool) when it has no hold, no ticket
and no writer. A ticket outlives the process that created it (a child's
result is read after the child exited); an unclaimed ticket ends when it is
claimed or discarded, or reaped, or when the tree ends. Only the process
that reads a channel can tell that a sealed frame was never sent on it (its
writer died before sending it): a frame for a channel that one process
reads (a worker's results, a child's outcome) is made for that *channel*,
and once the writer has ended and the reader has read all the channel
held, the reader reaps the rest. The tree ends when its root
process has exited and no connection is left: the tracker then frees
everything and exits.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import select
import signal
import socket
import struct
import sys
import time

# hmac.compare_digest without hmac, which would load OpenSSL for nothing. This
# script imports nothing of procesos: a copy of procesos._compat.compare_digest.
try:
    from _operator import _compare_digest as compare_digest
except ImportError:
    from hmac import compare_digest  # type: ignore[no-redef]
from collections.abc import Callable, Iterable
from typing import Any

HEADER = struct.Struct("!I")
MAX_MESSAGE = 1 << 20
ABANDONED = "abandoned"  # the writer gave up before the data was written
WRITTEN, WRITING, ABANDONED_WRITING = 0, 1, 2  # a segment, as an early claim finds it
_DROPPED_KEPT = 1024  # dropped tickets remembered, for an early claim that comes late
MEMFD = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")
SEND_TIMEOUT = 2.0  # a client that reads no reply for this long is cut off
FIRST_CONNECTION_WAIT = 10.0  # how long a tracker started after its root waits for a client

# The verbs, shared with the clients (``_client.py``, ``_transport.py`` and
# ``_sharing/_shared_array.py`` import them from here: no other spelling of them).
HELLO, ALLOC, SEAL, DROP, CLAIM, AWAIT, DISCARD = (
    "hello", "alloc", "seal", "drop", "claim", "await", "discard")
RELEASE, CREATE, TICKET, POISON, SYNC, TRIM, REAP = (
    "release", "create", "ticket", "poison", "sync", "trim", "reap")
OK, ERR = "ok", "err"


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # json.dumps(separators=) makes one a call
_DECODER = json.JSONDecoder()


def encode(message: list[Any] | tuple[Any, ...]) -> bytes:
    """One message as it travels: its length, then JSON."""
    data = _ENCODER.encode(message).encode()
    return HEADER.pack(len(data)) + data


def decode(data: bytes | bytearray) -> list[Any]:
    """A message's JSON, checked to be a list that starts with a verb; ValueError otherwise
    (UnicodeDecodeError and json's errors are ValueErrors)."""
    try:
        message = _DECODER.decode(bytes(data).decode())
    except RecursionError:  # "[[[[..." nested deeper than the interpreter goes
        raise ValueError("a message nested too deeply") from None
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise ValueError("a message is a JSON array that starts with its verb")
    return message


class Segment:
    """One shared-memory file and who needs it."""

    __slots__ = (
        "abandoned",
        "capacity",
        "fd",
        "holds",
        "ident",
        "kind",
        "name",
        "origin",
        "poisoned",
        "pooled_at",
        "tickets",
        "waiters",
        "writer",
    )

    def __init__(self, ident: int, fd: int, capacity: int, kind: str, name: str) -> None:
        self.ident = ident
        self.fd = fd
        self.capacity = capacity
        self.kind = kind  # "transport" (poolable) or "shared" (a SharedArray)
        self.name = name  # POSIX name when not a memfd
        self.holds: dict[int, int] = {}  # connection id -> count
        self.tickets: set[int] = set()
        self.writer: int | None = None
        self.waiters: list[socket.socket] = []  # awaiting the writer's seal
        self.abandoned = False  # its last writer gave up before it was written
        self.origin = 0  # the ticket of its last allocation: what its bytes are
        self.poisoned = False
        self.pooled_at: float | None = None


class Ticket:
    __slots__ = ("channel", "owner", "reusable", "sealed", "segment")

    def __init__(self, segment: int, owner: int, reusable: bool, sealed: bool,
                 channel: tuple[int, str] | None) -> None:
        self.segment = segment
        self.owner = owner
        self.reusable = reusable
        self.sealed = sealed
        self.channel = channel  # (writer's pid, channel name): for that channel's reader


class SegmentStore:
    """The tracker's segments: made, pooled when nothing refers to them any more
    (transport segments, within the pool's budget, until idle too long), ended."""

    def __init__(self, tree_name: str, pool_budget: int, pool_idle: float,
                 new_id: Callable[[], int]) -> None:
        self.tree_name = tree_name  # the tree's public name: in POSIX segment names
        self.pool_budget = pool_budget
        self.pool_idle = pool_idle
        self.new_id = new_id
        self.segments: dict[int, Segment] = {}
        self.pool: list[Segment] = []  # oldest first
        self.posix_names = 0

    def path(self, seg: Segment) -> str:
        return f"/proc/{os.getpid()}/fd/{seg.fd}" if MEMFD else seg.name

    def allocate(self, nbytes: int) -> Segment | None:
        best = None
        # The most recently freed of the best fit: its sender is the likeliest
        # to still have it mapped (``_write_cache.py``); the oldest idle out.
        for seg in reversed(self.pool):
            if nbytes <= seg.capacity <= max(2 * nbytes, nbytes + (1 << 20)) and (
                best is None or seg.capacity < best.capacity
            ):
                best = seg
        if best is not None:
            self.pool.remove(best)
            best.pooled_at = None
            return best
        return self.create(size_class(nbytes), "transport")

    def create(self, capacity: int, kind: str) -> Segment | None:
        available = available_memory()
        if available is not None and capacity > available:
            # Refused, not tried: shared memory is nobody's to the OOM killer, so
            # a segment that fills the memory gets other processes killed
            # (found by the fuzzer, whose allocs of 2**40 bytes did that).
            return None
        ident = self.new_id()
        self.posix_names += 1
        name = f"/procesos-{self.tree_name[:8]}-{self.posix_names}"  # _client.segment_name_prefix
        try:
            if MEMFD:
                fd = os.memfd_create(f"procesos-{ident}", os.MFD_CLOEXEC)
            else:
                import _posixshmem  # type: ignore[import-not-found]

                fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        except OSError:
            return None
        try:
            os.ftruncate(fd, capacity)
            if kind == "transport" and hasattr(os, "posix_fallocate"):
                # Reserve the pages now: a full /dev/shm is an error here, not a
                # SIGBUS in the writer later.
                os.posix_fallocate(fd, 0, capacity)
        except OSError:
            os.close(fd)
            self.unlink(name)
            return None
        seg = Segment(ident, fd, capacity, kind, name)
        self.segments[ident] = seg
        return seg

    def maybe_free(self, seg: Segment) -> None:
        if seg.holds or seg.tickets or seg.writer is not None or seg.pooled_at is not None:
            return
        if seg.kind == "transport" and not seg.poisoned and seg.capacity <= self.pool_budget:
            seg.pooled_at = time.monotonic()
            self.pool.append(seg)
            while sum(s.capacity for s in self.pool) > self.pool_budget:
                self.free(self.pool[0])
            return
        self.free(seg)

    def free(self, seg: Segment) -> None:
        if seg.pooled_at is not None:
            self.pool.remove(seg)
        del self.segments[seg.ident]
        os.close(seg.fd)
        self.unlink(seg.name)

    def unlink(self, name: str) -> None:
        if not MEMFD:
            import _posixshmem

            try:
                _posixshmem.shm_unlink(name)
            except OSError:
                pass

    def trim_idle(self) -> None:
        now = time.monotonic()
        while self.pool and (self.pool[0].pooled_at or 0.0) + self.pool_idle <= now:
            self.free(self.pool[0])

    def empty_pool(self) -> None:
        while self.pool:
            self.free(self.pool[0])

    def idle_wait(self) -> float | None:
        """Seconds until the oldest pooled segment has been idle too long, or None."""
        if not self.pool:
            return None
        oldest = self.pool[0].pooled_at or 0.0
        return max(0.0, oldest + self.pool_idle - time.monotonic())

    def free_all(self) -> None:
        for seg in list(self.segments.values()):
            self.free(seg)


class Tracker:
    """The tracker's loop: its connections and their messages, the tickets that
    name segments for readers; the segments themselves are its :class:`SegmentStore`'s."""

    def __init__(self, listener: socket.socket, name: str, secret: str, root_pid: int,
                 pool_budget: int, pool_idle: float) -> None:
        self.listener = listener
        self.secret = secret.encode()
        self.root_pid = root_pid
        self.conns: dict[int, socket.socket] = {}  # fd -> socket
        self.authenticated: set[int] = set()  # fds whose hello carried the secret
        self.inbox: dict[int, bytearray] = {}
        self.peer_pids: dict[int, int] = {}  # fd -> the pid that connected
        self.tickets: dict[int, Ticket] = {}
        # Random, so that a number of a tracker that died names nothing here.
        self.next_id = (int.from_bytes(os.urandom(8), "big") >> 4) + 1
        self.store = SegmentStore(name, pool_budget, pool_idle, self.new_id)
        self.root_fd: int | None = None
        self.root_alive = True
        self.first_client_by: float | None = time.monotonic() + FIRST_CONNECTION_WAIT
        self.sync_waiters: list[tuple[socket.socket, str]] = []
        self.dropped: dict[int, None] = {}  # tickets whose writer gave up, oldest first
        # The unclaimed tickets of each (writer pid, channel): what reap() ends.
        self.by_channel: dict[tuple[int, str], set[int]] = {}
        try:
            self.root_fd = os.pidfd_open(root_pid)
        except ProcessLookupError:
            self.root_alive = False
        except (AttributeError, OSError):
            self.root_fd = None  # polled instead

    # -- the loop -----------------------------------------------------------------
    def needed(self) -> bool:
        """While the root lives or anyone is connected; a tracker started after
        its root exited (by a process of the tree) waits a while for its client."""
        if self.root_alive or self.conns:
            return True
        return self.first_client_by is not None and time.monotonic() < self.first_client_by

    def serve(self) -> None:
        while self.needed():
            watched = [self.listener.fileno(), *self.conns]
            if self.root_fd is not None and self.root_alive:
                watched.append(self.root_fd)
            ready = _readable(watched, self.timeout())
            self.handle(ready)
            if self.sync_waiters:
                # Answer only after everything already queued (a dead client's
                # end of file included) has been handled.
                for _ in range(100):
                    ready = _readable(self.conns, 0)
                    if not ready:
                        break
                    self.handle(ready)
                waiters, self.sync_waiters = self.sync_waiters, []
                for sock, kind in waiters:
                    if kind == TRIM:
                        self.store.empty_pool()
                    self.reply(sock, (OK, self.stats()))
            self.store.trim_idle()
            if self.root_fd is None and self.root_alive:
                self.root_alive = pid_alive(self.root_pid)
        self.shutdown()

    def timeout(self) -> float | None:
        waits = []
        idle = self.store.idle_wait()
        if idle is not None:
            waits.append(idle)
        if self.root_fd is None and self.root_alive:
            waits.append(1.0)
        if self.first_client_by is not None and not self.root_alive:
            waits.append(max(0.0, self.first_client_by - time.monotonic()))
        return min(waits) if waits else None

    def handle(self, ready: list[int]) -> None:
        for fd in ready:
            if fd == self.listener.fileno():
                self.accept()
            elif fd == self.root_fd:
                self.root_alive = False
                os.close(fd)
                self.root_fd = None
            elif fd in self.conns:
                self.receive(fd)

    def accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        pid, uid = peer_credentials(sock)
        if uid not in (None, os.getuid()):
            sock.close()  # another user: the directory should have kept it out
            return
        self.peer_pids[sock.fileno()] = pid or 0
        # Replies are written blocking: a client that reads none is cut off.
        sock.settimeout(SEND_TIMEOUT)
        self.conns[sock.fileno()] = sock
        self.inbox[sock.fileno()] = bytearray()

    def receive(self, fd: int) -> None:
        sock = self.conns[fd]
        try:
            data = sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self.disconnect(fd)
            return
        inbox = self.inbox[fd]
        inbox += data
        while len(inbox) >= HEADER.size:
            (size,) = HEADER.unpack_from(inbox)
            if size > MAX_MESSAGE:
                self.disconnect(fd)
                return
            if len(inbox) < HEADER.size + size:
                break
            try:
                message = decode(inbox[HEADER.size:HEADER.size + size])
            except ValueError:  # not JSON, or not a message
                self.disconnect(fd)
                return
            del inbox[:HEADER.size + size]
            if fd not in self.authenticated:
                if not self.hello(fd, sock, message):
                    return
                continue
            try:
                self.dispatch(fd, sock, message)
            except Exception as exc:  # a malformed message must not end the tree
                self.reply(sock, (ERR, f"tracker: {exc!r}"))
            if fd not in self.conns:  # cut off while replying
                return

    def hello(self, fd: int, sock: socket.socket, message: list[Any]) -> bool:
        """A connection's first message: the tree's secret, or it is closed."""
        given = message[1] if len(message) == 2 else None
        # surrogatepass: JSON can carry a lone surrogate, which plain UTF-8 refuses
        # to encode (it ended the tracker, found by the fuzzer in test_security).
        if message[0] != HELLO or not isinstance(given, str) or not compare_digest(
                given.encode("utf-8", "surrogatepass"), self.secret):
            self.disconnect(fd)
            return False
        self.authenticated.add(fd)
        self.first_client_by = None
        self.reply(sock, (OK, os.getpid()))
        return fd in self.conns

    def reply(self, sock: socket.socket, message: tuple[Any, ...]) -> None:
        try:
            sock.sendall(encode(message))
        except OSError:
            # Gone, or reads nothing: its end of file (ours, for one that
            # reads nothing) is handled when it is next polled.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- the messages ---------------------------------------------------------------
    def dispatch(self, conn: int, sock: socket.socket, message: list[Any]) -> None:
        kind = message[0]
        if kind == ALLOC:
            seg = self.store.allocate(int(message[1]))
            if seg is None:
                self.reply(sock, (ERR, no_room(message[1])))
                return
            seg.writer = conn
            seg.abandoned = False
            ticket = self.new_ticket(seg, conn, reusable=bool(message[2]), sealed=False,
                                     channel=message[3] if len(message) > 3 else None)
            seg.origin = ticket
            self.reply(sock, (OK, seg.ident, ticket, self.store.path(seg), seg.capacity))
        elif kind in (SEAL, DROP):
            # The ticket may be gone (an early claim ended it): the segment is named too.
            told = self.tickets.get(message[1])
            if told is not None and kind == SEAL:
                told.sealed = True
            if kind == DROP:
                self.remember_dropped(message[1])
            written = self.store.segments.get(message[2])
            if written is not None and written.writer == conn:
                self.end_writing(written, sealed=kind == SEAL)
                self.store.maybe_free(written)
            if kind == DROP:
                self.end_ticket(message[1])
        elif kind == AWAIT:
            awaited = self.store.segments.get(message[1])
            if awaited is None:
                self.reply(sock, (ERR, ABANDONED))
            elif awaited.writer is not None:
                awaited.waiters.append(sock)
            else:
                self.reply(sock, (ERR, ABANDONED) if awaited.abandoned else (OK,))
        elif kind == CLAIM:
            early = len(message) > 2 and bool(message[2])
            claimed: list[int] = []
            for ident in message[1]:
                claim = self.tickets.get(ident)
                if claim is None:
                    self.reply(sock, (ERR, ABANDONED if ident in self.dropped else
                                      "its shared memory was already received or freed"))
                    for seg_id in claimed:
                        self.release(conn, seg_id)
                    return
                seg = self.store.segments[claim.segment]
                seg.holds[conn] = seg.holds.get(conn, 0) + 1
                claimed.append(seg.ident)
                # A claimed frame was sent, so its writer is done (its seal may
                # still be on the way), unless the claim is early: then the
                # writer is still copying, and only its seal ends that.
                claim.sealed = True
                if not early and seg.writer is not None and claim.owner == seg.writer:
                    self.end_writing(seg, sealed=True)
                if not claim.reusable:
                    self.end_ticket(ident)
            places = [(s, self.store.path(self.store.segments[s]), self.store.segments[s].capacity)
                      for s in claimed]
            if not early:
                self.reply(sock, (OK, places))
                return
            # Early: whether each is WRITTEN, still WRITING, or was ABANDONED_WRITING.
            states = [ABANDONED_WRITING if self.store.segments[s].abandoned
                      else WRITING if self.store.segments[s].writer is not None else WRITTEN
                      for s in claimed]
            self.reply(sock, (OK, places, states))
        elif kind == DISCARD:
            for ident in message[1]:
                self.end_ticket(ident)
        elif kind == RELEASE:
            self.release(conn, message[1])
        elif kind == CREATE:
            seg = self.store.create(max(1, int(message[1])), "shared")
            if seg is None:
                self.reply(sock, (ERR, no_room(message[1])))
                return
            seg.holds[conn] = 1
            self.reply(sock, (OK, seg.ident, self.store.path(seg)))
        elif kind == TICKET:
            seg = self.store.segments.get(message[1])
            if seg is None or seg.pooled_at is not None:
                self.reply(sock, (ERR, "this shared memory has been freed"))
                return
            if len(message) > 2 and (seg.origin != message[2] or seg.writer is not None):
                self.reply(sock, (ERR, "this shared memory holds other data now"))
                return
            self.reply(sock, (OK, self.new_ticket(seg, conn, reusable=False, sealed=True,
                                                  channel=message[3] if len(message) > 3
                                                  else None)))
        elif kind == POISON:
            for ident in message[1]:
                seg = self.store.segments.get(ident)
                if seg is not None:
                    seg.poisoned = True
        elif kind == REAP:
            self.reap(int(message[1]), str(message[2]), {int(t) for t in message[3]})
        elif kind in (SYNC, TRIM):
            self.sync_waiters.append((sock, kind))
        else:
            self.reply(sock, (ERR, f"unknown message {kind!r}"))

    def reap(self, pid: int, channel: str, kept: set[int]) -> None:
        """Process *pid* ended, and the reader of its *channel* read everything it
        sent there: its frames for that channel not claimed (but *kept*) were never
        sent."""
        for ident in self.by_channel.pop((pid, channel), set()) - kept:
            self.remember_dropped(ident)
            self.end_ticket(ident)
        for ident in kept:  # still in the reader's hands: claimed or discarded later
            ticket = self.tickets.get(ident)
            if ticket is not None:
                ticket.channel = None

    def disconnect(self, conn: int) -> None:
        sock = self.conns.pop(conn)
        del self.inbox[conn]
        self.peer_pids.pop(conn, None)
        self.authenticated.discard(conn)
        self.sync_waiters = [(s, k) for s, k in self.sync_waiters if s is not sock]
        sock.close()
        for ident, ticket in list(self.tickets.items()):
            if ticket.owner == conn and not ticket.sealed:
                self.remember_dropped(ident)
                self.end_ticket(ident)  # it died while writing: the frame was never sent
        for seg in list(self.store.segments.values()):
            if sock in seg.waiters:
                seg.waiters.remove(sock)
            touched = False
            if seg.writer == conn:
                self.end_writing(seg, sealed=False)  # it died while writing
                touched = True
            if seg.holds.pop(conn, None) is not None:
                touched = True
            if touched:
                self.store.maybe_free(seg)

    def end_writing(self, seg: Segment, sealed: bool) -> None:
        """The writer is done with *seg*: written (*sealed*), or given up (the
        caller then sees whether the segment can go)."""
        seg.writer = None
        seg.abandoned = not sealed
        waiters, seg.waiters = seg.waiters, []
        for waiter in waiters:
            self.reply(waiter, (OK,) if sealed else (ERR, ABANDONED))

    def remember_dropped(self, ticket: int) -> None:
        self.dropped[ticket] = None
        while len(self.dropped) > _DROPPED_KEPT:
            del self.dropped[next(iter(self.dropped))]

    # -- tickets ----------------------------------------------------------------------
    def new_id(self) -> int:
        """A number for a segment or a ticket: one sequence for both."""
        ident = self.next_id
        self.next_id += 1
        return ident

    def new_ticket(self, seg: Segment, owner: int, reusable: bool, sealed: bool,
                   channel: object = None) -> int:
        ident = self.new_id()
        pid = self.peer_pids.get(owner, 0)
        for_channel = (pid, channel) if isinstance(channel, str) and pid > 0 else None
        self.tickets[ident] = Ticket(seg.ident, owner, reusable, sealed, for_channel)
        if for_channel is not None:
            self.by_channel.setdefault(for_channel, set()).add(ident)
        seg.tickets.add(ident)
        return ident

    def end_ticket(self, ident: int) -> None:
        ticket = self.tickets.pop(ident, None)
        if ticket is not None:
            if ticket.channel is not None:
                same = self.by_channel.get(ticket.channel)
                if same is not None:
                    same.discard(ident)
                    if not same:
                        del self.by_channel[ticket.channel]
            seg = self.store.segments[ticket.segment]
            seg.tickets.discard(ident)
            self.store.maybe_free(seg)

    def release(self, conn: int, seg_id: int) -> None:
        seg = self.store.segments.get(seg_id)
        if seg is None or conn not in seg.holds:
            return
        seg.holds[conn] -= 1
        if seg.holds[conn] <= 0:
            del seg.holds[conn]
        self.store.maybe_free(seg)

    def stats(self) -> dict[str, int]:
        live = [s for s in self.store.segments.values() if s.pooled_at is None]
        pool = self.store.pool
        return {
            "pid": os.getpid(),
            "segments": len(live),
            "segment_bytes": sum(s.capacity for s in live),
            "tickets": len(self.tickets),
            "pooled": len(pool),
            "pooled_bytes": sum(s.capacity for s in pool),
            "connections": len(self.conns),
        }

    def shutdown(self) -> None:
        self.store.free_all()
        self.listener.close()


def _readable(fds: Iterable[int], timeout: float | None) -> list[int]:
    """procesos._wait.readable, which this script cannot import: poll(), since
    select() cannot watch a descriptor numbered 1024 or more (a tree of
    hundreds of processes has as many connections here)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    wait_ms = None if timeout is None else max(0, math.ceil(timeout * 1000))
    return [fd for fd, _ in poller.poll(wait_ms)]


def size_class(nbytes: int) -> int:
    """Round up so that segments of similar sizes can be reused (at most 1/16 waste)."""
    granule = 1 << max(16, nbytes.bit_length() - 4)
    return -(-nbytes // granule) * granule


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def no_room(nbytes: object) -> str:
    """The error text of a segment that could not be made."""
    available = available_memory()
    where = "" if available is None else f" ({available} bytes of memory available)"
    return f"no room for {nbytes} bytes of shared memory{where}"


def available_memory() -> int | None:
    """The memory the system can give without swapping (``MemAvailable``), in
    bytes; None where ``/proc/meminfo`` does not say."""
    try:
        with open("/proc/meminfo", "rb") as meminfo:
            for line in meminfo:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def peer_credentials(sock: socket.socket) -> tuple[int | None, int | None]:
    """The pid and user id of the process at the other end of *sock* (None where
    the system does not say: there the private directory alone keeps others out)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None, None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", creds)
    return int(pid), int(uid)


def peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process at the other end of *sock* (see :func:`peer_credentials`)."""
    return peer_credentials(sock)[1]


def _bind_unless_served(address: str) -> socket.socket | None:
    """A listening socket at *address*, or None when a tracker already answers there.

    Under a lock on the directory, so that two processes of a tree that both
    found no tracker do not remove each other's socket; a socket file left by
    a tracker that was killed is replaced.
    """
    directory = os.open(os.path.dirname(address) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(directory, fcntl.LOCK_EX)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(address)
            return None
        except OSError:
            pass
        finally:
            probe.close()
        try:
            os.unlink(address)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(address)
        os.chmod(address, 0o600)
        listener.listen(128)
        return listener
    finally:
        os.close(directory)  # and the lock with it


def main(argv: list[str]) -> None:
    """``_tracker.py ROOT_PID ADDRESS POOL_BYTES POOL_IDLE_S``, and on standard
    input one line: ``TREE_NAME SECRET`` (a secret never goes on a command line,
    which every user can read in ``/proc``).

    Exits 0 once listening (the server itself goes on in a grandchild, so it
    is nobody's child to reap), 3 if a tracker already listens there.
    """
    root_pid, address, pool_budget, pool_idle = argv
    name, _, secret = sys.stdin.readline().strip().partition(" ")
    if not name or not secret:
        os._exit(2)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listener = _bind_unless_served(address)
    if listener is None:
        os._exit(3)
    bound = os.stat(address).st_ino
    if os.fork():
        os._exit(0)
    os.setsid()  # Ctrl-C in the terminal is not for the tracker
    os.chdir("/")
    tracker = Tracker(listener, name, secret, int(root_pid), int(pool_budget), float(pool_idle))
    try:
        tracker.serve()
    finally:
        try:
            if os.stat(address).st_ino == bound:  # still ours, not a successor's
                os.unlink(address)
        except OSError:
            pass
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
