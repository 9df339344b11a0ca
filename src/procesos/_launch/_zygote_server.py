"""The zygote: a small single-threaded server that forks each new process.

Started once per parent by :mod:`._zygote_client`, it imports the modules the
parent had imported (so children start with them loaded), then forks one child
per request. Because the zygote runs no threads, forking it is safe even when
the parent runs many.

Wire format of one request (one connection per child):

* client -> zygote: ``sendmsg`` of ``secret (32 bytes) + struct "!B"
  std_mask`` with ``SCM_RIGHTS`` descriptors ``[status_w, *std_fds,
  *user_fds]``;
* zygote -> client: ``struct "!i"`` pid of the new child. The connection then
  belongs to the child (it is the child's channel, see :mod:`._wire`).
* When the child ends, the zygote (its parent) reaps it and writes
  ``struct "!i"`` exit code to ``status_w``; the client's end of that pipe is
  the process's ``sentinel``. End of file without a code means the zygote died.

The zygote exits when the pipe from its parent reaches end of file (the parent
exited or died); its children then get ``SIGKILL`` from the kernel
(``PR_SET_PDEATHSIG``), so nothing outlives the parent.
"""

from __future__ import annotations

import hmac
import importlib
import os
import pickle
import select
import shutil
import signal
import socket
import struct
import sys
from typing import NamedTuple, NoReturn

__all__ = ["ZygoteConfig", "main"]

SECRET_SIZE = 32
_REQUEST = struct.Struct("!B")
_MAX_FDS = 253  # SCM_MAX_FD


class ZygoteConfig(NamedTuple):
    """What the parent tells its zygote at start-up (through the alive pipe)."""

    secret: bytes
    sys_path: list[str]
    preload: list[str]
    directory: str


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError("the parent closed the pipe")
        data += chunk
    return data


def _preload(names: list[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException:  # a module that fails to import is simply not preloaded
            pass


class _Zygote:
    def __init__(self, listener: socket.socket, alive_fd: int, config: ZygoteConfig) -> None:
        self.listener = listener
        self.alive_fd = alive_fd
        self.config = config
        self.children: dict[int, int] = {}  # pid -> status_w
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def serve(self) -> NoReturn:
        watched = [self.listener.fileno(), self.alive_fd, self.wake_r]
        while True:
            ready, _, _ = select.select(watched, [], [])
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
                    continue
                self.handle(conn)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            status_w = self.children.pop(pid, None)
            if status_w is not None:
                try:
                    os.write(status_w, struct.pack("!i", os.waitstatus_to_exitcode(status)))
                except OSError:
                    pass
                os.close(status_w)

    def handle(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            conn.settimeout(5.0)
            message, fds, flags, _ = socket.recv_fds(conn, SECRET_SIZE + _REQUEST.size, _MAX_FDS)
            valid = (
                len(message) == SECRET_SIZE + _REQUEST.size
                and hmac.compare_digest(message[:SECRET_SIZE], self.config.secret)
                and not flags & socket.MSG_CTRUNC
                and len(fds) >= 1
            )
            if not valid:
                raise PermissionError("request refused")
            (std_mask,) = _REQUEST.unpack(message[SECRET_SIZE:])
        except (OSError, ValueError):
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        status_w, rest = fds[0], fds[1:]
        pid = os.fork()
        if pid == 0:
            self.become_child(conn, status_w, std_mask, rest)
        for fd in rest:
            os.close(fd)
        self.children[pid] = status_w
        try:
            conn.settimeout(None)
            conn.sendall(struct.pack("!i", pid))
        except OSError:
            pass
        conn.close()

    def become_child(self, conn: socket.socket, status_w: int, std_mask: int,
                     fds: list[int]) -> NoReturn:
        zygote_pid = os.getppid()
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.listener.close()
            for fd in (self.alive_fd, self.wake_r, self.wake_w, status_w, *self.children.values()):
                os.close(fd)
            conn.settimeout(None)
            channel_fd = conn.detach()
        except BaseException:
            os._exit(1)
        from ._child import zygote_child_main

        zygote_child_main(channel_fd, std_mask, fds, zygote_pid)

    def shutdown(self) -> NoReturn:
        shutil.rmtree(self.config.directory, ignore_errors=True)
        os._exit(0)


def main(listener_fd: int, alive_fd: int) -> NoReturn:
    """Entry point of the zygote process."""
    # Ctrl-C in the terminal reaches the zygote too: it stays blocked here
    # (the zygote started with it blocked) and is held pending in a child
    # until the child runs its target. Not SIG_IGN: a child would inherit that.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        (size,) = struct.unpack("!I", _read_exactly(alive_fd, 4))
        config: ZygoteConfig = pickle.loads(_read_exactly(alive_fd, size))
    except EOFError:
        os._exit(0)
    sys.path[:] = config.sys_path
    listener = socket.socket(fileno=listener_fd)
    _preload(config.preload)
    # Importing the child's code now makes every child start faster.
    from . import _child  # noqa: F401

    _Zygote(listener, alive_fd, config).serve()
