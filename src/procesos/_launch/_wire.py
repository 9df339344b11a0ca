"""The messages that travel between a parent and its child, in one place.

Every child has one *channel*: a connected UNIX socket wrapped in a
``multiprocessing.connection.Connection`` (length-prefixed frames).

Parent to child (``spawn`` and ``zygote`` only; ``fork`` inherits instead):
  1. a ``ChildSetup``, plain pickle: what to set up before user objects can be
     unpickled (``sys.path``, inherited descriptors, ...);
  2. the process object, pickled by :mod:`procesos._serialization`.
Child to parent, once, when the target has returned or raised:
  3. an ``Outcome`` frame (see :mod:`procesos._outcome`).
The parent never writes after step 2, so a readable channel in the child means
the parent has gone (end of file).

The zygote's own request format is documented in :mod:`._zygote_server`.
"""

from __future__ import annotations

import socket
from multiprocessing.connection import Connection
from typing import NamedTuple

__all__ = ["ChildSetup", "channel_pair"]


class ChildSetup(NamedTuple):
    """What a freshly started child applies before it unpickles its process object."""

    start_method: str | None  # the parent's default start method, if chosen
    sys_path: list[str]
    sys_argv: list[str]
    cwd: str | None  # zygote children follow the parent's current directory
    environ: dict[str, str] | None  # ... and its current environment
    fds: list[int]  # descriptors the child received, indexed by InheritedFd
    resource_tracker_fd: int | None  # index into fds
    parent_thread_is_main: bool  # whether PR_SET_PDEATHSIG is safe to use
    log_level: int | None  # multiprocessing's logger, as the parent set it
    log_to_stderr: bool  # whether the parent called log_to_stderr()


def channel_pair() -> tuple[Connection, socket.socket]:
    """A parent ``Connection`` and the child's socket end of one channel."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return Connection(parent.detach()), child
