"""The worker loop: read batches from the parent, run them, send results back.

One worker is one procesos ``Process`` running :func:`worker_main`. It reads
frames from its own pipe (:mod:`._messages`), keeps the functions it was
sent in a small cache mirrored by the parent, writes the item it is running
into its progress slot (so that the parent can name the task if the worker
dies), and reports results in pieces: at the end of each batch, and
mid-batch when results have waited more than ``FLUSH_NS``.
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import partial
from itertools import starmap
from multiprocessing.connection import Connection
from typing import Any, NamedTuple, NoReturn

from .._compat import flush_std_streams, run_mp_exit_function
from .._errors import PicklingError, ProcessCrashedError
from .._outcome import PICKLING_FAILURES, encode_error
from .._serialization import dumps, dumps_frame, loads, unpicklable_inside
from ._messages import (
    RESULTS_CHANNEL,
    SKIP,
    FrameReader,
    encode_values,
    frame,
    poll_briefly,
    write_all,
)
from ._results_log import ERROR, ResultLog, log_value
from ._states import (
    CALL,
    DONE,
    INIT_FAILED,
    ONE,
    READY,
    RETIRE,
    RUN,
    SLOT_RSS,
    SLOT_SEQ,
    SLOT_START,
    SLOT_TASK_PID,
    SLOT_WIDTH,
    STOP,
    UNREADABLE,
)
from ._task_fork import Ended, TaskForker, end_like
from ._threads import limit_threads

__all__ = ["FN_CACHE_SIZE", "WorkerConfig", "resident_bytes", "worker_main"]

FN_CACHE_SIZE = 64
# As long as the chunk sizer's target for one batch (TARGET_S): a batch of quick
# tracked items sends its results in one or two messages, not ten. Each costs
# the parent's dispatcher a wake-up (2 ms made it use 7 % of a CPU during a map
# of 100 µs tasks on 2 workers, 20 ms 2-3 %); a streaming consumer still gets
# every result within 20 ms of its computation.
FLUSH_NS = 20_000_000
_MEMORY_WATCH_S = 0.02
_NOTE_MEMORY_NS = 50_000_000
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class WorkerConfig(NamedTuple):
    """What a worker needs besides its pipes and progress slot."""

    initializer: Callable[..., object] | None
    initargs: tuple[Any, ...]
    max_tasks: int | None
    max_memory: int | None
    threads: int | None
    spin_ns: int = 0  # how long to poll for the next batch before sleeping
    fork_per_task: bool = False  # run each task in a fork of the worker (:mod:`._task_fork`)


class _FnError:
    """Stands in the cache for a function that could not be unpickled here."""

    def __init__(self, frame_: bytes) -> None:
        self.frame = frame_


def _open_statm() -> int | None:
    try:
        return os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        return None


def resident_bytes(statm_fd: int | None) -> int:
    """This process's resident memory in bytes (peak memory where /proc is missing)."""
    if statm_fd is not None:
        return int(os.pread(statm_fd, 64, 0).split()[1]) * _PAGE
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _load(data: bytes | memoryview, what: str) -> tuple[bool, Any]:
    """Unpickle *data*: ``(True, the object)``, or ``(False, an encoded
    UnpicklingError)`` that names *what* could not be unpickled."""
    try:
        return True, loads(data)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        # Imported here: concurrent.futures.process costs a worker 13 ms (_pool_errors).
        from .._pool_errors import TaskUnpicklingError

        error = TaskUnpicklingError(f"{what} could not be unpickled in the worker: {exc!r}")
        return False, encode_error(error, _user_traceback(exc), RESULTS_CHANNEL)


def _user_traceback(exc: BaseException) -> str:
    # Skip the worker's own frames: the traceback starts in the user's code.
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _error_frame(exc: BaseException) -> bytes:
    """The outcome frame of a task's exception. One that cannot be pickled
    arrives as ``RemoteError`` (its type's name, message and traceback), as
    from a ``Process``."""
    return encode_error(exc, _user_traceback(exc), RESULTS_CHANNEL)


class _ForkWatch:
    """Whether this process is a fork of a worker, made by a task (``os.fork()``):
    such a process returning from its task must not go on as a second worker on
    the same pipes (it would read batches and write results meant for the
    worker's, and the parent would lose track of both)."""

    forked = False
    worker_pid = 0
    _hooked = False

    @classmethod
    def start(cls) -> None:
        # A worker may itself be a fork of a worker: one that a task's own pool
        # started under "fork". It is a worker, not a stray copy of one.
        cls.worker_pid = os.getpid()
        cls.forked = False
        if not cls._hooked:
            os.register_at_fork(after_in_child=cls._mark)
            cls._hooked = True

    @classmethod
    def _mark(cls) -> None:
        cls.forked = True

    @classmethod
    def leave(cls) -> None:
        """In a fork of a worker that came back from its task: exit now."""
        sys.stderr.write(
            f"procesos: process {os.getpid()}, forked by a task in worker {cls.worker_pid}, "
            "returned from the task; it exits (end such a process with os._exit())\n")
        _flush_and_exit()


class _EarlyResults:
    """Sends what a batch of quick items has finished while the batch is still
    running, from a thread of its own: a slow item hidden among quick ones
    (the chunk was sized on quick ones) does not hold the others' results
    back for longer than ``FLUSH_NS``, and they survive a crash on it.

    The batch's own thread keeps its loop in C (``list.extend(map(...))``, which
    appends each value as it comes): it pays two lock round trips per batch,
    nothing per item. This thread sleeps on an event while no quick batch runs.
    """

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        self.lock = threading.Lock()  # held while it reports: end() waits for that
        # (batch id, its first sequence number, values, errors, when the part not
        # sent yet started) of the quick batch running, or None
        self.batch: tuple[int, int, list[Any], list[tuple[int, bytes]], int] | None = None
        self.reported = 0
        self.idle = True
        self.wake = threading.Event()
        threading.Thread(target=self._watch, name="procesos-early-results", daemon=True).start()

    def begin(self, batch_id: int, seq_base: int, values: list[Any],
              errors: list[tuple[int, bytes]]) -> None:
        """A quick batch starts; it fills *values* and *errors* as it runs."""
        with self.lock:
            self.batch = (batch_id, seq_base, values, errors, time.monotonic_ns())
            self.reported = 0
            woken, self.idle = self.idle, False
        if woken:
            self.wake.set()

    def end(self) -> tuple[int, int]:
        """The batch has ended: how many of its values were sent already, and
        when the part not sent yet started (``time.monotonic_ns()``)."""
        with self.lock:
            batch, self.batch = self.batch, None
            return self.reported, 0 if batch is None else batch[4]

    def _watch(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            while True:
                time.sleep(FLUSH_NS / 1e9)
                with self.lock:
                    if self.batch is None:
                        self.idle = True
                        break
                    try:
                        self._report(*self.batch)
                    except OSError:  # the parent has gone: the batch's thread finds out
                        self.batch = None

    def _report(self, batch_id: int, seq_base: int, values: list[Any],
                errors: list[tuple[int, bytes]], started: int) -> None:
        # Under the lock. An error is recorded before its None value is
        # appended: the errors of the first *done* values are all there.
        done, sent = len(values), self.reported
        now = time.monotonic_ns()
        if done == sent or now - started < FLUSH_NS:
            return
        # First: the item running is at or after this one. A worker that dies
        # from now on dies in an unreported item, never in one reported (which
        # would be sent again as if none of them had run).
        worker = self.worker
        worker.slot[worker.base + SLOT_SEQ] = seq_base + done
        piece = [(i - sent, frame) for i, frame in errors if sent <= i < done]
        worker.flush(batch_id, sent, values[sent:done], piece, now - started)
        self.reported = done
        self.batch = (batch_id, seq_base, values, errors, now)


class _Worker:
    def __init__(self, channel: tuple[Connection, Connection], progress: Any, slot: int,
                 config: WorkerConfig, log: Any = None) -> None:
        self.channel = channel  # keeps the descriptors open
        self.fd = channel[0].fileno()  # from the parent
        self.out_fd = channel[1].fileno()  # to the parent
        os.set_blocking(self.fd, True)
        os.set_blocking(self.out_fd, True)
        self.slot = memoryview(progress).cast("B").cast("q")
        self.base = slot * SLOT_WIDTH
        self.config = config
        self.fns: OrderedDict[int, Any] = OrderedDict()
        self.tasks_done = 0
        self.statm = _open_statm()
        self.retired = False
        self.noted_at = 0
        self.unlimited = config.max_tasks is None and config.max_memory is None
        self.log = ResultLog(log, slot) if log is not None else None
        self.early: _EarlyResults | None = None  # started with the first quick batch
        # A mother (fork per task) runs the initializer in each child, unless it
        # must run a task itself (a thread of its own runs: no fork then).
        self.forker = TaskForker() if config.fork_per_task else None
        self.initialized = False

    def initialize(self) -> bool:
        """Run the pool's initializer; whether it returned (else the parent was told)."""
        config = self.config
        self.initialized = True
        if config.initializer is None:
            return True
        try:
            config.initializer(*config.initargs)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            import logging

            # Logged here as concurrent.futures logs it (its logger: a handler
            # the initializer or the parent's logging put there gets it), and
            # sent: the parent fails the pool with it.
            logging.getLogger("concurrent.futures").critical("Exception in initializer:",
                                                             exc_info=True)
            # This worker is done: what its exit would do (the feeders of the
            # Queues it wrote to, a QueueHandler's, flushed) comes first, for
            # the parent ends the pool's workers once it is told.
            run_mp_exit_function()
            self.send((INIT_FAILED, encode_error(exc, _user_traceback(exc), RESULTS_CHANNEL)))
            return False
        # What it printed is delivered now: a worker that runs no task before
        # the pool ends is killed (Pool.__exit__ terminates), its buffers with it.
        flush_std_streams()
        return True

    # -- sending -----------------------------------------------------------
    def send(self, header: tuple[Any, ...], payload: bytes = b"") -> None:
        write_all(self.out_fd, frame(header, payload))

    def note_memory(self) -> int:
        rss = resident_bytes(self.statm)
        self.slot[self.base + SLOT_RSS] = rss
        return rss

    def flush(self, batch_id: int, offset: int, values: list[Any],
              errors: list[tuple[int, bytes]], busy_ns: int,
              retire_at: int | None = None) -> None:
        """Send results; with *retire_at*, RETIRE after them in the same write (so
        that a caller reading the answer to a direct call gets both at once, and
        the parent replaces this worker without waiting for it to exit)."""
        if _ForkWatch.forked:
            _ForkWatch.leave()
        ended = time.monotonic_ns()
        try:
            payload = encode_values(values)
        except PICKLING_FAILURES:
            payload = self._pickle_values_carefully(values, errors)
        now = time.monotonic_ns()
        if now - self.noted_at > _NOTE_MEMORY_NS:
            self.noted_at = now
            self.note_memory()
        parts = frame((DONE, batch_id, offset, len(values), tuple(errors), busy_ns, ended,
                       now - ended), payload)
        if retire_at is not None:
            parts += frame((RETIRE, batch_id, retire_at))
            self.retired = True
        write_all(self.out_fd, parts)

    def _pickle_values_carefully(self, values: list[Any], errors: list[tuple[int, bytes]]) -> bytes:
        # encode_values tried every pickler on the whole list: find which fail.
        for i, value in enumerate(values):
            try:
                dumps_frame(value).discard()  # only to find which one fails
            except PICKLING_FAILURES as exc:
                cls = type(value)
                error = PicklingError.caused_by(
                    f"the result, a {cls.__module__}.{cls.__qualname__} object, could not be "
                    f"pickled in the worker ({exc!r}{unpicklable_inside(value)}). "
                    "Return something picklable.",
                    exc,
                )
                errors.append((i, encode_error(error, _user_traceback(exc), RESULTS_CHANNEL)))
                values[i] = None
        return dumps(values, channel=RESULTS_CHANNEL)

    # -- the loop ------------------------------------------------------------
    def serve(self) -> None:
        reader = FrameReader(self.fd)
        spin_ns = self.config.spin_ns
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while True:
            if spin_ns:
                poll_briefly(poller.poll, spin_ns)
            try:
                frames = reader.read_blocking()
            except (EOFError, OSError):
                return  # the parent has gone
            for header, payload in frames:
                if header[0] == STOP:
                    return
                if header[0] == RUN:
                    self.run(header, payload)
                    if self.retired:
                        return

    def update_fns(self, fns: tuple[tuple[int, bytes | None], ...]) -> list[Any]:
        """Apply the parent's function-cache updates, in its order; the functions."""
        table = []
        for fn_id, data in fns:
            if data is None:
                self.fns.move_to_end(fn_id)
                table.append(self.fns[fn_id])
                continue
            ok, fn = _load(data, "the function")
            if not ok:
                fn = _FnError(fn)
            self.fns[fn_id] = fn
            table.append(fn)
            while len(self.fns) > FN_CACHE_SIZE:
                self.fns.popitem(last=False)
        return table

    def run(self, header: tuple[Any, ...], payload: memoryview) -> None:
        _, batch_id, seq_base, style, tracked, timed, fns = header
        # Negative: loading this batch. A worker that dies now (an argument or a
        # function whose unpickling ends the process) is known to have died on
        # it; timed, the time counts towards its first task's timeout (an
        # argument whose unpickling hangs must not hang the pool). The start
        # first: the parent reads the sequence number first.
        if timed:
            self.slot[self.base + SLOT_START] = time.monotonic_ns()
        self.slot[self.base + SLOT_SEQ] = -seq_base
        table = self.update_fns(fns)
        ok, items = _load(payload, "the arguments")
        if not ok:
            self.send((UNREADABLE, batch_id, items))
            return
        if style != CALL and isinstance(table[0], _FnError):
            # Each item's outcome is that error: they count as tasks (the parent
            # counted them against a task limit), though no process ran them.
            errors = [(i, table[0].frame) for i in range(len(items))]
            self.tasks_done += len(items)
            retire = self.forker is None and self.over_limits()
            self.flush(batch_id, 0, [None] * len(items), errors, 0,
                       len(items) if retire else None)
            return
        if self.forker is not None and self.forker.usable():
            self.run_forked(batch_id, seq_base, style, timed, table, items)
            return
        if not self.initialized and not self.initialize():
            self.retired = True  # the parent fails the pool
            return
        if (style == CALL and len(items) == 1 and not timed and items[0] is not SKIP
                and self.unlimited):
            self.run_one(batch_id, seq_base, table, items[0])
        elif tracked or style == CALL:
            self.run_tracked(batch_id, seq_base, style, timed, table, items)
        else:
            self.run_fast(batch_id, seq_base, style, table[0], items)

    def run_fast(self, batch_id: int, seq_base: int, style: int, fn: Callable[..., Any],
                 items: Any) -> None:
        """Run a batch of quick items (untracked, ``ONE`` or ``STAR``), in C.

        What it keeps: the progress slot holds the batch's first sequence number
        for its whole run (the parent knows only that the worker died in this
        chunk: ``Faults._lost_chunk``), but when :class:`_EarlyResults` reports
        the items finished so far, which moves the slot past them first; the
        task count, the limits (``over_limits``) and the report (``flush``) are
        run_tracked's, once for the batch instead of once per item.
        """
        self.slot[self.base + SLOT_SEQ] = seq_base
        values: list[Any] = []
        errors: list[tuple[int, bytes]] = []
        it = iter(items)
        mapped: Iterator[Any] = map(fn, it) if style == ONE else starmap(fn, it)
        early = self.early
        if early is None:
            early = self.early = _EarlyResults(self)
        early.begin(batch_id, seq_base, values, errors)
        try:
            while True:
                try:
                    values.extend(mapped)  # keeps what ran before an exception
                    break
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:
                    errors.append((len(values), _error_frame(exc)))
                    values.append(None)
        finally:
            if _ForkWatch.forked:  # a fork a task made: end() could wait for a lock
                _ForkWatch.leave()  # held by a thread that is not in this process
            sent, since = early.end()
        busy = time.monotonic_ns() - since
        self.tasks_done += len(values)
        retire_at = len(values) if self.over_limits() else None
        if sent:
            values = values[sent:]
            errors = [(i - sent, frame) for i, frame in errors if i >= sent]
        if values or not sent or retire_at is not None:
            self.flush(batch_id, sent, values, errors, busy, retire_at)

    def run_forked(self, batch_id: int, seq_base: int, style: int, timed: bool,
                   table: list[Any], items: Any) -> None:
        """Run each item of a batch in a fork of this worker (:mod:`._task_fork`).

        The progress slot names the item (and its start, if timed) before the
        fork: a child that dies at any point dies in it, and the parent blames
        it. Each child reports its one item (``flush`` at its offset), so the
        batch's results arrive in order, as run_tracked's pieces do.
        """
        forker = self.forker
        assert forker is not None
        slot, base = self.slot, self.base
        if self.log is not None and len(items) > 1:
            self.log.reset(seq_base)  # nothing logged: each item is reported at once
        for i, item in enumerate(items):
            if timed:  # the start first: the parent reads the sequence number first
                slot[base + SLOT_START] = time.monotonic_ns()
            slot[base + SLOT_SEQ] = seq_base + i
            if item is SKIP:
                self.flush(batch_id, i, [None], [], 0)
                continue
            # Until the fork has its pid: a mother killed in between is blamed
            # itself, not the process of the item before.
            slot[base + SLOT_TASK_PID] = 0
            ended = forker.run(partial(self._run_in_child, batch_id, i, style, table, item),
                               _end_task_process, self._note_task_process)
            if ended is not None:
                self._follow(ended)

    def _note_task_process(self, pid: int) -> None:
        # For the parent, should this worker die: it reaps what that process sent.
        self.slot[self.base + SLOT_TASK_PID] = pid

    def _follow(self, ended: Ended) -> NoReturn:
        """A mother's child died before it reported: end as it ended. One that
        died in the initializer breaks the pool, as an initializer that raises."""
        if self.config.initializer is not None and not ended.initializer_done:
            error = ProcessCrashedError(
                "the initializer's", None, ended.exitcode,
                "a fork of this worker that ran the pool's initializer")
            self.send((INIT_FAILED, encode_error(error, None, RESULTS_CHANNEL)))
        end_like(ended.status)

    def _run_in_child(self, batch_id: int, offset: int, style: int, table: list[Any],
                      item: Any) -> None:
        """In the child of a mother: the initializer, the item, its report."""
        _ForkWatch.start()
        if self.config.initializer is not None:
            returned = self.initialize()  # if not, the parent was told why
            assert self.forker is not None
            self.forker.initializer_done()
            if not returned:
                raise SystemExit(1)  # the mother follows
        errors: list[tuple[int, bytes]] = []
        clock = time.monotonic_ns
        start = clock()
        try:
            if style == ONE:
                value = table[0](item)
            elif style == CALL:
                value = _call_item(table, item, errors, 0)
            else:
                value = table[0](*item)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            errors.append((0, _error_frame(exc)))
            value = None
        if _ForkWatch.forked:
            _ForkWatch.leave()
        self.flush(batch_id, offset, [value], errors, clock() - start)

    def run_one(self, batch_id: int, seq: int, table: list[Any],
                item: tuple[int, tuple[Any, ...], dict[str, Any]]) -> None:
        """Run a batch of one call (what ``submit()`` sends to an idle worker): the
        tracked path with only what one call needs, since its round trip is all overhead.

        What it keeps: ``run()`` sends here only one ``CALL`` item, untimed, not a
        SKIP, in a worker without task or memory limits; so of run_tracked's
        records it needs only the progress slot (no start time: untimed; no
        result log: no item finished before this one; no limit check: none is
        set). It writes the item's sequence number there before the call, runs
        the call as run_tracked does (``_call_item``), counts the task and
        reports it with ``flush``.
        """
        errors: list[tuple[int, bytes]] = []
        self.slot[self.base + SLOT_SEQ] = seq
        clock = time.monotonic_ns
        start = clock()
        try:
            value = _call_item(table, item, errors, 0)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            errors.append((0, _error_frame(exc)))
            value = None
        self.tasks_done += 1
        self.flush(batch_id, 0, [value], errors, clock() - start)

    def run_tracked(self, batch_id: int, seq_base: int, style: int, timed: bool,
                    table: list[Any], items: Any) -> None:
        """Run a batch item by item, recording each in the progress slot."""
        slot, base = self.slot, self.base
        values: list[Any] = []
        errors: list[tuple[int, bytes]] = []
        offset = 0
        clock = time.monotonic_ns
        last_flush = piece_start = clock()
        fn = table[0]
        limited = self.config.max_tasks is not None or self.config.max_memory is not None
        log = self.log if len(items) > 1 else None
        if log is not None:
            log.reset(seq_base)
        for i, item in enumerate(items):
            if timed:  # the start first: the parent reads the sequence number first
                slot[base + SLOT_START] = clock()
            slot[base + SLOT_SEQ] = seq_base + i
            try:
                if item is SKIP:
                    value = None
                elif style == ONE:
                    value = fn(item)
                elif style == CALL:
                    value = _call_item(table, item, errors, len(values))
                else:
                    value = fn(*item)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                errors.append((len(values), _error_frame(exc)))
                value = None
            values.append(value)
            if _ForkWatch.forked:
                _ForkWatch.leave()
            self.tasks_done += 1
            # Kept before the next item starts: a crash then loses no finished result.
            kept = True
            if log is not None:
                if errors and errors[-1][0] == len(values) - 1:
                    kept = log.append(ERROR, errors[-1][1])
                else:
                    try:
                        kind, data = log_value(value)
                    except PICKLING_FAILURES:  # sys.exit() in a __reduce__ included
                        kind, data = ERROR, None  # the DONE message's pickling reports it
                    kept = data is not None and log.append(kind, data)
            now = clock()
            if limited and self.over_limits():
                self.flush(batch_id, offset, values, errors, now - piece_start, i + 1)
                return
            if not kept or now - last_flush >= FLUSH_NS:
                self.flush(batch_id, offset, values, errors, now - piece_start)
                offset += len(values)
                values, errors = [], []
                last_flush = piece_start = now
                if log is not None:
                    log.reset(seq_base + i + 1)
        if values or offset == 0:
            self.flush(batch_id, offset, values, errors, clock() - piece_start)

    def over_limits(self) -> bool:
        """Whether this worker must leave after the item it ran (a task or memory limit)."""
        config = self.config
        over_tasks = config.max_tasks is not None and self.tasks_done >= config.max_tasks
        over_memory = False
        if config.max_memory is not None:
            # Mappings kept for the next large send hold pooled shared memory that
            # counts in this process's RSS: they are a cache, not the task's memory.
            # None kept while the cache's module is not loaded (nothing large sent yet):
            # not imported for this, so that a spawn worker's start skips the client's.
            write_cache = sys.modules.get("procesos._shm._write_cache")
            if write_cache is not None:
                write_cache.drop_all()
            over_memory = self.note_memory() > config.max_memory
        return over_tasks or over_memory


def _call_item(table: list[Any], item: tuple[int, tuple[Any, ...], dict[str, Any]],
               errors: list[tuple[int, bytes]], at: int) -> Any:
    """Call a ``CALL`` item, ``(index into table, args, kwargs)``: its value. A
    function that could not be unpickled here adds its error frame to *errors*
    at *at* (the value is None); raises what the call raised."""
    index, args, kwargs = item
    fn = table[index]
    if isinstance(fn, _FnError):
        errors.append((at, fn.frame))
        return None
    return fn(*args, **kwargs)


def _watch_memory(slot: memoryview, index: int, stop: threading.Event) -> None:
    statm = _open_statm()
    while not stop.wait(_MEMORY_WATCH_S):
        slot[index] = resident_bytes(statm)


def worker_main(channel: tuple[Connection, Connection], progress: Any, slot: int,
                config: WorkerConfig, log: Any = None) -> None:
    """Entry point of a worker process (the target of its ``Process``); *channel* is
    the pipe it reads from the parent and the one it writes to the parent; *log*
    the shared array of the result logs (:mod:`._results_log`)."""
    if config.threads is not None:
        limit_threads(config.threads)
    _ForkWatch.start()
    worker = _Worker(channel, progress, slot, config, log)
    if worker.forker is None and not worker.initialize():
        return
    worker.note_memory()
    worker.send((READY, os.getpid()))
    stop = threading.Event()
    if config.max_memory is not None:
        # Samples memory while a task runs, so that a worker killed for its memory is named so.
        threading.Thread(target=_watch_memory, args=(worker.slot, worker.base + SLOT_RSS, stop),
                         name="procesos-memory-watch", daemon=True).start()
    try:
        worker.serve()
    finally:
        stop.set()
    if worker.forker is not None:
        worker.forker.finish()
    _leave_despite_stray_threads()


#: How long a worker that was told to leave waits for threads its tasks started.
THREADS_GRACE_S = 1.0


def _leave_despite_stray_threads() -> None:
    """Leave now, even if threads that tasks started (not daemons) still run.

    The interpreter would wait for them at exit, and a worker that never
    exits would hold up the pool's shutdown (or, once retired, its
    replacement) for good. They get :data:`THREADS_GRACE_S` to end; then the
    worker exits without them, as ``terminate()`` would have ended it, after
    the exit handlers of ``multiprocessing`` (queue feeders) and a flush.
    """
    current = threading.current_thread()
    deadline = time.monotonic() + THREADS_GRACE_S
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    stray = [t.name for t in threading.enumerate()
             if t is not current and not t.daemon and t.is_alive()]
    if not stray:
        return
    sys.stderr.write(
        f"procesos: worker {os.getpid()} leaves the pool while threads started by its tasks "
        f"still run ({', '.join(stray)}); they end with it\n")
    run_mp_exit_function()
    _flush_and_exit()


def _end_task_process() -> NoReturn:
    """End a mother's child after its task: as a worker leaves (its threads get
    their grace, multiprocessing's exit handler flushes its queues), at once."""
    _leave_despite_stray_threads()
    run_mp_exit_function()
    _flush_and_exit()


def _flush_and_exit() -> NoReturn:
    """Exit at once (``os._exit``), after what ``sys.stdout`` and ``sys.stderr`` hold."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)
