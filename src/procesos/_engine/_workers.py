"""The parent's handle on one worker: its process, pipes, outbox and batches in flight.

Writes never block: what the pipe does not take now waits in the outbox
until the dispatcher sees the pipe writable, so the parent can never
deadlock with a worker that is itself writing results.

A handle keeps its own state; the engine changes it only through the
methods below, under the engine's lock (the states are :mod:`._states`'s).
Four things:

* its life (``WorkerHandle.life``), which only moves forward::

      SERVING --it says RETIRE: retire()--> RETIRING
      SERVING or RETIRING --ask_to_stop()--> STOPPING
      any --close() (or disown() in a forked child)--> DEAD

  and, beside it, whether it has said READY (``ready``: ``mark_ready()``),
  which a worker asked to stop before it was up may still say;
* who reads its result pipe (``WorkerHandle.reader_role``): the dispatcher
  (``DISPATCHER``), or, for a single call sent to an idle worker, the caller
  waiting for its result: ``lend_to(future)`` makes it ``WAITING`` until the
  caller comes for it, ``caller_reads(future)`` makes it ``READING``. The
  dispatcher takes back a ``WAITING`` worker whenever it looks at its books
  (``take_back()``), and a ``READING`` one only when the caller gives it
  back (``give_back()``); never both read at once;
* why the parent killed it, if it did (``kill_for_timeout(seq)``,
  ``kill_for_interrupt()``): its death is then not a crash of its own;
* the batches in flight (``WorkerHandle.outstanding``, in the order sent):
  a batch joins when it is sent (``send_batch``, ``send_known_call``) and
  leaves when its last item has reported (``finished(batch)``), when its
  items could not be unpickled (``drop_unreadable(batch_id)``), or with all
  the others when the worker will run none of them (``take_all_lost()``).
"""

from __future__ import annotations

import fcntl
import os
import select
import time
from collections import OrderedDict, deque
from multiprocessing import Pipe
from typing import TYPE_CHECKING, Any

from .._proc._context import ProcesosContext
from .._serialization import reap
from .._trace import _state as _trace_state
from ._jobs import Batch, FnEntry
from ._messages import (
    RESULTS_CHANNEL,
    FrameReader,
    discard_shared,
    frame,
    write_some,
)
from ._states import (
    CALL,
    DEAD,
    DISPATCHER,
    DONE,
    READING,
    RETIRING,
    RUN,
    SERVING,
    STOP,
    STOPPING,
    WAITING,
)
from ._worker import FN_CACHE_SIZE, WorkerConfig, worker_main

if TYPE_CHECKING:
    from .._output._pipes import ChildOutput

__all__ = ["POLL_IN", "WorkerHandle"]

POLL_IN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
# Larger than the default 64 KiB, so that a batch of small items goes in one
# write; not much larger: Linux counts pipe capacity against a per-user limit
# (fs.pipe-user-pages-soft, 64 MiB), past which every new pipe of that user,
# in any program, gets 8 KiB. 256 KiB x 2 pipes x 64 workers stays under it.
PIPE_SIZE = 1 << 18
#: The longest a result waits for the lines its worker printed before it.
OUTPUT_SYNC_S = 1.0


def _enlarge(fd: int) -> None:
    """Let a pipe hold a whole batch of small items (Linux; else its default size)."""
    setter = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setter is not None:
        try:
            fcntl.fcntl(fd, setter, PIPE_SIZE)
        except OSError:
            pass


class WorkerHandle:
    """One running worker, as the dispatcher sees it."""

    def __init__(self, ctx: ProcesosContext, slot: int, progress: Any, config: WorkerConfig,
                 budget: int | None, logs: Any = None) -> None:
        # One pipe each way: on Linux a pipe's read and write cost a fraction of a
        # socket's, whose every read also wakes the peer blocked on the same socket.
        from_worker, to_parent = Pipe(duplex=False)
        from_parent, to_worker = Pipe(duplex=False)
        self.process = ctx.Process(
            target=worker_main, args=((from_parent, to_parent), progress, slot, config, logs),
            name=f"procesos-worker-{slot}", daemon=False,
        )
        try:
            self.process.start()
        except BaseException:
            from_worker.close()
            to_worker.close()
            raise
        finally:
            from_parent.close()
            to_parent.close()
        self.slot = slot
        self.conns = (from_worker, to_worker)
        self.fd = from_worker.fileno()  # read (results)
        self.out_fd = to_worker.fileno()  # written (batches), never blocking: see write()
        _enlarge(self.fd)
        _enlarge(self.out_fd)
        os.set_blocking(self.fd, False)
        os.set_blocking(self.out_fd, False)
        self.sentinel: int = self.process.sentinel
        self.pid: int = self.process.pid  # type: ignore[assignment,unused-ignore]
        # Its relayed stdout and stderr (None when inherited): what it printed
        # before a result is delivered before that result (sync_output).
        self.output: ChildOutput | None = getattr(
            getattr(self.process, "_popen", None), "output", None)
        self.reader = FrameReader(self.fd)
        self.outbox: deque[memoryview] = deque()
        self.outstanding: OrderedDict[int, Batch] = OrderedDict()  # in the order sent
        self.known_fns: OrderedDict[int, None] = OrderedDict()
        # Its state: read through the properties below, changed by the methods.
        self._budget = budget  # tasks it may still be sent (max_tasks_per_worker)
        self._life = SERVING
        self._ready = False
        # Since when its first batch in flight has been its next work (monotonic ns;
        # not before it is ready).
        self.front_since = 0
        self._timed_out_seq: int | None = None
        self._stopped_for_interrupt = False
        self._watch: tuple[int, float] | None = None  # (item it runs, since when)
        self._reader_role = DISPATCHER
        self._direct: object = None  # the future whose caller may read the result itself
        # What that caller waits on: an answer, or the worker's death.
        self.poller = select.poll()
        for fd in (self.fd, self.sentinel):
            self.poller.register(fd, POLL_IN)

    # -- its state, read ------------------------------------------------------------
    @property
    def life(self) -> int:
        """``SERVING``, ``RETIRING``, ``STOPPING`` or ``DEAD``."""
        return self._life

    @property
    def ready(self) -> bool:
        """It has said READY (its initializer ran)."""
        return self._ready

    @property
    def retiring(self) -> bool:
        """It said RETIRE (a task or memory limit) and has not been asked to stop."""
        return self._life == RETIRING

    @property
    def stopping(self) -> bool:
        """It was asked to stop, and its handle is not closed yet."""
        return self._life == STOPPING

    @property
    def dead(self) -> bool:
        """Its handle is closed, or it is not this process's (``disown()``)."""
        return self._life == DEAD

    @property
    def budget(self) -> int | None:
        """How many tasks it may still be sent (``max_tasks_per_worker``; None: no limit)."""
        return self._budget

    @property
    def reader_role(self) -> str:
        """Who reads its result pipe: ``DISPATCHER``, ``WAITING`` or ``READING``."""
        return self._reader_role

    @property
    def timed_out_seq(self) -> int | None:
        """The sequence number of the item it was killed for overrunning, if it was."""
        return self._timed_out_seq

    @property
    def stopped_for_interrupt(self) -> bool:
        """It was killed because the map whose item it ran was interrupted."""
        return self._stopped_for_interrupt

    def accepts_work(self) -> bool:
        return (self._life == SERVING and self._budget != 0
                and self._reader_role == DISPATCHER)

    def idle(self) -> bool:
        """Ready, with nothing sent and nothing to send: nothing can arrive from it."""
        return self._ready and not self.outstanding and not self.outbox

    # -- its life ----------------------------------------------------------------------
    def mark_ready(self) -> None:
        """It said READY: a batch sent while it started (its initializer ran) is
        its next work from now on, not from when it was sent."""
        self._ready = True
        self.front_since = time.monotonic_ns()

    def retire(self) -> None:
        """It said RETIRE: it takes no more work (unless it was asked to stop already)."""
        if self._life == SERVING:
            self._life = RETIRING

    def ask_to_stop(self) -> None:
        """Ask the worker to exit once it has read what was sent before."""
        if self._life < STOPPING:
            self._life = STOPPING
        self.write(frame((STOP,)))

    def disown(self) -> None:
        """In a child made by ``os.fork()``: the process and pipes are the parent's;
        nothing may be written to them or read from them here."""
        self._life = DEAD

    # -- why the parent killed it ------------------------------------------------------
    def kill(self) -> None:
        """Kill its process (its sentinel then says so to the dispatcher)."""
        self.process.kill()

    def kill_for_timeout(self, seq: int) -> None:
        """Kill it: item *seq* ran past its timeout (which then fails with
        :class:`TaskTimeoutError`). Once: later calls do nothing."""
        if self._timed_out_seq is None:
            self._timed_out_seq = seq
            self.process.kill()

    def kill_for_interrupt(self) -> None:
        """Kill it: the map whose item it runs was interrupted (its death is no crash)."""
        self._stopped_for_interrupt = True
        self.process.kill()

    def time_on_item(self, seq: int, now: float) -> float:
        """How long it has been on item *seq*, as seen by the calls of this method
        (0 the first time it is seen on *seq*)."""
        if self._watch is None or self._watch[0] != seq:
            self._watch = (seq, now)
            return 0.0
        return now - self._watch[1]

    def forget_item(self) -> None:
        """It runs nothing worth timing (see ``time_on_item``)."""
        self._watch = None

    # -- who reads its result pipe -------------------------------------------------------
    def lend_to(self, future: object) -> None:
        """A call of *future* was just sent to it: the caller may read the answer
        (``WAITING``); the dispatcher stops watching its pipe."""
        assert self._reader_role == DISPATCHER
        self._reader_role = WAITING
        self._direct = future

    def caller_reads(self, future: object) -> bool:
        """*future*'s caller comes to read: whether the worker is still lent to it
        (then ``READING``: only that caller reads, until ``give_back()``)."""
        if self._direct is not future or self._reader_role != WAITING:
            return False
        self._reader_role = READING
        return True

    def give_back(self) -> None:
        """The reading caller is done with it: the dispatcher reads again."""
        self._reader_role = DISPATCHER
        self._direct = None

    def take_back(self) -> bool:
        """The dispatcher takes it back unless a caller reads it now; whether it was
        lent to a caller that had not come (``WAITING``)."""
        role = self._reader_role
        if role == READING:
            return False
        self._reader_role = DISPATCHER
        self._direct = None
        return role == WAITING

    # -- the batches in flight ------------------------------------------------------------
    def finished(self, batch: Batch) -> None:
        """The last item of *batch* has reported: it is no longer in flight."""
        del self.outstanding[batch.id]
        self.front_since = time.monotonic_ns()  # the next one's turn, if any

    def drop_unreadable(self, batch_id: int) -> Batch | None:
        """The worker could not unpickle the items of *batch_id* (none ran): the batch,
        no longer in flight, with its shared memory freed; None if it was not in flight."""
        batch = self.outstanding.pop(batch_id, None)
        if batch is not None:
            self.front_since = time.monotonic_ns()
            batch.lost()
            if self._budget is not None:
                self._budget += batch.n  # none of them ran: the worker still takes as many
        return batch

    def take_all_lost(self) -> list[Batch]:
        """The worker will run no more of what it holds (it died, or retires): every
        batch in flight, in the order sent, none in flight any more, the shared
        memory of each freed (it will never be read)."""
        batches = list(self.outstanding.values())
        self.outstanding.clear()
        for batch in batches:
            batch.lost()
        return batches

    def send_batch(self, batch: Batch, batch_id: int, seq_base: int, timed: bool) -> None:
        """Send *batch* (encoding it now); raises what pickling the function raised.

        Large arguments are copied into shared memory after the frame is written:
        the worker maps that memory meanwhile (``_transport.Frame.send``). A frame
        with shared memory stays the batch's until the worker has read it
        (``Batch.lost``).
        """
        recorder = _trace_state.recorder
        if recorder is not None:
            from .._trace import _tasks

            _tasks.encoding(recorder, batch)
        style, payload = batch.encode()
        if isinstance(payload, bytes):
            batch.frame = None
            self._send_encoded(batch, batch_id, seq_base, timed, style, payload)
            return
        with payload:
            batch.frame = payload.hand_over() if payload.shared else None
            payload.send(lambda data: self._send_encoded(batch, batch_id, seq_base, timed,
                                                         style, data))

    def _send_encoded(self, batch: Batch, batch_id: int, seq_base: int, timed: bool,
                      style: int, payload: bytes) -> None:
        fns = tuple([self._mirror(entry) for entry in batch.entries()])
        tracked = batch.tracked or timed or bool(batch.skips)
        self._post(batch, batch_id, seq_base, (style, tracked, timed, fns), payload)

    def send_known_call(self, batch: Batch, batch_id: int, seq: int, payload: bytes) -> None:
        """``send_batch`` for a batch of one call, untimed, whose function this worker
        has and whose *payload* is plain (:func:`~._messages.plain_call`).

        What it keeps: the same books as ``send_batch``, through the same helpers
        (``_mirror`` for the function cache, ``_post`` for the frame, the batch in
        flight and the budget); it only skips what such a call cannot need:
        encoding (the payload is made), a frame of shared memory to own
        (``batch.frame`` stays None) and the choice of tracking (a call is tracked).
        """
        fns = (self._mirror(batch.entries()[0]),)
        self._post(batch, batch_id, seq, (CALL, True, False, fns), payload)

    def _mirror(self, entry: FnEntry) -> tuple[int, bytes | None]:
        """The function-cache update that sends *entry* (``(fn_id, pickled function
        or None)``), applied to this side's copy of the worker's cache, which the
        worker applies in the same order."""
        known = self.known_fns
        fn_id = entry.fn_id
        if fn_id in known:
            known.move_to_end(fn_id)
            return fn_id, None
        known[fn_id] = None
        while len(known) > FN_CACHE_SIZE:
            known.popitem(last=False)
        return fn_id, entry.data

    def _post(self, batch: Batch, batch_id: int, seq_base: int, how: tuple[Any, ...],
              payload: bytes) -> None:
        """Write the RUN frame of *batch* (*how*: the header after its ids) and keep
        the books of a batch sent."""
        batch.id, batch.seq_base, batch.reported = batch_id, seq_base, 0
        self.write(frame((RUN, batch_id, seq_base, *how), payload))
        recorder = _trace_state.recorder
        if recorder is not None:
            from .._trace import _tasks

            _tasks.sent(recorder, self, batch, batch_id, payload)
        if not self.outstanding:
            self.front_since = time.monotonic_ns()
        self.outstanding[batch_id] = batch
        if self._budget is not None:
            self._budget -= batch.n

    def sync_output(self) -> None:
        """Before its results are handed on: deliver what it printed so far (the
        lines a task printed come before what the caller prints of its result).
        At most :data:`OUTPUT_SYNC_S`: output stuck behind a stream nobody reads
        must not hold results back for good."""
        if self.output is not None:
            self.output.deliver_before(OUTPUT_SYNC_S)

    def write(self, parts: list[bytes]) -> None:
        """Write *parts* now, queueing what the pipe does not take."""
        if not self.outbox and self._life != DEAD:
            try:
                written = os.writev(self.out_fd, parts)
            except BlockingIOError:
                written = 0
            except OSError:
                return  # the worker died; its sentinel will say so
            for part in parts:
                if written >= len(part):
                    written -= len(part)
                    continue
                self.outbox.append(memoryview(part)[written:])
                written = 0
            return
        self.outbox.extend(memoryview(p) for p in parts if p)
        self.flush()

    def flush(self) -> None:
        if self.outbox and self._life != DEAD:
            try:
                write_some(self.out_fd, self.outbox)
            except OSError:
                self.outbox.clear()  # the worker died; its sentinel will say so

    def discard_unread(self) -> None:
        """Nobody will load what the worker sent and the parent has not read: free the
        shared memory of its results, and of the batches it never read."""
        try:
            frames, _ = self.reader.read_available()
        except OSError:
            frames = []
        for header, payload in frames:
            if header[0] == DONE:
                discard_shared(payload)
        for batch in self.outstanding.values():
            batch.lost()

    def close(self) -> None:
        """Release the process and the pipes (the worker has ended, and what it
        sent has been read: the results it made and never sent go back)."""
        self._life = DEAD
        self.outbox.clear()
        for conn in self.conns:
            conn.close()
        pid = self.process.pid
        try:
            self.process.close()
        except ValueError:
            pass
        if pid is not None:
            reap(pid, RESULTS_CHANNEL)
