"""The parent's handle on one worker: its process, pipes, outbox and batches in flight.

Writes never block: what the pipe does not take now waits in the outbox
until the dispatcher sees the pipe writable, so the parent can never
deadlock with a worker that is itself writing results.

Who reads a worker's result pipe (``WorkerHandle.reader_role``, changed under the
engine's lock): the dispatcher (``DISPATCHER``), or, for a single call sent
to an idle worker, the caller waiting for its result (``WAITING`` until the
caller comes for it, then ``READING``). The dispatcher takes back a
``WAITING`` worker whenever it looks at its books, and a ``READING`` one
when the caller gives it back; never both read at once.
"""

from __future__ import annotations

import fcntl
import os
import select
from collections import OrderedDict, deque
from multiprocessing import Pipe
from typing import Any

from .._proc._context import ProcesosContext
from .._serialization import copies_deferred, reap, send_then_copy
from .._trace import _state as _trace_state
from ._jobs import Batch
from ._messages import (
    CALL,
    DONE,
    RESULTS_CHANNEL,
    RUN,
    STOP,
    FrameReader,
    discard_shared,
    frame,
    is_shared,
    write_some,
)
from ._worker import FN_CACHE_SIZE, WorkerConfig, worker_main

__all__ = ["DISPATCHER", "POLL_IN", "READING", "WAITING", "WorkerHandle"]

DISPATCHER, WAITING, READING = "dispatcher", "waiting", "reading"
POLL_IN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
# Larger than the default 64 KiB, so that a batch of small items goes in one
# write; not much larger: Linux counts pipe capacity against a per-user limit
# (fs.pipe-user-pages-soft, 64 MiB), past which every new pipe of that user,
# in any program, gets 8 KiB. 256 KiB x 2 pipes x 64 workers stays under it.
PIPE_SIZE = 1 << 18


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
        self.reader = FrameReader(self.fd)
        self.outbox: deque[memoryview] = deque()
        self.outstanding: OrderedDict[int, Batch] = OrderedDict()  # in the order sent
        self.known_fns: OrderedDict[int, None] = OrderedDict()
        self.budget = budget  # tasks it may still be sent (max_tasks_per_worker)
        self.ready = False
        self.retiring = False
        self.stopping = False
        self.dead = False
        self.timed_out_seq: int | None = None
        self.stopped_for_interrupt = False  # killed because its map was interrupted
        self.watch: tuple[int, float] | None = None  # (item it runs, since when)
        self.reader_role = DISPATCHER
        self.direct: object = None  # the future whose caller may read the result itself
        # What that caller waits on: an answer, or the worker's death.
        self.poller = select.poll()
        for fd in (self.fd, self.sentinel):
            self.poller.register(fd, POLL_IN)

    def accepts_work(self) -> bool:
        return (not (self.retiring or self.stopping or self.dead) and self.budget != 0
                and self.reader_role == DISPATCHER)

    def ask_to_stop(self) -> None:
        """Ask the worker to exit once it has read what was sent before."""
        self.stopping = True
        self.write(frame((STOP,)))

    def idle(self) -> bool:
        """Ready, with nothing sent and nothing to send: nothing can arrive from it."""
        return self.ready and not self.outstanding and not self.outbox

    def send_batch(self, batch: Batch, batch_id: int, seq_base: int, timed: bool) -> None:
        """Send *batch* (encoding it now); raises what pickling the function raised.

        Large arguments are copied into shared memory after the frame is written:
        the worker maps that memory meanwhile (``_transport.copies_deferred``).
        """
        recorder = _trace_state.recorder
        if recorder is not None:
            from .._trace import _tasks

            _tasks.encoding(recorder, batch)
        with copies_deferred() as pending:
            style, payload = batch.encode()
        send_then_copy(lambda: self._send_encoded(batch, batch_id, seq_base, timed, style,
                                                  payload), pending)

    def _send_encoded(self, batch: Batch, batch_id: int, seq_base: int, timed: bool,
                      style: int, payload: bytes) -> None:
        batch.frame = payload if is_shared(payload) else None
        fns: list[tuple[int, bytes | None]] = []
        for entry in batch.entries():
            if entry.fn_id in self.known_fns:
                self.known_fns.move_to_end(entry.fn_id)
                fns.append((entry.fn_id, None))
            else:
                self.known_fns[entry.fn_id] = None
                fns.append((entry.fn_id, entry.data))
                while len(self.known_fns) > FN_CACHE_SIZE:
                    self.known_fns.popitem(last=False)
        tracked = batch.tracked or timed or bool(batch.skips)
        self._post(batch, batch_id, seq_base, (style, tracked, timed, tuple(fns)), payload)

    def send_known_call(self, batch: Batch, batch_id: int, seq: int, payload: bytes) -> None:
        """``send_batch`` for one call whose function this worker has and whose
        *payload* is plain (:func:`~._messages.plain_call`): nothing to encode or free."""
        fn_id = batch.entries()[0].fn_id
        self.known_fns.move_to_end(fn_id)
        self._post(batch, batch_id, seq, (CALL, True, False, ((fn_id, None),)), payload)

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
        self.outstanding[batch_id] = batch
        if self.budget is not None:
            self.budget -= batch.n

    def write(self, parts: list[bytes]) -> None:
        """Write *parts* now, queueing what the pipe does not take."""
        if not self.outbox and not self.dead:
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
        if self.outbox and not self.dead:
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
        self.dead = True
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
