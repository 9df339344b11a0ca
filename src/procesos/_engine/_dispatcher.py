"""The engine: long-lived workers and the one dispatcher thread that drives them.

Its state, work and workers are written in its books (:mod:`._books`, where
its states are drawn), changed only under ``Engine.lock``; what happens when a
worker dies, overruns a timeout or retires is :class:`~._faults.Faults`'s,
over the same books.

The dispatcher waits with one ``poll()`` on every worker's result pipe and exit
sentinel plus a wake-up pipe. Each round it reads what arrived (no lock),
updates the books and sends more work (under the lock), then hands results to
futures and map jobs (no lock, so callbacks may submit). ``submit()`` writes
straight to an idle worker under the lock, without waking the dispatcher, and
its caller may read the answer itself (:mod:`._direct`). The dispatcher
watches a worker's pipe only while something can come from it (a batch in
flight, its READY message). Deaths, timeouts and retries are handled in
:mod:`._faults`.
"""

from __future__ import annotations

import os
import select
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from .._compat import future_internals_known
from .._errors import BrokenExecutorError, UnpicklingError
from .._outcome import PICKLING_FAILURES, decode
from .._proc._context import ProcesosContext
from .._serialization import loads
from .._trace import _state as _trace_state
from ._batching import ChunkSizer
from ._books import BROKEN, CLOSED, CLOSING, RUNNING, TERMINATING, Books
from ._direct import DirectFuture
from ._faults import HELD_RESULTS_S, Faults
from ._future import LightFuture
from ._jobs import Batch, Call, CallBatch, FnEntry, MapJob
from ._messages import (
    DONE,
    INIT_FAILED,
    READY,
    RETIRE,
    SLOT_WIDTH,
    UNREADABLE,
    plain_call,
)
from ._progress import Progress
from ._stats import WorkerStats
from ._worker import WorkerConfig
from ._workers import DISPATCHER, POLL_IN, READING, WorkerHandle

__all__ = ["CLOSED", "CLOSING", "RUNNING", "TERMINATING", "Engine"]

_FN_CACHE = 128
_TERMINATE_GRACE_S = 1.0  # for an idle worker asked to exit by terminate()
_PREFETCH_BELOW_S = 0.005  # send a second batch ahead only when batches are this quick
# LightFuture and the direct path rely on Future's private fields; where they
# differ, plain futures and every result through the dispatcher (see _compat).
LIGHT_FUTURES = future_internals_known()
_RESULTS, _WRITABLE, _EXITED = range(3)  # what a polled descriptor of a worker says


class Engine:
    """Workers plus a dispatcher; the machinery behind ``Executor`` and ``Pool``."""

    def __init__(self, ctx: ProcesosContext, workers: int, config: WorkerConfig, *,
                 timeout: float | None, retries: int, progress: Progress | None,
                 closed_message: str, closed_error: type[Exception] = RuntimeError) -> None:
        self.ctx = ctx
        self.size = workers
        self.config = config
        self.timeout = timeout
        self.retries = retries
        self.progress = progress
        self.closed_message = closed_message
        self.closed_error = closed_error
        self.lock = threading.Lock()
        self.books = books = Books(workers)
        self.faults = Faults(books, self, ctx, timeout=timeout, retries=retries,
                             max_memory=config.max_memory, progress=progress)
        self.error: BaseException | None = None  # why the engine broke
        self.owner_pid = os.getpid()
        self.fns: OrderedDict[int, FnEntry] = OrderedDict()
        self.call_sizer = ChunkSizer(workers)
        self.batch_s = 0.0  # smoothed duration of one batch
        self.next_fn = self.next_batch = self.next_seq = 1
        self.cancel_inputs = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        # The pipe lives as long as the engine, not only until _release: wake() runs
        # without the lock, so a thread may write after the end, and must write into
        # the pipe (full: the write fails), never into a file that took its number,
        # nor raise SIGPIPE where a program restored its default action. Not at
        # the interpreter's exit: a thread of the engine may still run then (it
        # read a closed descriptor once, in a test run), and the exit closes them.
        weakref.finalize(self, _close_all, (self.wake_r, self.wake_w)).atexit = False
        self.woken = False
        self.abandoned: str | None = None  # see abandon()
        # The first worker starts now, so that a first task can go at once; the
        # dispatcher starts the others. Under "fork" all start here (forking is
        # safe only before the dispatcher thread exists), and under "spawn" too
        # (a spawn child started from another thread than the main one dies at
        # start-up: see the note in tests/test_engine_faults.py).
        now = 1 if ctx.get_start_method() == "zygote" else workers
        # (slot, whether it replaces a worker): a thread of its own starts them.
        self.unstarted = [(slot, False) for slot in range(now, workers)]
        self.starting = False  # that thread is running
        self.terminate_by = 0.0  # monotonic time after which terminate() kills every worker
        try:
            for slot in range(now):
                self.start_worker(slot, replacement=False)
        except BaseException:
            self.books.state = CLOSED
            self._release()
            raise
        self.thread = threading.Thread(target=self._run, name="procesos-dispatcher", daemon=True)
        self.thread.start()

    @property
    def state(self) -> str:
        """``RUNNING``, ``CLOSING``, ``TERMINATING``, ``BROKEN`` or ``CLOSED``."""
        return self.books.state

    # -- entry points (any thread) ---------------------------------------------
    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Future[Any]:
        books = self.books
        if books.pending and self.progress is None and books.state == RUNNING:
            # Calls already wait: no worker can be idle for this one, so it joins
            # the queue without the lock (appends are atomic; the dispatcher pops).
            entry = self._known_entry(fn)
            if entry is not None:
                future: Future[Any] = LightFuture() if LIGHT_FUTURES else Future()
                call = Call(future, entry, args, kwargs)
                books.pending.append(call)
                if len(books.pending) == 1:  # else the dispatcher has more to come for it
                    self.wake()
                if books.state != RUNNING:
                    self._withdraw(call)
                return future
        with self.lock:
            if books.state != RUNNING:
                self._check_open()
            entry = self.entry(fn)
            if self.progress is not None:
                self.progress.add(1)
            if not books.pending and not books.retry:
                for worker in books.workers:
                    if worker is not None and not worker.outstanding and worker.accepts_work():
                        return self._send_now(worker, entry, args, kwargs)
            future = LightFuture() if LIGHT_FUTURES else Future()
            call = Call(future, entry, args, kwargs)
            books.pending.append(call)
            if len(books.pending) == 1:
                self.wake()
        return future

    def forked_away(self) -> None:
        """In a child made by ``os.fork()``: the dispatcher and the workers are the
        parent's. New work raises :class:`BrokenExecutorError`; maps already
        under way end with it (futures made before the fork never finish here)."""
        self.lock = threading.Lock()  # a thread that is not here may have held it
        self.error = BrokenExecutorError(
            f"this executor belongs to process {self.owner_pid}, which made it; a child "
            "made by os.fork() cannot use it (its workers are the parent's): make a new "
            "executor or pool in the child")
        self.books.state = BROKEN
        self.books.pending.clear()
        for job in self.books.jobs:
            job.cond = threading.Condition(threading.Lock())
            job.abort(self.error)
        self.books.jobs.clear()
        for worker in self.books.workers:
            if worker is not None:
                worker.disown()  # its pipes and process are the parent's

    def _known_entry(self, fn: Callable[..., Any]) -> FnEntry | None:
        """*fn*'s cache entry if it has one, without the lock (None: take the lock)."""
        entry = self.fns.get(id(fn))
        if entry is None or entry.function() is not fn:
            return None
        try:
            self.fns.move_to_end(id(fn))
        except (KeyError, RuntimeError):  # evicted meanwhile
            return None
        return entry

    def _withdraw(self, call: Call) -> None:
        """A call queued without the lock while the engine closed: refuse it, unless the
        dispatcher already took it (then it runs, or fails with the engine)."""
        with self.lock:
            try:
                self.books.pending.remove(call)
            except ValueError:
                return
            self._check_open()

    def _send_now(self, worker: WorkerHandle, entry: FnEntry, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> Future[Any]:
        """Under the lock: send one call to an idle worker; its caller may read the answer."""
        direct = (worker.idle() and self.timeout is None and self.progress is None
                  and LIGHT_FUTURES)
        future: Future[Any] = (DirectFuture(self) if direct
                               else LightFuture() if LIGHT_FUTURES else Future())
        future.set_running_or_notify_cancel()
        # Tracked: the worker records every call it starts, so a crash names this one.
        batch = CallBatch([Call(future, entry, args, kwargs)])
        payload = plain_call(args, kwargs) if direct and entry.fn_id in worker.known_fns else None
        if payload is None:
            self.send(worker, batch)
        else:  # the usual call: a round trip is mostly this Python, so the short way
            batch_id, seq = self._ids(1)
            worker.send_known_call(batch, batch_id, seq, payload)
        if direct and not worker.outbox and not worker.dead:
            worker.lend_to(future)
            future.worker = worker  # type: ignore[attr-defined]
        else:
            self.wake()  # the dispatcher does not watch an idle worker's pipe
        return future

    def map_job(self, fn: Callable[..., Any], iterable: Iterable[Any], *, star: bool,
                ordered: bool, return_exceptions: bool, collect: bool,
                chunksize: int | None) -> MapJob:
        with self.lock:
            self._check_open()
            job = MapJob(self.entry(fn), iterable, star=star, ordered=ordered,
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
        with self.lock:
            if self.books.state in (RUNNING, CLOSING):
                self.faults.stop_items_of(job)

    def entry(self, fn: Callable[..., Any]) -> FnEntry:
        """The function's cache entry (pickled once per engine); under the lock."""
        if not callable(fn):
            raise TypeError(f"a task must be callable, got {type(fn).__name__} {fn!r}")
        entry = self.fns.get(id(fn))
        if entry is not None and entry.function() is fn:
            self.fns.move_to_end(id(fn))
            return entry
        entry = FnEntry(fn, self.next_fn)
        self.next_fn += 1
        self.fns[id(fn)] = entry
        while len(self.fns) > _FN_CACHE:
            _, evicted = self.fns.popitem(last=False)
            evicted.discard()
        return entry

    def _check_open(self) -> None:
        if self.books.state == BROKEN:
            cause = self.error.__cause__ if self.error is not None else None
            raise BrokenExecutorError(str(self.error)) from cause
        if self.books.state != RUNNING:
            raise self.closed_error(self.closed_message)

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
        with self.lock:
            self._begin_shutdown(cancel_futures)
        self._run_deferred()
        if wait:
            self.join()

    def _begin_shutdown(self, cancel_futures: bool) -> None:
        if self.books.state == RUNNING:
            self.books.state = CLOSING
        if cancel_futures:
            queued: list[Call] = []
            while self.books.pending:  # popped one by one: submit() appends without the lock
                queued.append(self.books.pending.popleft())
            if queued:
                # After the lock: cancel() runs the futures' callbacks, which may submit().
                self.books.deferred.append(lambda: _cancel_all(queued))
            maps = [b for b in self.books.retry if b.is_map()]
            self.books.retry.clear()
            self.books.retry.extend(maps)
            self.cancel_inputs = True
        for job in self.books.jobs:
            job.collect = True  # nobody may read them before we stop: keep everything
        self.wake()

    def terminate(self) -> None:
        """Kill the workers that run tasks now; unfinished tasks are cancelled.

        Idle workers are asked to exit instead, and killed only if they have not
        within ``_TERMINATE_GRACE_S``: their exit handlers run, so what their tasks
        put in a queue is written (``with Pool(...)`` ends with ``terminate()``).
        """
        with self.lock:
            self._begin_terminate()
        self.join()

    def _begin_terminate(self) -> None:
        if self.books.state in (RUNNING, CLOSING):
            self.books.state = TERMINATING
            self.terminate_by = time.monotonic() + _TERMINATE_GRACE_S
            for worker in self.books.workers:
                if worker is None or worker.dead:
                    continue
                if (worker.idle() and worker.reader_role == DISPATCHER
                        and not worker.stopping):
                    worker.ask_to_stop()
                elif not worker.stopping:
                    worker.kill()
        self.wake()

    def abandon(self, terminate: bool) -> None:
        """Its owner (an ``Executor`` or ``Pool``) was garbage-collected: the dispatcher
        shuts the engine down (or terminates it). Takes no lock and waits for
        nothing, since the collection may happen anywhere, even under the lock."""
        self.abandoned = "terminate" if terminate else "shutdown"
        self.wake()

    def join(self) -> None:
        if threading.current_thread() is not self.thread:
            self.thread.join()

    def stats(self) -> list[WorkerStats]:
        with self.lock:
            return [record.snapshot() for record in self.books.records]

    # -- workers (under the lock) ------------------------------------------------
    def _reset_slot(self, slot: int) -> None:
        # Sequence number 0: no item (numbers start at 1; minus one loads a batch).
        base = slot * SLOT_WIDTH
        for i in range(SLOT_WIDTH):
            self.books.slots[base + i] = 0

    def start_worker_later(self, slot: int) -> None:
        """Under the lock: have the starter thread start a replacement in *slot*, so
        that the dispatcher serves the other workers meanwhile (a start waits for
        the zygote; a pool whose workers each run one task starts one per task)."""
        self.unstarted.append((slot, True))
        if not self.starting:
            self.starting = True
            threading.Thread(target=self._start_the_others, name="procesos-worker-starter",
                             daemon=True).start()

    def start_worker(self, slot: int, replacement: bool) -> None:
        self._reset_slot(slot)
        worker = WorkerHandle(self.ctx, slot, self.books.slots_array, self.config,
                              self.config.max_tasks, self.books.logs_array)
        self.books.workers[slot] = worker
        self.books.records[slot].worker_started(worker.pid, replacement)

    def _ids(self, items: int) -> tuple[int, int]:
        """Under the lock: the next batch id, and the sequence number of its first item."""
        batch_id, seq = self.next_batch, self.next_seq
        self.next_batch += 1
        self.next_seq += items
        return batch_id, seq

    def send(self, worker: WorkerHandle, batch: Batch) -> None:
        batch_id, seq = self._ids(batch.n)
        worker.send_batch(batch, batch_id, seq, self.timeout is not None)
        if worker.outbox:
            self.wake()  # the dispatcher must watch for the pipe to become writable

    def _kill_all(self) -> None:
        for worker in [*self.books.workers, *self.books.leaving]:
            if worker is not None and not worker.dead:
                worker.kill()

    # -- the dispatcher thread ---------------------------------------------------
    def _run(self) -> None:
        poller = select.poll()
        registered: dict[int, int] = {}
        owners: dict[int, tuple[WorkerHandle, int]] = {}
        try:
            if self.unstarted:
                with self.lock:
                    self.starting = True
                threading.Thread(target=self._start_the_others, name="procesos-worker-starter",
                                 daemon=True).start()
            while True:
                with self.lock:
                    if self.abandoned is not None:
                        if self.abandoned == "terminate":
                            self._begin_terminate()
                        else:
                            self._begin_shutdown(cancel_futures=False)
                        self.abandoned = None
                    if self._finished():
                        break
                    taken_back = False
                    for worker in self.books.workers:
                        # Lent to a caller that has not come for it: ours again.
                        if worker is not None and not worker.dead and worker.take_back():
                            taken_back = True
                    if taken_back:
                        # It could not be given work while it was not ours: calls
                        # queued meanwhile go now (one ahead), not after its call.
                        self._fill()
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
            with self.lock:
                self.break_down(BrokenExecutorError(f"the task engine failed: {exc!r}"), exc)
            self._run_deferred()
            raise
        finally:
            self._release()

    def _start_the_others(self) -> None:
        """In a thread of its own: start the workers that the constructor left, outside
        the lock. submit() and the first worker's callers do not wait for them, nor
        does the dispatcher, which reads the first worker's answers meanwhile (a
        start waits milliseconds for the zygote)."""
        try:
            while True:
                with self.lock:
                    if not self.unstarted or self.books.state not in (RUNNING, CLOSING):
                        self.unstarted.clear()
                        # Under the same lock as the check: a start_worker_later()
                        # after it starts a new thread.
                        self.starting = False
                        self.wake()  # under the lock: the dispatcher closes the pipe only after
                        return
                    slot, replacement = self.unstarted.pop(0)
                    self._reset_slot(slot)
                worker = WorkerHandle(self.ctx, slot, self.books.slots_array, self.config,
                                      self.config.max_tasks, self.books.logs_array)
                with self.lock:
                    self.books.workers[slot] = worker
                    self.books.records[slot].worker_started(worker.pid, replacement)
                    if self.books.state not in (RUNNING, CLOSING):
                        worker.kill()  # terminate() came while it started
                    self._fill()
                    self.wake()  # the dispatcher watches its pipe and its end
        except BaseException as exc:
            with self.lock:
                self.break_down(BrokenExecutorError(f"the task engine failed: {exc!r}"), exc)
            self._run_deferred()
            with self.lock:
                self.starting = False
                self.wake()

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
                with self.lock:
                    worker.flush()
            else:
                frames, _ = worker.reader.read_available()
                arrived.extend((worker, header, payload) for header, payload in frames)
        if dead:
            with self.lock:  # a worker whose caller reads it is the caller's to give back
                dead = [w for w in dead if w.reader_role != READING]
                for worker in dead:
                    worker.take_back()
        for worker in dead:  # what it wrote before dying is already in its pipe
            frames, _ = worker.reader.read_available()
            arrived.extend((worker, header, payload) for header, payload in frames)
            # Its sentinel fired: this reaps it (and waits for the end of its
            # relayed output, at most 5 s), outside the lock, which on_death needs.
            worker.process.join(5.0)
        decoded = [(w, h, self._decode_payload(h, p), len(p)) for w, h, p in arrived]
        deliveries: list[tuple[Batch, int, list[Any], dict[int, BaseException]]] = []
        with self.lock:
            for worker, header, values, nbytes in decoded:
                self._on_message(worker, header, values, deliveries, nbytes)
            for worker in dead:
                self.faults.on_death(worker, deliveries)
            if self.timeout is not None:
                self.faults.check_timeouts()
            self.faults.deliver_held_results(deliveries)
            if self.cancel_inputs:
                for job in self.books.jobs:
                    if not job.exhausted:
                        job.end_input(_cancelled())
                self.cancel_inputs = False
            self._fill()
        self._deliver(deliveries)
        self._run_deferred()

    def handle_frames(self, worker: WorkerHandle, frames: list[tuple[Any, memoryview]]) -> None:
        """A direct reader's share of a round: what one worker sent, handed over."""
        decoded = [(header, self._decode_payload(header, payload), len(payload))
                   for header, payload in frames]
        deliveries: list[tuple[Batch, int, list[Any], dict[int, BaseException]]] = []
        with self.lock:
            for header, values, nbytes in decoded:
                self._on_message(worker, header, values, deliveries, nbytes)
        self._deliver(deliveries)
        self._run_deferred()

    def _run_deferred(self) -> None:
        if not self.books.deferred:
            return
        with self.lock:
            deferred = self.books.take_deferred()
        for action in deferred:
            action()

    @staticmethod
    def _decode_payload(header: Any, payload: memoryview) -> Any:
        if header[0] != DONE:
            return None
        recorder = _trace_state.recorder
        if recorder is not None:
            from .._trace import _tasks

            _, batch_id, offset = header[:3]
            _tasks.arrived(recorder, batch_id, offset, payload)
        try:
            return decode_values(payload)
        except PICKLING_FAILURES as exc:
            # Every item of the message fails with it (a SystemExit or
            # KeyboardInterrupt raised by a __setstate__ too: not this thread's).
            error = UnpicklingError(f"the results could not be unpickled in the parent: {exc!r}")
            error.__cause__ = exc
            return error

    def _on_message(self, worker: WorkerHandle, header: Any, values: Any,
                    deliveries: list[tuple[Batch, int, list[Any], dict[int, BaseException]]],
                    nbytes: int = 0) -> None:
        tag = header[0]
        if tag == DONE:
            _, batch_id, offset, count, errors, busy_ns, ended_ns, pickle_ns = header
            batch = worker.outstanding.get(batch_id)
            if batch is None:
                return
            delivered = batch.reported  # some may have come from its log already
            self.record_done(worker, batch, offset, count, busy_ns, nbytes)
            recorder = _trace_state.recorder
            if recorder is not None:
                from .._trace import _tasks

                _tasks.ran(recorder, worker, batch, offset, count, errors, busy_ns, ended_ns,
                           pickle_ns, nbytes)
            if offset < delivered:
                skip = delivered - offset
                if skip >= count:
                    return
                if not isinstance(values, BaseException):
                    values = values[skip:]
                errors = tuple((i - skip, e) for i, e in errors if i >= skip)
                offset, count = delivered, count - skip
            if (errors or batch.skips or self.progress is not None
                    or isinstance(values, BaseException)):
                deliveries.append((batch, offset, *self.settle_errors(batch, offset, count, values,
                                                                 dict(errors))))
            else:
                deliveries.append((batch, offset, values, {}))
        elif tag == READY:
            worker.mark_ready()
            self.books.startup_failures = 0
        elif tag == RETIRE:
            _, batch_id, next_offset = header
            worker.retire()
            self.faults.requeue_from(worker, batch_id, next_offset)
            self.faults.replace_retired(worker)
        elif tag == UNREADABLE:
            _, batch_id, error_frame = header
            batch = worker.outstanding.pop(batch_id, None)
            if batch is None:
                return
            batch.lost()
            if batch.n == 1:
                _, error = decode(error_frame, "the arguments")
                self.annotate(error, batch, 0, worker)
                deliveries.append((batch, 0, [None], {0: error}))
            else:  # find which item: send each alone (nothing ran)
                self.books.retry.extendleft(reversed([batch.part(i, i + 1, True)
                                                for i in range(batch.n)]))
        elif tag == INIT_FAILED:
            _, error_frame = header
            _, cause = decode(error_frame, "the initializer's exception")
            self.break_down(BrokenExecutorError(
                f"the pool's initializer raised {type(cause).__name__}: {cause}; no task can "
                "run. Fix the initializer (its traceback is attached) and create a new pool."
            ), cause)

    def record_done(self, worker: WorkerHandle, batch: Batch, offset: int, count: int,
                     busy_ns: int, nbytes: int = 0) -> None:
        """Under the lock: the books of items ``offset .. offset+count-1`` of *batch* done."""
        batch.reported = max(batch.reported, offset + count)
        if offset + count >= batch.n:
            del worker.outstanding[batch.id]
        busy = busy_ns / 1e9
        record = self.books.records[worker.slot]
        record.tasks += count
        record.busy_s += busy
        if batch.is_map():
            job = batch.job  # type: ignore[attr-defined]
            job.sizer.record(count, busy)
            job.sizer.record_bytes(count, nbytes, results=True)
            job.entry.per_item_s = job.sizer.per_item_s
        else:
            self.call_sizer.record(count, busy)
        self.batch_s = 0.8 * self.batch_s + 0.2 * busy

    def settle_errors(self, batch: Batch, offset: int, count: int, values: Any,
                frames: dict[int, bytes]) -> tuple[list[Any], dict[int, BaseException]]:
        errors: dict[int, BaseException] = {}
        if isinstance(values, BaseException):  # results that could not be unpickled here
            for i in range(count):
                errors[i] = values
            values = [None] * count
        for i, error_frame in frames.items():
            _, error = decode(error_frame, "the task's exception")
            errors[i] = error
        for i in list(errors):
            self.annotate(errors[i], batch, offset + i, None)
        for index, error in batch.skips.items():
            if offset <= index < offset + count:
                errors[index - offset] = error
        if self.progress is not None:
            self.progress.advance(count - len(errors), len(errors))
        return values, errors

    @staticmethod
    def annotate(error: BaseException, batch: Batch, offset: int,
                 worker: WorkerHandle | None) -> None:
        where = f" in worker pid {worker.pid}" if worker is not None else ""
        try:
            error.add_note(f"(raised by {batch.label(offset)}{where})")
        except (AttributeError, TypeError):
            pass

    def _deliver(self, deliveries: list[tuple[Batch, int, list[Any],
                                              dict[int, BaseException]]]) -> None:
        for batch, offset, values, errors in deliveries:
            batch.deliver(offset, values, errors)

    def _fill(self) -> None:
        """Give work to workers: one batch to each idle worker, then one ahead if quick."""
        if self.books.state not in (RUNNING, CLOSING):
            return
        live = [w for w in self.books.workers if w is not None and w.accepts_work()]
        for depth in (1, 2):
            # Never one ahead while workers are still starting: each would find
            # the first worker holding what it could have run (tasks meant to run
            # side by side, a Barrier among them, would wait forever).
            if depth == 2 and (self.batch_s >= _PREFETCH_BELOW_S or self.starting):
                break
            for worker in live:
                if len(worker.outstanding) < depth and worker.accepts_work():
                    batch = self._next_batch(worker.budget)
                    if batch is None:
                        return
                    self.send(worker, batch)

    def _next_batch(self, budget: int | None) -> Batch | None:
        limit = budget if budget is not None else 1 << 30
        while self.books.retry:
            batch = self.books.retry.popleft()
            if not batch.wanted():
                continue
            if batch.n > limit:
                self.books.retry.appendleft(batch.part(limit, batch.n, batch.tracked))
                batch = batch.part(0, limit, batch.tracked)
            return batch
        pending = self.books.pending
        if pending:
            calls: list[Call] = []
            size = min(self.call_sizer.next_size(None), limit)
            take, keep = pending.popleft, calls.append
            while pending and len(calls) < size:
                call = take()
                if call.future.set_running_or_notify_cancel():
                    keep(call)
            if calls:
                return CallBatch(calls)  # calls run tracked, whatever they take
        for job in list(self.books.jobs):
            if job.cancelled or (job.exhausted and job.finished()):
                self.books.jobs.remove(job)
                continue
            if job.wants_input():
                known = job.total is not None
                chunk = job.next_batch(limit)
                if not known and job.total is not None and self.progress is not None:
                    self.progress.resolve(job.total)
                if chunk is not None:
                    return chunk
        return None

    def _poll_timeout(self) -> float | None:
        timeouts = []
        if self.books.state == TERMINATING:
            timeouts.append(max(0.0, self.terminate_by - time.monotonic()))
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

    def _finished(self) -> bool:
        """Under the lock: decide whether the dispatcher can stop; stop workers when done."""
        if self.books.state == RUNNING or self.starting:
            return False
        if self.books.state == CLOSING:
            if self.books.pending or self.books.retry or any(w is not None and w.outstanding
                                                 for w in self.books.workers):
                return False
            if any(not (job.exhausted and job.finished()) and not job.cancelled
                   for job in self.books.jobs):
                return False
            for worker in self.books.workers:
                if worker is not None and not worker.stopping and not worker.dead:
                    worker.ask_to_stop()
        if self.books.state == TERMINATING and time.monotonic() >= self.terminate_by:
            self._kill_all()  # idle workers that did not exit when asked
        return all(w is None or w.dead for w in self.books.workers) and not self.books.leaving

    def break_down(self, error: BaseException, cause: BaseException | None) -> None:
        """Under the lock: the engine cannot go on; fail everything with *error*."""
        if self.books.state in (BROKEN, CLOSED):
            return
        error.__cause__ = cause
        self.error = error
        self.books.state = BROKEN
        self._kill_all()
        self.faults.fail_everything(error)

    def _release(self) -> None:
        with self.lock:
            if self.books.state != BROKEN:
                self.books.state = CLOSED
            self.faults.fail_everything(_cancelled())
            ending = [w for w in [*self.books.workers, *self.books.leaving]
                      if w is not None and not w.dead]
            for worker in ending:
                worker.kill()
        # Not under the lock, which a caller reading its own worker takes to give
        # it back; nothing else closes these handles (the dispatcher is here).
        for worker in ending:
            worker.process.join()
        with self.lock:
            for worker in ending:
                worker.discard_unread()
                worker.close()
            self.books.leaving.clear()
            for entry in self.fns.values():
                entry.discard()
            self.fns.clear()
        self._run_deferred()
        if self.progress is not None:
            self.progress.close()


def _close_all(fds: tuple[int, ...]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _cancel_all(calls: list[Call]) -> None:
    for call in calls:
        call.future.cancel()


def _cancelled() -> BaseException:
    from concurrent.futures import CancelledError

    return CancelledError("the pool was shut down before this task ran")


def decode_values(payload: memoryview) -> list[Any]:
    """The values of a DONE message."""
    values: list[Any] = loads(payload)
    return values
