"""Worker starts: the engine's first workers, the others in a thread of their
own, and replacements.

The constructor starts the first worker (all of them under "fork" and
"spawn"), so that a first task can go at once; the starter thread starts the
rest outside the lock, and replacements that the dispatcher should not wait
for (a start waits for the zygote's answer). While it runs, ``Books.starting``
says so: no batch is sent ahead, and the dispatcher does not stop.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .._pool_errors import BrokenExecutorError
from ._states import CLOSING, RUNNING, SLOT_WIDTH
from ._workers import WorkerHandle

if TYPE_CHECKING:
    from .._proc._context import ProcesosContext
    from ._books import Books, EngineCalls
    from ._worker import WorkerConfig

__all__ = ["Starter"]


class Starter:
    """Starts workers into the slots of the engine's books."""

    def __init__(self, books: Books, engine: EngineCalls, ctx: ProcesosContext,
                 config: WorkerConfig) -> None:
        self.books = books
        self.engine = engine
        self.ctx = ctx
        self.config = config
        #: (slot, whether it replaces a worker) for the starter thread to start.
        self.unstarted: list[tuple[int, bool]] = []

    def start_worker(self, slot: int, replacement: bool) -> None:
        """Under the lock (or before the dispatcher exists): start a worker in
        *slot* now; raises what starting it raised."""
        self._reset_slot(slot)
        worker = self._new_worker(slot)
        self._install(worker, replacement)

    def start_later(self, slots: list[int]) -> None:
        """Before the dispatcher starts: the starter thread will start a first
        worker in each of *slots* (see :meth:`begin`)."""
        self.unstarted.extend((slot, False) for slot in slots)

    def begin(self) -> None:
        """In the dispatcher thread, as it starts: start the workers the
        constructor left, in a thread of their own."""
        if self.unstarted:
            with self.books.lock:
                self.books.starting = True
            self._start_thread()

    def start_worker_later(self, slot: int) -> None:
        """Under the lock: have the starter thread start a replacement in *slot*, so
        that the dispatcher serves the other workers meanwhile (a start waits for
        the zygote; a pool whose workers each run one task starts one per task)."""
        self.unstarted.append((slot, True))
        if not self.books.starting:
            self.books.starting = True
            self._start_thread()

    def _start_thread(self) -> None:
        threading.Thread(target=self._start_the_others, name="procesos-worker-starter",
                         daemon=True).start()

    def _start_the_others(self) -> None:
        """In a thread of its own: start the workers waiting in ``unstarted``,
        outside the lock. submit() and the first worker's callers do not wait for
        them, nor does the dispatcher, which reads the first worker's answers
        meanwhile (a start waits milliseconds for the zygote)."""
        books = self.books
        try:
            while True:
                with books.lock:
                    if not self.unstarted or books.state not in (RUNNING, CLOSING):
                        self.unstarted.clear()
                        # Under the same lock as the check: a start_worker_later()
                        # after it starts a new thread.
                        books.starting = False
                        # Under the lock: the dispatcher closes the pipe only after.
                        self.engine.wake()
                        return
                    slot, replacement = self.unstarted.pop(0)
                    self._reset_slot(slot)
                worker = self._new_worker(slot)
                with books.lock:
                    self._install(worker, replacement)
                    if books.state not in (RUNNING, CLOSING):
                        worker.kill()  # terminate() came while it started
                    self.engine.fill()
                    self.engine.wake()  # the dispatcher watches its pipe and its end
        except BaseException as exc:
            with books.lock:
                self.engine.break_down(BrokenExecutorError(f"the task engine failed: {exc!r}"), exc)
            books.run_deferred()
            with books.lock:
                books.starting = False
                self.engine.wake()

    def _new_worker(self, slot: int) -> WorkerHandle:
        config = self.config
        # A mother (fork per task) never retires: each of its tasks has a process.
        budget = None if config.fork_per_task else config.max_tasks
        return WorkerHandle(self.ctx, slot, self.books.slots_array, config, budget,
                            self.books.logs_array)

    def _install(self, worker: WorkerHandle, replacement: bool) -> None:
        self.books.workers[worker.slot] = worker
        self.books.records[worker.slot].worker_started(worker.pid, replacement)

    def _reset_slot(self, slot: int) -> None:
        # Sequence number 0: no item (numbers start at 1; minus one loads a batch).
        base = slot * SLOT_WIDTH
        for i in range(SLOT_WIDTH):
            self.books.slots[base + i] = 0
