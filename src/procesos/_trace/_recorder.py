"""What a trace records: slices of time on tracks, instants, and flows between them.

A *track* is one process (its pid) or one thread of this process; a *slice* is
a named interval on a track (a process alive, a task running, the parent
waiting in ``join()``); an *instant* marks a moment (a crash, a retry); a
*flow* links a slice to a later one on another track (a task's submit to its
run). Times are ``time.monotonic_ns()``: on Linux and macOS one clock for
every process of the machine, so times taken in workers line up with ours.

Recording is off unless a :class:`Recorder` is in :data:`._state.recorder`;
every hook in the rest of procesos is one test of that global when it is off.
"""

from __future__ import annotations

import functools
import os
import select
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["Flow", "Instant", "Recorder", "Slice", "Track", "never_breaks_the_program"]

_F = TypeVar("_F", bound=Callable[..., None])
_warned = False


def never_breaks_the_program(hook: _F) -> _F:
    """A hook runs inside ``start()``, ``join()`` and the engine's threads: a fault
    of the trace must not break them. It drops what it could not record, and
    says so once."""

    @functools.wraps(hook)
    def guarded(*args: Any, **kwargs: Any) -> None:
        global _warned
        try:
            hook(*args, **kwargs)
        except Exception as exc:
            if not _warned:
                _warned = True
                warnings.warn(f"procesos.trace could not record an event ({exc!r}); the "
                              "trace lacks it", RuntimeWarning, stacklevel=2)

    return guarded  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Track:
    """Where slices go: a process (*tid* None) or one of its threads."""

    pid: int
    tid: int | None = None


@dataclass(slots=True)
class Slice:
    """A named interval on a track."""

    track: Track
    name: str
    start: int  # monotonic ns
    end: int
    category: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Instant:
    """A moment on a track (a crash, a retry, a timeout)."""

    track: Track
    name: str
    time: int
    category: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Flow:
    """An arrow from a moment on one track to a moment on another."""

    ident: int
    name: str
    source: tuple[Track, int]
    target: tuple[Track, int]


class _ExitWatcher:
    """One thread that notes when each traced process ends (its sentinel becomes
    readable), so that a process's slice ends when it ended, not when someone
    joined it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.watched: dict[int, Slice] = {}  # our duplicate of the sentinel -> its slice
        self.wake_r, self.wake_w = os.pipe()
        self.stopping = False
        self.thread = threading.Thread(target=self.run, name="procesos-trace-exits",
                                       daemon=True)
        self.thread.start()

    def watch(self, sentinel: int, piece: Slice) -> None:
        try:
            fd = os.dup(sentinel)
        except OSError:
            piece.end = time.monotonic_ns()  # already closed: it has ended
            return
        with self.lock:
            if self.stopping:
                os.close(fd)
                return
            self.watched[fd] = piece
            os.write(self.wake_w, b"\0")  # under the lock: stop() closes it after

    def run(self) -> None:
        while True:
            poller = select.poll()
            poller.register(self.wake_r, select.POLLIN)
            with self.lock:
                if self.stopping:
                    break
                for fd in self.watched:
                    poller.register(fd, select.POLLIN)
            for fd, _ in poller.poll():
                now = time.monotonic_ns()
                if fd == self.wake_r:
                    os.read(self.wake_r, 512)
                    continue
                with self.lock:
                    piece = self.watched.pop(fd, None)
                if piece is not None:  # its exit code is read at stop(): maybe not reaped yet
                    piece.end = now if piece.end < 0 else min(piece.end, now)
                os.close(fd)
        with self.lock:
            for fd in self.watched:
                os.close(fd)
            self.watched.clear()
        os.close(self.wake_r)

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            os.write(self.wake_w, b"\0")
        self.thread.join()
        with self.lock:
            os.close(self.wake_w)


class Recorder:
    """The slices, instants and flows of one trace, and the names of its tracks."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.started = time.monotonic_ns()
        self.stopped: int | None = None
        self.slices: list[Slice] = []
        self.instants: list[Instant] = []
        self.flows: list[Flow] = []
        self.names: dict[Track, str] = {}
        self.lock = threading.Lock()
        self._flow_ids = iter(range(1, 1 << 62))
        self._open: dict[int, tuple[Slice, weakref.ref[Any]]] = {}  # id(slice) -> its process
        self._by_process: dict[int, int] = {}  # id(process) -> id(its slice)
        self._exits: _ExitWatcher | None = None
        # The engine's batches (see _tasks.py): being pickled, and sent but not done.
        self.pending_sends: dict[int, int] = {}
        self.batches: dict[tuple[int, int], tuple[Track, int, int, int, int]] = {}
        self.shared_results: dict[tuple[int, int], int] = {}  # (batch id, offset) -> bytes

    # -- tracks -------------------------------------------------------------------------
    def this_thread(self) -> Track:
        """The calling thread's track (this process's main thread: the process's own)."""
        if threading.current_thread() is threading.main_thread():
            return Track(os.getpid())
        track = Track(os.getpid(), threading.get_native_id())
        if track not in self.names:
            self.names[track] = threading.current_thread().name
        return track

    def name(self, track: Track, name: str) -> None:
        """Name *track* (the first name given stays)."""
        self.names.setdefault(track, name)

    # -- recording ----------------------------------------------------------------------
    def add_slice(self, track: Track, name: str, start: int, end: int, category: str,
                  **args: Any) -> Slice:
        piece = Slice(track, name, start, end, category, args)
        with self.lock:
            self.slices.append(piece)
        return piece

    def add_instant(self, track: Track, name: str, when: int, category: str,
                    **args: Any) -> None:
        with self.lock:
            self.instants.append(Instant(track, name, when, category, args))

    def add_flow(self, name: str, source: tuple[Track, int], target: tuple[Track, int]) -> None:
        with self.lock:
            self.flows.append(Flow(next(self._flow_ids), name, source, target))

    # -- processes ----------------------------------------------------------------------
    @never_breaks_the_program
    def process_started(self, process: Any, called: int, launched: int) -> None:
        """*process* was started: ``start()`` ran from *called* to *launched*; its own
        slice runs until its sentinel says it ended."""
        caller = self.this_thread()
        pid = int(process.pid)
        method = getattr(process, "start_method", "")
        self.add_slice(caller, f"start() {process.name}", called, launched, "launch",
                       pid=pid, method=method)
        track = Track(pid)
        self.name(track, f"{process.name} (pid {pid})")
        piece = self.add_slice(track, process.name, launched, -1, "process", method=method)
        self.add_flow("start", (caller, called), (track, launched))
        with self.lock:
            self._open[id(piece)] = (piece, weakref.ref(process))
            self._by_process[id(process)] = id(piece)
            if self._exits is None:
                self._exits = _ExitWatcher()
            watcher = self._exits
        watcher.watch(process.sentinel, piece)

    @never_breaks_the_program
    def process_joined(self, process: Any, when: int) -> None:
        """``join()`` returned at *when*: if *process* has ended, it ended by then (a
        zygote child reports its end before its sentinel says so)."""
        popen = getattr(process, "_popen", None)
        if popen is None or popen.returncode is None:
            return
        with self.lock:
            entry = self._open.get(self._by_process.get(id(process), -1))
        if entry is not None:
            piece = entry[0]
            piece.end = when if piece.end < 0 else min(piece.end, when)

    @never_breaks_the_program
    def waited(self, what: str, start: int, end: int, **args: Any) -> None:
        """The calling thread waited for *what* (``join()``, ``result()``)."""
        self.add_slice(self.this_thread(), what, start, end, "wait", **args)

    # -- the end ------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop recording: processes still running end their slices now."""
        self.stopped = time.monotonic_ns()
        with self.lock:
            watcher, self._exits = self._exits, None
        if watcher is not None:
            watcher.stop()
        with self.lock:
            processes, self._open = list(self._open.values()), {}
        for piece, process_ref in processes:
            if piece.end < 0:
                piece.end = self.stopped
                piece.args["still running"] = True
            process = process_ref()
            if process is not None:
                piece.args["exitcode"] = _exitcode(process)


def _exitcode(process: Any) -> int | None:
    try:
        return process.exitcode  # type: ignore[no-any-return]
    except ValueError:  # closed: procesos' Process keeps it
        return getattr(process, "_kept_exitcode", None)
