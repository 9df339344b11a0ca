"""The parent's side of one child's output: two pipes, and where their lines go.

:func:`open_child_output` is called at ``start()``. For every mode but
``"inherit"`` it makes two pipes; the child gets their write ends as its
descriptors 1 and 2 (:attr:`ChildOutput.child_fds`), the relay reads the
other ends. The targets are the parent's ``sys.stdout`` and ``sys.stderr``
*at that moment*, so a process started inside ``contextlib.redirect_stdout``
writes into the redirected stream.
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time

from ._lines import LineSink
from ._relay import relay

__all__ = ["ChildOutput", "open_child_output"]


class ChildOutput:
    """One child's stdout and stderr, as the parent relays or captures them."""

    def __init__(self, mode: str, name: str) -> None:
        self.mode = mode
        self.done = threading.Event()  # set once both pipes are closed and delivered
        out_r, out_w = os.pipe()
        try:
            err_r, err_w = os.pipe()
        except BaseException:
            os.close(out_r)
            os.close(out_w)
            raise
        self.child_fds: tuple[int, int] = (out_w, err_w)
        self._captured: tuple[list[str], list[str]] | None = None
        if mode == "capture":
            self._captured = ([], [])
            targets: tuple[object, object] = self._captured
        else:
            targets = (sys.stdout, sys.stderr)
        prefix = f"[{name}] " if mode == "prefix" else ""
        self.sinks = (
            LineSink(self, out_r, targets[0], prefix),
            LineSink(self, err_r, targets[1], prefix),
        )
        self._attached = False
        self._finish_requested = False
        self._deliveries: list[threading.Event] = []
        self._deliveries_lock = threading.Lock()
        #: True while the relay handles what it found in the pipes: set before it
        #: reads them, cleared once it has written what it read.
        self.relaying = False
        self._poller: select.poll | None = None
        # A poll object refuses a poll() from a second thread while one is under
        # way (RuntimeError): callers reading results in threads of their own
        # (an Executor's, from many threads) each ask deliver_before().
        self._poller_lock = threading.Lock()

    def attach(self) -> None:
        """The child has its ends: close ours and start relaying."""
        self._close_child_fds()
        self._attached = True
        relay().add(self)

    def abandon(self) -> None:
        """The child was never started: close everything."""
        self._close_child_fds()
        for sink in self.sinks:
            sink.close_pipe()
        self.done.set()

    def request_finish(self) -> None:
        """The child has ended: ask the relay to deliver what is left and let go of the pipes."""
        if self._finish_requested or self.done.is_set():
            return
        self._finish_requested = True
        if self._attached:
            relay().finish(self)
        else:
            self.abandon()

    def finish(self, timeout: float | None = None) -> bool:
        """After the child ended: deliver all it wrote; False if *timeout* passed first."""
        self.request_finish()
        relayed = _wait_for_the_relay(self.done, timeout)
        if relayed is None:
            self.done.set()  # the relay has ended (at exit): nothing more will come
        return relayed is not False

    def deliver_written(self, timeout: float | None = None) -> None:
        """Wait until what the child has written so far is delivered (its pipes stay
        open); gives up after *timeout*, or when the relay has ended."""
        event = threading.Event()
        with self._deliveries_lock:
            self._deliveries.append(event)
        if not self.done.is_set():
            relay().deliver(self)
            _wait_for_the_relay(event, timeout)

    def deliver_before(self, timeout: float) -> None:
        """Before what the child sends next is handed on (a pool worker's result):
        deliver what it has written so far.

        A relay round trip only when there is something: the pipes hold data,
        or the relay is handling what it read from them. Looked at in that
        order: data the relay takes out of the pipes after the first look was
        taken with ``relaying`` set, so it is never missed.
        """
        with self._poller_lock:
            poller = self._poller
            if poller is None:
                poller = self._poller = select.poll()
                for sink in self.sinks:
                    if sink.fd >= 0:
                        poller.register(sink.fd, select.POLLIN)
            waiting = poller.poll(0)
        if not waiting and not self.relaying:
            return
        self.deliver_written(timeout)

    def delivered(self) -> None:
        """Called by the relay: what was written has been delivered."""
        with self._deliveries_lock:
            events, self._deliveries = self._deliveries, []
        for event in events:
            event.set()

    def captured(self, which: int) -> str | None:
        """What the child wrote to stdout (0) or stderr (1) so far, in capture mode; else None."""
        if self._captured is None:
            return None
        return "".join(self._captured[which])

    def _close_child_fds(self) -> None:
        for fd in self.child_fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.child_fds = (-1, -1)


def _wait_for_the_relay(event: threading.Event, timeout: float | None) -> bool | None:
    """Wait for *event*, which the relay thread sets: True once set, False when
    *timeout* passed first, None when the relay ended without setting it."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
        if event.wait(max(0.0, wait)):
            return True
        if not relay().running():
            return None
        if deadline is not None and time.monotonic() >= deadline:
            return False


def open_child_output(mode: str, name: str) -> ChildOutput | None:
    """The pipes for a child starting in *mode* (None for ``"inherit"``: nothing to do)."""
    if mode == "inherit":
        return None
    return ChildOutput(mode, name)
