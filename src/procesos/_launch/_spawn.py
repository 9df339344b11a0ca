"""The ``spawn`` start method: a fresh interpreter per process.

Slow (the child imports everything again) but safe anywhere. Unlike the
standard library's spawn, the child never imports the parent's ``__main__``:
the target travels by value, so a script without an
``if __name__ == "__main__":`` guard is not run twice.
"""

from __future__ import annotations

import os
import pickle
import threading
from multiprocessing import util
from multiprocessing.process import BaseProcess

from .._serialization import Frame
from ._interpreter import spawn_interpreter
from ._popen import BasePopen, close_channel_and_fds, waitpid_exitcode
from ._wire import channel_pair

__all__ = ["SpawnPopen"]

class SpawnPopen(BasePopen):
    """Popen for ``spawn``."""

    method = "spawn"

    def _launch(self, process_obj: BaseProcess) -> None:
        # The frame's shared memory is the popen's (its child may never read
        # it); a copy not made when the block ends (an error) is given up.
        with self._pickle_process(process_obj) as payload:
            self._start(payload)

    def _start(self, payload: Frame) -> None:
        setup = self._child_setup(None, follow_parent=False)
        channel, child_sock = channel_pair()
        parent_r, child_w = os.pipe()
        main = int(threading.current_thread() is threading.main_thread())
        # Pipes to the relay, if any, become the child's 1 and 2 (spawn_main).
        std_fds = [] if self.output is None else list(self.output.child_fds)
        try:
            self.pid = spawn_interpreter(
                "from procesos._launch._child import spawn_main; "
                f"spawn_main({child_sock.fileno()}, {main}, {std_fds})",
                [child_sock.fileno(), child_w, *std_fds, *self._fds],
            )
        finally:
            child_sock.close()
            os.close(child_w)
        self.channel = channel
        self.sentinel = parent_r
        self.finalizer = util.Finalize(self, close_channel_and_fds, (channel, parent_r))
        try:
            channel.send_bytes(pickle.dumps(setup))
            # Copied first: a child cannot skip its process object.
            payload.send(channel.send_bytes, copy_first=True)
        except OSError:
            pass  # the child died early; its exit code tells how

    def _reap(self, block: bool) -> int | None:
        return waitpid_exitcode(self.pid, block)
