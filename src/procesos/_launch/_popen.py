"""What every start method's ``Popen`` shares: the channel, the outcome, pickling.

A ``Popen`` follows ``multiprocessing``'s protocol (``pid``, ``sentinel``,
``poll``, ``wait``, ``terminate``, ``kill``, ``close``,
``duplicate_for_child``). On top of it, it receives the child's outcome frame
while waiting, so a child handing back a large result never blocks its exit.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from multiprocessing import context, util
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, ClassVar

from .._compat import flush_std_streams, mp_log_level, mp_logs_to_stderr, resource_tracker_fd
from .._errors import PicklingError
from .._outcome import OUTCOME_CHANNEL, ReceivedOutcome
from .._output import install_std_fds, resolve_output_mode
from .._output._pipes import ChildOutput, open_child_output
from .._serialization import Frame, dumps_frame, first_unpicklable, reap, unpicklable_inside
from .._wait import readable
from ._fds import InheritedFd
from ._log_config import take_snapshot
from ._methods import chosen_method
from ._wire import ChildSetup, read_exit_report

__all__ = ["BasePopen", "close_channel_and_fds", "describe_unpicklable", "waitpid_exitcode"]


def describe_unpicklable(process_obj: BaseProcess, exc: Exception) -> PicklingError:
    """A :class:`PicklingError` that names the part of *process_obj* that failed."""
    args = getattr(process_obj, "_args", ())
    kwargs = getattr(process_obj, "_kwargs", {})
    parts: list[tuple[str, Any]] = [("the target", getattr(process_obj, "_target", None))]
    parts += [(f"argument {i} (args[{i}])", a) for i, a in enumerate(args)]
    parts += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    culprit = f"the process object ({type(process_obj).__qualname__})"
    cause: BaseException = exc
    found = first_unpicklable(parts)
    detail = str(cause)
    if found is not None:
        label, value, cause = found
        cls = type(value)
        culprit = f"{label}, a {cls.__module__}.{cls.__qualname__} object,"
        detail = str(cause) + unpicklable_inside(value)
    if "fork context" in detail:
        detail += (" (multiprocessing's default context on Linux is 'fork': create the "
                   "object with procesos, e.g. procesos.Queue(), or with "
                   "multiprocessing.get_context('spawn'))")
    return PicklingError.caused_by(
        f"cannot start process {process_obj.name!r}: {culprit} cannot be pickled ({detail}). "
        "The 'zygote' and 'spawn' start methods send the target and its arguments to the "
        "child; pass picklable objects (or procesos' sharing objects), or use the 'fork' "
        "start method.",
        cause,
    )


def _interactive(stream: object) -> bool:
    """Whether *stream* is a terminal or no file at all (Jupyter, a StringIO)."""
    try:
        stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return True
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return True


def _refuse_starts_in_the_zygote() -> None:
    """In the zygote, while it imports a module of the parent's, a start is refused
    (``_zygote_server.refuse_starts``); only a process that has that module loaded
    can be the zygote, so no other needs to import it for this."""
    server = sys.modules.get("procesos._launch._zygote_server")
    if server is not None:
        server.refuse_starts()


class BasePopen:
    """The parts of a popen that every start method shares."""

    method: ClassVar[str]
    DupFd = InheritedFd

    pid: int
    sentinel: int

    def __init__(self, process_obj: BaseProcess) -> None:
        _refuse_starts_in_the_zygote()
        flush_std_streams()
        self.returncode: int | None = None
        self.finalizer: util.Finalize | None = None
        self.channel: Connection | None = None
        self.outcome: ReceivedOutcome | None = None
        # The exit code the child reported as its last act (zygote children: see
        # _wire), before the zygote could reap it: the process has ended for us.
        self.reported_exit: int | None = None
        # multiprocessing's _cleanup() polls every child from whichever thread
        # starts a process: the channel and the exit status are read under
        # this lock, never by two threads at once.
        self._lock = threading.RLock()
        # BaseProcess.start() drops its target and arguments once started; a
        # Lock, Queue or manager proxy made just for this child would then be
        # collected (its semaphore unlinked, its manager object deleted) before
        # or while the child uses it. Keep them until the child has ended.
        self._keepalive: tuple[object, ...] | None = (
            getattr(process_obj, "_target", None),
            getattr(process_obj, "_args", None),
            getattr(process_obj, "_kwargs", None),
        )
        self._fds: list[int] = []
        self.output_mode = "inherit"  # where the child's streams go, and whether its
        self.output_line_buffered = True  # stdout is line-buffered: set by _open_output
        self.output = self._open_output(process_obj)
        try:
            self._launch(process_obj)
        except BaseException:
            if self.output is not None:
                self.output.abandon()
            raise
        if self.output is not None:
            self.output.attach()

    # -- the popen protocol -------------------------------------------------
    def duplicate_for_child(self, fd: int) -> int:
        """Record *fd* to be sent to the child; return its position there."""
        self._fds.append(fd)
        return len(self._fds) - 1

    def _launch(self, process_obj: BaseProcess) -> None:
        raise NotImplementedError

    def _reap(self, block: bool) -> int | None:
        """Collect the exit code, if the process has ended (or wait for it)."""
        raise NotImplementedError

    def poll(self, flag: int = os.WNOHANG) -> int | None:
        if self.returncode is None:
            self._drain(0)
            with self._lock:
                if self.returncode is None:
                    # Never back to None: a second reader finds nothing to reap.
                    self.returncode = self._reap(block=flag == 0)
                    if self.returncode is not None:
                        self._keepalive = None
                        if self.output is not None:
                            self.output.request_finish()
                        # What it sent after the drain above, before it ended
                        # (its outcome, if this thread was held up between
                        # the two) is in the channel: nothing waits for it after this.
                        self._receive_the_rest()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the end of the process and the delivery of all its output."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.returncode is None:
            if not self._drain(timeout):
                return None
            self.poll(0)
        if self.output is not None:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.output.finish(remaining):
                return None
        return self.returncode

    def wait_outcome(self, timeout: float | None = None) -> bool:
        """Wait until the child's outcome has arrived, or the process has ended
        (then as :meth:`wait` does); False if *timeout* passed first.

        The child sends its outcome after its exit handlers ran and its streams
        were flushed: what it wrote until then is delivered before this returns.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.returncode is None and self.outcome is None:
            self._drain(timeout, until_outcome=True)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if self.outcome is None or self.returncode is not None:
            return self.wait(remaining) is not None
        if self.output is not None:
            self.output.deliver_written(remaining)
        return True

    def _signal_target(self) -> int:
        return self.pid

    def _send_signal(self, sig: int) -> None:
        if self.returncode is None and self.poll() is None:
            try:
                os.kill(self._signal_target(), sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self._send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self._send_signal(signal.SIGKILL)

    def interrupt(self) -> None:
        self._send_signal(signal.SIGINT)

    def close(self) -> None:
        if self.output is not None:
            self.output.finish()
        # Under the lock that _receive() closes the channel under: a close from
        # two threads at once closed its descriptor twice (EBADF, which broke an
        # engine whose dispatcher was the second; or another file's descriptor,
        # had one taken the number in between).
        with self._lock:
            if self.finalizer is not None:
                self.finalizer()
            self.channel = None
        self._keepalive = None

    # -- the channel --------------------------------------------------------
    def _drain(self, timeout: float | None, until_outcome: bool = False) -> bool:
        """Receive the outcome while waiting; True once the process has ended (or,
        *until_outcome*, once the outcome is here)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            channel = self.channel
            try:  # another thread (multiprocessing's _cleanup) may have closed it
                channel_fd = None if channel is None else channel.fileno()
            except OSError:
                channel, channel_fd = None, None
            watched = [self.sentinel] if channel_fd is None else [self.sentinel, channel_fd]
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            # A descriptor that close() closed in another thread is reported
            # ready (POLLNVAL): the sentinel's then ends the wait.
            ready = readable(watched, remaining)
            if channel is not None and (channel_fd in ready or self.sentinel in ready):
                self._receive(channel)
            if (self.sentinel in ready or self.reported_exit is not None
                    or (until_outcome and self.outcome is not None)):
                return True
            if not ready and remaining is not None and remaining <= 0:
                return False

    def _receive_the_rest(self) -> None:
        """The process has ended: read what its channel holds, without waiting (a
        process it forked may hold the channel open: its end of file may not come)."""
        while True:
            channel = self.channel
            try:
                if channel is None or not readable([channel.fileno()], 0):
                    return
            except OSError:
                return
            self._receive(channel)

    def _receive(self, channel: Connection) -> None:
        with self._lock:
            if self.channel is not channel:
                return  # another thread read it to the end meanwhile
            try:
                # readable(), not channel.poll(): that builds a selector each call
                # (the channel keeps no bytes of its own: the same answer).
                if readable([channel.fileno()], 0):
                    data = channel.recv_bytes()
                    code = read_exit_report(data)
                    if code is None:
                        self.outcome = ReceivedOutcome(data)
                    else:
                        self.reported_exit = code
                return
            except (EOFError, OSError):
                # End of file: nothing more will come. An outcome made and
                # never sent (the child was killed in between) goes back.
                channel.close()
                self.channel = None
                outcome = self.outcome
                reap(self.pid, OUTCOME_CHANNEL,
                     [] if outcome is None or outcome.payload is None else [outcome.payload])

    # -- the child's standard streams ----------------------------------------
    def _open_output(self, process_obj: BaseProcess) -> ChildOutput | None:
        mode = resolve_output_mode(getattr(process_obj, "_output", None))
        # The child gets both (ChildSetup, or fork_child_main's arguments) to set
        # up its streams (_child.run_process).
        self.output_mode = mode
        # Relayed to a file or a pipe, the child's stdout is block-buffered,
        # as it would be writing there itself (whole lines are put together
        # by the relay all the same); to a terminal, Jupyter or a StringIO,
        # line-buffered so that lines show as they are printed.
        self.output_line_buffered = mode != "relay" or _interactive(sys.stdout)
        return open_child_output(mode, process_obj.name)

    def std_fds_for_child(self) -> tuple[int, int]:
        """The descriptors the child gets as its 1 and 2: its output pipes, or ours (inherit)."""
        return (1, 2) if self.output is None else self.output.child_fds

    def install_std_fds_in_forked_child(self) -> None:
        """In a child just forked from this popen's process: descriptors 1 and 2 are its pipes."""
        if self.output is None:
            return
        for sink in self.output.sinks:
            os.close(sink.fd)
        install_std_fds(self.output.child_fds)

    # -- helpers for the start methods ---------------------------------------
    def _pickle_process(self, process_obj: BaseProcess) -> Frame:
        """*process_obj* pickled for the child, a frame this popen owns: the child
        may never read it (it dies first), so its shared memory goes back when
        this popen does. Use it in a ``with`` block, which gives up a copy not
        made by its end (``Frame.send`` or ``Frame.copy`` make it)."""
        # The standard library's reducers (a SemLock's, a Connection's) ask for
        # the spawning popen; procesos' tickets go with the frame.
        context.set_spawning_popen(self)  # type: ignore[arg-type]
        try:
            frame = dumps_frame(process_obj)
        except Exception as exc:
            raise describe_unpicklable(process_obj, exc) from exc
        finally:
            context.set_spawning_popen(None)
        return frame.hand_over(self)

    def _child_setup(self, fds: list[int] | None, follow_parent: bool) -> ChildSetup:
        tracker_fd = resource_tracker_fd()
        tracker_index = None if tracker_fd is None else self.duplicate_for_child(tracker_fd)
        logging_config = take_snapshot(self.duplicate_for_child)  # before _fds is copied
        return ChildSetup(
            start_method=chosen_method(),
            sys_path=list(sys.path),
            sys_argv=list(sys.argv),
            cwd=os.getcwd() if follow_parent else None,
            environ=dict(os.environ) if follow_parent else None,
            fds=list(self._fds) if fds is None else fds,
            resource_tracker_fd=tracker_index,
            parent_thread_is_main=threading.current_thread() is threading.main_thread(),
            log_level=mp_log_level(),
            log_to_stderr=mp_logs_to_stderr(),
            logging_config=logging_config,
            output_mode=self.output_mode,
            output_line_buffered=self.output_line_buffered,
            sigint_ignored=signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
        )


def waitpid_exitcode(pid: int, block: bool) -> int | None:
    """The exit code of our child *pid*, or None if it is still running."""
    try:
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return None
    if done != pid:
        return None
    return os.waitstatus_to_exitcode(status)


def close_channel_and_fds(channel: Connection, *fds: int | None) -> None:
    """Finalizer of a popen: it holds the popen's resources, never the popen.

    (A finalizer that held the popen would keep it alive until the
    interpreter exits, and its descriptors open with it.)
    """
    channel.close()  # a no-op when the popen closed it already
    for fd in fds:
        if fd is None:
            continue
        try:
            os.close(fd)
        except OSError:
            pass
