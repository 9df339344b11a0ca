"""What the engine runs: single calls, map jobs, and the batches that carry them.

A :class:`Call` is one ``submit()``: a future and its arguments. A
:class:`MapJob` is one ``map()``: a lazily read input, a chunk sizer, and the
results as they come back, in pieces keyed by their index. A batch is what
one RUN message carries to a worker: a contiguous run of a map's items
(:class:`MapBatch`) or a few calls (:class:`CallBatch`). Batches keep their
items until every result is in, so that the items of a dead worker can be
sent again.
"""

from __future__ import annotations

import functools
import reprlib
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import CancelledError, Future
from itertools import islice, repeat, starmap
from typing import Any

from .._errors import PicklingError
from .._serialization import (
    Frame,
    binding_generation,
    discard,
    dumps,
    dumps_frame,
    first_unpicklable,
    globals_sent,
    unpicklable_inside,
)
from .._trace import _state as _trace_state
from ._batching import ChunkSizer
from ._messages import SKIP, encode_objects
from ._states import CALL, ONE, STAR

__all__ = ["Batch", "Call", "CallBatch", "FnEntry", "MapBatch", "MapJob", "ResultIterator",
           "call_parts", "raisable", "unpicklable_part"]

#: Chunks of fewer items are tracked item by item even when the items are quick.
SMALL_CHUNK = 64

#: Results of consecutive tasks of a map: (index of the first, values, errors by index).
_Piece = tuple[int, list[Any], dict[int, BaseException]]

_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40


def _name(fn: object) -> str:
    """What error messages call *fn*: its qualified name; a ``functools.partial``
    by the function it wraps (``partial(load)``), not as ``partial``."""
    if isinstance(fn, functools.partial):
        return f"partial({_name(fn.func)})"
    return str(getattr(fn, "__qualname__", None) or type(fn).__qualname__)


def _type_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class FnEntry:
    """A function pickled once for this engine, known by its id.

    It refers to the function weakly where it can: the engine's cache of
    entries must not keep a task's callable (a bound method's object) alive.
    A function sent by value (of ``__main__``, a lambda, a closure) carries the
    globals it uses: the entry is :meth:`stale` once one of them is bound to
    another object, and the function is then pickled again.
    """

    __slots__ = ("__weakref__", "data", "fn_id", "function", "globals_sent", "name",
                 "per_item_s")

    def __init__(self, fn: Callable[..., Any], fn_id: int) -> None:
        try:
            # Loaded by every worker (and replacements): large buffers that go through
            # shared memory must stay until the engine discards the entry.
            with globals_sent() as sent:
                self.data = dumps(fn, reusable=True)
            # Flat, for stale(), which every submit() calls.
            self.globals_sent = tuple((namespace, name, generation)
                                      for namespace, generations in sent
                                      for name, generation in generations.items())
        except Exception as exc:
            raise PicklingError.caused_by(
                f"the function {_name(fn)!r}, a {_type_name(fn)} object, cannot be pickled "
                f"{_why(exc, unpicklable_inside(fn))}; pass a picklable callable",
                exc,
            ) from exc
        try:
            self.function: Callable[[], Callable[..., Any] | None] = weakref.ref(fn)
        except TypeError:  # builtins, bound builtin methods: held (not weakly referable)
            self.function = functools.partial(_same, fn)
        self.fn_id = fn_id
        self.name = _name(fn)
        self.per_item_s: float | None = None  # learned by the maps that ran it

    def stale(self) -> bool:
        """Whether a global that the pickle carries has been bound to another object since."""
        for namespace, name, generation in self.globals_sent:
            if binding_generation(namespace, name, namespace.get(name, _UNBOUND)) != generation:
                return True
        return False

    def discard(self) -> None:
        """No worker will load this function again: free its shared memory, if any."""
        discard(self.data)


_UNBOUND = object()


def _same(fn: Callable[..., Any]) -> Callable[..., Any]:
    return fn


_INHERITED_ONLY = (
    " (a worker can get it only when it starts: pass it in initargs=(...) to an "
    "initializer that keeps it in a global, or use a Manager's, e.g. Manager().Queue(), "
    "which tasks can take as arguments)")


def _why(exc: Exception, inside: str = "") -> str:
    text = f"({exc}{inside})"
    if "through inheritance" in str(exc):  # Queue, Lock, Value, Array and the like
        text += _INHERITED_ONLY
    return text


def call_parts(args: Sequence[Any], kwargs: dict[str, Any], prefix: str = ""
               ) -> list[tuple[str, Any]]:
    """A call's arguments, each with the label an error names it by."""
    return [*((f"{prefix}argument {k}", arg) for k, arg in enumerate(args)),
            *((f"{prefix}keyword argument {key!r}", arg) for key, arg in kwargs.items())]


def unpicklable_part(parts: Sequence[tuple[str, Any]]) -> str | None:
    """Which of the labelled *parts* cannot be pickled, why, and where inside it;
    None when each can."""
    found = first_unpicklable(parts)
    if found is None:
        return None
    label, value, exc = found
    return (f"{label}, a {_type_name(value)} object, cannot be pickled "
            f"{_why(exc, unpicklable_inside(value))}")


def _unpicklable_argument(args: Sequence[Any], kwargs: dict[str, Any]) -> str:
    return unpicklable_part(call_parts(args, kwargs)) or "its arguments cannot be pickled"


def _encode_items(items: Sequence[Any], describe: Callable[[int, Any], str]
                  ) -> tuple[bytes | Frame, dict[int, BaseException]]:
    """Pickle *items*; an item that cannot be pickled is replaced by SKIP and reported."""
    try:
        return encode_objects(items), {}
    except Exception:
        pass
    safe = list(items)
    bad: dict[int, BaseException] = {}
    for i, item in enumerate(safe):
        try:
            dumps_frame(item).discard()  # only to find which one fails
        except Exception as exc:
            bad[i] = PicklingError.caused_by(describe(i, item) + "; pass picklable arguments",
                                             exc)
            safe[i] = SKIP
    return dumps_frame(safe), bad


class Call:
    """One submitted call."""

    __slots__ = ("args", "attempts", "entry", "future", "kwargs", "traced_at")

    def __init__(self, future: Future[Any], entry: FnEntry, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        self.future = future
        self.entry = entry
        self.args = args
        self.kwargs = kwargs
        self.attempts = 0
        # When it was submitted, for a trace (no clock is read when nothing records).
        self.traced_at = 0 if _trace_state.recorder is None else time.monotonic_ns()

    def label(self) -> str:
        args = ", ".join([_repr.repr(a) for a in self.args]
                         + [f"{k}={_repr.repr(v)}" for k, v in self.kwargs.items()])
        return f"{self.entry.name}({args})"


class Batch:
    """What one RUN message carries; set by the dispatcher when sent."""

    __slots__ = ("deaths", "frame", "id", "n", "reported", "seq_base", "skips", "tracked")

    n: int

    def __init__(self, tracked: bool) -> None:
        self.id = 0
        self.deaths = 0  # workers that died holding it, none while running one of its items
        self.seq_base = 0
        self.reported = 0
        self.tracked = tracked
        self.skips: dict[int, BaseException] = {}
        self.frame: Frame | None = None  # the payload sent, when it holds shared memory

    def lost(self) -> None:
        """Its worker will never read it (died, retired): free its shared memory."""
        frame, self.frame = self.frame, None
        if frame is not None:
            frame.discard()

    # Overridden by the two kinds of batches.
    def entries(self) -> list[FnEntry]:
        raise NotImplementedError

    def encode(self) -> tuple[int, bytes | Frame]:
        """The style and pickled items (a :class:`Frame` when they need shared
        memory: its sender sends it, or discards it); items that cannot be pickled
        go to ``skips``."""
        raise NotImplementedError

    def label(self, offset: int) -> str:
        raise NotImplementedError

    def attempts(self, offset: int) -> int:
        raise NotImplementedError

    def add_attempt(self, offset: int) -> None:
        raise NotImplementedError

    def part(self, start: int, stop: int, tracked: bool) -> Batch:
        raise NotImplementedError

    def deliver(self, offset: int, values: list[Any], errors: dict[int, BaseException]) -> None:
        """Hand results of items ``offset ..`` to their owners (outside the engine lock)."""
        raise NotImplementedError

    def wanted(self) -> bool:
        """False once nobody waits for these results any more."""
        return True

    def is_map(self) -> bool:
        return False


class CallBatch(Batch):
    """A few independent calls."""

    __slots__ = ("_entries", "calls")

    def __init__(self, calls: list[Call]) -> None:
        super().__init__(True)  # a worker runs calls item by item
        self.calls = calls
        self.n = len(calls)
        self._entries: list[FnEntry] | None = None

    def entries(self) -> list[FnEntry]:
        if self._entries is None and self.n == 1:
            self._entries = [self.calls[0].entry]
        elif self._entries is None:
            seen: dict[int, FnEntry] = {}
            for call in self.calls:
                seen.setdefault(call.entry.fn_id, call.entry)
            self._entries = list(seen.values())
        return self._entries

    def encode(self) -> tuple[int, bytes | Frame]:
        entries = self.entries()
        if len(entries) == 1:
            items = [(0, c.args, c.kwargs) for c in self.calls]
        else:
            index = {entry.fn_id: i for i, entry in enumerate(entries)}
            items = [(index[c.entry.fn_id], c.args, c.kwargs) for c in self.calls]
        payload, bad = _encode_items(items, lambda i, item: (
            f"task {self.calls[i].label()}: "
            + _unpicklable_argument(self.calls[i].args, self.calls[i].kwargs)))
        self.skips = bad
        return CALL, payload

    def label(self, offset: int) -> str:
        return self.calls[offset].label()

    def attempts(self, offset: int) -> int:
        return self.calls[offset].attempts

    def add_attempt(self, offset: int) -> None:
        self.calls[offset].attempts += 1

    def part(self, start: int, stop: int, tracked: bool) -> Batch:
        return CallBatch(self.calls[start:stop])

    def deliver(self, offset: int, values: list[Any], errors: dict[int, BaseException]) -> None:
        calls = self.calls[offset:] if offset else self.calls
        if not errors:
            for call, value in zip(calls, values, strict=False):
                try:
                    call.future.set_result(value)
                except Exception:  # cancelled by shutdown meanwhile
                    pass
            return
        for i, (call, value) in enumerate(zip(calls, values, strict=False)):
            error = errors.get(i)
            try:
                if error is None:
                    call.future.set_result(value)
                else:
                    call.future.set_exception(error)
            except Exception:  # cancelled by shutdown meanwhile
                pass

    def wanted(self) -> bool:
        return not all(c.future.done() for c in self.calls)


class MapBatch(Batch):
    """A contiguous run of one map's items, ``start .. start + n - 1``."""

    __slots__ = ("items", "job", "start")

    def __init__(self, job: MapJob, start: int, items: Sequence[Any], tracked: bool) -> None:
        super().__init__(tracked)
        self.job = job
        self.start = start
        self.items = items
        self.n = len(items)

    def entries(self) -> list[FnEntry]:
        return [self.job.entry]

    def encode(self) -> tuple[int, bytes | Frame]:
        job = self.job
        star = job.star

        def describe(i: int, item: Any) -> str:
            where = _unpicklable_argument(item, {}) if star else _unpicklable_argument((item,), {})
            return f"task {self.start + i} of map({job.entry.name}): {where}"

        payload, bad = _encode_items(self.items, describe)
        self.skips = bad
        job.sizer.record_bytes(self.n, len(payload), results=False)
        return (STAR if star else ONE), payload

    def label(self, offset: int) -> str:
        return self.job.label(self.start + offset, self.items[offset])

    def attempts(self, offset: int) -> int:
        return self.job.attempts.get(self.start + offset, 0)

    def add_attempt(self, offset: int) -> None:
        index = self.start + offset
        self.job.attempts[index] = self.job.attempts.get(index, 0) + 1

    def part(self, start: int, stop: int, tracked: bool) -> Batch:
        return MapBatch(self.job, self.start + start, self.items[start:stop],
                        tracked or stop - start < SMALL_CHUNK)

    def deliver(self, offset: int, values: list[Any], errors: dict[int, BaseException]) -> None:
        self.job.deliver(self.start + offset, values, errors)

    def wanted(self) -> bool:
        return not self.job.cancelled

    def is_map(self) -> bool:
        return True


class _InputError:
    """Marks where a map's input ended early: the exception to raise there."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class MapJob:
    """One map: its input, read lazily by the dispatcher, and its results.

    *ordered* results are kept by index until consumed in order; unordered
    ones as they come. *collect*: all results are kept for one final list
    (no back-pressure). Otherwise the dispatcher reads more input only while
    fewer than a few chunks per worker wait to be consumed.
    """

    def __init__(self, entry: FnEntry, iterable: Iterable[Any], *, star: bool, ordered: bool,
                 return_exceptions: bool, collect: bool, workers: int,
                 chunksize: int | None, wake: Callable[[], None],
                 stop: Callable[[MapJob], None]) -> None:
        self.entry = entry
        self.traced_at = 0 if _trace_state.recorder is None else time.monotonic_ns()
        self.star = star
        self.ordered = ordered
        self.return_exceptions = return_exceptions
        self.collect = collect
        # A consumer takes results as they come; a collecting job's caller only
        # waits for the end, so it is woken once, not once per piece.
        self.streaming = not collect
        self.workers = workers
        self.sizer = ChunkSizer(workers, chunksize, entry.per_item_s)
        self._wake = wake
        self._stop = stop
        self.attempts: dict[int, int] = {}
        # A worker died in one of its untracked chunks: from now on, tracked.
        self.careful = False
        # Input side: the dispatcher thread only.
        self._sequence: Sequence[Any] | None = None
        self._iterator: Iterator[Any] | None = None
        if isinstance(iterable, (range, list, tuple)):
            self._sequence = iterable
            self.total: int | None = len(iterable)
        else:
            self._iterator = iter(iterable)
            self.total = None
        self.pulled = 0
        self.exhausted = self.total == 0
        # Output side: under self.cond.
        self.cond = threading.Condition(threading.Lock())
        self.pieces: dict[int, tuple[list[Any], dict[int, BaseException]]] = {}
        self.arrived: deque[tuple[int, list[Any], dict[int, BaseException]]] = deque()
        self.next_index = 0  # ordered: the next index to hand out
        self.consumed = 0
        self.done = 0
        self.cancelled = False
        # Its iterator was dropped before anyone read from it (fire and forget):
        # the map runs to its end and its results are dropped as they come.
        self.detached = False
        self.started = False  # someone has asked its iterator for a result
        self.throttled = False
        self.end_error: _InputError | None = None
        self.abort_error: BaseException | None = None
        self.listeners: list[Callable[[], None]] = []

    # -- input (dispatcher thread) -------------------------------------------
    def wants_input(self) -> bool:
        if self.exhausted or self.cancelled:
            return False
        if self.collect or self.detached:
            return True
        limit = self.max_ahead()
        with self.cond:
            if self.pulled - self.consumed < limit:
                return True
            self.throttled = True  # the consumer wakes the dispatcher when it takes results
            return False

    def max_ahead(self) -> int:
        """How many items may be read ahead of the consumer (back-pressure)."""
        return 2 * self.workers * max(self.sizer.size, 1) + 64

    def next_batch(self, limit: int) -> MapBatch | None:
        """The next chunk of input (at most *limit* items), or None when there is none."""
        remaining = None if self.total is None else self.total - self.pulled
        size = min(self.sizer.next_size(remaining), limit)
        start = self.pulled
        items: Sequence[Any]
        if self._sequence is not None:
            items = self._sequence[start:start + size]
        else:
            assert self._iterator is not None
            read: list[Any] = []
            try:
                # extend() keeps what it read when the input raises midway:
                # those items still run, and the results end after them.
                read.extend(islice(self._iterator, size))
            except BaseException as exc:
                self.pulled += len(read)
                self.end_input(exc)
                return MapBatch(self, start, read, self._tracked(len(read))) if read else None
            items = read
            if len(items) < size:
                self.exhausted = True
                self.total = start + len(items)
                self._iterator = None
        self.pulled += len(items)
        if self.total is not None and self.pulled >= self.total:
            self.exhausted = True
            self._sequence = None  # the caller's input: not kept once read
        if not items:
            self._check_finished()
            return None
        return MapBatch(self, start, items, self._tracked(len(items)))

    def _tracked(self, size: int) -> bool:
        # A small chunk is tracked whatever its items take: its results then
        # never wait behind a slow item, and a crash in it runs nothing twice;
        # that costs little in a chunk this size.
        return self.sizer.tracked or self.careful or size < SMALL_CHUNK

    def end_input(self, error: BaseException) -> None:
        """No more input: results stop at the current position with *error*."""
        self.exhausted = True
        self._iterator = None
        self._sequence = None
        self.total = self.pulled
        with self.cond:
            self.end_error = _InputError(error)
        self._check_finished()

    def label(self, index: int, item: Any) -> str:
        return f"task {index} of map({self.entry.name}) (argument: {_repr.repr(item)})"

    # -- output (dispatcher thread delivers, the consumer takes) ------------------
    def deliver(self, start: int, values: list[Any], errors: dict[int, BaseException]) -> None:
        if not values:
            return
        with self.cond:
            if self.cancelled:
                return
            if self.detached:
                self.done += len(values)
                if self.finished():
                    self.cond.notify_all()
                return
            absolute = {start + i: e for i, e in errors.items()}
            if self.ordered:
                self.pieces[start] = (values, absolute)
            else:
                self.arrived.append((start, values, absolute))
            self.done += len(values)
            if self.streaming or self.finished():
                self.cond.notify_all()
        self._notify()

    def _check_finished(self) -> None:
        with self.cond:
            self.cond.notify_all()
        self._notify()

    def _notify(self) -> None:
        for listener in list(self.listeners):
            listener()

    def finished(self) -> bool:
        """All results are in (or the job was cancelled); under ``cond``."""
        return self.cancelled or (self.exhausted and self.done >= (self.total or 0))

    def cancel(self) -> None:
        """Nobody wants the rest: stop reading input, drop what comes back."""
        with self.cond:
            if self.cancelled:
                return
            self.cancelled = True
            self._drop_held()
        self._wake()
        self._notify()

    def _drop_held(self) -> None:
        # Under cond: nobody will take the results held for the consumer.
        self.pieces.clear()
        self.arrived.clear()
        self.cond.notify_all()

    def dropped(self) -> None:
        """Its iterator is gone. After a result was asked for, cancel (as a
        ``concurrent.futures`` map's generator does when closed); before,
        run it to its end, results dropped (as every task of such a map runs
        there, and every one of a ``multiprocessing`` ``imap``)."""
        if self.started:
            self.cancel()
            return
        with self.cond:
            if self.cancelled or self.collect:
                return
            self.detached = True
            self._drop_held()
        self._wake()

    def stop(self) -> None:
        """Its caller was interrupted: cancel, and stop the items that run now
        (their workers are killed and replaced)."""
        self._stop(self)

    def abort(self, error: BaseException) -> None:
        """The engine stopped: results end here with *error*."""
        with self.cond:
            if self.cancelled or self.finished():
                return
            self.abort_error = error
            self.cancelled = True
            self.cond.notify_all()
        self._notify()

    def _stop_error(self) -> BaseException:
        return self.abort_error or CancelledError("the map was cancelled")

    def _consumed(self, count: int) -> None:
        # Under cond. Wakes the dispatcher if it held input back for us.
        self.consumed += count
        if self.throttled:
            self.throttled = False
            self._wake()

    def take_ready(self) -> tuple[list[tuple[bool, Any]], bool]:
        """Results ready now, in delivery order: ``([(ok, value or error)], finished)``.

        A cancelled job, or one whose input raised, ends with ``(False, error)``.
        """
        with self.cond:
            piece, end, finished = self._take_locked()
        out = [] if piece is None else _pairs(*piece)
        if end is not None:
            out.append((False, end))
        return out, finished

    def _take_locked(self) -> tuple[_Piece | None, BaseException | None, bool]:
        """Under cond: the next piece of results ``(start, values, errors by
        index)`` or None, the error that ends the map after it (its input
        raised, or it was cancelled) or None, and whether the map is finished."""
        # One piece at a time: what was taken counts as consumed (back-pressure).
        piece: _Piece | None = None
        if self.ordered:
            if self.next_index in self.pieces:
                values, errors = self.pieces.pop(self.next_index)
                piece = (self.next_index, values, errors)
                self.next_index += len(values)
        elif self.arrived:
            piece = self.arrived.popleft()
        if piece is not None:
            self._consumed(len(piece[1]))
        more = (self.next_index in self.pieces) if self.ordered else bool(self.arrived)
        if more:
            return piece, None, False
        if self.cancelled:
            return piece, self._stop_error(), True
        if self.exhausted and self.done >= self.pulled and not self.pieces and not self.arrived:
            return piece, None if self.end_error is None else self.end_error.error, True
        return piece, None, False

    def wait(self, timeout: float | None) -> bool:
        """Wait until every result is in; False on timeout."""
        with self.cond:
            return self.cond.wait_for(self.finished, timeout)

    def results(self) -> tuple[list[Any], dict[int, BaseException], BaseException | None]:
        """Every value in input order, the failed tasks' errors by index, and the error
        that ended the map early (a collecting job, once finished)."""
        with self.cond:
            values: list[Any] = []
            errors: dict[int, BaseException] = {}
            for start in sorted(self.pieces):
                piece, piece_errors = self.pieces[start]
                values.extend(piece)
                errors.update(piece_errors)
            self.pieces.clear()
            end = self._stop_error() if self.cancelled else (
                self.end_error.error if self.end_error is not None else None)
            return values, errors, end

    def _terminal(self, error: BaseException) -> bool:
        end = self.end_error
        return self.cancelled or (end is not None and end.error is error)


def _pairs(start: int, values: list[Any], errors: dict[int, BaseException]
           ) -> list[tuple[bool, Any]]:
    if not errors:
        return [(True, v) for v in values]
    return [(True, v) if start + i not in errors else (False, errors[start + i])
            for i, v in enumerate(values)]


def _popping(values: list[Any]) -> Iterator[Any]:
    """The items of *values* in order, each removed from the list as it is handed out."""
    values.reverse()
    return starmap(values.pop, repeat((), len(values)))


class ResultIterator:
    """The results of one map, in order or as they come.

    Dropped after the first ``next()``, it cancels the map (the tasks that
    have not started); dropped before (a map called for its effects), it
    lets the whole map run, its results dropped as they come.

    Ctrl-C while ``next()`` waits also stops the map's running tasks (their
    workers are killed and replaced); dropping or closing the iterator lets
    them finish.

    ``next(it)`` raises a failed task's exception (unless the map was made
    with ``return_exceptions=True``; the iteration can go on after it), and
    ends with what the input raised, if it raised, or ``CancelledError`` when
    the map was cancelled or the pool shut down first.
    """

    def __init__(self, job: MapJob, deadline: float | None = None,
                 timeout_error: type[Exception] = TimeoutError) -> None:
        self._job = job
        self._deadline = deadline
        self._timeout_error = timeout_error
        # The values of the piece taken last, when none of its tasks failed:
        # ``next()`` costs one step of a C iterator (a map of quick tasks is
        # mostly this) that pops each value, so that a result the caller has
        # dropped is freed (_popping). Otherwise its results, then the map's
        # end, in _ready.
        self._plain: Iterator[Any] = iter(())
        self._ready: deque[tuple[bool, Any]] = deque()
        self._finished = False
        weakref.finalize(self, job.dropped)

    def __iter__(self) -> ResultIterator:
        return self

    def __next__(self) -> Any:
        for value in self._plain:
            return value
        return self.next()

    def next(self, timeout: float | None = None) -> Any:
        """The next result, waiting at most *timeout* seconds (then ``TimeoutError``)."""
        deadline = self._deadline
        if timeout is not None:
            end = time.monotonic() + timeout
            deadline = end if deadline is None else min(deadline, end)
        job = self._job
        job.started = True
        while True:
            for value in self._plain:
                return value
            if self._ready:
                break
            if self._finished:
                raise StopIteration
            try:
                with job.cond:
                    while True:
                        piece, stop, finished = job._take_locked()
                        if piece is not None or finished:
                            break
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise self._timeout_error("the next result was not ready in time")
                        job.cond.wait(remaining)
            except KeyboardInterrupt:
                job.stop()
                raise
            if piece is not None:
                if piece[2]:
                    self._ready.extend(_pairs(*piece))
                else:
                    self._plain = _popping(piece[1])
            if stop is not None:  # raised even with return_exceptions; the end
                self._ready.append((False, _Terminal(stop)))
            self._finished = finished
        ok, value = self._ready.popleft()
        if ok:
            return value
        if isinstance(value, _Terminal):
            self._ready.clear()
            raise value.error
        if job.return_exceptions:
            return value
        raise raisable(value)

    def close(self) -> None:
        """Stop the map: no more input is read, pending results are dropped."""
        self._job.cancel()


def raisable(error: BaseException) -> BaseException:
    """What ``next()`` raises for a task's *error*: a task's ``StopIteration``
    must not end the iteration silently, so it becomes the ``RuntimeError`` a
    generator makes of it (as ``concurrent.futures``' map does)."""
    if isinstance(error, StopIteration):
        wrapped = RuntimeError("a task raised StopIteration")
        wrapped.__cause__ = error
        return wrapped
    return error


class _Terminal:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error
