"""The engine's books: the one record of its state, its work and its workers.

The engine (:mod:`._dispatcher`) and its fault handling (:mod:`._faults`)
both read and change this one object, always under ``Engine.lock``; neither
keeps a copy of what is here. A worker's own state is its handle's
(:mod:`._workers`).

Engine states (``Books.state``)::

    RUNNING --shutdown()--> CLOSING --all work done--> CLOSED
       |  \\--terminate()--> TERMINATING --workers dead--> CLOSED
       \\--initializer fails / workers cannot start--> BROKEN --> CLOSED
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from multiprocessing.sharedctypes import RawArray
from typing import TYPE_CHECKING

from ._messages import SLOT_WIDTH
from ._results_log import LOG_BYTES
from ._stats import SlotRecord

if TYPE_CHECKING:
    from ._jobs import Batch, Call, MapJob
    from ._workers import WorkerHandle

__all__ = ["BROKEN", "CLOSED", "CLOSING", "RUNNING", "TERMINATING", "Books"]

RUNNING, CLOSING, TERMINATING, BROKEN, CLOSED = "running", "closing", "terminating", "broken", \
    "closed"


class Books:
    """What the engine has been given to do, what is under way and where."""

    __slots__ = ("deferred", "jobs", "leaving", "logs_array", "pending", "records", "retry",
                 "slots", "slots_array", "startup_failures", "state", "workers")

    def __init__(self, size: int) -> None:
        self.state = RUNNING
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

    def take_deferred(self) -> list[Callable[[], None]]:
        """What was deferred until the lock is released; forgotten here."""
        deferred, self.deferred = self.deferred, []
        return deferred
