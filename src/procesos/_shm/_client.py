"""This process's connection to its tree's shared-memory tracker, and segment mapping.

The tree is named at import by ``PROCESOS_SHM_TREE=<root pid>:<token>``: the
first procesos process (the root) sets it, every process it starts inherits it
(all start methods pass the environment). Whichever process of the tree first
needs shared memory starts the tracker (:mod:`._tracker`) at an address derived
from the token; the tracker lives until the root has exited and every
connection has closed.

Messages that need no answer (``release``, ``seal``, ...) may be sent from a
garbage-collection finalizer at any moment, also while this thread is in the
middle of a request: they are queued and written by whoever holds the
connection's lock, so two messages never interleave on the socket.
"""

from __future__ import annotations

import collections
import mmap
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import Any

from .._errors import ProcesosError

__all__ = [
    "TREE_ENV",
    "DataAbandoned",
    "ShmError",
    "TrackerClient",
    "client",
    "map_segment",
    "tree_token",
]

TREE_ENV = "PROCESOS_SHM_TREE"
POOL_ENV = "PROCESOS_SHM_POOL_BYTES"
POOL_IDLE_ENV = "PROCESOS_SHM_POOL_IDLE"
DEFAULT_POOL_BYTES = 1 << 30
DEFAULT_POOL_IDLE = 20.0

_HEADER = struct.Struct("!I")
_TRACKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_tracker.py")


class ShmError(ProcesosError):
    """Shared memory could not be allocated, or data sent through it was lost."""


class DataAbandoned(ShmError):
    """The sender of a message gave up (an error, Ctrl-C) or died before its large
    parts were written: the message is lost."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _join_or_found_tree() -> tuple[int, str]:
    value = os.environ.get(TREE_ENV, "")
    root, _, token = value.partition(":")
    if root.isdigit() and token and (int(root) == os.getpid() or _pid_alive(int(root))):
        return int(root), token
    token = os.urandom(12).hex()
    os.environ[TREE_ENV] = f"{os.getpid()}:{token}"
    return os.getpid(), token


_root_pid, _token = _join_or_found_tree()


def tree_token() -> str:
    """The token of this process's tree (it names the tracker)."""
    return _token


def _address(token: str) -> str:
    if sys.platform.startswith("linux"):
        return f"\0procesos-shm-{token}"
    directory = os.path.join(tempfile.gettempdir(), f"procesos-{os.getuid()}")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.lstat(directory)
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ShmError(f"{directory} must be a directory private to this user")
    return os.path.join(directory, f"{token}.sock")


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
        self.broken = False
        # Waiting for a writer's seal takes as long as its copy: on a connection
        # of its own, so that the other threads' messages (that seal among
        # them, when this process is the writer) are not held up behind it.
        self.await_sock: socket.socket | None = None
        self.await_lock = threading.Lock()

    # -- connecting ----------------------------------------------------------------
    def _connect(self) -> socket.socket:
        address = _address(self.token)
        for attempt in range(50):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(address)
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
            if attempt == 0 or attempt % 10 == 9:
                self._start_tracker(address)
            else:
                time.sleep(0.01)
        raise ShmError("could not start or reach the shared-memory tracker")

    def _start_tracker(self, address: str) -> None:
        if not address.startswith("\0") and os.path.exists(address):
            try:
                os.unlink(address)  # a tracker that was killed left its socket
            except OSError:
                pass
        pool = os.environ.get(POOL_ENV, str(DEFAULT_POOL_BYTES))
        idle = os.environ.get(POOL_IDLE_ENV, str(DEFAULT_POOL_IDLE))
        # The started interpreter forks the tracker and exits at once (0, or 3
        # when another process of the tree won the race): nothing to reap later.
        starter = subprocess.Popen(
            [sys.executable, "-I", _TRACKER_SCRIPT, self.token, str(self.root_pid),
             "@" + address[1:] if address.startswith("\0") else address,
             pool, idle],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        starter.wait()

    # -- messages -----------------------------------------------------------------
    def request(self, *message: Any) -> tuple[Any, ...]:
        """Send *message* and return the tracker's answer."""
        data = _encode(message)
        with self.lock:
            try:
                if self.sock is None:
                    self.sock = self._connect()
                self._flush_locked()
                self.sock.sendall(data)
                reply: tuple[Any, ...] = _receive(self.sock)
            except OSError as exc:
                self.broken = True
                raise ShmError(f"the shared-memory tracker is gone ({exc})") from exc
        self._flush()
        return reply

    def await_written(self, seg: int) -> bool:
        """Wait until the writer of *seg* has sealed it (True), or gave up (False:
        it dropped it, or died, before the data was written)."""
        with self.await_lock:
            try:
                if self.await_sock is None:
                    self.await_sock = self._connect()
                self.await_sock.sendall(_encode(("await", seg)))
                reply: tuple[Any, ...] = _receive(self.await_sock)
            except BaseException as exc:
                # Ctrl-C, or the tracker gone: an answer may still come on this
                # connection, so the next wait starts on a new one.
                if self.await_sock is not None:
                    self.await_sock.close()
                    self.await_sock = None
                if isinstance(exc, OSError):
                    raise ShmError(f"the shared-memory tracker is gone ({exc})") from exc
                raise
        return bool(reply[0] == "ok")

    def notify(self, *message: Any) -> None:
        """Send *message*, which needs no answer; safe from finalizers and fork hooks."""
        if os.getpid() != self.pid or self.broken:
            return
        self.pending.append(_encode(message))
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
                self.broken = True
                self.pending.clear()

    def after_fork_in_child(self) -> None:
        for sock in (self.sock, self.await_sock):
            if sock is not None:
                try:
                    sock.close()  # the parent's connections stay the parent's
                except OSError:
                    pass
        self._reset()


def _encode(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, 4)
    return _HEADER.pack(len(data)) + data


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise ConnectionResetError("the tracker closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _receive(sock: socket.socket) -> Any:
    (size,) = _HEADER.unpack(_receive_exactly(sock, _HEADER.size))
    return pickle.loads(_receive_exactly(sock, size))


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
    reply = client(token).request("trim" if trim else "sync")
    return dict(reply[1])


# -- mapping ------------------------------------------------------------------------------

def _open(path: str) -> int:
    if path.startswith("/proc/"):
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    import _posixshmem  # type: ignore[import-not-found]

    return int(_posixshmem.shm_open(path, os.O_RDWR, 0o600))


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
    tracker.notify("release", seg)


def _before_fork() -> None:
    by_token: dict[str, set[int]] = {}
    for token, seg in list(_mapped.values()):
        by_token.setdefault(token, set()).add(seg)
    for token, segs in by_token.items():
        client(token).notify("poison", sorted(segs))


def _after_fork_in_child() -> None:
    global _clients_lock
    _mapped.clear()
    _clients_lock = threading.Lock()
    for tracker in _clients.values():
        tracker.after_fork_in_child()


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
