"""The engine: long-lived workers and the one dispatcher thread that drives them.

:class:`Engine` wires the collaborators that keep its books (:mod:`._books`),
each with one job: :class:`~._sending.Sender` (``submit()``, the function
cache, filling idle workers), :class:`~._receiving.Receiver` (what workers
send back), :class:`~._starting.Starter` (worker starts),
:class:`~._ending.Ending` (shutdown, terminate, a break, the release) and
:class:`~._faults.Faults` (deaths, timeouts, retirement). What one asks of
another goes through the engine (:class:`~._books.EngineCalls`).

The dispatcher thread, here, waits with one ``poll()`` on every worker's
result pipe and exit sentinel plus a wake-up pipe. Each round it reads what
arrived (no lock), updates the books and sends more work (under the lock),
then hands results to futures and map jobs (no lock, so callbacks may
submit). ``submit()`` writes straight to an idle worker under the lock,
without waking the dispatcher, and its caller may read the answer itself
(:mod:`._direct`). The dispatcher watches a worker's pipe only while
something can come from it (a batch in flight, its READY message).
"""

from __future__ import annotations

import os
import select
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from .._pool_errors import BrokenExecutorError
from .._proc._context import ProcesosContext
from ._books import Books
from ._ending import Ending
from ._faults import HELD_RESULTS_S, Faults
from ._jobs import Batch, MapJob
from ._progress import Progress
from ._receiving import Delivery, Receiver, decode_payload, deliver
from ._sending import Sender
from ._starting import Starter
from ._states import CLOSED, CLOSING, DONE, READING, RUNNING, TERMINATING
from ._stats import WorkerStats
from ._worker import WorkerConfig
from ._workers import POLL_IN, WorkerHandle

__all__ = ["Engine"]

_RESULTS, _WRITABLE, _EXITED = range(3)  # what a polled descriptor of a worker says


class Engine:
    """Workers plus a dispatcher; the machinery behind ``Executor`` and ``Pool``."""

    #: ``submit(fn, args, kwargs)``: send a call to an idle worker now, or queue it
    #: (:meth:`._sending.Sender.submit`, bound here: the hot path pays no extra call).
    submit: Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], Future[Any]]
    #: Under the lock: the books of items done (:meth:`._receiving.Receiver.record_done`).
    record_done: Callable[[WorkerHandle, Batch, int, int, int, int], None]
    #: What a direct reader read, handed over (:meth:`._receiving.Receiver.handle_frames`).
    handle_frames: Callable[[WorkerHandle, list[tuple[Any, memoryview]]], None]

    def __init__(self, ctx: ProcesosContext, workers: int, config: WorkerConfig, *,
                 timeout: float | None, retries: int, progress: Progress | None,
                 closed_message: str, closed_error: type[Exception] = RuntimeError) -> None:
        self.ctx = ctx
        self.size = workers
        self.config = config
        self.timeout = timeout
        self.progress = progress
        self.books = books = Books(workers)
        self.owner_pid = os.getpid()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        # The pipe lives as long as the engine, not only until release(): wake() runs
        # without the lock, so a thread may write after the end, and must write into
        # the pipe (full: the write fails), never into a file that took its number,
        # nor raise SIGPIPE where a program restored its default action. Not at
        # the interpreter's exit: a thread of the engine may still run then (it
        # read a closed descriptor once, in a test run), and the exit closes them.
        weakref.finalize(self, _close_all, (self.wake_r, self.wake_w)).atexit = False
        self.woken = False
        self.abandoned: str | None = None  # see abandon()
        self.faults = faults = Faults(books, self, ctx, timeout=timeout, retries=retries,
                                      max_memory=config.max_memory, progress=progress)
        self.sender = sender = Sender(books, self, timeout=timeout, progress=progress,
                                      closed_message=closed_message, closed_error=closed_error)
        self.receiver = receiver = Receiver(books, self, faults, progress)
        self.starter = starter = Starter(books, self, ctx, config)
        self.ending = Ending(books, self, faults, sender, progress)
        self.submit = sender.submit
        self.record_done = receiver.record_done
        self.handle_frames = receiver.handle_frames
        # The first worker starts now, so that a first task can go at once; the
        # starter thread starts the others. Under "fork" all start here (forking
        # is safe only before the dispatcher thread exists), and under "spawn" too
        # (a spawn child started from another thread than the main one dies at
        # start-up: see the note in tests/test_engine_faults.py).
        now = 1 if ctx.get_start_method() == "zygote" else workers
        starter.start_later(list(range(now, workers)))
        try:
            for slot in range(now):
                starter.start_worker(slot, replacement=False)
        except BaseException:
            books.state = CLOSED
            self.ending.release()
            raise
        self.thread = threading.Thread(target=self._run, name="procesos-dispatcher", daemon=True)
        self.thread.start()

    @property
    def state(self) -> str:
        """``RUNNING``, ``CLOSING``, ``TERMINATING``, ``BROKEN`` or ``CLOSED``."""
        return self.books.state

    @property
    def lock(self) -> threading.Lock:
        """The lock of the engine's books (``Books.lock``)."""
        return self.books.lock

    # -- entry points (any thread) ---------------------------------------------
    def map_job(self, fn: Callable[..., Any], iterable: Iterable[Any], *, star: bool,
                ordered: bool, return_exceptions: bool, collect: bool,
                chunksize: int | None) -> MapJob:
        """Start a map of *fn* over *iterable*; its results come through the job."""
        with self.books.lock:
            self.sender.check_open()
            job = MapJob(self.sender.entry(fn), iterable, star=star, ordered=ordered,
                         return_exceptions=return_exceptions, collect=collect,
                         workers=self.size, chunksize=chunksize, wake=self.wake,
                         stop=self.stop_job)
            self.books.jobs.append(job)
            if self.progress is not None:
                self.progress.add(job.total)
        self.wake()
        return job

    def stop_job(self, job: MapJob) -> None:
        """*job*'s caller was interrupted: cancel it and kill the workers running its items."""
        job.cancel()
        with self.books.lock:
            if self.books.state in (RUNNING, CLOSING):
                self.faults.stop_items_of(job)

    def wake(self) -> None:
        """Make the dispatcher look at the books again."""
        if not self.woken:
            self.woken = True
            try:
                os.write(self.wake_w, b"\0")
            except (BlockingIOError, OSError):
                pass

    def shutdown(self, wait: bool, cancel_futures: bool) -> None:
        """No new work; finish (or cancel) the rest; with *wait*, until workers have ended."""
        with self.books.lock:
            self.ending.begin_shutdown(cancel_futures)
        self.books.run_deferred()
        if wait:
            self.join()

    def terminate(self) -> None:
        """Kill the workers that run tasks now; unfinished tasks are cancelled.

        Idle workers are asked to exit instead, and killed only if they have not
        within a grace period: their exit handlers run, so what their tasks put
        in a queue is written (``with Pool(...)`` ends with ``terminate()``).
        """
        with self.books.lock:
            self.ending.begin_terminate()
        self.join()

    def abandon(self, terminate: bool) -> None:
        """Its owner (an ``Executor`` or ``Pool``) was garbage-collected: the dispatcher
        shuts the engine down (or terminates it). Takes no lock and waits for
        nothing, since the collection may happen anywhere, even under the lock."""
        self.abandoned = "terminate" if terminate else "shutdown"
        self.wake()

    def forked_away(self) -> None:
        """In a child made by ``os.fork()``: new work raises :class:`BrokenExecutorError`
        (see :meth:`._ending.Ending.forked_away`)."""
        self.ending.forked_away(self.owner_pid)

    def join(self) -> None:
        """Wait until the dispatcher has ended (not from the dispatcher itself)."""
        if threading.current_thread() is not self.thread:
            self.thread.join()

    def stats(self) -> list[WorkerStats]:
        """Each worker slot's figures."""
        with self.books.lock:
            return [record.snapshot() for record in self.books.records]

    # -- what the collaborators ask of one another (EngineCalls; under the lock) ------
    def fill(self) -> None:
        """Give work to the workers that can take some."""
        self.sender.fill()

    def start_worker(self, slot: int, replacement: bool) -> None:
        """Start a worker in *slot* now."""
        self.starter.start_worker(slot, replacement)

    def start_worker_later(self, slot: int) -> None:
        """Have the starter thread start a worker in *slot*."""
        self.starter.start_worker_later(slot)

    def break_down(self, error: BaseException, cause: BaseException | None) -> None:
        """The engine cannot go on: fail everything with *error*."""
        self.ending.break_down(error, cause)

    def settle_errors(self, batch: Batch, offset: int, count: int, values: Any,
                      frames: dict[int, bytes]) -> tuple[list[Any], dict[int, BaseException]]:
        """The values and errors of items done (see ``Receiver.settle_errors``)."""
        return self.receiver.settle_errors(batch, offset, count, values, frames)

    # -- the dispatcher thread ---------------------------------------------------
    def _run(self) -> None:
        poller = select.poll()
        registered: dict[int, int] = {}
        owners: dict[int, tuple[WorkerHandle, int]] = {}
        try:
            self.starter.begin()
            while True:
                with self.books.lock:
                    if self.abandoned is not None:
                        if self.abandoned == "terminate":
                            self.ending.begin_terminate()
                        else:
                            self.ending.begin_shutdown(cancel_futures=False)
                        self.abandoned = None
                    if self.ending.finished():
                        break
                    taken_back = False
                    for worker in self.books.workers:
                        # Lent to a caller that has not come for it: ours again.
                        if worker is not None and not worker.dead and worker.take_back():
                            taken_back = True
                    if taken_back:
                        # It could not be given work while it was not ours: calls
                        # queued meanwhile go now (one ahead), not after its call.
                        self.sender.fill()
                    wanted = {self.wake_r: POLL_IN}
                    owners.clear()
                    for worker in self.books.workers:
                        if worker is None or worker.dead:
                            continue
                        if worker.reader_role == READING:
                            continue  # its caller watches it, and gives it back
                        # One sent its last task says RETIRE, maybe after its last result.
                        if not worker.idle() or worker.budget == 0:
                            wanted[worker.fd] = POLL_IN
                            owners[worker.fd] = (worker, _RESULTS)
                            if worker.outbox:
                                wanted[worker.out_fd] = select.POLLOUT
                                owners[worker.out_fd] = (worker, _WRITABLE)
                        wanted[worker.sentinel] = POLL_IN
                        owners[worker.sentinel] = (worker, _EXITED)
                    for worker in self.books.leaving:
                        wanted[worker.sentinel] = POLL_IN
                        owners[worker.sentinel] = (worker, _EXITED)
                    timeout = self._poll_timeout()
                for fd in [fd for fd in registered if fd not in wanted]:
                    poller.unregister(fd)
                    del registered[fd]
                for fd, mask in wanted.items():
                    if registered.get(fd) != mask:
                        poller.register(fd, mask)
                        registered[fd] = mask
                events = poller.poll(None if timeout is None else max(0, int(timeout * 1000) + 1))
                self._round(events, owners)
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            with self.books.lock:
                self.ending.break_down(BrokenExecutorError(f"the task engine failed: {exc!r}"),
                                       exc)
            self.books.run_deferred()
            raise
        finally:
            self.ending.release()

    def _round(self, events: list[tuple[int, int]],
               owners: dict[int, tuple[WorkerHandle, int]]) -> None:
        arrived: list[tuple[WorkerHandle, Any, memoryview]] = []
        dead: list[WorkerHandle] = []
        for fd, _ in events:
            if fd == self.wake_r:
                try:
                    while os.read(self.wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                # Only now: a wake() that comes after the pipe was drained must write
                # again, and this round looks at the books after this line.
                self.woken = False
                continue
            owner = owners.get(fd)
            if owner is None:
                continue
            worker, what = owner
            if what == _EXITED:
                dead.append(worker)
            elif what == _WRITABLE:  # or broken: flush() then drops the outbox
                with self.books.lock:
                    worker.flush()
            else:
                frames, _ = worker.reader.read_available()
                arrived.extend((worker, header, payload) for header, payload in frames)
        if dead:
            with self.books.lock:  # a worker whose caller reads it is the caller's to give back
                dead = [w for w in dead if w.reader_role != READING]
                for worker in dead:
                    worker.take_back()
        for worker in dead:  # what it wrote before dying is already in its pipe
            frames, _ = worker.reader.read_available()
            arrived.extend((worker, header, payload) for header, payload in frames)
            # Its sentinel fired: this reaps it (and waits for the end of its
            # relayed output, at most 5 s), outside the lock, which on_death needs.
            worker.process.join(5.0)
        decoded = [(w, h, decode_payload(h, p), len(p)) for w, h, p in arrived]
        for worker in {w for w, h, _ in arrived if h[0] == DONE}:
            worker.sync_output()
        deliveries: list[Delivery] = []
        on_message = self.receiver.on_message
        with self.books.lock:
            for worker, header, values, nbytes in decoded:
                on_message(worker, header, values, deliveries, nbytes)
            for worker in dead:
                self.faults.on_death(worker, deliveries)
            if self.timeout is not None:
                self.faults.check_timeouts()
            self.faults.deliver_held_results(deliveries)
            self.ending.end_cancelled_inputs()
            self.sender.fill()
        deliver(deliveries)
        self.books.run_deferred()

    def _poll_timeout(self) -> float | None:
        timeouts = []
        if self.books.state == TERMINATING:
            timeouts.append(max(0.0, self.ending.terminate_by - time.monotonic()))
        if self.timeout is not None and any(w is not None and w.outstanding
                                            for w in self.books.workers):
            timeouts.append(self.faults.timeout_poll_s())
        if self.faults.may_hold_results():
            timeouts.append(HELD_RESULTS_S)
        if self.progress is not None:
            tick = self.progress.tick()
            if tick is not None:
                timeouts.append(tick)
        return min(timeouts) if timeouts else None


def _close_all(fds: tuple[int, ...]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
