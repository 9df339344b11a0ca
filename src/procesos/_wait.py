"""Waiting for descriptors to become readable, whatever their number.

``select.select()`` cannot watch a descriptor numbered 1024 or more (it raises
``ValueError``), and a program with a few hundred children, or many open
files, has such descriptors. ``poll()`` has no such limit.
"""

from __future__ import annotations

import math
import select
from collections.abc import Iterable

__all__ = ["readable"]


def readable(fds: Iterable[int], timeout: float | None = None) -> list[int]:
    """Those of *fds* that are readable, at end of file, in error or closed, once one
    is or *timeout* seconds have passed (None: no limit, 0: at once)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    wait_ms = None if timeout is None else max(0, math.ceil(timeout * 1000))
    return [fd for fd, _ in poller.poll(wait_ms)]
