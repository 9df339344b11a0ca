"""The zygote: a small single-threaded server that forks each new process.

Started once per parent by :mod:`._zygote_client`, it imports the modules the
parent had imported (so children start with them loaded), then forks one child
per request. Because the zygote runs no threads, forking it is safe even when
the parent runs many.

Wire format of one request (one connection per child):

* client -> zygote: one ``sendmsg`` of ``secret (32 bytes) + struct "!B"
  std_mask`` with ``SCM_RIGHTS`` descriptors ``[status_w, *std_fds,
  *user_fds]``, followed in the same stream by the child's two channel frames
  (see :mod:`._wire`). The zygote reads only the request; the frames wait in
  the socket for the child, which can start on them at once. When std_mask
  has bit ``0x80`` (``_IMPORTS``), ``struct "!I"`` size and a pickled
  :class:`MirrorRequest` come between the request and the frames: the
  modules the parent has imported since (:mod:`._mirror`), which the zygote
  imports before it starts this child.
* zygote -> client, on ``status_w``: ``struct "!i"`` pid of the new child. The
  connection belongs to the child (it is the child's channel, see
  :mod:`._wire`); the zygote never writes to it, so nothing can interleave
  with what the child writes.
* When the child ends, the zygote (its parent) reaps it and writes
  ``struct "!i"`` exit code to ``status_w``; the client's end of that pipe,
  once the pid is read, is the process's ``sentinel``. End of file without a
  code means the zygote died.

The socket lies in a directory only the user can enter (mode 0700). A
connection that does not come from the zygote's parent process
(``SO_PEERCRED``), or whose first bytes are not the secret, is closed
unanswered (its descriptors closed, so the client's ``status_w`` reaches end
of file), and the zygote goes on serving.

Spares: while idle, the zygote forks children ahead of time (two at first,
one more each time a request found none, up to the CPUs). A spare not yet
offered to the parent (below) waits on a socket pair for the connection and
descriptors of a request that the zygote hands it (``struct "!B"`` std_mask
with ``SCM_RIGHTS`` ``[connection, *std_fds, *user_fds]``) and answers one
byte, ``\x01``, before it reads from the connection, so a request costs a
hand-over rather than a ``fork()``.

Offers (the direct path): the parent keeps one connection open as its
*mailbox* (its first; a request whose std_mask is ``_MAILBOX`` alone, no
descriptors). The zygote offers it each spare: ``_MAIL`` ``_OFFER`` (pid,
import generation) with ``SCM_RIGHTS`` [the parent's end of a socket pair
whose other end the spare holds]. The parent then asks the spare itself,
without the zygote: on that socket, the same ``secret + std_mask`` with
``[status_w, channel, *std_fds, *user_fds]`` (its channel is a socket pair of
its own, the frames written to it after the request), and knows the pid from
the offer, so ``start()`` waits for nobody. The
spare passes ``status_w`` on to the zygote (``\x02`` with ``SCM_RIGHTS``
``[status_w]`` on its hand-over socket), which writes only the exit code to
it; if the spare ends before it has passed it on (killed: the parent may
already have sent it a request), the zygote says so on the mailbox
(``_DEATH``, pid, exit code), and the parent takes that as the exit code. The
generation counts the zygote's imports for the parent (``_IMPORTS``):
an offer made before the last of them is not taken (that spare lacks the
modules), and the zygote drops such a spare. The zygote runs in a process group of
its own, where its spares are born and wait, so that a Ctrl-C in the terminal,
meant for the processes of that moment, never reaches one; a new child joins
the parent's group before anything of it runs.

The zygote exits when the pipe from its parent reaches end of file (the parent
exited or died); its children then get ``SIGKILL`` from the kernel
(``PR_SET_PDEATHSIG``), so nothing outlives the parent. The pipe also raises
``SIGIO`` in the zygote at that end of file, so a zygote busy elsewhere than
its ``select()`` (a preloaded module whose import hangs) exits all the same;
``SIGTERM`` sent to it makes it exit too, its directory removed either way
(one sent to the parent's process group reaches the parent and its running
children, not the zygote, which then sees the parent's end).
"""

from __future__ import annotations

import fcntl
import gc
import importlib
import os
import pickle
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Container
from typing import NamedTuple, NoReturn

# hmac.compare_digest without hmac: hmac loads OpenSSL, whose pages would be
# the zygote's alone (about 3 MiB of USS) in a parent that never loaded it.
from .._compat import compare_digest, raw_signal
from .._wait import readable
from ._wire import read_exactly

__all__ = ["MirrorRequest", "SpareTiming", "StartRefused", "ZygoteConfig", "main", "refuse_starts"]

SECRET_SIZE = 32
_REQUEST = struct.Struct("!B")
_IMPORTS = 0x80  # std_mask bit: modules to import follow the request
_MAILBOX = 0x40  # std_mask, alone: this connection is the parent's mailbox (once; no child)
#: What the zygote writes to the parent's mailbox: kind, pid, value.
#: _OFFER: a spare, value the zygote's import generation, with SCM_RIGHTS [the
#: parent's end of a socket pair to that spare]; _DEATH: an offered spare that
#: ended without taking a request (the parent may have sent it one), value its
#: exit code.
_MAIL = struct.Struct("!Bii")
_OFFER, _DEATH = 1, 2
_IMPORTS_SIZE = struct.Struct("!I")
_REQUEST_SIZE = SECRET_SIZE + _REQUEST.size
#: What the status pipe carries, word by word: the child's pid, then its exit code.
_STATUS_WORD = struct.Struct("!i")
_MAX_FDS = 253  # SCM_MAX_FD
_REHEARSE_AFTER = 0.01  # seconds a spare waits for a request before it rehearses
_HANDOFF_TIMEOUT = 5.0  # seconds a spare has to take a request
_SPARE_DELAY = 0.005  # seconds the next spare waits for the child started last to end
# What every child may run, imported once here rather than in each child, once
# the zygote's first requests are served: cloudpickle, which loads a class sent
# by value (procesos imports it only when first needed); the engine's worker,
# even when the parent has not used the engine yet: a program that starts a
# Process before its first pool would otherwise pay for that import in every
# worker (4 ms of a fresh pool's first result, 10 ms); it adds nothing
# measurable to the zygote's USS; and the shared-memory client, which a process
# loads at its first frame with a part in shared memory (10 ms per child
# otherwise); and the output's pipes and relay, which a child that starts
# processes of its own needs (import procesos leaves them to the first start).
# Named, like any preloaded module: this layer does not depend on them.
_PROCESOS_LATER = ("cloudpickle", "procesos._engine._worker", "procesos._shm._client",
                   "procesos._shm._sent", "procesos._shm._write_cache", "procesos._shm._copy",
                   "procesos._output._pipes")
# Seconds a booting zygote waits, once it has served a request, for the next
# before it goes on importing (see _ZygoteServer.serve_waiting).
_BOOT_GRACE = 0.015
# Spares kept: two at first (a program starts two processes, then joins them);
# one more each time a request finds none left, up to the machine's CPUs (at most 8).
_SPARES_AT_FIRST = 2
_SPARES_AT_MOST = max(_SPARES_AT_FIRST, min(8, os.cpu_count() or 1))
_TAKEN = b"\x01"
_TAKEN_DIRECT = b"\x02"  # spare -> zygote, with SCM_RIGHTS [status_w]: the parent's request


class ZygoteConfig(NamedTuple):
    """What the parent tells its zygote at start-up (through the alive pipe)."""

    secret: bytes
    sys_path: list[str]
    preload: list[str]
    directory: str
    cwd: str  # the parent's, when it started the zygote: children start there
    environ: dict[str, str]  # likewise
    spare: bool  # keep a child forked ahead of time
    # The real path of the parent's module for each preloaded name that has one:
    # a module of that name found elsewhere here is not the parent's (dropped).
    preload_files: dict[str, str] = {}
    # The libraries among the parent's modules: imported once the requests
    # waiting at the zygote's start are served (see main()).
    preload_later: tuple[str, ...] = ()


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("the client closed the connection")
        data += chunk
    return data


class StartRefused(RuntimeError):
    """A module the zygote imports tried to start a process (see :func:`refuse_starts`)."""


_importing: str | None = None  # the module the zygote is importing now


def refuse_starts() -> None:
    """Raise :class:`StartRefused` while the zygote imports a module.

    Called by every ``Popen``: a module that starts processes when it is
    imported would start them from the zygote (a zygote of its own, children
    of the zygote that nobody waits for). Its import fails there instead;
    children import it themselves, as before.
    """
    if _importing is not None:
        raise StartRefused(f"procesos: the zygote did not import {_importing!r}: it starts a "
                           "process when imported (children import it themselves)")


def _preload(names: list[str]) -> None:
    global _importing
    for name in names:
        try:
            _importing = name
            importlib.import_module(name)
        except StartRefused as exc:
            os.write(2, f"{exc}\n".encode())
        except BaseException:  # a module that fails to import is simply not preloaded
            pass
        else:
            _warn_if_threaded(name)
        finally:
            _importing = None


def _python_threads() -> int:
    # Python's own threads only: a native library's idle pool (OpenBLAS starts
    # one when numpy is imported) was always forked with the zygote, and its
    # library prepares for fork() itself.
    threading = sys.modules.get("threading")
    return 1 if threading is None else int(threading.active_count())


_warned_threads = False


def _warn_if_threaded(name: str) -> None:
    """Say so once if importing *name* left a thread running in the zygote: a child
    forked from a process with threads can deadlock on a lock one of them held."""
    global _warned_threads
    if _warned_threads or _python_threads() == 1:
        return
    _warned_threads = True
    os.write(2, (
        f"procesos: importing {name!r} in the zygote started a thread; processes forked "
        "from it may deadlock. Exclude the module: procesos.set_zygote_exclude(["
        f"{name.partition('.')[0]!r}]) or PROCESOS_ZYGOTE_EXCLUDE={name.partition('.')[0]}\n"
    ).encode())


class MirrorRequest(NamedTuple):
    """What follows a request with ``_IMPORTS``: modules the parent has imported since."""

    sys_path: list[str]
    cwd: str  # the parent's now: relative entries of sys_path resolve as there
    # Each name with the real path of the parent's module (None: no file): a
    # module of that name found elsewhere here is not the parent's, and is dropped.
    modules: list[tuple[str, str | None]]
    # Those of them that are the standard library's or installed packages': a
    # zygote still booting imports them with its own preloads (see main()).
    libraries: list[str] = []


def _read_imports(conn: socket.socket) -> MirrorRequest:
    (size,) = _IMPORTS_SIZE.unpack(_recv_exactly(conn, _IMPORTS_SIZE.size))
    try:
        request = pickle.loads(_recv_exactly(conn, size))
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as exc:
        raise ValueError(f"unreadable import list: {exc!r}") from exc
    if not isinstance(request, MirrorRequest):
        raise ValueError("unreadable import list")
    return request


def _drop_strangers(files: dict[str, str]) -> None:
    """Forget each module imported here from another file than the parent's (a
    relative ``sys.path`` entry, another directory): a child imports the right one."""
    for name, file in files.items():
        module = sys.modules.get(name)
        if module is not None and _real_file(module) != file:
            del sys.modules[name]


def _real_file(module: object) -> str | None:
    file = getattr(module, "__file__", None)
    return os.path.realpath(file) if isinstance(file, str) and file else None


class _Spare(NamedTuple):
    """A child forked ahead of time, waiting on *handoff* (or, once offered to the
    parent, on its own socket to the parent) for its request."""

    pid: int
    handoff: socket.socket
    born: float  # time.monotonic() of its fork
    # The parent's end of the spare's direct socket, until it is offered (then None).
    parent_end: socket.socket | None

    def close(self) -> None:
        """Let the spare go (it exits at the end of file of its hand-over socket)."""
        self.handoff.close()
        if self.parent_end is not None:
            self.parent_end.close()


class SpareTiming:
    """When the zygote forks its next spare: at once, or after a delay.

    A fork while the child started last is starting up takes the CPU from
    that child, so after a start the next spare waits until that child has
    ended, for up to ``_SPARE_DELAY`` (isolated starts, 30 ms apart, 2 cores:
    create + start + join 0.91x the standard library's fork this way, 1.24x
    with the spare forked at once). A program that starts processes in a
    loop, though, asks again before that: each start would pay a fork of its
    own. Once a start has found no spare, the next spares are forked at once
    (such a loop, 2 cores: 2.4 ms a start against 2.9 ms), until a start
    finds one that has waited ``_SPARE_DELAY`` or longer as the next to be
    taken (since the start before it, or its fork): starts that far apart
    would have found a delayed one too. (Two processes started at once, the
    lesson's program, find their spares waiting and are not a loop: the
    spares after them wait for their end.)
    """

    def __init__(self) -> None:
        self.latest: int | None = None  # the child started last
        self.latest_at = 0.0  # when (time.monotonic())
        self.eager = False  # fork the next spare at once

    def started(self, pid: int, now: float, spare_age: float | None) -> None:
        """Child *pid* has just been started (at *now*) by a spare that was the next
        to be taken for *spare_age* seconds, or (None) by a fork of its own."""
        if spare_age is None:
            self.eager = True
        elif spare_age >= _SPARE_DELAY:
            self.eager = False
        self.latest, self.latest_at = pid, now

    def started_at_boot(self, pid: int, now: float) -> None:
        """Child *pid* has just been forked by a zygote still starting (no spare
        yet, whatever the pace of the starts)."""
        self.latest, self.latest_at = pid, now

    def delay(self, running: Container[int], now: float) -> float | None:
        """Seconds to wait before forking the next spare, or None: fork it now
        (*running*: the children that have not ended)."""
        if self.eager or self.latest not in running:
            return None
        remaining = self.latest_at + _SPARE_DELAY - now
        return remaining if remaining > 0 else None


class _ZygoteServer:
    """The zygote's loop: requests from the parent, its children, its spare."""

    def __init__(self, listener: socket.socket, alive_fd: int, config: ZygoteConfig,
                 home_group: int | None = None) -> None:
        self.listener = listener
        self.home_group = home_group  # the parent's process group (see _own_process_group)
        self.alive_fd = alive_fd
        self.config = config
        self.children: dict[int, int] = {}  # pid -> status_w
        self.spares: list[_Spare] = []  # oldest first
        self.spare_target = _SPARES_AT_FIRST
        self.last_start = 0.0  # time.monotonic() of the latest start
        self.mailbox: socket.socket | None = None  # the parent's, for offers
        self.mailbox_opened = False
        self.generation = 0  # import requests handled (see _MAIL)
        self.untaken: set[int] = set()  # offered spares that ended untaken, not yet reaped
        self.spare_timing = SpareTiming()
        # Until finish_boot(): requests are served by forks, no spare is made,
        # and the libraries to import wait in boot_imports (see main()).
        self.booting = True
        self.boot_imports: list[str] = [*config.preload_later, *_PROCESOS_LATER]
        self.boot_files = dict(config.preload_files)
        self.rehearsal: Callable[[], None] | None = None
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def serve(self) -> NoReturn:
        base = [self.listener.fileno(), self.alive_fd, self.wake_r]
        while True:
            delay = None
            while len(self.spares) < self.spare_target and self.config.spare:
                delay = self.spare_timing.delay(self.children, time.monotonic())
                if delay is not None or not self.make_spare():
                    break
            offered = {spare.handoff.fileno(): spare for spare in self.spares
                       if spare.parent_end is None}
            self.handle_ready(readable([*base, *offered], delay), offered)

    def serve_waiting(self) -> None:
        """While booting: serve what is waiting (the parent's requests, ended
        children, the parent's end). Once something was, wait a little for more
        (starts come in groups: the lesson's two, a pool's workers) before the
        imports, for at most ``_BOOT_GRACE`` in all."""
        base = [self.listener.fileno(), self.alive_fd, self.wake_r]
        wait, deadline = 0.0, None
        while ready := readable(base, wait):
            self.handle_ready(ready, {})
            now = time.monotonic()
            if deadline is None:
                deadline = now + _BOOT_GRACE
            wait = max(0.0, deadline - now)

    def boot(self) -> None:
        """Serve the starts that came while this zygote was starting (a program's
        first: the lesson's two, a pool's workers), then import what waits in
        ``boot_imports``; then :meth:`finish_boot`.

        Starts that come during the imports wait for them, as every start did
        before the boot was split. Serving them between two imports was tried:
        a second pool right after the first then started its workers while the
        imports went on, without spares (bench_imports: 21 ms against 16)."""
        self.serve_waiting()
        while self.boot_imports:
            _preload([self.boot_imports.pop(0)])
        self.finish_boot()

    def finish_boot(self) -> None:
        """Every preload is done: spares may be forked from now on."""
        _drop_strangers(self.boot_files)
        _become_like_the_parent(self.config)  # our directory back; an import may change more
        _snapshot_libraries()
        self.rehearsal = _rehearsal()
        self.booting = False
        # Objects that exist now live as long as the zygote: keeping the collector
        # off them spares a child's copy-on-write of their pages.
        gc.collect()
        gc.freeze()

    def handle_ready(self, ready: Container[int], offered: dict[int, _Spare]) -> None:
        """Act on the descriptors *ready* (see serve())."""
        for fd, spare in offered.items():
            if fd in ready:
                self.collect_taken(spare)
        if self.wake_r in ready:
            try:
                while os.read(self.wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            self.reap()
        if self.alive_fd in ready and not os.read(self.alive_fd, 1):
            self.shutdown()
        if self.listener.fileno() in ready:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.handle(conn)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for spare in list(self.spares):
                if spare.pid == pid:
                    # Taken by the parent and already ended, or dead while it waited.
                    self.collect_taken(spare)
                    self.drop_spare(spare)
            if pid in self.untaken:
                self.untaken.discard(pid)
                self.tell_the_parent(_DEATH, pid, os.waitstatus_to_exitcode(status))
            status_w = self.children.pop(pid, None)
            if status_w is not None:
                try:
                    os.write(status_w, _STATUS_WORD.pack(os.waitstatus_to_exitcode(status)))
                except OSError:
                    pass
                os.close(status_w)

    def handle(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            conn.settimeout(5.0)
            if not _from_the_parent(conn):
                raise PermissionError("not the zygote's parent")
            message, fds, flags, _ = socket.recv_fds(conn, _REQUEST_SIZE, _MAX_FDS)
            if 0 < len(message) < _REQUEST_SIZE:  # a request split in two
                message += _recv_exactly(conn, _REQUEST_SIZE - len(message))
            valid = (
                len(message) == _REQUEST_SIZE
                and compare_digest(message[:SECRET_SIZE], self.config.secret)
                and not flags & socket.MSG_CTRUNC
            )
            if not valid:
                raise PermissionError("request refused")
            (std_mask,) = _REQUEST.unpack(message[SECRET_SIZE:])
            if std_mask & _MAILBOX:
                # Once, the parent's first connection: nobody can take it over.
                if std_mask != _MAILBOX or fds or self.mailbox_opened:
                    raise PermissionError("request refused")
                self.open_mailbox(conn)
                return
            if not fds:
                raise PermissionError("request refused")
            imports = _read_imports(conn) if std_mask & _IMPORTS else None
            conn.settimeout(None)  # the child's channel blocks
        except (OSError, ValueError):
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        status_w, rest = fds[0], fds[1:]
        if imports is not None:
            self.mirror(imports)
        pid, spare_born = self.hand_to_spare(conn, std_mask & ~_IMPORTS, rest)
        if pid is None:
            if not self.spares and not self.booting:  # every spare taken: keep one more
                self.spare_target = min(self.spare_target + 1, _SPARES_AT_MOST)
            try:
                pid = os.fork()
            except OSError:
                pid = -1  # no room for a process: the client sees end of file
            if pid == 0:
                os.close(status_w)
                self.become_child(conn.detach(), std_mask, rest)
        for fd in rest:
            os.close(fd)
        conn.close()
        if pid < 0:
            os.close(status_w)
            return
        self.children[pid] = status_w
        now = time.monotonic()
        if self.booting:
            self.last_start = now
            self.spare_timing.started_at_boot(pid, now)
        else:
            self.spare_timing.started(pid, now, self.waited(spare_born, now))
        try:
            os.write(status_w, _STATUS_WORD.pack(pid))
        except OSError:
            pass  # the client has gone; the child will see end of file

    def mirror(self, request: MirrorRequest) -> None:
        """Import modules the parent has imported since (see :mod:`._mirror`), so that
        no child imports them again; a spare forked before them is dropped."""
        self.generation += 1
        for spare in [spare for spare in self.spares if spare.parent_end is None]:
            self.drop_spare(spare)  # offered: the parent no longer takes it (its generation is old)
        loaded = len(sys.modules)
        sys.path[:] = request.sys_path
        try:
            os.chdir(request.cwd)
        except OSError:
            pass
        names = [name for name, _ in request.modules]
        files = {name: file for name, file in request.modules if file is not None}
        if self.booting:  # the libraries wait for the boot's own imports (main())
            later = set(request.libraries)
            self.boot_imports.extend(name for name in names if name in later)
            self.boot_files.update(files)
            names = [name for name in names if name not in later]
        _preload(names)
        _drop_strangers(files)
        _become_like_the_parent(self.config)  # our directory back; an import may change more
        if len(sys.modules) == loaded:
            return
        _snapshot_libraries()
        for spare in list(self.spares):
            self.drop_spare(spare)  # it exits on the end of file; reap() collects it
        gc.collect()
        gc.freeze()

    def make_spare(self) -> bool:
        """Fork the next child now, while idle: a request then only hands it over.
        False when the system has no room for it."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        parent_end, direct = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = os.fork()
        except OSError:
            for sock in (ours, theirs, parent_end, direct):
                sock.close()
            return False
        if pid == 0:
            ours.close()
            parent_end.close()
            self.wait_as_spare(theirs, direct)
        theirs.close()
        direct.close()
        self.spares.append(_Spare(pid, ours, time.monotonic(), parent_end))
        self.offer()
        return True

    def drop_spare(self, spare: _Spare) -> None:
        """Let *spare* go (it exits on the end of file of its socket; reap() collects it)."""
        if spare in self.spares:
            self.spares.remove(spare)
            spare.close()

    def open_mailbox(self, conn: socket.socket) -> None:
        """Keep *conn*, the parent's mailbox, and offer it the spare there is."""
        self.mailbox_opened = True
        conn.setblocking(False)
        self.mailbox = conn
        self.offer()

    def offer(self) -> None:
        """Send the direct socket of each spare not yet offered to the parent, which
        then asks that spare itself."""
        for index, spare in enumerate(self.spares):
            mailbox = self.mailbox
            if mailbox is None:
                return
            if spare.parent_end is None:
                continue
            try:
                socket.send_fds(mailbox, [_MAIL.pack(_OFFER, spare.pid, self.generation)],
                                [spare.parent_end.fileno()])
            except BlockingIOError:
                return  # the parent is not reading its offers: the spares stay ours
            except OSError:
                mailbox.close()
                self.mailbox = None
                return
            spare.parent_end.close()
            self.spares[index] = spare._replace(parent_end=None)

    def waited(self, born: float | None, now: float) -> float | None:
        """How long the spare forked at *born* that a start has just taken was the
        next to be taken (the time since the start before, or since its fork);
        None for a start that found no spare."""
        last, self.last_start = self.last_start, now
        return None if born is None else now - max(born, last)

    def tell_the_parent(self, kind: int, pid: int, value: int) -> None:
        """A message without descriptors on the mailbox (lost if the parent reads none)."""
        if self.mailbox is not None:
            try:
                self.mailbox.send(_MAIL.pack(kind, pid, value))
            except OSError:
                pass

    def collect_taken(self, spare: _Spare) -> None:
        """Read what an offered *spare* says: taken by the parent (its ``status_w``
        comes with it), or nothing (it died). Never blocks."""
        if spare.parent_end is not None or spare not in self.spares:
            return
        try:
            message, fds, _, _ = socket.recv_fds(spare.handoff, 1, 1, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            message, fds = b"", []
        if message == _TAKEN_DIRECT and len(fds) == 1:
            self.children[spare.pid] = fds[0]
            now = time.monotonic()
            self.spare_timing.started(spare.pid, now, self.waited(spare.born, now))
        else:
            for fd in fds:
                os.close(fd)
            self.untaken.add(spare.pid)  # the parent hears of its end (reap())
        self.drop_spare(spare)

    def hand_to_spare(self, conn: socket.socket, std_mask: int,
                      fds: list[int]) -> tuple[int | None, float | None]:
        """Give the request to a spare child not offered to the parent: its pid and
        when it was forked, or (None, None) when there is none."""
        kept = [spare for spare in self.spares if spare.parent_end is not None]
        if not kept:
            return None, None
        spare = kept[0]
        self.spares.remove(spare)
        assert spare.parent_end is not None
        spare.parent_end.close()
        try:
            socket.send_fds(spare.handoff, [_REQUEST.pack(std_mask)], [conn.fileno(), *fds])
            # The spare answers before it touches the connection. A spare
            # killed while it waited may take the message and die: the
            # request then goes to a fork. One that does not answer at all
            # (stopped) is killed, and the request with it.
            if not readable([spare.handoff.fileno()], _HANDOFF_TIMEOUT):
                os.kill(spare.pid, signal.SIGKILL)
                return spare.pid, spare.born
            if spare.handoff.recv(1) != _TAKEN:
                return None, None
        except OSError:
            return None, None  # it died; reap() collects it
        finally:
            spare.handoff.close()
        return spare.pid, spare.born

    def leave_the_zygote(self) -> None:
        """In a new child: drop the zygote's signal handling and descriptors."""
        raw_signal.set_wakeup_fd(-1)
        raw_signal.signal(signal.SIGCHLD, raw_signal.SIG_DFL)
        raw_signal.signal(signal.SIGINT, raw_signal.default_int_handler)
        for signum in _ENDING_SIGNALS:
            raw_signal.signal(signum, raw_signal.SIG_DFL)
        self.listener.close()
        for fd in (self.alive_fd, self.wake_r, self.wake_w, *self.children.values()):
            os.close(fd)
        for spare in self.spares:
            spare.close()
        if self.mailbox is not None:
            self.mailbox.close()

    def wait_as_spare(self, handoff: socket.socket, direct: socket.socket) -> NoReturn:
        zygote_pid = os.getppid()
        try:
            self.leave_the_zygote()
            waiting = [handoff.fileno(), direct.fileno()]
            # Processes started back to back find the spare ready: there the
            # rehearsal would only compete for the CPU with the child before.
            idle = not readable(waiting, _REHEARSE_AFTER)
            if idle and self.rehearsal is not None:
                self.rehearsal()
            while True:
                ready = readable(waiting, None)
                if direct.fileno() in ready:
                    taken = _take_from_the_parent(direct, handoff, self.config.secret)
                    if taken is None:
                        os._exit(0)  # the parent let this offer go
                    _join_process_group(self.home_group)
                    break
                if handoff.fileno() in ready:
                    message, fds, _, _ = socket.recv_fds(handoff, _REQUEST.size, _MAX_FDS)
                    if len(message) != _REQUEST.size or not fds:
                        os._exit(0)  # the zygote has gone, or dropped us
                    # A Ctrl-C that reached the spare while it waited was meant
                    # for the processes of that moment, not for this one.
                    # Dropped before the answer: the parent learns this pid only
                    # after it, so an interrupt it sends to the new process
                    # always stays pending.
                    if signal.SIGINT in signal.sigpending():
                        signal.sigwait({signal.SIGINT})
                    _join_process_group(self.home_group)
                    direct.close()  # first: once the zygote has our answer, we are taken
                    handoff.sendall(_TAKEN)
                    (std_mask,) = _REQUEST.unpack(message)
                    taken = (std_mask, fds)
                    handoff.close()
                    # The zygote waits for that answer to write our pid to the
                    # parent, whose start() waits for it. Woken by the hand-over,
                    # this process often runs on the zygote's CPU and would keep
                    # it until the child's work was done: the parent then learnt
                    # the pid 2 ms after the child had ended (traced, isolated
                    # starts, 2 cores). Let the zygote write it.
                    if hasattr(os, "sched_yield"):
                        os.sched_yield()
                    break
        except BaseException:
            os._exit(1)
        std_mask, fds = taken
        from ._child import zygote_child_main

        zygote_child_main(fds[0], std_mask, fds[1:], zygote_pid)

    def become_child(self, channel_fd: int, std_mask: int, fds: list[int]) -> NoReturn:
        zygote_pid = os.getppid()
        try:
            _join_process_group(self.home_group)
            self.leave_the_zygote()
        except BaseException:
            os._exit(1)
        from ._child import zygote_child_main

        zygote_child_main(channel_fd, std_mask, fds, zygote_pid)

    def shutdown(self) -> NoReturn:
        _remove_and_exit(self.config.directory)


def _take_from_the_parent(direct: socket.socket, handoff: socket.socket,
                          secret: bytes) -> tuple[int, list[int]] | None:
    """In an offered spare: the parent's request (std_mask, ``[channel, *fds]``), its
    ``status_w`` passed on to the zygote; None at the end of file. A request that
    is not the parent's ends this spare."""
    message, fds, flags, _ = socket.recv_fds(direct, _REQUEST_SIZE, _MAX_FDS)
    if not message and not fds:
        return None
    if (len(message) != _REQUEST_SIZE or flags & socket.MSG_CTRUNC or len(fds) < 2
            or not compare_digest(message[:SECRET_SIZE], secret)):
        os._exit(1)
    (std_mask,) = _REQUEST.unpack(message[SECRET_SIZE:])
    socket.send_fds(handoff, [_TAKEN_DIRECT], [fds[0]])  # the zygote writes the exit code
    os.close(fds[0])
    handoff.close()
    direct.close()
    return std_mask, fds[1:]


def _own_process_group() -> int | None:
    """Move the zygote to a process group of its own, where its spares are born;
    the group it came from, its parent's (None: it stays there). A Ctrl-C in the
    terminal goes to the foreground group, the parent's, and so never reaches a
    spare, which no program knows of yet: from the fork on, with no moment in
    the parent's group."""
    home = os.getpgrp()
    try:
        os.setpgid(0, 0)
    except OSError:
        return None
    return home


def _join_process_group(home: int | None) -> None:
    """A new child: into the parent's process group, before anything of it runs."""
    if home is not None:
        try:
            os.setpgid(0, home)
        except OSError:
            pass


_ENDING_SIGNALS = (signal.SIGIO, signal.SIGTERM)
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _from_the_parent(conn: socket.socket) -> bool:
    """Whether *conn* was opened by the process that started this zygote, the only
    one that may ask it for children (where the system does not say: True, the
    directory and the secret still keep others out)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return True
    pid, uid, _ = _CREDENTIALS.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size))
    return bool(pid == os.getppid() and uid == os.getuid())


def _remove_and_exit(directory: str) -> NoReturn:
    # The private directory holds the socket alone: no shutil (2 ms of import
    # in a zygote's boot, before its first fork).
    try:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)
    except OSError:
        pass  # the parent removed it first
    os._exit(0)


def _end_with_the_parent(alive_fd: int, directory: str) -> None:
    """Exit on ``SIGTERM``, and on ``SIGIO`` from the parent's pipe at its end of file,
    wherever the zygote is blocked (the kernel interrupts the call)."""
    zygote = os.getpid()

    def end(signum: int, frame: object) -> None:
        if os.getpid() != zygote:  # a child, between its fork and leave_the_zygote()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        _remove_and_exit(directory)

    for signum in _ENDING_SIGNALS:
        signal.signal(signum, end)
    try:
        fcntl.fcntl(alive_fd, fcntl.F_SETOWN, zygote)
        fcntl.fcntl(alive_fd, fcntl.F_SETFL, fcntl.fcntl(alive_fd, fcntl.F_GETFL) | os.O_ASYNC)
    except (OSError, AttributeError):
        pass  # no SIGIO here: the select() loop still sees the end of file
    try:
        # The parent may have gone before the signal was armed.
        if readable([alive_fd], 0):
            _remove_and_exit(directory)
    except OSError:
        _remove_and_exit(directory)


def _rehearsal() -> Callable[[], None] | None:
    """What a spare runs while it waits: the first steps of every child, on samples.

    A forked child copies each page of the zygote's memory that it first
    writes (a page fault and 4 KiB copied), and reference counting writes to
    every object the child touches. A spare that has already read a frame,
    unpickled a setup and a process object and pickled an outcome has those
    pages of its own: the child that it becomes skips most of those copies.
    Side effects: none that last (the samples are garbage afterwards).
    """
    from multiprocessing import context
    from multiprocessing.connection import Connection

    from .._compat import drop_inherited_exit_handlers, drop_inherited_finalizers
    from .._outcome import encode_value
    from .._serialization import dumps, loads
    from ._lifetime import _set_pdeathsig
    from ._wire import ChildChannel, ChildSetup

    class _NoPopen:  # lets the sample's authentication key be pickled
        @staticmethod
        def duplicate_for_child(fd: int) -> int:
            return 0

    def sample_target() -> None:  # local: pickled by value, like a user's function
        pass

    setup = pickle.dumps(
        ChildSetup(start_method=None, sys_path=list(sys.path), sys_argv=list(sys.argv),
                   cwd=None, environ=None, fds=[], resource_tracker_fd=None,
                   parent_thread_is_main=True, log_level=None, log_to_stderr=False,
                   logging_config=None),
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    context.set_spawning_popen(_NoPopen())  # type: ignore[arg-type]
    try:
        # A process object as the parent sends one (preloaded above, if it imports).
        contexts = sys.modules["procesos._proc._context"]
        process = dumps(contexts.default_context.get_context("zygote").Process(
            target=sample_target))
    except Exception:
        return None
    finally:
        context.set_spawning_popen(None)

    def rehearse() -> None:
        # What every child does first anyway, done now (the child does it
        # again, to the same effect): die with the zygote, exit handlers and
        # finalizers of the zygote dropped. Not util._close_stdin(): it opens
        # /dev/null with closefd=False, so doing it twice leaves a descriptor
        # open in the child (CPython's test_child_fd_inflation saw it).
        _set_pdeathsig(signal.SIGKILL)
        drop_inherited_exit_handlers()
        drop_inherited_finalizers()
        try:
            left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            # The child's end as a child has it (ChildChannel), the parent's as the parent's.
            sender, receiver = Connection(left.detach()), ChildChannel(right.fileno())
            try:
                for frame in (setup, process):
                    sender.send_bytes(frame)
                pickle.loads(receiver.recv_bytes())
                loads(receiver.recv_bytes())
                receiver.send_bytes(encode_value(None, "the rehearsal"))
                sender.recv_bytes()
            finally:
                sender.close()
                right.close()
        except Exception:
            pass  # a rehearsal only warms up

    return rehearse


def main(listener_fd: int, alive_fd: int) -> NoReturn:
    """Entry point of the zygote process."""
    # Ctrl-C in the terminal reaches the zygote too: it stays blocked here
    # (the zygote started with it blocked) and is held pending in a child
    # until the child runs its target. Not SIG_IGN: a child would inherit that.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        (size,) = struct.unpack("!I", read_exactly(alive_fd, 4))
        config: ZygoteConfig = pickle.loads(read_exactly(alive_fd, size))
    except EOFError:
        os._exit(0)
    # From here on the parent writes nothing more: a readable pipe is its end.
    _end_with_the_parent(alive_fd, config.directory)
    sys.path[:] = config.sys_path
    listener = socket.socket(fileno=listener_fd)
    # Before the first request: the user's own modules (their top-level code
    # runs here, never in a child) and what every child runs: its own code,
    # and the contexts, which a child whose parent chose a start method
    # imports (ChildSetup.start_method) and whose process classes every
    # process object refers to. Named, like any preloaded module: this layer
    # does not depend on them.
    _preload([*config.preload, "procesos._launch._child", "procesos._proc._context"])
    _drop_strangers(config.preload_files)
    _become_like_the_parent(config)
    zygote = _ZygoteServer(listener, alive_fd, config, _own_process_group())
    # The rest (the libraries the parent had imported, _PROCESOS_LATER) is
    # imported once the starts that came meanwhile are served: a program's
    # first start waited 30-40 ms for it, 70 more with numpy. A child that
    # needs one of them before then imports it itself, as under spawn.
    zygote.boot()
    zygote.serve()


def _snapshot_libraries() -> None:
    """Let the engine's workers find the loaded libraries without reading their memory map
    (named: this layer does not depend on the engine)."""
    threads = sys.modules.get("procesos._engine._threads")
    if threads is not None:
        threads.snapshot_libraries()


def _become_like_the_parent(config: ZygoteConfig) -> None:
    """Directory and environment as the parent's when it started us (preloads may differ)."""
    try:
        os.chdir(config.cwd)
    except OSError:
        pass
    if dict(os.environ) != config.environ:
        os.environ.clear()
        os.environ.update(config.environ)
