"""The ``zygote`` start method's popen: a child that the zygote forks (see
:mod:`._zygote_client` for the parent's handle on the zygote, :mod:`._zygote_server`
for the zygote itself)."""

from __future__ import annotations

import os
import signal
from multiprocessing import util
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from .._wait import open_pidfd, readable
from ._popen import BasePopen, close_channel_and_fds
from ._zygote_client import _zygote
from ._zygote_server import _STATUS_WORD

__all__ = ["ZygotePopen"]


def _valid_fd(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


class ZygotePopen(BasePopen):
    """Popen for ``zygote``."""

    method = "zygote"
    _from_an_offer = False
    _zygote: int | None = None  # the pid of the zygote that started it

    def _launch(self, process_obj: BaseProcess) -> None:
        # A new zygote boots (a fresh interpreter importing procesos and the
        # preloads, 80 ms and more) while we pickle: the first pickle of a
        # function by value imports cloudpickle (20 ms), and the two overlap.
        _zygote.ensure_running()
        # Large arguments are copied into shared memory after the request is
        # sent, while the child starts and maps that memory (see request()).
        # Frames never sent (an unpicklable part; looking for it pickles the
        # parts again) or a copy cut short: their memory goes back.
        with self._pickle_process(process_obj) as payload:
            # cwd and environ: added by the request only where they differ from the zygote's.
            setup = self._child_setup([], follow_parent=False)
            child_std = self.std_fds_for_child()  # the pipes to the relay, or our own 1 and 2
            std_fds = [fd for fd in child_std if _valid_fd(fd)]
            std_mask = sum(1 << bit for bit, fd in enumerate(child_std) if fd in std_fds)
            sock, self.pid, status_r, self._from_an_offer = _zygote.request(
                [*std_fds, *self._fds], std_mask, setup, payload)
            self._zygote = _zygote.pid
        self.sentinel = status_r
        self.zygote_lost = False
        self._pidfd = open_pidfd(self.pid)
        channel = Connection(sock.detach())
        self.channel = channel
        self.finalizer = util.Finalize(
            self, close_channel_and_fds, (channel, status_r, self._pidfd)
        )

    def _reap(self, block: bool) -> int | None:
        if self.reported_exit is not None:
            return self.reported_exit  # the zygote tells the same, later
        if not block and not readable([self.sentinel], 0):
            return None
        data = b""
        while len(data) < 4:
            chunk = os.read(self.sentinel, 4 - len(data))
            if not chunk:
                # The zygote died; its children were killed with it. Or, started
                # on a spare the zygote had offered, the process ended (a signal
                # to its pid) before it could pass its status pipe on: the
                # zygote then says how on the mailbox.
                code = _zygote.death_of(self.pid, self._zygote) if self._from_an_offer else None
                self.zygote_lost = code is None
                return -signal.SIGKILL if code is None else code
            data += chunk
        return int(_STATUS_WORD.unpack(data)[0])

    def _send_signal(self, sig: int) -> None:
        if self.returncode is None and self.poll() is None:
            try:
                if self._pidfd is not None:
                    signal.pidfd_send_signal(self._pidfd, sig)
                else:
                    os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
