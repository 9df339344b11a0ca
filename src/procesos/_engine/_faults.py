"""What the engine does when a worker dies, overruns a timeout, or leaves.

A worker runs its batches in order and writes the sequence number of the item
it runs into its progress slot, so when it dies the parent knows which item
killed it:

* that item fails with :class:`WorkerCrashedError` (or :class:`TaskTimeoutError`
  when the parent killed it for its timeout), or runs again if it has retries
  left;
* items of the same batch that ran before it are not run again: their
  outcomes are in the worker's result log (:mod:`._results_log`) and are
  delivered; items that never started are sent again without counting an
  attempt;
* a worker that dies while it unpickles a batch (minus the batch's first
  sequence number in its slot) is blamed on that batch: its one item fails,
  or its items are sent one by one to find which;
* in an untracked batch (items too quick to record one by one) the culprit is
  unknown and the finished items' results are lost: with retries left the
  unreported items run again one by one, an attempt each; without, they fail
  (no task runs twice), and the map's later chunks are tracked;
* a death that no item can be blamed for (the worker held batches it had not
  started) sends them again; after three in a row, the first item fails.

A map whose caller is interrupted (Ctrl-C while it waits for results) is
cancelled and the workers running its items are killed and replaced
(:meth:`Faults.stop_items_of`): in Jupyter, interrupting a cell stops its work
and the executor goes on.

Every method here runs under the engine's lock, in the dispatcher thread
except :meth:`Faults.stop_items_of` (the interrupted caller's), and waits
for nothing: a dead worker's exit is waited for before the lock is taken.
"""

from __future__ import annotations

import time
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING, Any

from .._errors import TaskTimeoutError, describe_exitcode
from .._pool_errors import BrokenExecutorError, TaskUnpicklingError, WorkerCrashedError
from .._serialization import reap
from .._trace import _state as _trace_state
from ._crash import crash_hint, oom_kills
from ._jobs import Batch, MapBatch, MapJob
from ._messages import RESULTS_CHANNEL
from ._results_log import ERROR, load_entry, read_log
from ._states import (
    CLOSING,
    RETIRING,
    RUNNING,
    SLOT_RSS,
    SLOT_SEQ,
    SLOT_START,
    SLOT_TASK_PID,
    SLOT_WIDTH,
    STOPPING,
)

if TYPE_CHECKING:
    from ._books import Books, EngineCalls
    from ._progress import Progress
    from ._receiving import Delivery
    from ._workers import WorkerHandle

__all__ = ["HELD_RESULTS_S", "Faults"]

_STARTUP_FAILURES = 3
_UNBLAMED_DEATHS = 3
#: How long a worker may stay on one item before the results it logged are read.
HELD_RESULTS_S = 0.02
class Faults:
    """Death, timeout and retirement handling, over the engine's books."""

    def __init__(self, books: Books, engine: EngineCalls, ctx: Any, *, timeout: float | None,
                 retries: int, max_memory: int | None, progress: Progress | None) -> None:
        self.books = books
        self.engine = engine
        self.ctx = ctx
        self.timeout = timeout
        self.retries = retries
        self.max_memory = max_memory
        self.progress = progress
        self.oom_seen = oom_kills()  # the system's count of OOM kills when last looked at

    def on_death(self, worker: WorkerHandle, deliveries: list[Delivery]) -> None:
        """A worker's sentinel fired, and the dispatcher has waited for its exit
        outside the lock: settle its tasks and start a replacement."""
        if worker in self.books.leaving:  # retired, and replaced already
            self.books.leaving.remove(worker)
            worker.close()
            return
        life = worker.life  # as it was: close() ends it
        exitcode = worker.process.exitcode
        base = worker.slot * SLOT_WIDTH
        seq, rss = self.books.slots[base + SLOT_SEQ], self.books.slots[base + SLOT_RSS]
        task_pid = self.books.slots[base + SLOT_TASK_PID]
        batches = worker.take_all_lost()
        worker.close()
        if task_pid:
            # Its last task's process (a fork of it, which it outlived at most
            # briefly): the result frames that process made and never sent.
            reap(task_pid, RESULTS_CHANNEL)
        self.books.workers[worker.slot] = None
        record = self.books.records[worker.slot]
        record.worker_ended()
        if self.books.state not in (RUNNING, CLOSING):
            # Failed when the engine closes.
            self.books.retry.extendleft(reversed([b.part(b.reported, b.n, b.tracked)
                                            for b in batches if b.reported < b.n]))
            return
        if batches:
            running = next((b for b in batches if b.reported < b.n), None)
            if running is not None:
                self.recover_logged(worker, running, deliveries)
            if life in (RETIRING, STOPPING) or worker.stopped_for_interrupt:
                # Not a crash; what it held for others goes to other workers (a
                # cancelled map's parts are dropped when their turn comes).
                parts = [b.part(b.reported, b.n, b.tracked) for b in batches if b.reported < b.n]
            else:
                parts, blamed = self._settle_crash(worker, exitcode, seq, rss, batches,
                                                   deliveries)
                if blamed:
                    record.crashes += 1
            self.books.retry.extendleft(reversed(parts))
        if life == STOPPING or not self.books.work_left():
            return
        if not worker.ready and life != RETIRING:
            self.books.startup_failures += 1
            if self.books.startup_failures >= _STARTUP_FAILURES:
                self.engine.break_down(BrokenExecutorError(
                    f"workers keep dying before they can take work (the last one, pid "
                    f"{worker.pid}, {describe_exitcode(exitcode)}); check the initializer and "
                    "the start method"), None)
                return
        self._start_replacement(worker.slot)

    def _start_replacement(self, slot: int) -> None:
        try:
            self.engine.start_worker(slot, replacement=True)
        except Exception as exc:
            self.engine.break_down(
                BrokenExecutorError(f"could not start a replacement worker: {exc}"), exc)

    def recover_logged(self, worker: WorkerHandle, batch: Batch, deliveries: list[Delivery],
                       died: bool = True) -> None:
        """Deliver what *worker* logged for *batch* beyond what it reported
        (:mod:`._results_log`): after its death, or while it stays on one item."""
        if batch.n < 2 or batch.reported >= batch.n:
            return
        log = read_log(self.books.logs_array, worker.slot)
        if log is None:
            return
        first_seq, entries = log
        skip = batch.seq_base + batch.reported - first_seq
        if skip < 0 or skip >= len(entries):
            return
        entries = entries[skip:skip + batch.n - batch.reported]
        values: list[Any] = []
        frames: dict[int, bytes] = {}
        unloadable: dict[int, BaseException] = {}
        for i, (kind, data) in enumerate(entries):
            value = None
            if kind == ERROR:
                frames[i] = data
            else:
                try:
                    value = load_entry(kind, data)
                except Exception as exc:
                    unloadable[i] = TaskUnpicklingError(
                        f"the result could not be unpickled here: {exc!r}")
            values.append(value)
        offset, count = batch.reported, len(values)
        values, errors = self.engine.settle_errors(batch, offset, count, values, frames)
        errors.update(unloadable)
        batch.reported += count
        if died:  # else its DONE message counts them
            self.books.records[worker.slot].tasks += count
        deliveries.append((batch, offset, values, errors))

    def deliver_held_results(self, deliveries: list[Delivery]) -> bool:
        """Results of finished items must not wait behind a slow one: deliver what
        each worker that stayed on one item for ``HELD_RESULTS_S`` logged. Whether
        a worker may hold some (look again in ``HELD_RESULTS_S``)."""
        now = time.monotonic()
        watching = False
        for worker in self.books.workers:
            batch = self._logging_batch(worker)
            if worker is None or batch is None:
                if worker is not None:
                    worker.forget_item()
                continue
            watching = True
            seq = self.books.slots[worker.slot * SLOT_WIDTH + SLOT_SEQ]
            if worker.time_on_item(seq, now) >= HELD_RESULTS_S:
                self.recover_logged(worker, batch, deliveries, died=False)
        return watching

    def may_hold_results(self) -> bool:
        """Whether a worker runs a batch whose finished results it logs (the dispatcher
        then looks at it every ``HELD_RESULTS_S``)."""
        return any(self._logging_batch(w) is not None for w in self.books.workers)

    def _logging_batch(self, worker: WorkerHandle | None) -> Batch | None:
        if worker is None or worker.dead or not worker.outstanding:
            return None
        batch = next(iter(worker.outstanding.values()))
        if batch.n < 2 or batch.reported >= batch.n or not (
                batch.tracked or self.timeout is not None or batch.skips):
            return None
        return batch

    def replace_retired(self, worker: WorkerHandle) -> None:
        """*worker* said it retires (a task or memory limit): a replacement takes
        its slot now, while it exits, so that its exit costs the pool nothing."""
        if self.books.state not in (RUNNING, CLOSING) or not self.books.work_left():
            return  # nothing will need its slot: its death ends it as before
        self.books.workers[worker.slot] = None
        self.books.leaving.append(worker)
        self.books.records[worker.slot].worker_ended()
        if self.ctx.get_start_method() == "zygote":  # fork and spawn start from this thread
            self.engine.start_worker_later(worker.slot)
            return
        self._start_replacement(worker.slot)

    def _settle_crash(self, worker: WorkerHandle, exitcode: int | None, seq: int, rss: int,
                      batches: list[Batch], deliveries: list[Delivery]
                      ) -> tuple[list[Batch], bool]:
        """Fail or retry the item that was running; the batches to send again, and
        whether an item was blamed for the death.

        None is blamed when the worker died holding batches it had not started
        (or had finished). Each such death counts on the first batch; after
        ``_UNBLAMED_DEATHS`` of them its first item fails, so that no task is
        sent again for ever.
        """
        batches = [b for b in batches if b.reported < b.n]
        if not batches:
            return [], False
        first, rest = batches[0], batches[1:]
        others = [b.part(b.reported, b.n, b.tracked) for b in rest if b.reported < b.n]
        if seq < 0 and -seq == first.seq_base and first.reported == 0:
            if first.n > 1:  # it died unpickling one of them: send each alone (none ran)
                return [first.part(i, i + 1, True) for i in range(first.n)] + others, True
            return self._blame(worker, exitcode, rss, first, 0, deliveries, True) + others, True
        offset = seq - first.seq_base
        if not 0 <= offset < first.n or offset < first.reported:
            return self._unblamed(worker, exitcode, rss, first, deliveries) + others, False
        # As the worker ran it (see WorkerHandle._send_encoded).
        if not (first.tracked or self.timeout is not None or first.skips):
            return self._lost_chunk(worker, exitcode, rss, first, deliveries) + others, True
        parts = [first.part(first.reported, offset, True)] if offset > first.reported else []
        parts += self._blame(worker, exitcode, rss, first, offset, deliveries, False)
        if offset + 1 < first.n:
            parts.append(first.part(offset + 1, first.n, first.tracked))
        return parts + others, True

    def _blame(self, worker: WorkerHandle, exitcode: int | None, rss: int, batch: Batch,
               offset: int, deliveries: list[Delivery], loading: bool) -> list[Batch]:
        """Item *offset* of *batch* ended its worker: fail it, or send it again if it has
        retries left (the part to send)."""
        error = self._crash_error(worker, exitcode, rss, batch, offset, loading)
        retry = isinstance(error, WorkerCrashedError) and batch.attempts(offset) < self.retries
        batch.add_attempt(offset)
        recorder = _trace_state.recorder
        if recorder is not None:
            from .._trace import _tasks

            what = "timeout" if isinstance(error, TaskTimeoutError) else "crash"
            _tasks.fault(recorder, worker, f"{what}, retried" if retry else what,
                         task=batch.label(offset), error=str(error))
        if retry:
            return [batch.part(offset, offset + 1, True)]
        deliveries.append((batch, offset, [None], {0: error}))
        if self.progress is not None:
            self.progress.advance(0, 1)
        return []

    def _lost_chunk(self, worker: WorkerHandle, exitcode: int | None, rss: int, batch: Batch,
                    deliveries: list[Delivery]) -> list[Batch]:
        """The worker died in a chunk of quick items, run without a record per item:
        which one ended it is unknown, and the results of those that had finished
        were lost. With retries left they run again, one by one (an attempt each);
        without, none runs again: they fail. The map's later chunks are tracked."""
        start = batch.reported
        if isinstance(batch, MapBatch):
            batch.job.careful = True
        if batch.n - start == 1:  # the others were reported (_EarlyResults): this one
            return self._blame(worker, exitcode, rss, batch, start, deliveries, False)
        if all(batch.attempts(i) < self.retries for i in range(start, batch.n)):
            for i in range(start, batch.n):
                batch.add_attempt(i)
            return [batch.part(start, batch.n, True)]
        count = batch.n - start
        errors: dict[int, BaseException] = {}
        for i in range(start, batch.n):
            error = self._crash_error(
                worker, exitcode, rss, batch, i, False,
                f"it was running a chunk of {count} quick tasks, from "
                f"{batch.label(start)} to {batch.label(batch.n - 1)}: one of them ended "
                "it, which one is unknown, and the results of those that had finished "
                "were lost with it. None of them runs again (no retries left); pass "
                "chunksize to map() to have such a task named alone")
            errors[i - start] = error
        deliveries.append((batch, start, [None] * count, errors))
        if self.progress is not None:
            self.progress.advance(0, count)
        return []

    def _unblamed(self, worker: WorkerHandle, exitcode: int | None, rss: int, first: Batch,
                  deliveries: list[Delivery]) -> list[Batch]:
        if worker.ready:  # else the count of failed starts bounds it
            first.deaths += 1
        if first.deaths < _UNBLAMED_DEATHS:
            part = first.part(first.reported, first.n, first.tracked)
            part.deaths = first.deaths
            return [part]
        offset = first.reported
        error = self._crash_error(
            worker, exitcode, rss, first, offset, False,
            f"{_UNBLAMED_DEATHS} workers died in a row holding {first.label(offset)}, "
            "each before it started or after it finished; it is not sent again")
        first.add_attempt(offset)
        deliveries.append((first, offset, [None], {0: error}))
        if self.progress is not None:
            self.progress.advance(0, 1)
        return [first.part(offset + 1, first.n, first.tracked)] if offset + 1 < first.n else []

    def _crash_error(self, worker: WorkerHandle, exitcode: int | None, rss: int, batch: Batch,
                     offset: int, loading: bool = False, what: str | None = None
                     ) -> BaseException:
        label = batch.label(offset)
        if worker.timed_out_seq == batch.seq_base + offset:
            late = (f"did not start within its timeout of {self.timeout} s: its worker was "
                    "still unpickling its arguments" if loading
                    else f"ran longer than its timeout of {self.timeout} s")
            error: BaseException = TaskTimeoutError(
                f"{label} {late}; its worker (pid {worker.pid}) was killed and replaced")
        else:
            kills = oom_kills()
            hint = crash_hint(exitcode, rss, self.max_memory, kills > self.oom_seen)
            self.oom_seen = kills
            attempts = batch.attempts(offset) + 1
            pid = worker.pid
            # One task per worker: the process that ran the task, a fork of the worker.
            task_pid = self.books.slots[worker.slot * SLOT_WIDTH + SLOT_TASK_PID]
            if what is not None:
                text = what
            elif loading:
                text = f"it was unpickling the arguments (or the function) of {label}"
            elif task_pid:
                pid = task_pid
                text = f"it was running {label}, a fork of its worker (pid {worker.pid})"
            else:
                text = f"it was running {label}"
            if attempts > 1:
                text += f" (attempt {attempts})"
            if hint:
                text += f"; {hint}"
            error = WorkerCrashedError(worker.process.name, pid, exitcode, text)
        error.task = label  # type: ignore[attr-defined]
        return error

    def requeue_from(self, worker: WorkerHandle, batch_id: int, next_offset: int) -> None:
        """A retiring worker ran nothing from *next_offset* of *batch_id* on: send it again."""
        parts = []
        for batch in worker.take_all_lost():
            start = next_offset if batch.id == batch_id else batch.reported
            if start < batch.n:
                parts.append(batch.part(start, batch.n, batch.tracked))
        self.books.retry.extendleft(reversed(parts))

    def check_timeouts(self) -> None:
        """Kill each worker whose current item has run past the timeout."""
        assert self.timeout is not None
        now = time.monotonic_ns()
        limit = int(self.timeout * 1e9)
        for worker, seq, start in self._running_items():
            if now - start > limit:
                worker.kill_for_timeout(seq)  # once

    def stop_items_of(self, job: MapJob) -> None:
        """Kill each worker that runs an item of *job* (cancelled, its caller
        interrupted): nothing it held is failed; items of other tasks that it
        held go to the other workers (the one it was running, if the kill came
        as it moved on, runs again); a replacement starts."""
        for worker in self.books.workers:
            if (worker is None or worker.dead or worker.stopping
                    or worker.stopped_for_interrupt or not worker.outstanding):
                continue
            running = self._batch_running(worker)
            if isinstance(running, MapBatch) and running.job is job:
                worker.kill_for_interrupt()

    def _batch_running(self, worker: WorkerHandle) -> Batch | None:
        """The batch whose item (or arguments) *worker* is on, by its progress slot:
        not always its first outstanding one, whose results may wait unread."""
        seq = self.books.slots[worker.slot * SLOT_WIDTH + SLOT_SEQ]
        for batch in worker.outstanding.values():
            if -seq == batch.seq_base or batch.seq_base <= seq < batch.seq_base + batch.n:
                return batch
        return None

    def timeout_poll_s(self) -> float:
        """How long the dispatcher may sleep before a timeout could be due."""
        assert self.timeout is not None
        cap = max(0.005, min(self.timeout / 4, 0.25))
        now = time.monotonic_ns()
        waits = [self.timeout - (now - start) / 1e9 for _, _, start in self._running_items()]
        return max(0.0, min([cap, *waits]))

    def _running_items(self) -> list[tuple[WorkerHandle, int, int]]:
        running = []
        for worker in self.books.workers:
            if worker is None or worker.dead or not worker.outstanding:
                continue
            first = next(iter(worker.outstanding.values()))
            base = worker.slot * SLOT_WIDTH
            seq = self.books.slots[base + SLOT_SEQ]
            start = self.books.slots[base + SLOT_START]  # written before the sequence number
            if first.seq_base + first.reported <= seq < first.seq_base + first.n:
                running.append((worker, seq, start))
            elif seq == -first.seq_base and first.reported == 0:
                # Unpickling its arguments: timed as its first task.
                running.append((worker, first.seq_base, start))
            elif worker.ready and first.reported == 0 and abs(seq) < first.seq_base:
                # Not begun though it is its next work (a worker stopped, or
                # stuck between tasks): timed since it became so. Not a worker
                # still starting: its initializer may take long, untimed.
                running.append((worker, first.seq_base, worker.front_since))
        return running

    def fail_everything(self, error: BaseException) -> None:
        """Every task not finished gets *error* (delivered once the lock is released)."""
        batches = list(self.books.retry)
        self.books.retry.clear()
        for worker in self.books.workers:
            if worker is not None:
                batches.extend(b.part(b.reported, b.n, b.tracked)
                               for b in worker.take_all_lost() if b.reported < b.n)
        calls = list(self.books.pending)
        self.books.pending.clear()
        jobs = list(self.books.jobs)
        self.books.jobs.clear()

        def deliver() -> None:
            for call in calls:
                if isinstance(error, CancelledError):
                    call.future.cancel()
                elif call.future.set_running_or_notify_cancel():
                    call.future.set_exception(error)
            for batch in batches:
                if not batch.is_map():
                    batch.deliver(0, [None] * batch.n, dict.fromkeys(range(batch.n), error))
            for job in jobs:
                job.abort(error)

        self.books.deferred.append(deliver)
