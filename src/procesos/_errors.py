"""The exceptions procesos raises: one hierarchy under :class:`ProcesosError`.

The task engine's own (a crashed worker, a broken executor), which are also
``concurrent.futures``' ``BrokenProcessPool``, are in :mod:`procesos._pool_errors`:
that base costs 13 ms of imports, which a child that only runs a target never pays.
"""

from __future__ import annotations

import builtins
import multiprocessing
import pickle
import signal
from typing import Any

__all__ = [
    "ClusterConnectionError",
    "PicklingError",
    "ProcesosError",
    "ProcessCrashedError",
    "RemoteError",
    "RemoteTraceback",
    "SerializationError",
    "TaskTimeoutError",
    "TimeoutError",
    "UnpicklingError",
    "describe_exitcode",
    "signal_hint",
]


class ProcesosError(Exception):
    """Base class of every error procesos raises itself."""


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in another process.

    procesos attaches it as ``__cause__`` of the re-raised exception, so that
    ``traceback.format_exception`` (and an uncaught exception) shows the child's
    frames first, then the parent's.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text
        #: Where the child printed this traceback itself, when it went to the same
        #: stream as this process's errors (then an uncaught exception does not show
        #: it a second time; :attr:`text` keeps it whole).
        self.printed_by: str | None = None

    @property
    def tb(self) -> str:
        """:attr:`text`, under the name the standard library's remote tracebacks
        (``multiprocessing.pool.RemoteTraceback``) give it."""
        return self.text

    def __str__(self) -> str:
        if self.printed_by is not None:
            return f"the traceback above, printed by {self.printed_by}"
        return f"\n\"\"\"\n{self.text.rstrip()}\n\"\"\""


class RemoteError(ProcesosError):
    """An exception raised in a child that could not be rebuilt in the parent.

    This happens when the exception's type cannot be pickled or unpickled (for
    example a custom exception whose ``__init__`` takes other arguments than
    it passes to ``Exception.__init__``). The original type name, message and
    the child's traceback are kept.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[type[RemoteError], tuple[str, str, str]]:
        return (type(self), (self.type_name, self.message, self.remote_traceback))


def describe_exitcode(exitcode: int | None) -> str:
    """Say in words how a process ended, from its ``exitcode``."""
    if exitcode is None:
        return "is still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name}"
    return f"exited with code {exitcode}"


_NATIVE_CRASHES = {
    -signal.SIGSEGV: "it crashed in native code (segmentation fault)",
    -signal.SIGBUS: "it crashed in native code (bus error)",
    -signal.SIGABRT: "it aborted (native code called abort())",
}


def signal_hint(exitcode: int | None, kill_may_be_memory: bool = True) -> str:
    """The likely cause of an end by *exitcode*, for a :class:`ProcessCrashedError`'s
    ``hint``, or ``""``. A ``SIGKILL`` may be the out-of-memory killer's: say so
    unless *kill_may_be_memory* is False (the engine, which checks that itself)."""
    if exitcode == -signal.SIGKILL:
        return ("SIGKILL comes from another process or from the kernel"
                + ("'s out-of-memory killer" if kill_may_be_memory else ""))
    return _NATIVE_CRASHES.get(exitcode or 0, "")


class ProcessCrashedError(ProcesosError):
    """A process ended without handing back a result or an exception.

    It was killed by a signal (``exitcode < 0``; the signal is named in the
    message), called ``os._exit()`` or ``sys.exit()`` with a code other than
    0 (the message quotes the call), or crashed in native code.
    """

    def __init__(self, name: str, pid: int | None, exitcode: int | None, hint: str = "") -> None:
        message = f"process {name!r} (pid {pid}) {describe_exitcode(exitcode)} before returning"
        if hint:
            message += f"; {hint}"
        super().__init__(message)
        self.name = name
        self.pid = pid
        self.exitcode = exitcode
        self.hint = hint

    @property
    def signal_name(self) -> str | None:
        """The name of the signal that killed the process (``"SIGKILL"``), or None."""
        if self.exitcode is None or self.exitcode >= 0:
            return None
        try:
            return signal.Signals(-self.exitcode).name
        except ValueError:
            return None

    def __reduce__(self) -> tuple[type[ProcessCrashedError], tuple[Any, ...]]:
        return (type(self), (self.name, self.pid, self.exitcode, self.hint))


class TimeoutError(ProcesosError, multiprocessing.TimeoutError, builtins.TimeoutError):
    """A wait ran out of time (``Process.result(timeout)``, ``AsyncResult.get``).

    One class for every timeout procesos raises: it is at once the standard
    library's ``multiprocessing.TimeoutError`` and the built-in
    ``TimeoutError``, so code written for either catches it.
    """


class TaskTimeoutError(TimeoutError):
    """A task ran longer than its timeout.

    On the local engine the task was stopped (its worker killed and replaced).
    On a cluster backend (Dask, Ray) the call cannot be stopped: it goes on in
    its worker and its result is dropped; the message says which.
    """


class SerializationError(ProcesosError, pickle.PickleError):
    """An object could not be pickled or unpickled to cross a process boundary.

    The message names the object's type and where it was (which argument, the
    result, the exception). What procesos raises is one of its two subclasses,
    :class:`PicklingError` or :class:`UnpicklingError`, so that both ``except
    SerializationError`` and the ``pickle`` module's own classes catch it.
    """


class PicklingError(SerializationError, pickle.PicklingError):
    """An object could not be pickled (a ``pickle.PicklingError`` too).

    Where the pickler failed with a built-in error that the standard library
    lets through to its callers (``TypeError`` for a lock, ``AttributeError``
    for a local object, ``RuntimeError`` for a ``Queue`` passed to a pool,
    ``ValueError``), what procesos raises is also of that class (one of the
    subclasses below, made by :meth:`caused_by`): code that catches
    ``TypeError`` around a ``multiprocessing`` or ``concurrent.futures`` call
    catches it too.
    """

    @staticmethod
    def caused_by(message: str, cause: BaseException) -> PicklingError:
        """A :class:`PicklingError` saying *message*, also of *cause*'s built-in class
        where it has one of those above."""
        for base, cls in _ALSO_BUILTIN:
            if isinstance(cause, base):
                return cls(message)
        return PicklingError(message)


class PicklingTypeError(PicklingError, TypeError):
    """A :class:`PicklingError` where the pickler raised ``TypeError`` (``cannot pickle
    '_thread.lock' object``)."""


class PicklingAttributeError(PicklingError, AttributeError):
    """A :class:`PicklingError` where the pickler raised ``AttributeError`` (a local
    object pickled by reference)."""


class PicklingRuntimeError(PicklingError, RuntimeError):
    """A :class:`PicklingError` where the pickler raised ``RuntimeError`` (an object
    shared only through inheritance, deep recursion)."""


class PicklingValueError(PicklingError, ValueError):
    """A :class:`PicklingError` where the pickler raised ``ValueError`` (a ctypes
    object holding pointers)."""


_ALSO_BUILTIN: tuple[tuple[type[BaseException], type[PicklingError]], ...] = (
    (TypeError, PicklingTypeError),
    (AttributeError, PicklingAttributeError),
    (RuntimeError, PicklingRuntimeError),
    (ValueError, PicklingValueError),
)


class UnpicklingError(SerializationError, pickle.UnpicklingError):
    """A pickled object could not be loaded (a ``pickle.UnpicklingError`` too)."""


class ClusterConnectionError(ProcesosError, ConnectionError):
    """A cluster backend (Dask, Ray) could not reach its scheduler in time.

    The message names the backend, the address and the time waited.
    """
