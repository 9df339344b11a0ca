"""The messages that travel between a parent and its child, in one place.

Every child has one *channel*: a connected UNIX socket wrapped in a
``multiprocessing.connection.Connection`` (length-prefixed frames).

Parent to child (``spawn`` and ``zygote`` only; ``fork`` inherits instead):
  1. a ``ChildSetup``, plain pickle: what to set up before user objects can be
     unpickled (``sys.path``, inherited descriptors, ...);
  2. the process object, pickled by :mod:`procesos._serialization` (the
     zygote client copies its large buffers into shared memory only after
     sending it: see ``_transport.Frame``).
Child to parent, once, when the target has returned or raised:
  3. an ``Outcome`` frame (see :mod:`procesos._outcome`), a pickle (first
     byte ``0x80``);
  4. ``zygote`` children only, as their last act: an *exit report*,
     ``EXIT_REPORT`` then ``struct "!i"`` exit code, sent once the child has
     closed every other descriptor (its standard streams included). The
     parent takes it as the process's end: the kernel's tearing down of the
     process and the zygote's reaping, which tell the same code later (by
     the status pipe, see :mod:`._zygote_server`), no longer delay
     ``join()``. A child killed before it reports is told by the zygote.
The parent never writes after step 2, so a readable channel in the child means
the parent has gone (end of file).

A frame is ``Connection.send_bytes``'s: a ``struct "!i"`` length, then the
bytes (from 2 GiB on: ``-1``, then a ``struct "!Q"`` length). The zygote
client writes the frames itself (:func:`frame_header`), in the same
``sendmsg`` as its request to the zygote.

The zygote's own request format is documented in :mod:`._zygote_server`.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import TYPE_CHECKING, NamedTuple

from ._log_config import LoggingSnapshot

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from ._process_state import ProcessState

__all__ = ["EXIT_REPORT", "ChildChannel", "ChildSetup", "channel_pair", "exit_report",
           "frame_header", "read_exactly", "read_exit_report"]

_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!iQ")
EXIT_REPORT = b"X"  # never the first byte of a pickle
_CODE = struct.Struct("!i")


class ChildSetup(NamedTuple):
    """What a freshly started child applies before it unpickles its process object."""

    start_method: str | None  # the parent's default start method, if chosen
    sys_path: list[str]
    sys_argv: list[str]
    # Zygote children follow the parent's current directory and environment;
    # None: keep the process's own (spawn), or the zygote's, which is the
    # parent's as it was when the zygote started and has not changed since.
    cwd: str | None
    environ: dict[str, str] | None
    fds: list[int]  # descriptors the child received, indexed by InheritedFd
    resource_tracker_fd: int | None  # index into fds
    parent_thread_is_main: bool  # whether PR_SET_PDEATHSIG is safe to use
    log_level: int | None  # multiprocessing's logger, as the parent set it
    log_to_stderr: bool  # whether the parent called log_to_stderr()
    logging_config: LoggingSnapshot | None  # the parent's logging, unless the default
    # The parent ignores Ctrl-C (SIGINT set to SIG_IGN): so does the child, as a
    # forked or exec'd child inherits it (a zygote child starts from the zygote's).
    sigint_ignored: bool = False
    # Where its stdout and stderr go (procesos.set_output's modes, resolved), and
    # whether its stdout is line-buffered there.
    output_mode: str = "inherit"
    output_line_buffered: bool = True
    # The parent's umask, resource limits, CPU affinity, niceness and ignored
    # signals, for a zygote child when they differ from what the zygote has.
    process_state: ProcessState | None = None


def channel_pair() -> tuple[Connection, socket.socket]:
    """A parent ``Connection`` and the child's socket end of one channel."""
    from multiprocessing.connection import Connection

    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return Connection(parent.detach()), child


class ChildChannel:
    """A started child's end of its channel: the frames of ``Connection``'s
    ``send_bytes`` and ``recv_bytes`` over descriptor *fd*, without importing
    ``multiprocessing.connection`` (5 ms of a spawn child's start, its
    ``tempfile`` included). ``EOFError`` when the parent has gone."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        """The channel's descriptor."""
        return self._fd

    def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Write one frame holding *data*."""
        view = memoryview(data).cast("B")
        header = frame_header(len(view))
        if len(view) <= 16384:  # one write, as Connection does for small frames
            self._write(header + view.tobytes())
        else:
            self._write(header)
            self._write(view)

    def recv_bytes(self) -> bytes:
        """Read one frame's data."""
        (size,) = _SHORT.unpack(self._read(_SHORT.size))
        if size == -1:
            (size,) = struct.unpack("!Q", self._read(8))
        return self._read(size)

    def _write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def _read(self, size: int) -> bytes:
        return read_exactly(self._fd, size)


def read_exactly(fd: int, size: int) -> bytes:
    """*size* bytes read from descriptor *fd*; ``EOFError`` if the parent has gone first."""
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 30))
        if not chunk:
            raise EOFError("the parent has gone (end of file)")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def frame_header(size: int) -> bytes:
    """The header ``Connection.send_bytes`` writes before *size* bytes of data."""
    if size > 0x7FFFFFFF:
        return _LONG.pack(-1, size)
    return _SHORT.pack(size)


def exit_report(exitcode: int) -> bytes:
    """The frame's data of a child's exit report."""
    return EXIT_REPORT + _CODE.pack(exitcode)


def read_exit_report(data: bytes) -> int | None:
    """The exit code in *data*, if it is an exit report (else it is an outcome)."""
    if len(data) == 1 + _CODE.size and data[:1] == EXIT_REPORT:
        return int(_CODE.unpack(data[1:])[0])
    return None
