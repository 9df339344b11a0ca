"""The relay: one thread per parent process that moves every child's output to its sinks.

It waits on the read ends of all children's pipes at once (``epoll``, else
``poll``), reads
what is there (at most :data:`CHUNK` bytes per pipe per round, so no child
starves the others) and hands it to the pipe's :class:`~._lines.LineSink`.
Only this thread writes children's output, so whole lines from different
children can never interleave inside a line.

Requests (a new child, a child to finish, stop) come through a queue and a
wake-up pipe. *Finish* is how ``join()`` makes sure that everything the child
wrote has been delivered: the child has ended, so all it wrote is already in
its pipes; the relay reads until the pipes are empty or at end of file, hands
on any unfinished last line and closes them. A grandchild that still holds a
pipe open cannot delay ``join()``: what it writes later is not read.
*Deliver* does the same without closing the pipes: ``result()`` uses it when
the child's outcome arrives before its end (the child flushed its streams
before sending it), so that the child's lines come before what the caller
prints next.

The thread starts with the first child that needs it, is a daemon (it may not
keep the interpreter alive) and is stopped and joined by a finalizer at exit,
after ``multiprocessing`` has joined the children. After ``fork`` the child
process starts from an empty relay of its own.
"""

from __future__ import annotations

import fcntl
import os
import selectors
import termios
import threading
from collections import deque
from multiprocessing import util
from typing import TYPE_CHECKING

from ._lines import LineSink
from ._turns import forget_all as stop_taking_turns

if TYPE_CHECKING:
    from ._pipes import ChildOutput

__all__ = ["CHUNK", "Relay", "output_quiet", "relay"]

#: The most bytes read from one pipe in one round.
CHUNK = 1 << 16
#: The most bytes a *finish* reads from one pipe (more than any pipe holds).
_FINISH_LIMIT = 64 << 20


class Relay:
    """The relay thread and the state it owns; see the module's docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: deque[tuple[str, ChildOutput | None]] = deque()
        self._thread: threading.Thread | None = None
        self._loop: _RelayLoop | None = None  # what the thread runs, while it runs
        self._wake_w = -1
        self._finalizer_registered = False
        #: Held by the thread while it reads and writes; see :func:`output_quiet`.
        self.quiet = threading.Lock()

    # -- called from any thread ---------------------------------------------
    def add(self, output: ChildOutput) -> None:
        """Start relaying *output*'s pipes (the child has been started).

        Where the relay thread waits with ``epoll``, the pipes join its wait
        from this thread (under ``quiet``: not during a round), effective at
        once, without waking it; else the thread is asked to add them.
        """
        loop = self._loop
        if loop is not None and loop.adds_from_any_thread and self.quiet.acquire(blocking=False):
            try:
                if self._loop is loop and not loop.closed:
                    loop.add(output)
                    return
            finally:
                self.quiet.release()
        self._request("add", output)

    def finish(self, output: ChildOutput) -> None:
        """Deliver what *output*'s pipes hold, then close them (the child has ended).

        When there is nothing to deliver (the pipes are empty, no partial line
        is held) and the relay thread is waiting on the pipes (``quiet`` free:
        it is in no round), the calling thread closes them itself; else the
        relay thread is asked. ``join()`` then does not wait for that thread
        to be scheduled: in a loop of starts on a busy machine, half the joins
        waited 0.2 ms for it. The child's output itself is only ever handed
        on by the relay thread.
        """
        loop = self._loop
        if loop is not None and self.quiet.acquire(blocking=False):
            try:
                if self._loop is loop and not loop.closed and loop.relays(output) \
                        and _nothing_to_deliver(output):
                    loop.finish(output, deliver=False)
                    return
            finally:
                self.quiet.release()
        self._request("finish", output)

    def deliver(self, output: ChildOutput) -> None:
        """Deliver what *output*'s pipes hold now, and set the events it waits on
        (:meth:`ChildOutput.deliver_written`); the pipes stay open."""
        self._request("deliver", output)

    def running(self) -> bool:
        """Whether the relay thread is running."""
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Finish every child's output, then end the thread and wait for it (at exit)."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return
        self._request("stop", None)
        thread.join(timeout=10.0)
        stop_taking_turns()  # the streams' own write() back

    def _request(self, kind: str, output: ChildOutput | None) -> None:
        with self._lock:
            if self._thread is None:
                if kind == "deliver" and output is not None:
                    output.delivered()  # no thread: nothing is being relayed
                elif kind != "add" and output is not None:
                    output.done.set()
                if kind != "add":
                    return
                self._start()
            self._requests.append((kind, output))
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass  # awake already

    def _start(self) -> None:
        wake_r, self._wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._loop = _RelayLoop(self, wake_r, self._wake_w)
        self._thread = threading.Thread(
            target=self._loop.run, name="procesos-output-relay", daemon=True,
        )
        self._thread.start()
        if not self._finalizer_registered:
            self._finalizer_registered = True
            util.Finalize(None, self.stop, exitpriority=-50)

    def _next_request(self, idle: bool) -> tuple[str, ChildOutput | None] | None:
        """The next request; with *idle* (nothing left to relay) and none, the thread ends."""
        with self._lock:
            if self._requests:
                return self._requests.popleft()
            if idle:
                self._thread = self._loop = None
                self._wake_w = -1
            return None

    def _thread_ended(self) -> None:
        """The relay thread is ending, maybe on an error: a later request starts a new one."""
        with self._lock:
            if self._thread is not threading.current_thread():
                return  # it ended as asked (_next_request)
            self._thread = self._loop = None
            self._wake_w = -1
            if self._requests:
                self._start()
                os.write(self._wake_w, b"x")


class _RelayLoop:
    """What the relay thread runs; all its state is the thread's own."""

    def __init__(self, relay: Relay, wake_r: int, wake_w: int) -> None:
        self.relay = relay
        self.wake_r, self.wake_w = wake_r, wake_w
        # epoll: a pipe registered by another thread is watched at once, also
        # by a select() under way (poll() would see it only at its next call).
        epoll = getattr(selectors, "EpollSelector", None)
        self.selector: selectors.BaseSelector = (
            selectors.PollSelector() if epoll is None else epoll())
        self.adds_from_any_thread = epoll is not None
        self.selector.register(wake_r, selectors.EVENT_READ, None)
        self.outputs: set[ChildOutput] = set()
        self.stopping = False
        self.closed = False  # the thread has ended (under quiet)

    def run(self) -> None:
        try:
            while True:
                ready = self.selector.select()
                with self.relay.quiet:
                    if self._round(ready):
                        return
        finally:
            # Under quiet: start() and join() add and close pipes under it too.
            with self.relay.quiet:
                self.closed = True
                for output in self.outputs:  # left only by an error: let no join() wait
                    for sink in output.sinks:
                        sink.close_pipe()
                    output.done.set()
                self.relay._thread_ended()
                self.selector.close()
                os.close(self.wake_r)
                os.close(self.wake_w)

    def _round(self, ready: list[tuple[selectors.SelectorKey, int]]) -> bool:
        """Relay what is ready, serve the requests; True when the thread should end."""
        touched: list[LineSink] = []
        woken = False
        relaying = []
        for key, _ in ready:
            if key.data is None:
                woken = True
            else:
                sink = key.data
                if sink.fd < 0:
                    continue  # finished by a join() since the select (Relay.finish)
                if sink.owner is not None:  # before the read: see deliver_before()
                    sink.owner.relaying = True
                    relaying.append(sink.owner)
                self._read_once(sink, touched)
        for sink in touched:
            sink.flush()
        for owner in relaying:
            owner.relaying = False
        return (woken or self.stopping) and self._serve_requests()

    def _read_once(self, sink: LineSink, touched: list[LineSink]) -> None:
        try:
            data = os.read(sink.fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            sink.feed(data)
            touched.append(sink)
        else:
            self._close(sink)

    def _serve_requests(self) -> bool:
        """Do what was asked; True when the thread should end."""
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            request = self.relay._next_request(idle=self.stopping and not self.outputs)
            if request is None:
                return self.stopping and not self.outputs
            kind, output = request
            if kind == "add" and output is not None:
                self.add(output)
            elif kind == "finish" and output is not None:
                self.finish(output)
            elif kind == "deliver" and output is not None:
                self._deliver(output)
            elif kind == "stop":
                for each in list(self.outputs):
                    self.finish(each)
                self.stopping = True

    def add(self, output: ChildOutput) -> None:
        """Watch *output*'s pipes: in this thread, or (under ``quiet``,
        :meth:`Relay.add`) in the one that started the child."""
        self.outputs.add(output)
        for sink in output.sinks:
            os.set_blocking(sink.fd, False)
            self.selector.register(sink.fd, selectors.EVENT_READ, sink)

    def relays(self, output: ChildOutput) -> bool:
        """Whether *output* has been added and is not finished (under ``quiet``)."""
        return output in self.outputs

    def finish(self, output: ChildOutput, deliver: bool = True) -> None:
        """Deliver what *output*'s pipes hold and close them; without *deliver*,
        only close them: they hold nothing, and the thread that joins the child
        closes them, under ``quiet`` (:meth:`Relay.finish`)."""
        for sink in output.sinks:
            if deliver:
                self._read_all(sink)
                if sink.fd >= 0:
                    self._close(sink)
            elif sink.fd >= 0:
                self._let_go(sink)
        self.outputs.discard(output)
        output.done.set()
        output.delivered()

    def _deliver(self, output: ChildOutput) -> None:
        output.relaying = True  # see ChildOutput.deliver_before()
        for sink in output.sinks:
            if self._read_all(sink):
                self._close(sink)
            else:
                sink.flush()
        output.relaying = False
        output.delivered()

    def _read_all(self, sink: LineSink) -> bool:
        """Feed what the pipe holds now to *sink*; True at its end of file."""
        budget = _FINISH_LIMIT
        while sink.fd >= 0 and budget > 0:
            try:
                data = os.read(sink.fd, CHUNK)
            except BlockingIOError:
                return False  # empty, yet open (a finish: a grandchild holds it)
            except OSError:
                data = b""
            if not data:
                return True
            budget -= len(data)
            sink.feed(data)
        return False

    def _let_go(self, sink: LineSink) -> None:
        try:
            self.selector.unregister(sink.fd)
        except (KeyError, ValueError):
            pass
        sink.close_pipe()

    def _close(self, sink: LineSink) -> None:
        sink.end()
        sink.flush()
        self._let_go(sink)
        output = sink.owner
        if output is not None and all(s.fd < 0 for s in output.sinks):
            self.outputs.discard(output)
            output.done.set()


def _nothing_to_deliver(output: ChildOutput) -> bool:
    """Whether *output*'s pipes are empty and its sinks hold nothing unfinished."""
    for sink in output.sinks:
        if not sink.holds_nothing():
            return False
        if sink.fd >= 0:
            try:
                waiting = fcntl.ioctl(sink.fd, termios.FIONREAD, _NO_BYTES)
            except OSError:
                return False
            if waiting != _NO_BYTES:
                return False
    return True


_NO_BYTES = bytes(4)  # FIONREAD's answer: an int, 0

_relay = Relay()


def relay() -> Relay:
    """This process's relay."""
    return _relay


def output_quiet() -> threading.Lock:
    """A lock that keeps the relay thread out of every stream while held.

    The ``fork`` start method holds it around ``os.fork()``: a child forked
    while the relay was writing to ``sys.stdout`` would inherit that stream's
    lock held, and hang at its first ``print``.
    """
    return _relay.quiet


def _after_fork_in_child() -> None:
    # The thread did not survive the fork; the pipes it read belong to the
    # parent. The old relay must not wake the parent's thread (its finalizer
    # may still be registered here after a bare os.fork()). Its epoll and
    # wake-up pipe are closed here: this process's copies, held by a cycle
    # (the relay and its loop) until a collection.
    global _relay
    if _relay._thread is None and _relay._loop is None and not _relay._requests \
            and not _relay._lock.locked() and not _relay.quiet.locked():
        return  # no relay ran here (the zygote's spares): nothing of the parent's to drop
    loop = _relay._loop
    _relay._thread, _relay._wake_w, _relay._loop = None, -1, None
    if loop is not None:
        loop.selector.close()
        for fd in (loop.wake_r, loop.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
    _relay = Relay()


os.register_at_fork(after_in_child=_after_fork_in_child)
