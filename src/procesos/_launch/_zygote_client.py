"""The ``zygote`` start method: the parent's handle on its zygote (the popen of a
child it starts is :mod:`._zygote_popen`'s).

One zygote per parent process, started lazily by the first ``start()``,
restarted if it died, shut down at exit after the children were joined.
Its socket lives in a private directory (mode 0700) and every request carries
a 32-byte secret that only the parent and the zygote know.
"""

from __future__ import annotations

import array
import os
import pickle
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from multiprocessing import util
from typing import NamedTuple

from .._compat import environ_data
from .._errors import ProcesosError
from .._serialization import Frame
from .._wait import open_pidfd, readable
from ._interpreter import spawn_interpreter
from ._mirror import ModuleMirror, set_zygote_exclude, set_zygote_preload
from ._process_state import ProcessState
from ._process_state import current as current_process_state
from ._wire import ChildSetup, frame_header
from ._zygote_server import (
    _DEATH,
    _IMPORTS,
    _MAIL,
    _MAILBOX,
    _OFFER,
    _REQUEST,
    _STATUS_WORD,
    SECRET_SIZE,
    MirrorRequest,
    ZygoteConfig,
    refuse_starts,
)

__all__ = ["default_preload", "set_zygote_exclude", "set_zygote_preload", "zygote_pid"]

_TIMEOUT = 60.0  # for the zygote's answer; it answers in microseconds unless it hangs
_ONE_SEND = 1 << 16  # bytes of frames sent in one sendmsg, without blocking
_DEATHS_KEPT = 64  # exit codes of ended spares kept for a start that used one


def default_preload() -> list[str]:
    """The modules a new zygote would preload now (see :mod:`._mirror`)."""
    return ModuleMirror().initial()


class _ZygoteHandle:
    """The parent's handle on its zygote."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid: int | None = None
        self.directory = ""
        self.address = ""
        self.secret = b""
        self.alive_w = -1
        # The parent's directory and environment when the zygote started: the
        # zygote's own, so a child need not be told them while they are unchanged.
        self.cwd = ""
        self.environ_data: Mapping[object, object] = {}
        self.process_state: ProcessState | None = None
        self._setup: tuple[ChildSetup, bytes] | None = None  # the last one, pickled
        self.mirror = ModuleMirror()  # what this zygote has been asked to import
        # Where the zygote offers its spares (see _zygote_server), the offers
        # received and not yet taken, and the import requests sent: an offer
        # made before the last of them is not taken.
        self.mailbox: socket.socket | None = None
        self.offers: list[_Offer] = []
        self.generation = 0
        self.deaths: dict[int, int] = {}  # pid -> exit code of spares that ended untaken

    def running(self) -> bool:
        if self.pid is None:
            return False
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid = self.pid  # reaped by someone else's os.wait()
        if pid == 0:
            return True
        self._forget()
        return False

    def ensure_running(self) -> None:
        """Start the zygote if none is running; return without waiting for it to boot.

        Refused (``StartRefused``) in a zygote while it imports a module of its
        parent's: it would start a zygote of its own."""
        refuse_starts()
        with self.lock:
            if not self.running():
                self.start()

    def start(self) -> None:
        directory = tempfile.mkdtemp(prefix="procesos-")  # mode 0700
        address = os.path.join(directory, "zygote.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        alive_r, alive_w = os.pipe()
        try:
            listener.bind(address)
            os.chmod(address, 0o600)
            listener.listen(128)
            pid = spawn_interpreter(
                "from procesos._launch._zygote_server import main; "
                f"main({listener.fileno()}, {alive_r})",
                [listener.fileno(), alive_r],
            )
        except BaseException:
            os.close(alive_w)
            shutil.rmtree(directory, ignore_errors=True)
            raise
        finally:
            listener.close()
            os.close(alive_r)
        secret = os.urandom(SECRET_SIZE)
        cwd, environ, environ_data = os.getcwd(), dict(os.environ), dict(_environ_data())
        process_state = current_process_state()  # the zygote's: it inherited ours
        spare = os.environ.get("PROCESOS_ZYGOTE_SPARE", "1").strip() not in ("0", "")
        mirror = ModuleMirror()
        preload, preload_later = mirror.split_for_boot(mirror.initial())
        config = pickle.dumps(ZygoteConfig(
            secret, list(sys.path), preload, directory, cwd, environ, spare, mirror.files,
            tuple(preload_later)))
        os.set_inheritable(alive_w, False)
        with os.fdopen(os.dup(alive_w), "wb") as pipe:
            pipe.write(struct.pack("!I", len(config)) + config)
        self.pid, self.directory, self.address = pid, directory, address
        self.secret, self.alive_w = secret, alive_w
        self.cwd, self.environ_data = cwd, environ_data
        self.process_state = process_state
        self.mirror = mirror
        if spare:
            self.mailbox = _open_mailbox(address, secret)

    def take_offer(self) -> _Offer | None:
        """The oldest spare offered that has every module imported so far (it has had
        the most time to get ready), or None."""
        self.read_mail(0)
        while self.offers:
            offer = self.offers.pop(0)
            if offer.generation == self.generation:
                return offer
            offer.channel.close()
        return None

    def read_mail(self, timeout: float) -> None:
        """Read what the zygote has written to the mailbox, waiting up to *timeout*
        seconds for the first message."""
        mailbox = self.mailbox
        while mailbox is not None:
            if not readable([mailbox.fileno()], timeout):
                return
            timeout = 0
            try:
                message, fds, _, _ = socket.recv_fds(mailbox, _MAIL.size, 1)
            except BlockingIOError:
                return
            except OSError:
                message, fds = b"", []
            kind, pid, value = _MAIL.unpack(message) if len(message) == _MAIL.size else (0, 0, 0)
            if kind == _OFFER and len(fds) == 1:
                os.set_inheritable(fds[0], False)  # received descriptors are, for exec
                self.offers.append(_Offer(pid, socket.socket(fileno=fds[0]), value))
                continue
            for fd in fds:
                os.close(fd)
            if kind == _DEATH:
                self.deaths[pid] = value
                while len(self.deaths) > _DEATHS_KEPT:  # of spares never taken
                    del self.deaths[next(iter(self.deaths))]
                continue
            # End of file: the zygote has gone, and its spares with it (the
            # request path finds out and starts another).
            mailbox.close()
            self.mailbox = mailbox = None
            self._close_offers()

    def wait_for_spares(self, timeout: float) -> bool:
        """Wait until the zygote offers a spare, which it forks only once it has
        imported everything it imports at its start; False after *timeout*, or
        when it offers none (spares off, the zygote gone or not started)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not self.offers and self.mailbox is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.read_mail(remaining)
            return bool(self.offers)

    def death_of(self, pid: int, zygote: int | None) -> int | None:
        """The exit code of spare *pid* of *zygote*, which ended before it could take
        a request sent to it; None when that zygote has gone (and, with it, that code)."""
        deadline = time.monotonic() + _TIMEOUT
        with self.lock:
            while pid not in self.deaths and self.mailbox is not None and self.pid == zygote:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.read_mail(remaining)
            return self.deaths.pop(pid, None)

    def _close_offers(self) -> None:
        for offer in self.offers:
            offer.channel.close()
        self.offers = []

    def _drop_offers(self) -> None:
        if self.mailbox is not None:
            self.mailbox.close()
            self.mailbox = None
        self._close_offers()
        self.generation = 0

    def _forget(self, remove_directory: bool = True) -> None:
        """Drop the handle: the zygote is dead, or belongs to the process we forked from."""
        if self.alive_w >= 0:
            try:
                os.close(self.alive_w)
            except OSError:
                pass
        if remove_directory and self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        self._drop_offers()
        self.pid, self.alive_w, self.directory, self.address = None, -1, "", ""

    def after_fork_in_child(self) -> None:
        if self.pid is None and self.mailbox is None and not self.offers \
                and not self.lock.locked():
            return  # none to forget (the zygote's own spares): touch nothing
        self._forget(remove_directory=False)
        self.lock = threading.Lock()

    def stop(self) -> None:
        """Close the zygote's pipe (it exits), reap it, remove its directory."""
        pid = self.pid
        if pid is None:
            return
        if self.alive_w >= 0:
            os.close(self.alive_w)
            self.alive_w = -1
        self._drop_offers()
        _wait_for_the_end(pid, 2.0)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.pid, self.directory, self.address = None, "", ""

    def encode_setup(self, setup: ChildSetup) -> bytes:
        """*setup*, pickled, with our directory, environment and process state
        (umask, limits, ...) where they differ from the zygote's (what its
        children start with)."""
        cwd = os.getcwd()
        if cwd != self.cwd:
            setup = setup._replace(cwd=cwd)
        if _environ_data() != self.environ_data:
            setup = setup._replace(environ=dict(os.environ))
        # Ignored signals always: the zygote's own handlers are not what its
        # children start with (they get the default).
        state = current_process_state()
        if state != self.process_state or state.ignored:
            setup = setup._replace(process_state=state)
        last = self._setup
        if last is not None and last[0] == setup:
            return last[1]
        data = pickle.dumps(setup, protocol=pickle.HIGHEST_PROTOCOL)
        self._setup = (setup, data)
        return data

    def request(self, fds: list[int], std_mask: int, setup: ChildSetup,
                payload: Frame) -> tuple[socket.socket, int, int, bool]:
        """Ask the zygote for a child: its channel socket, pid and status pipe, and
        whether a spare the zygote had offered took the request itself.

        *setup* is for a child that stays where the zygote is (``cwd`` and
        ``environ`` None). The child's two frames travel with the request, so
        that the child can start on them while the zygote answers. The copy into
        shared memory that *payload* still needs (``_transport.Frame``) is made
        here while the child starts and maps that memory (it waits for the copy's
        end before it reads it); the caller discards *payload* if this fails.
        """
        for attempt in (1, 2):
            with self.lock:
                if not self.running():
                    self.start()
                address, secret = self.address, self.secret
                setup_bytes = self.encode_setup(setup)
                imports = self.mirror.new_modules()
                files, libraries = self.mirror.files, self.mirror.libraries
                if imports:
                    self.generation += 1  # the zygote counts it when it reads the request
                    offer = None
                else:
                    offer = self.take_offer()
            frames = [frame_header(len(setup_bytes)), setup_bytes,
                      frame_header(len(payload)), payload.data]
            while offer is not None:
                direct = _ask_the_spare(offer, secret + _REQUEST.pack(std_mask), fds, frames)
                if direct is not None:
                    payload.copy()
                    return (*direct, True)
                with self.lock:  # that spare was killed: the next one, or the zygote
                    offer = self.take_offer()
            mask, extra = std_mask, []
            if imports:  # the zygote imports them before it forks this child
                blob = pickle.dumps(MirrorRequest(list(sys.path), os.getcwd(),
                                                  [(name, files.get(name)) for name in imports],
                                                  [name for name in imports if name in libraries]),
                                    protocol=pickle.HIGHEST_PROTOCOL)
                mask, extra = std_mask | _IMPORTS, [struct.pack("!I", len(blob)), blob]
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            status_r, status_w = os.pipe()
            sent = False
            try:
                try:
                    sock.settimeout(_TIMEOUT)
                    sock.connect(address)
                    _send_request(sock, secret + _REQUEST.pack(mask), [status_w, *fds],
                                  [*extra, *frames])
                    sent = True
                finally:
                    os.close(status_w)
                payload.copy()
                pid = _read_pid(status_r)
                sock.settimeout(None)
                return sock, pid, status_r, False
            except BaseException as exc:
                # The child, if there is one, reads the end of its channel and exits.
                sock.close()
                os.close(status_r)
                if not isinstance(exc, OSError | TimeoutError):
                    raise  # Ctrl-C
                # A child that has its frames may have claimed their shared memory:
                # a second child could not, so no second try then.
                if attempt == 2 or (sent and payload.shared):
                    raise ProcesosError(
                        f"the zygote did not start the process ({exc}); "
                        "try the 'spawn' start method to see whether the problem is the zygote"
                    ) from exc
                with self.lock:
                    if self.running():
                        self.stop()
        raise AssertionError("unreachable")


class _Offer(NamedTuple):
    """A spare the zygote has offered: its pid and the parent's end of its socket."""

    pid: int
    channel: socket.socket
    generation: int  # the zygote's import requests when it made the offer


def _open_mailbox(address: str, secret: bytes) -> socket.socket | None:
    """A connection on which the zygote offers its spares (None: it could not be opened,
    and every start goes through the zygote)."""
    mailbox = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        mailbox.settimeout(_TIMEOUT)
        mailbox.connect(address)  # the zygote accepts it once it has booted
        mailbox.sendall(secret + _REQUEST.pack(_MAILBOX))
        mailbox.setblocking(False)
    except OSError:
        mailbox.close()
        return None
    return mailbox


def _ask_the_spare(offer: _Offer, request: bytes, fds: list[int],
                   frames: Sequence[bytes | memoryview]) -> tuple[socket.socket, int, int] | None:
    """Start a process on *offer*'s spare, without the zygote: its channel, pid and
    status pipe; None when that spare has gone (the caller asks the zygote)."""
    channel, childs_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    status_r, status_w = os.pipe()
    try:
        with offer.channel:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                          array.array("i", [status_w, childs_end.fileno(), *fds]))]
            offer.channel.setblocking(True)
            if offer.channel.sendmsg([request], ancillary) != len(request):
                raise ConnectionResetError("the spare took part of the request")
    except OSError:
        channel.close()
        os.close(status_r)
        return None
    finally:
        os.close(status_w)
        childs_end.close()
    try:
        sent = channel.sendmsg(frames) if _fits(frames) else 0
    except OSError:
        sent = sum(len(frame) for frame in frames)  # the child has died: its exit code says how
    _send_frames(channel, frames, sent)
    return channel, offer.pid, status_r


def _fits(frames: Sequence[bytes | memoryview]) -> bool:
    return sum(len(frame) for frame in frames) <= _ONE_SEND


def _environ_data() -> Mapping[object, object]:
    # The encoded variables, compared without decoding them all (microseconds).
    data: Mapping[object, object] = environ_data()
    return data


def _read_pid(status_r: int) -> int:
    """The new child's pid, the first thing the zygote writes to its status pipe."""
    data = b""
    while len(data) < _STATUS_WORD.size:
        if not readable([status_r], _TIMEOUT):
            raise TimeoutError(f"no answer from the zygote in {_TIMEOUT:.0f} s")
        chunk = os.read(status_r, _STATUS_WORD.size - len(data))
        if not chunk:
            raise ConnectionResetError("the zygote refused the request or died")
        data += chunk
    return int(_STATUS_WORD.unpack(data)[0])


def _send_request(sock: socket.socket, request: bytes, fds: list[int],
                  frames: Sequence[bytes | memoryview]) -> None:
    """The request with its descriptors, then the frames: one ``sendmsg`` when they fit."""
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
    sent = sock.sendmsg([request, *frames], ancillary)
    if sent < len(request):
        sock.sendall(request[sent:])
        sent = len(request)
    _send_frames(sock, frames, sent - len(request))
    sock.settimeout(_TIMEOUT)


def _send_frames(sock: socket.socket, frames: Sequence[bytes | memoryview], sent: int) -> None:
    """What is left of *frames* after *sent* bytes, to the child, which reads them as
    they come (no time limit); nothing when it has died (its exit code tells how)."""
    rest = [memoryview(frame) for frame in frames]
    if sent == sum(len(frame) for frame in rest):
        return
    try:
        sock.settimeout(None)
        for frame in rest:
            if sent >= len(frame):
                sent -= len(frame)
                continue
            sock.sendall(frame[sent:])
            sent = 0
    except OSError:
        pass


_zygote = _ZygoteHandle()
os.register_at_fork(after_in_child=_zygote.after_fork_in_child)
# Runs after multiprocessing has joined the children at exit (negative priority).
util.Finalize(None, _zygote.stop, exitpriority=-100)


def zygote_pid() -> int | None:
    """The pid of this process's zygote, or None when none is running."""
    with _zygote.lock:
        return _zygote.pid if _zygote.running() else None


def _wait_for_the_end(pid: int, grace: float) -> None:
    """Reap our child *pid*, killed if it has not ended within *grace* seconds.

    Woken by its end through a pidfd where there is one (a program's exit
    waited for the zygote in steps of 1 ms before), else in such steps."""
    pidfd = open_pidfd(pid)
    try:
        deadline = time.monotonic() + grace
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
                remaining = 1.0
            if pidfd is not None:
                readable([pidfd], min(remaining, 1.0))
            else:
                time.sleep(0.001)
    finally:
        if pidfd is not None:
            os.close(pidfd)
