"""The engine's receiving side: what workers send back, into the books and out
to futures and maps.

A round of the dispatcher, or a caller reading its own worker
(:mod:`._direct`), decodes what arrived without the lock
(:func:`decode_payload`), keeps the books of it under the lock
(:meth:`Receiver.on_message`, whose book-keeping of items done is
:meth:`Receiver.record_done`, the direct path's too) and collects the
deliveries, which are handed over after the lock is released (a future's
callbacks may call the engine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import ProcessCrashedError, describe_exitcode
from .._outcome import PICKLING_FAILURES, decode
from .._pool_errors import BrokenExecutorError, TaskUnpicklingError
from .._serialization import loads
from .._trace import _state as _trace_state
from ._states import DONE, INIT_FAILED, READY, RETIRE, UNREADABLE

if TYPE_CHECKING:
    from ._books import Books, EngineCalls
    from ._faults import Faults
    from ._jobs import Batch
    from ._progress import Progress
    from ._workers import WorkerHandle

__all__ = ["Delivery", "Receiver", "decode_payload", "decode_values", "deliver"]

#: What to hand over once the lock is released: a batch, the offset of the
#: first item, the items' values and their errors (by index from that offset).
Delivery = tuple["Batch", int, list[Any], dict[int, BaseException]]


class Receiver:
    """Messages from the workers, settled in the engine's books."""

    def __init__(self, books: Books, engine: EngineCalls, faults: Faults,
                 progress: Progress | None) -> None:
        self.books = books
        self.engine = engine
        self.faults = faults
        self.progress = progress

    def handle_frames(self, worker: WorkerHandle, frames: list[tuple[Any, memoryview]]) -> None:
        """Without the lock: what one worker sent, read by a direct reader, handed
        over as the dispatcher would."""
        decoded = [(header, decode_payload(header, payload), len(payload))
                   for header, payload in frames]
        if any(header[0] == DONE for header, _ in frames):
            worker.sync_output()
        deliveries: list[Delivery] = []
        with self.books.lock:
            for header, values, nbytes in decoded:
                self.on_message(worker, header, values, deliveries, nbytes)
        deliver(deliveries)
        self.books.run_deferred()

    def on_message(self, worker: WorkerHandle, header: Any, values: Any,
                   deliveries: list[Delivery], nbytes: int = 0) -> None:
        """Under the lock: the books of one message from *worker* (*values*: its
        decoded payload); what it delivers is added to *deliveries*."""
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
            batch = worker.drop_unreadable(batch_id)
            if batch is None:
                return
            if batch.n == 1:
                _, error = decode(error_frame, "the arguments")
                annotate(error, batch, 0, worker)
                deliveries.append((batch, 0, [None], {0: error}))
            else:  # find which item: send each alone (nothing ran)
                self.books.retry.extendleft(reversed([batch.part(i, i + 1, True)
                                                      for i in range(batch.n)]))
        elif tag == INIT_FAILED:
            _, error_frame = header
            _, cause = decode(error_frame, "the initializer's exception")
            how = (f"ended its process ({describe_exitcode(cause.exitcode)})"
                   if isinstance(cause, ProcessCrashedError)
                   else f"raised {type(cause).__name__}: {cause}")
            self.engine.break_down(BrokenExecutorError(
                f"the pool's initializer {how}; no task can run. Fix the initializer (its "
                "traceback is attached, if it raised) and create a new pool."
            ), cause)

    def record_done(self, worker: WorkerHandle, batch: Batch, offset: int, count: int,
                    busy_ns: int, nbytes: int) -> None:
        """Under the lock: the books of items ``offset .. offset+count-1`` of *batch* done
        (the one place they are kept, on every path)."""
        books = self.books
        batch.reported = max(batch.reported, offset + count)
        if offset + count >= batch.n:
            worker.finished(batch)
        busy = busy_ns / 1e9
        record = books.records[worker.slot]
        record.tasks += count
        record.busy_s += busy
        if batch.is_map():
            job = batch.job  # type: ignore[attr-defined]
            job.sizer.record(count, busy)
            job.sizer.record_bytes(count, nbytes, results=True)
            job.entry.per_item_s = job.sizer.per_item_s
        else:
            books.call_sizer.record(count, busy)
        books.batch_s = 0.8 * books.batch_s + 0.2 * busy

    def settle_errors(self, batch: Batch, offset: int, count: int, values: Any,
                      frames: dict[int, bytes]) -> tuple[list[Any], dict[int, BaseException]]:
        """The values and errors of items ``offset .. offset+count-1`` of *batch*
        (*frames*: their pickled exceptions), counted as done."""
        errors: dict[int, BaseException] = {}
        if isinstance(values, BaseException):  # results that could not be unpickled here
            for i in range(count):
                errors[i] = values
            values = [None] * count
        for i, error_frame in frames.items():
            _, error = decode(error_frame, "the task's exception")
            errors[i] = error
        for i in list(errors):
            annotate(errors[i], batch, offset + i, None)
        for index, error in batch.skips.items():
            if offset <= index < offset + count:
                errors[index - offset] = error
        if self.progress is not None:
            self.progress.advance(count - len(errors), len(errors))
        return values, errors


def decode_payload(header: Any, payload: memoryview) -> Any:
    """Without the lock: a DONE message's values (an :class:`UnpicklingError` for
    all of them if they cannot be unpickled); None for other messages."""
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
        error = TaskUnpicklingError(
            f"the results could not be unpickled in the parent: {exc!r}")
        error.__cause__ = exc
        return error


def decode_values(payload: memoryview) -> list[Any]:
    """The values of a DONE message."""
    values: list[Any] = loads(payload)
    return values


def annotate(error: BaseException, batch: Batch, offset: int,
             worker: WorkerHandle | None) -> None:
    """Note on *error* which task raised it (and in which worker)."""
    where = f" in worker pid {worker.pid}" if worker is not None else ""
    try:
        error.add_note(f"(raised by {batch.label(offset)}{where})")
    except (AttributeError, TypeError):
        pass


def deliver(deliveries: list[Delivery]) -> None:
    """Without the lock: hand the results and errors to their futures and maps."""
    for batch, offset, values, errors in deliveries:
        batch.deliver(offset, values, errors)
