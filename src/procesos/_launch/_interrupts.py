"""``SIGINT`` blocked around a start (see :mod:`._child`): a new process inherits the
mask, so an interrupt that reaches it while it is being set up waits for its target.

Apart from :mod:`._child` so that a parent's first start (the zygote's spawn)
does not import the child's side first.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from .._compat import raw_signal

__all__ = ["INTERRUPT", "block_interrupts", "interrupts_blocked", "unblock_interrupts"]

INTERRUPT = {signal.SIGINT}


def block_interrupts() -> set[int | signal.Signals]:
    """Block ``SIGINT`` in this thread (a new child inherits it); the old mask."""
    mask: set[int | signal.Signals] = raw_signal.pthread_sigmask(raw_signal.SIG_BLOCK, INTERRUPT)
    return mask


def unblock_interrupts(old_mask: set[int | signal.Signals]) -> None:
    """Undo :func:`block_interrupts`, given the mask it returned."""
    if signal.SIGINT not in old_mask:
        raw_signal.pthread_sigmask(raw_signal.SIG_UNBLOCK, INTERRUPT)


@contextmanager
def interrupts_blocked() -> Iterator[None]:
    """``SIGINT`` blocked in this thread for the duration (around an exec, not a fork)."""
    old = block_interrupts()
    try:
        yield
    finally:
        unblock_interrupts(old)
