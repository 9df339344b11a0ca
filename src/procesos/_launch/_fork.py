"""The ``fork`` start method: ``os.fork()`` of the parent itself.

Fast, inherits everything, and unsafe in a parent that runs threads (Python
3.12+ warns). Nothing is pickled on the way to the child; the outcome comes
back on the channel like for every method.
"""

from __future__ import annotations

import os
import threading
from multiprocessing import util
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from .._output import above_std_fds
from .._output._relay import output_quiet
from ._child import fork_child_main
from ._interrupts import block_interrupts, unblock_interrupts
from ._popen import BasePopen, close_channel_and_fds, waitpid_exitcode
from ._wire import channel_pair

__all__ = ["ForkPopen"]


class ForkPopen(BasePopen):
    """Popen for ``fork``."""

    method = "fork"

    def _launch(self, process_obj: BaseProcess) -> None:
        code = 1
        parent_thread_is_main = threading.current_thread() is threading.main_thread()
        channel, child_sock = channel_pair()
        parent_r, child_w = os.pipe()
        # The child starts with SIGINT blocked and unblocks it around run().
        old_mask = block_interrupts()
        with output_quiet():  # the relay thread holds no stream's lock while we fork
            self.pid = os.fork()
        if self.pid == 0:
            try:
                channel.close()
                os.close(parent_r)
                channel_fd = above_std_fds(child_sock.detach())
                self.install_std_fds_in_forked_child()
                code = fork_child_main(process_obj, Connection(channel_fd), parent_thread_is_main,
                                       self.output_mode, self.output_line_buffered)
            finally:
                os._exit(code)
        unblock_interrupts(old_mask)
        child_sock.close()
        os.close(child_w)
        self.channel = channel
        self.sentinel = parent_r
        self.finalizer = util.Finalize(self, close_channel_and_fds, (channel, parent_r))

    def _reap(self, block: bool) -> int | None:
        return waitpid_exitcode(self.pid, block)
