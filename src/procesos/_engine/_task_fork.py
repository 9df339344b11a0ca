"""Each task in a process of its own, cheaply: a worker that forks itself per task.

With ``max_tasks_per_worker=1`` every task must run in a fresh process.
Replacing the worker after each task (a fork of the zygote that sets up,
unpickles its process object and pipes, says it is ready) cost twice the CPU
of the standard library's fork of the parent. So such a worker stays, as a
*mother*: it reads and unpickles each batch itself and runs each of its tasks
in a fork of itself, which computes, writes its result on the worker's own
pipe and exits. The mother writes nothing while a child runs, so the parent
reads the same frames as from any worker.

What the parent sees is unchanged where it matters:

* A child that dies before it reported (a signal, ``os._exit``, the
  out-of-memory killer) takes the mother with it, the same way: the parent
  sees a worker that died in that task (the mother writes the task's number
  in its progress slot before the fork), with the usual report, retries and
  replacement.
* A timeout or ``terminate()`` kills the mother; the kernel then kills its
  child (``PR_SET_PDEATHSIG``, asked for before the task runs).
* The pool's initializer runs in each child, as the standard library runs it
  in each new worker.

Linux only (the parent-death signal; pidfds, with a plain ``waitpid`` where
the kernel has none). A mother that finds a thread of its own running (none
of procesos' but its parent watcher) does not fork: it runs the task itself
and retires, as a worker without this mode would.
"""

from __future__ import annotations

import os
import resource
import select
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from typing import NamedTuple, NoReturn

from .._compat import (
    drop_inherited_finalizers,
    flush_std_streams,
    forget_children_after_fork,
    run_mp_after_forkers,
)
from .._launch._lifetime import death_signal_available, kill_with_parent, watcher_threads
from .._wait import open_pidfd

__all__ = ["SUPPORTED", "Ended", "TaskForker", "end_like"]

#: Whether this system can run a worker as a mother (see the module's docstring).
SUPPORTED = sys.platform.startswith("linux") and hasattr(os, "fork") and death_signal_available()

_REPORTED = b"\x01"
_INITIALIZER_DONE = b"\x02"


class Ended(NamedTuple):
    """How a child that never reported ended."""

    status: int  # its wait status
    initializer_done: bool  # whether it said its initializer returned or was reported

    @property
    def exitcode(self) -> int:
        """As ``Process.exitcode`` says it: minus the signal that killed it."""
        return os.waitstatus_to_exitcode(self.status)


class TaskForker:
    """The mother's side: fork a child per task, wait until it reported or died."""

    def __init__(self) -> None:
        # A child's marks: its initializer is done; its result is on the worker's pipe.
        self.reported_r, self.reported_w = os.pipe()
        os.set_blocking(self.reported_r, False)
        self.exiting: list[int] = []  # children that reported and may still be exiting

    def usable(self) -> bool:
        """Whether a fork is safe now: no thread runs but this one and the parent watcher."""
        current, watchers = threading.current_thread(), watcher_threads()
        return all(t is current or t in watchers for t in threading.enumerate())

    def run(self, task: Callable[[], None], leave: Callable[[], object],
            started: Callable[[int], object]) -> Ended | None:
        """Run *task* (which reports its result) in a fork of this process, then
        *leave* there (it ends the process); *started* gets the child's pid here
        first. None once the child reported; else how it ended, for the caller
        to end this process the same way (:func:`end_like`) after what it has
        to tell the parent."""
        self._reap(block=False)
        flush_std_streams()  # else what they hold would come out twice
        mother = os.getpid()
        if threading.active_count() > 1:  # the parent watcher only (usable())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        else:
            pid = os.fork()
        if pid == 0:
            self._child(mother, task, leave)
        started(pid)
        return self._wait(pid)

    def initializer_done(self) -> None:
        """In the child: the initializer returned, or raised and the child told the
        parent so (a child that dies before did neither)."""
        os.write(self.reported_w, _INITIALIZER_DONE)

    def finish(self) -> None:
        """Wait for the children still exiting (their queues flush, their threads end)."""
        self._reap(block=True)

    # -- the child ---------------------------------------------------------------------
    def _child(self, mother: int, task: Callable[[], None],
               leave: Callable[[], object]) -> NoReturn:
        code = 1
        try:
            if not kill_with_parent() or os.getppid() != mother:
                os._exit(1)  # the mother is gone already
            drop_inherited_finalizers()
            forget_children_after_fork()
            run_mp_after_forkers()
            self.exiting = []
            task()
            os.write(self.reported_w, _REPORTED)
            leave()
            code = 0
        except KeyboardInterrupt:
            # As the worker itself would end: by SIGINT (the mother follows).
            flush_std_streams()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            os.kill(os.getpid(), signal.SIGINT)
        except SystemExit as exc:  # the task's process ends early (the parent was told why)
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)

    # -- the mother --------------------------------------------------------------------
    def _read_marks(self) -> bytes:
        try:
            return os.read(self.reported_r, 16)
        except BlockingIOError:
            return b""

    def _wait(self, pid: int) -> Ended | None:
        marks = b""
        pidfd = open_pidfd(pid)  # None: a kernel before 5.3
        if pidfd is not None:
            try:
                poller = select.poll()
                poller.register(self.reported_r, select.POLLIN)
                poller.register(pidfd, select.POLLIN)
                while _REPORTED not in marks:
                    events = poller.poll()
                    marks += self._read_marks()
                    if _REPORTED not in marks and any(fd == pidfd for fd, _ in events):
                        break
            finally:
                os.close(pidfd)
            if _REPORTED in marks:
                self.exiting.append(pid)
                return None
        _, status = os.waitpid(pid, 0)
        marks += self._read_marks()
        if _REPORTED in marks:
            return None
        return Ended(status, _INITIALIZER_DONE in marks)

    def _reap(self, block: bool) -> None:
        still = []
        for pid in self.exiting:
            try:
                done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                continue
            if done == 0:
                still.append(pid)
        self.exiting = still


def end_like(status: int) -> NoReturn:
    """End this process as the child whose wait *status* this is ended."""
    flush_std_streams()
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:  # its core, if any, is the child's: none of the mother's besides
            hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
            resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
        except (OSError, ValueError):
            pass
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL, SIGSTOP: no handler to reset
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status))
