"""The ``spawn`` start method: a fresh interpreter per process.

Slow (the child imports everything again) but safe anywhere. Unlike the
standard library's spawn, the child never imports the parent's ``__main__``:
the target travels by value, so a script without an
``if __name__ == "__main__":`` guard is not run twice.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
from multiprocessing import spawn, util
from multiprocessing.process import BaseProcess

from .._compat import interpreter_flags
from .._serialization import Frame
from ._interrupts import interrupts_blocked
from ._popen import BasePopen, close_channel_and_fds, waitpid_exitcode
from ._wire import channel_pair

__all__ = ["SpawnPopen", "spawn_interpreter"]

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def spawn_interpreter(statement: str, pass_fds: list[int]) -> int:
    """Start a fresh interpreter that can import procesos and runs *statement*; its pid.

    It keeps only the descriptors 0, 1, 2 and *pass_fds*, at the same numbers.
    Its ``sys.path`` is this process's, set before anything else is imported:
    ``-P`` keeps the current directory out (``-c`` would put it first, so a
    ``typing.py`` there would be imported in place of the standard library's),
    and ``-s`` the user's site directory unless this process has it.
    """
    executable = spawn.get_executable()
    flags = interpreter_flags()
    isolation = [] if sys.flags.isolated else [
        flag for flag in ("-P", "-s" if _no_user_site() else "") if flag and flag not in flags]
    code = f"import sys; sys.path[:] = {_child_path()!r}; {statement}"
    command = [os.fsdecode(executable), *flags, *isolation, "-c", code]
    # The new interpreter starts with SIGINT blocked (the mask survives exec);
    # see procesos._launch._child.
    with interrupts_blocked():
        return int(util.spawnv_passfds(executable, command, pass_fds))  # type: ignore[arg-type]


def _no_user_site() -> bool:
    """Whether this process runs without the user's site directory (then so does the child)."""
    site = sys.modules.get("site")
    return bool(sys.flags.no_user_site or not getattr(site, "ENABLE_USER_SITE", False))


def _child_path() -> list[str]:
    """This process's ``sys.path``, where procesos itself can be found."""
    path = list(sys.path)
    if _PACKAGE_ROOT not in path:
        path.insert(0, _PACKAGE_ROOT)
    return path


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
