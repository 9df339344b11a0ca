"""The parent's own writes and the relay take turns on each stream the relay writes to.

``print("total", n)`` writes its line in pieces: each argument, each
separator, then the end. The relay thread, writing a child's lines to the
same stream, could get in between two pieces: when a piece's write lets the
other threads run (a full buffer flushed to a pipe) or, in Jupyter, whose
streams are Python code, at almost any moment. The parent's line then came
out cut in two around the child's (``parentchild 2 line 0`` and
`` line 459``).

So the relay writes only between the parent's lines. When a child whose
output goes to a stream starts, that stream object gets a ``write``
attribute of its own (:meth:`StreamTurns.parents_write`), which calls the stream's
``write`` and notes whether the text left a line unfinished; the stream's
class, ``sys.stdout`` and ``print`` stay what they are (a function that
took them by identity, or pickles them, sees no difference). The relay then
waits for the end of an unfinished line for at most :data:`TURN_WAIT`
seconds: the pieces of one ``print()`` follow each other within
microseconds, while a line the parent leaves open on purpose (a prompt, a
progress bar) is still open later, and the child's lines then follow it as
they would on a terminal two processes share. A stream that takes no
attribute (``__slots__``) is written to as before.

The attribute goes when the last child's pipe to that stream is closed (a
parent's writes then cost nothing more), at exit, and at once in a forked
child (its relay, if it has children, puts it back): another thread of the
parent may have been inside a write, holding the lock, at the fork.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .._compat import lock_after_fork

__all__ = ["TURN_WAIT", "StreamTurns", "forget_all", "turns_of"]

#: The longest the relay waits for the parent to end a line it has begun.
TURN_WAIT = 0.05

_installed: weakref.WeakSet[StreamTurns] = weakref.WeakSet()
_installing = threading.Lock()  # turns_of() and let_go() of any thread


class StreamTurns:
    """Turn-taking on one stream between the parent's writes and the relay's."""

    def __init__(self, stream: Any, write: Callable[[str], Any]) -> None:
        self.stream = stream
        #: The stream's own ``write``: the relay writes with it.
        self.write = write
        # A ``write`` that the stream object itself held (not its class's), put back at the end.
        self.replaced = vars(stream).get("write") if hasattr(stream, "__dict__") else None
        # Held during a write of the parent's and while the relay writes.
        # Reentrant: a signal handler may print in the middle of a write.
        self.lock = threading.RLock()
        self.open = False  # the parent's last write left a line unfinished
        self.writes = 0  # the parent's writes so far
        self.waited_for = -1  # the value of writes when the relay last waited in vain
        self.line_ended = threading.Event()
        self.users = 0  # the children's pipes that the relay empties into this stream
        self.relay_waiting = False  # the relay wants a turn
        self.relay_done = threading.Event()  # ... and has had it

    def parents_write(self, text: Any) -> Any:
        """The stream's ``write`` while the relay uses it: the same, noting where lines end."""
        if self.relay_waiting and not self.open:
            # Between two lines, and the relay waits: its turn first (else a
            # parent printing without a pause would always take the lock back).
            self.relay_done.wait(TURN_WAIT)
        with self.lock:
            self.writes += 1
            if isinstance(text, str) and text:
                self.open = text[-1] != "\n"
            written = self.write(text)
        if self.relay_waiting and not self.open:
            self.line_ended.set()
        return written

    @contextmanager
    def relay_turn(self) -> Iterator[None]:
        """Held by the relay while it writes: no line of the parent's is unfinished,
        or the parent has not ended it within :data:`TURN_WAIT`."""
        deadline = time.monotonic() + TURN_WAIT
        self.relay_done.clear()
        self.relay_waiting = True
        taken = False
        try:
            while True:
                taken = self.lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
                if not taken:
                    break  # a write of the parent's blocks (a full pipe): go on without the lock
                if (not self.open or self.writes == self.waited_for
                        or time.monotonic() >= deadline):
                    if self.open:
                        self.waited_for = self.writes  # left open on purpose: no wait next time
                    break
                self.line_ended.clear()
                self.lock.release()
                taken = False
                self.line_ended.wait(max(0.0, deadline - time.monotonic()))
            yield
        finally:
            if taken:
                self.lock.release()
            self.relay_waiting = False
            self.relay_done.set()

    def let_go(self) -> None:
        """One user fewer (a child's pipe to this stream is closed); the last gives the
        stream its own ``write`` back, so the parent's writes cost nothing more."""
        with _installing:
            self.users -= 1
            if self.users == 0:
                self.forget()
                _installed.discard(self)

    def forget(self) -> None:
        """Give the stream back its own ``write``, unless something else has replaced ours."""
        try:
            if vars(self.stream).get("write") == self.parents_write:
                if self.replaced is None:
                    del self.stream.write
                else:
                    self.stream.write = self.replaced
        except (AttributeError, TypeError):
            pass


def turns_of(stream: Any) -> StreamTurns | None:
    """Take turns on *stream* from now on, until as many :meth:`StreamTurns.let_go` as
    calls; None when it takes no attribute (the relay then writes as it comes)."""
    with _installing:
        current = getattr(stream, "write", None)
        owner = getattr(current, "__self__", None)
        if isinstance(owner, StreamTurns) and owner.stream is stream and owner.users:
            owner.users += 1
            return owner
        if current is None:
            return None
        turns = StreamTurns(stream, current)
        try:
            stream.write = turns.parents_write
        except (AttributeError, TypeError):
            return None
        turns.users = 1
        _installed.add(turns)
        return turns


def forget_all() -> None:
    """Give every stream its own ``write`` back (at the relay's end, in a forked child)."""
    for turns in list(_installed):
        turns.forget()
    _installed.clear()


def _after_fork_in_child() -> None:
    # Runs in every forked child (the zygote's spares too), where there is
    # most often nothing to undo: touch as little as possible.
    global _installing
    _installing = lock_after_fork(_installing)
    if _installed:
        forget_all()


os.register_at_fork(after_in_child=_after_fork_in_child)
