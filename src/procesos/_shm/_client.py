"""This process's connection to its tree's shared-memory tracker, and segment mapping.

The tree is named at import by ``PROCESOS_SHM_TREE=<root pid>:<name>.<secret>``:
the first procesos process (the root) sets it, every process it starts
inherits it (all start methods pass the environment, which only the user can
read). Whichever process of the tree first needs shared memory starts the
tracker (:mod:`._tracker`); its socket is ``shm-<name>.sock`` in a directory
private to the user (:func:`_runtime_dir`), so no other user can connect to it
or bind it first. Each connection checks that the tracker runs as this user
(``SO_PEERCRED``) and opens with the secret, which the tracker needs to answer
anything. The tracker lives until the root has exited and every connection has
closed; if it dies before (killed), the next request starts a new one.

Messages that need no answer (``release``, ``seal``, ...) may be sent from a
garbage-collection finalizer at any moment, also while this thread is in the
middle of a request: they are queued and written by whoever holds the
connection's lock, so two messages never interleave on the socket.
"""

from __future__ import annotations

import atexit
import collections
import mmap
import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import Any

from .._compat import lock_after_fork
from . import _tree
from ._errors import DataAbandoned, ShmError
from ._tracker import (
    AWAIT,
    HEADER,
    HELLO,
    MAX_MESSAGE,
    OK,
    POISON,
    RELEASE,
    SYNC,
    TRIM,
    decode,
    encode,
    peer_uid,
)

__all__ = [
    "TREE_ENV",
    "DataAbandoned",
    "ShmError",
    "TrackerClient",
    "client",
    "map_segment",
    "tree_token",
]

TREE_ENV = _tree.TREE_ENV
POOL_ENV = "PROCESOS_SHM_POOL_BYTES"
POOL_IDLE_ENV = "PROCESOS_SHM_POOL_IDLE"
RUNTIME_DIR_ENV = "PROCESOS_RUNTIME_DIR"
_HELLO_TIMEOUT = 30.0  # the tracker answers in microseconds unless it hangs
DEFAULT_POOL_BYTES = 1 << 30
DEFAULT_POOL_IDLE = 20.0

_TRACKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_tracker.py")


_root_pid, _token = _tree.root_pid, _tree.token


def tree_token() -> str:
    """The token of this process's tree: ``<name>.<secret>`` (it names and opens the tracker)."""
    return _token


def _private(directory: str) -> bool:
    """Whether *directory* is a real directory of this user's that no one else can enter."""
    info = os.lstat(directory)
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
            and not info.st_mode & 0o077)


def _runtime_dir() -> str:
    """The directory, private to this user, where the trackers' sockets lie.

    ``PROCESOS_RUNTIME_DIR`` if set; else ``$XDG_RUNTIME_DIR/procesos`` where the
    system gives the user such a directory; else ``<tmp>/procesos-<uid>``.
    Created with mode 0700; refused, with :class:`ShmError`, unless it belongs
    to this user and no one else may enter it (another user who made it first
    could otherwise replace the sockets in it).
    """
    chosen = os.environ.get(RUNTIME_DIR_ENV)
    if not chosen:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        try:
            usable = bool(xdg) and os.path.isabs(xdg) and _private(xdg)  # type: ignore[arg-type]
        except OSError:
            usable = False
        chosen = (os.path.join(xdg, "procesos") if usable and xdg else
                  os.path.join(tempfile.gettempdir(), f"procesos-{os.getuid()}"))
    try:
        os.mkdir(chosen, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ShmError(f"cannot create the directory for procesos' sockets {chosen}: {exc}; "
                       f"set {RUNTIME_DIR_ENV} to a directory of yours") from exc
    try:
        private = _private(chosen)
    except OSError:
        private = False
    if not private:
        raise ShmError(
            f"{chosen} must be a directory that belongs to this user and no one else may "
            f"enter (mode 0700); it is not, so procesos will not put its sockets there. "
            f"Remove it, or set {RUNTIME_DIR_ENV} to a directory of yours")
    return chosen


def segment_name_prefix(token: str) -> str:
    """How the tracker of *token*'s tree names its POSIX segments (where they are not
    memfds): ``procesos-<8 characters of the tree's name>-<n>``, in ``/dev/shm``."""
    return f"procesos-{token.partition('.')[0][:8]}-"


def _address(token: str) -> str:
    return os.path.join(_runtime_dir(), f"shm-{token.partition('.')[0]}.sock")


class TrackerClient:
    """One connection to one tracker, shared by the threads of this process."""

    def __init__(self, token: str, root_pid: int) -> None:
        self.token = token
        self.root_pid = root_pid
        self._reset()

    def _reset(self) -> None:
        self.pid = os.getpid()
        self.sock: socket.socket | None = None
        self.lock = threading.Lock()
        self.pending: collections.deque[bytes] = collections.deque()
        # Waiting for a writer's seal takes as long as its copy: on a connection
        # of its own, so that the other threads' messages (that seal among
        # them, when this process is the writer) are not held up behind it.
        self.await_sock: socket.socket | None = None
        self.await_lock = threading.Lock()

    # -- connecting ----------------------------------------------------------------
    def _connect(self) -> socket.socket:
        """A connection to the tree's tracker, opened with the secret; the
        tracker is started when none answers (none yet, or it was killed)."""
        address = _address(self.token)
        for attempt in range(50):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(address)
                if peer_uid(sock) not in (None, os.getuid()):
                    raise ShmError(f"the process listening at {address} is not this user's")
                sock.settimeout(_HELLO_TIMEOUT)
                sock.sendall(encode([HELLO, self.token.partition(".")[2]]))
                (size,) = HEADER.unpack(_receive_exactly(sock, HEADER.size))
                answer = _receive_exactly(sock, size) if size <= MAX_MESSAGE else b""
                try:
                    accepted = decode(answer)[0] == OK
                except ValueError:
                    accepted = False
                if not accepted:
                    raise ShmError(f"the process listening at {address} is not this tree's "
                                   "shared-memory tracker")
                sock.settimeout(None)
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                pass  # no tracker (yet)
            except TimeoutError as exc:
                sock.close()
                raise ShmError(f"the shared-memory tracker at {address} does not answer") from exc
            except OSError:
                pass  # a tracker that was ending as we connected
            except BaseException:
                sock.close()
                raise
            sock.close()
            if attempt == 0 or attempt % 10 == 9:
                self._start_tracker(address)
            else:
                time.sleep(0.01)
        raise ShmError("could not start or reach the shared-memory tracker")

    def _start_tracker(self, address: str) -> None:
        pool = os.environ.get(POOL_ENV, str(DEFAULT_POOL_BYTES))
        idle = os.environ.get(POOL_IDLE_ENV, str(DEFAULT_POOL_IDLE))
        # The started interpreter forks the tracker and exits at once (0, or 3
        # when another process of the tree won the race): nothing to reap later.
        # The tree's name and secret go through its standard input.
        starter = subprocess.Popen(
            [sys.executable, "-I", _TRACKER_SCRIPT, str(self.root_pid), address, pool, idle],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        name, _, secret = self.token.partition(".")
        starter.communicate(f"{name} {secret}\n".encode())

    def may_be_running(self) -> bool:
        """Whether this process is connected to the tracker, or one was started
        (by any process of the tree), without starting one."""
        return self.sock is not None or os.path.exists(_address(self.token))

    # -- messages -----------------------------------------------------------------
    def request(self, *message: Any) -> tuple[Any, ...]:
        """Send *message* and return the tracker's answer.

        A connection found broken (the tracker was killed since) is replaced,
        and the message sent again, once: the new tracker knows nothing of the
        old one's segments, but new requests work.
        """
        data = encode(message)
        with self.lock:
            for attempt in (1, 2):
                fresh = self.sock is None
                try:
                    if self.sock is None:
                        self.sock = self._connect()
                    self._flush_locked()
                    self.sock.sendall(data)
                    reply = _receive(self.sock)
                    break
                except OSError as exc:
                    self._drop_connection()
                    if fresh or attempt == 2:
                        raise ShmError(f"the shared-memory tracker is gone ({exc})") from exc
        self._flush()
        return reply

    def _drop_connection(self) -> None:
        # What was pending was for the tracker that is gone: it means nothing to the next.
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.pending.clear()

    def await_written(self, seg: int) -> bool:
        """Wait until the writer of *seg* has sealed it (True), or gave up (False:
        it dropped it, or died, before the data was written)."""
        with self.await_lock:
            try:
                if self.await_sock is None:
                    self.await_sock = self._connect()
                self.await_sock.sendall(encode((AWAIT, seg)))
                reply = _receive(self.await_sock)
            except BaseException as exc:
                # Ctrl-C, or the tracker gone: an answer may still come on this
                # connection, so the next wait starts on a new one.
                if self.await_sock is not None:
                    self.await_sock.close()
                    self.await_sock = None
                if isinstance(exc, OSError):
                    raise ShmError(f"the shared-memory tracker is gone ({exc})") from exc
                raise
        return bool(reply[0] == OK)

    def notify(self, *message: Any) -> None:
        """Send *message*, which needs no answer; safe from finalizers and fork hooks."""
        if os.getpid() != self.pid:
            return
        self.pending.append(encode(message))
        self._flush()

    def _flush(self) -> None:
        # Whoever holds the lock writes what is pending; re-check after
        # releasing it, for a message queued while we held it.
        while self.pending and self.lock.acquire(blocking=False):
            try:
                self._flush_locked()
            finally:
                self.lock.release()

    def _flush_locked(self) -> None:
        if self.sock is None:
            if not self.pending:
                return
            try:
                self.sock = self._connect()
            except ShmError:
                self.pending.clear()
                return
        while self.pending:
            data = self.pending.popleft()
            try:
                self.sock.sendall(data)
            except OSError:
                self._drop_connection()

    def after_fork_in_child(self) -> None:
        for sock in (self.sock, self.await_sock):
            if sock is not None:
                try:
                    sock.close()  # the parent's connections stay the parent's
                except OSError:
                    pass
        self._reset()


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise ConnectionResetError("the tracker closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _receive(sock: socket.socket) -> tuple[Any, ...]:
    (size,) = HEADER.unpack(_receive_exactly(sock, HEADER.size))
    try:
        return tuple(decode(_receive_exactly(sock, size)))
    except ValueError as exc:
        raise ConnectionResetError(f"the tracker sent a malformed reply ({exc})") from exc


_clients: dict[str, TrackerClient] = {}
_clients_lock = threading.Lock()


def client(token: str | None = None) -> TrackerClient:
    """The connection to the tracker named *token* (this tree's by default)."""
    token = token or _token
    found = _clients.get(token)
    if found is None:
        with _clients_lock:
            found = _clients.get(token)
            if found is None:
                root = _root_pid if token == _token else os.getpid()
                found = _clients[token] = TrackerClient(token, root)
    return found


def tracker_stats(token: str | None = None, trim: bool = False) -> dict[str, int]:
    """The tracker's counts, after it handled everything already sent to it."""
    reply = client(token).request(TRIM if trim else SYNC)
    return dict(reply[1])


# -- mapping ------------------------------------------------------------------------------

def _open(path: str) -> int:
    if path.startswith("/proc/"):
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    from .._compat import shm_open

    return shm_open(path, os.O_RDWR, 0o600)


def map_segment(path: str, size: int, mode: str) -> mmap.mmap:
    """Map a segment: ``"write"`` (shared, pre-faulted), ``"private"`` (copy on
    write) or ``"shared"`` (shared).

    A received segment is faulted in as it is read: for a segment that is
    read whole that is cheaper than pre-faulting it (the kernel maps several
    pages around each fault), and a reader of part of it pays for that
    part only.
    """
    try:
        fd = _open(path)
    except OSError as exc:
        raise ShmError(f"cannot open shared memory {path}: {exc}") from exc
    try:
        if mode == "private":
            return mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE,
                             prot=mmap.PROT_READ | mmap.PROT_WRITE)
        flags = mmap.MAP_SHARED
        if mode == "write":
            flags |= getattr(mmap, "MAP_POPULATE", 0)
        return mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)


# Transport segments mapped by this process (one entry per mapping, so that
# a finalizer never needs a lock): a fork would share them with the child, so
# the tracker must never pool them again.
_mapped: dict[int, tuple[str, int]] = {}
_serials = iter(range(1, sys.maxsize))


def track_mapping(mapping: mmap.mmap, token: str, seg: int) -> None:
    """Release this process's hold on *seg* once *mapping* is garbage."""
    serial = next(_serials)
    _mapped[serial] = (token, seg)
    final = weakref.finalize(mapping, _unmapped, client(token), serial, seg, os.getpid())
    final.atexit = False


def _unmapped(tracker: TrackerClient, serial: int, seg: int, pid: int) -> None:
    if os.getpid() != pid:
        return  # inherited by a fork: the hold is the parent's
    _mapped.pop(serial, None)
    tracker.notify(RELEASE, seg)


def _before_fork() -> None:
    by_token: dict[str, set[int]] = {}
    for token, seg in list(_mapped.values()):
        by_token.setdefault(token, set()).add(seg)
    for token, segs in by_token.items():
        client(token).notify(POISON, sorted(segs))


def _after_fork_in_child() -> None:
    global _clients_lock
    if _mapped:
        _mapped.clear()
    _clients_lock = lock_after_fork(_clients_lock)
    for tracker in _clients.values():
        tracker.after_fork_in_child()


def _close_at_exit() -> None:
    # The tracker gives back this process's holds when its connections close;
    # messages after this (finalizers at shutdown) have nowhere to go.
    for tracker in list(_clients.values()):
        tracker.pid = -1  # notify() drops them
        for sock in (tracker.sock, tracker.await_sock):
            if sock is not None:
                sock.close()
        tracker.sock = tracker.await_sock = None


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
atexit.register(_close_at_exit)
