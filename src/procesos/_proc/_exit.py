"""Ctrl-C ends everything once: children are interrupted when the parent exits on it.

``multiprocessing`` joins the remaining children when the interpreter exits.
After a ``KeyboardInterrupt`` nobody caught, that join would wait for children
that never got the signal (SIGINT sent to the parent alone). This handler runs
first (``atexit`` is last-in, first-out, and ``multiprocessing.util``, which
registers the join, is imported before it), interrupts procesos' own children,
then kills those still running a second later.
"""

from __future__ import annotations

import atexit
import sys
import time

# multiprocessing's exit handler (the join) is registered when multiprocessing.util
# is first imported: imported here, before ours is, so that ours runs first.
from multiprocessing import (
    active_children,
    util,  # noqa: F401
)

from ._process import Process

__all__ = ["interrupt_children_after_ctrl_c"]

GRACE_SECONDS = 1.0


def interrupt_children_after_ctrl_c() -> None:
    """At exit: if the interpreter is exiting on Ctrl-C, end our children."""
    last = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if not isinstance(last, KeyboardInterrupt):
        return
    children = [p for p in active_children() if isinstance(p, Process)]
    for child in children:
        child.interrupt()
    deadline = time.monotonic() + GRACE_SECONDS
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.exitcode is None:
            child.kill()
            child.join()


atexit.register(interrupt_children_after_ctrl_c)
