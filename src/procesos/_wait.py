"""Waiting for descriptors to become readable, whatever their number.

``select.select()`` cannot watch a descriptor numbered 1024 or more (it raises
``ValueError``), and a program with a few hundred children, or many open
files, has such descriptors. ``poll()`` has no such limit.
"""

from __future__ import annotations

import math
import os
import select
from collections.abc import Iterable

__all__ = ["open_pidfd", "readable"]


def open_pidfd(pid: int) -> int | None:
    """A descriptor of process *pid*, readable once it has ended (Linux 5.3 and
    later), or None where there is none. It names the process itself: a signal
    sent through it can never reach a reused pid."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def readable(fds: Iterable[int], timeout: float | None = None) -> list[int]:
    """Those of *fds* that are readable, at end of file, in error or closed, once one
    is or *timeout* seconds have passed (None: no limit, 0: at once)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    wait_ms = None if timeout is None else max(0, math.ceil(timeout * 1000))
    return [fd for fd, _ in poller.poll(wait_ms)]
