"""The engine's books: the one record of its state, its work and its workers.

The engine (:mod:`._dispatcher`) and its collaborators (:mod:`._sending`,
:mod:`._receiving`, :mod:`._starting`, :mod:`._ending`, :mod:`._faults`) all
read and change this one object, always under its lock (``Books.lock``, which
is ``Engine.lock``); none keeps a copy of what is here. A worker's own state
is its handle's (:mod:`._workers`); the states are drawn in :mod:`._states`.
What a collaborator asks of another goes through the engine
(:class:`EngineCalls`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from multiprocessing.sharedctypes import RawArray
from typing import TYPE_CHECKING, Any, Protocol

from ._batching import ChunkSizer
from ._results_log import LOG_BYTES
from ._states import RUNNING, SLOT_WIDTH
from ._stats import SlotRecord

if TYPE_CHECKING:
    from ._jobs import Batch, Call, MapJob
    from ._workers import WorkerHandle

__all__ = ["Books", "EngineCalls"]


class EngineCalls(Protocol):
    """What the engine's collaborators ask of one another, through the engine;
    each under the lock but ``wake()``."""

    def wake(self) -> None:
        """Make the dispatcher look at the books again (takes no lock)."""

    def fill(self) -> None:
        """Give work to the workers that can take some."""

    def start_worker(self, slot: int, replacement: bool) -> None:
        """Start a worker in *slot* now."""

    def start_worker_later(self, slot: int) -> None:
        """Have the starter thread start a worker in *slot*."""

    def break_down(self, error: BaseException, cause: BaseException | None) -> None:
        """The engine cannot go on: fail everything with *error*."""

    def settle_errors(self, batch: Batch, offset: int, count: int, values: Any,
                      frames: dict[int, bytes]) -> tuple[list[Any], dict[int, BaseException]]:
        """The values and errors of items ``offset .. offset+count-1`` of *batch*
        (*frames*: their pickled exceptions), counted as done."""
        raise NotImplementedError


class Books:
    """What the engine has been given to do, what is under way and where."""

    __slots__ = ("batch_s", "call_sizer", "deferred", "error", "jobs", "leaving", "lock",
                 "logs_array", "pending", "records", "retry", "slots", "slots_array",
                 "starting", "startup_failures", "state", "workers")

    def __init__(self, size: int) -> None:
        self.lock = threading.Lock()
        self.state = RUNNING
        #: Why the engine broke (``BROKEN``).
        self.error: BaseException | None = None
        #: The worker in each slot (None while a slot has none).
        self.workers: list[WorkerHandle | None] = [None] * size
        #: Retired workers, replaced already, until they have exited.
        self.leaving: list[WorkerHandle] = []
        self.records = [SlotRecord(i) for i in range(size)]
        #: Calls not sent yet; ``submit()`` appends without the lock once some wait.
        self.pending: deque[Call] = deque()
        #: Parts of batches to send again (a worker died or retired), before anything else.
        self.retry: deque[Batch] = deque()
        self.jobs: list[MapJob] = []
        #: What to do once the lock is released (it delivers to futures, whose
        #: callbacks may call the engine).
        self.deferred: list[Callable[[], None]] = []
        #: Workers that died before they said READY, in a row.
        self.startup_failures = 0
        #: The starter thread runs (:mod:`._starting`): workers are still starting.
        self.starting = False
        #: The pace of work: how many calls to send in one batch, and the smoothed
        #: duration of one batch (a second one is sent ahead only when it is short).
        self.call_sizer = ChunkSizer(size)
        self.batch_s = 0.0
        # Each worker's progress slot (the item it runs, since when, its memory)
        # and its result log (:mod:`._results_log`), in shared memory.
        self.slots_array = RawArray("q", SLOT_WIDTH * size)
        self.slots = memoryview(self.slots_array).cast("B").cast("q")
        self.logs_array = RawArray("b", LOG_BYTES * size)

    def work_left(self) -> bool:
        """Whether any task may still need a worker."""
        if self.state == RUNNING:
            return True
        return bool(self.pending or self.retry or self.jobs
                    or any(w is not None and w.outstanding for w in self.workers))

    def work_waits(self) -> bool:
        """Calls, parts or maps wait for a worker, or the engine is ending: the
        dispatcher has something to do."""
        return bool(self.pending or self.retry or self.jobs) or self.state != RUNNING

    def run_deferred(self) -> None:
        """Without the lock: do what was deferred until it was released."""
        if not self.deferred:
            return
        with self.lock:
            deferred, self.deferred = self.deferred, []
        for action in deferred:
            action()
