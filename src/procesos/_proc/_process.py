"""Layer 3: ``Process``, compatible with ``multiprocessing.Process``, plus results.

A procesos ``Process`` is a ``multiprocessing.process.BaseProcess``, so
``current_process()``, ``active_children()``, ``parent_process()`` and the
standard library's sharing objects treat it as one of their own. It adds
``result()`` and ``exception()``: the target's return value, or its exception
rebuilt in the parent with the child's traceback attached.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, ClassVar

from .._compat import (
    add_child,
    forget_children_after_fork,
    process_start_known,
    reap_ended_children,
)
from .._errors import ProcessCrashedError, RemoteTraceback, TimeoutError, signal_hint
from .._launch._methods import default_method
from .._launch._open_files import start_with_room
from .._options import check_args, check_kwargs
from .._output import check_output_mode
from .._trace import _state as _trace_state

if TYPE_CHECKING:
    from .._launch._popen import BasePopen
    from .._outcome import ReceivedOutcome

__all__ = ["Process"]


class Process(BaseProcess):
    """A process that runs ``target(*args, **kwargs)``, like ``multiprocessing.Process``.

    Any callable works as *target* under every start method, lambdas, closures
    and functions defined in ``__main__`` or a notebook included: they travel
    by value (cloudpickle). The child never re-imports the parent's
    ``__main__``, so no ``if __name__ == "__main__":`` guard is needed.

    After ``start()``, ``join()`` waits for the end; ``result()`` returns what
    the target returned, or raises what it raised (same type, the child's
    traceback attached as ``__cause__``); ``exitcode`` is negative when a signal
    killed the process.
    """

    # BaseProcess._bootstrap forces the stdlib start method when this is set.
    _start_method: ClassVar[str | None] = None
    #: The start method of this class; None means the default one at start().
    _method: ClassVar[str | None] = None

    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        daemon: bool | None = None,
        output: str | None = None,
    ) -> None:
        if target is not None and not callable(target):
            raise TypeError(
                f"Process target must be callable, got {type(target).__name__} {target!r}"
            )
        if group is not None:
            raise ValueError("group argument must be None")
        super().__init__(None, target, name, check_args("args", args),
                         check_kwargs("kwargs", kwargs), daemon=daemon)
        #: "relay", "prefix", "capture", "inherit", or None: procesos.get_output() at start().
        self._output = None if output is None else check_output_mode(output)
        self._kept_streams: tuple[str | None, str | None] = (None, None)
        self._settled: tuple[bool, Any] | None = None
        self._kept_outcome: ReceivedOutcome | None = None
        self._kept_exitcode: int | None = None
        self._kept_output_mode: str | None = None

    if TYPE_CHECKING:  # BaseProcess's private attributes, which typeshed does not declare
        _popen: BasePopen | None
        _closed: bool
        _target: Callable[..., object] | None
        _args: tuple[Any, ...]
        _kwargs: dict[str, Any]
        _parent_pid: int
        _sentinel: int

        def _check_closed(self) -> None: ...

    def start(self) -> None:
        """Start the child process; at most once per process object.

        Unlike ``multiprocessing``, a daemonic process may start children of its
        own: the standard library forbids it because they would outlive it as
        orphans, and a procesos child ends with its parent, however it ends.
        """
        recorder = _trace_state.recorder
        if not process_start_known():
            called = time.monotonic_ns() if recorder is not None else 0
            BaseProcess.start(self)
            if recorder is not None:
                recorder.process_started(self, called, time.monotonic_ns())
            return
        # BaseProcess.start (3.11 to 3.13) without its assertion on daemons.
        self._check_closed()
        assert self._popen is None, "cannot start a process twice"
        assert self._parent_pid == os.getpid(), \
            "can only start a process object created by current process"
        reap_ended_children()
        called = time.monotonic_ns() if recorder is not None else 0
        self._popen = self._Popen(self)
        self._sentinel = self._popen.sentinel
        if recorder is not None:
            recorder.process_started(self, called, time.monotonic_ns())
        # No reference cycle through a target that refers to its process (bpo-30775).
        del self._target, self._args, self._kwargs
        add_child(self)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the process ends, or *timeout* seconds."""
        recorder = _trace_state.recorder
        if recorder is None:
            super().join(timeout)
            return
        start = time.monotonic_ns()
        try:
            super().join(timeout)
        finally:
            end = time.monotonic_ns()
            recorder.waited(f"join() {self.name}", start, end)
            recorder.process_joined(self, end)

    def run(self) -> Any:
        """What the child runs: calls the target and returns its value (override freely)."""
        if self._target:
            return self._target(*self._args, **self._kwargs)
        return None

    @staticmethod
    def _Popen(process_obj: BaseProcess) -> BasePopen:
        # Here, not at the top: the start methods' parent side (the zygote's
        # client, spawn's) loads at a program's first start, not with procesos
        # (nor in a child that starts nothing).
        from .._launch._popens import popen_class

        method = type(process_obj)._method if isinstance(process_obj, Process) else None
        popen = popen_class(method)
        return start_with_room(lambda: popen(process_obj))

    @property
    def start_method(self) -> str:
        """The start method this process uses (or will use)."""
        if self._popen is not None:
            return str(self._popen.method)
        return self._method or default_method()

    def interrupt(self) -> None:
        """Send SIGINT: the target sees ``KeyboardInterrupt``."""
        self._check_closed()
        if self._popen is None:
            raise ValueError(f"process {self.name!r} was never started")
        self._popen.interrupt()

    def _wait_if_ending(self) -> None:
        # The outcome is sent last: a process that sent it is only exiting.
        popen = self._popen
        if popen is not None and popen.outcome is not None and popen.returncode is None:
            popen.wait()

    @property
    def exitcode(self) -> int | None:
        """The exit code, None while running; negative: killed by that signal."""
        self._check_closed()
        self._wait_if_ending()
        return super().exitcode

    def is_alive(self) -> bool:
        """Whether the process has started and not yet ended."""
        self._check_closed()
        self._wait_if_ending()
        return super().is_alive()

    def close(self) -> None:
        """Release the process's resources; ``result()`` still works afterwards."""
        if not self._closed:
            self._wait_if_ending()
        if self._popen is not None and self._popen.poll() is not None:
            self._kept_outcome = self._popen.outcome
            self._kept_exitcode = self._popen.returncode
            self._kept_output_mode = self._popen.output_mode
            output = self._popen.output
            if output is not None:
                output.finish()
                self._kept_streams = (output.captured(0), output.captured(1))
        super().close()

    @property
    def stdout(self) -> str | None:
        """With ``output="capture"``: what the child wrote to its stdout, complete after
        ``join()``; None in the other modes."""
        return self._captured(0)

    @property
    def stderr(self) -> str | None:
        """With ``output="capture"``: what the child wrote to its stderr, complete after
        ``join()``; None in the other modes."""
        return self._captured(1)

    def _captured(self, which: int) -> str | None:
        popen = self._popen
        if popen is not None and popen.output is not None:
            return popen.output.captured(which)
        if popen is None and self._output == "capture" and not self._closed:
            return ""  # not started yet
        return self._kept_streams[which]

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the target to finish and return what it returned.

        Raises the target's exception (its own type when it can be rebuilt,
        else :class:`~procesos.RemoteError`, with the child's traceback as
        ``__cause__``), :class:`~procesos.ProcessCrashedError` if the process
        ended without returning (a signal, ``os._exit``, ``sys.exit`` with a
        non-zero code), or ``TimeoutError`` if it is still running after
        *timeout* seconds (the process keeps running).

        The value comes as soon as the child sends it, after its exit handlers
        ran and what it printed until then was delivered; the process itself may
        need a few milliseconds more to end (a child that mapped a large array
        unmaps it). ``join()`` waits for that, and so do ``exitcode``,
        ``is_alive()`` and ``close()`` once the value is here, so that they agree
        with it.
        """
        ok, value = self._settle(timeout)
        if ok:
            return value
        raise value

    def _printed_its_errors(self) -> bool:
        """Whether the child's stderr went where this process prints its own errors."""
        mode = self._kept_output_mode if self._popen is None else self._popen.output_mode
        return mode in ("relay", "prefix", "inherit")

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Like :meth:`result`, but return the exception instead of raising it."""
        ok, value = self._settle(timeout)
        return None if ok else value

    def _settle(self, timeout: float | None) -> tuple[bool, Any]:
        if self._settled is not None:
            return self._settled
        if self._closed:
            outcome, exitcode = self._kept_outcome, self._kept_exitcode
            if exitcode is None:
                raise ValueError(f"process {self.name!r} is closed and never finished")
        else:
            popen = self._popen
            if popen is None:
                raise ValueError(f"process {self.name!r} was never started; call start() first")
            if not popen.wait_outcome(timeout):
                raise TimeoutError(f"process {self.name!r} is still running after {timeout} s")
            outcome, exitcode = popen.outcome, popen.returncode
        where = f"the result of process {self.name!r}"
        settled: tuple[bool, Any]
        if outcome is not None:
            settled = outcome.decode(where)
            error = settled[1]
            if not settled[0] and not (isinstance(error, ProcessCrashedError)
                                       and error.pid == self.pid):  # its sys.exit(): named
                error.add_note(f"(raised in process {self.name!r}, pid {self.pid})")
                cause = error.__cause__
                if isinstance(cause, RemoteTraceback) and self._printed_its_errors():
                    # The child printed it as it ended (as multiprocessing's children
                    # do), on the stream where this error will show: once is enough.
                    cause.printed_by = f"process {self.name!r} (pid {self.pid})"
        elif exitcode == 0:
            settled = (True, None)  # sys.exit(0) or a run() that returned nothing to send
        else:
            hint = signal_hint(exitcode)
            if getattr(self._popen, "zygote_lost", False):
                hint = "its zygote died, and the processes it had started with it"
            settled = (False, ProcessCrashedError(self.name, self.pid, exitcode, hint))
        self._settled = settled
        return settled


def _no_children_after_fork() -> None:
    # After os.fork() the new process has no children, but it inherits the
    # parent's list: at its exit, multiprocessing's handler would terminate the
    # parent's daemonic processes and fail to join the others ("can only join a
    # child process"). The standard library's own children clear it the same way.
    forget_children_after_fork()


os.register_at_fork(after_in_child=_no_children_after_fork)
