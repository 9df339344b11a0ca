"""What a trace records of an engine's tasks (``Executor``, ``Pool``).

Per batch of tasks (one RUN message: one call, or a chunk of a map):

* on the thread that sent it, a *send* slice: pickling its arguments and
  writing them to the worker's pipe;
* on the worker's row, a *task* slice while its items ran (from the worker's
  own clock: ``time.monotonic_ns()`` is one clock for every process), then a
  *pickle* slice while their results were pickled; its details say how long
  the batch waited in the parent (from ``submit()`` or ``map()``) and at the
  worker, the bytes moved through the pipe and through shared memory, and
  what raised;
* an arrow (flow) from the send to the run;
* instants for a worker's death, a task's timeout and a retry.

A chunk of a map shows as one slice (``f x250``): timing each item would cost
more than the quick items themselves.
"""

from __future__ import annotations

import time
from typing import Any

from .._shm._transport import shared_bytes
from ._recorder import Recorder, Track, never_breaks_the_program

__all__ = ["arrived", "encoding", "fault", "ran", "sent"]


def _worker_track(recorder: Recorder, worker: Any) -> Track:
    pid = int(worker.pid or 0)
    track = Track(pid)
    recorder.names[track] = f"worker {worker.slot} (pid {pid})"  # over its process's name
    return track


def _describe(batch: Any, offset: int, count: int) -> str:
    job = getattr(batch, "job", None)
    if job is not None:
        first = batch.start + offset
        name = job.entry.name
        return f"{name} #{first}" if count == 1 else (
            f"{name} x{count} (#{first}-{first + count - 1})")
    if count == 1:
        return str(batch.label(offset))
    return f"{count} calls"


def _submitted(batch: Any, offset: int) -> int:
    job = getattr(batch, "job", None)
    if job is not None:
        return int(getattr(job, "traced_at", 0))
    calls = getattr(batch, "calls", None)
    if calls:
        return int(getattr(calls[offset], "traced_at", 0))
    return 0


@never_breaks_the_program
def encoding(recorder: Recorder, batch: Any) -> None:
    """*batch* is about to be pickled to be sent."""
    recorder.pending_sends[id(batch)] = time.monotonic_ns()


@never_breaks_the_program
def sent(recorder: Recorder, worker: Any, batch: Any, batch_id: int, payload: bytes) -> None:
    """*batch* was written to *worker*'s pipe (its arguments: *payload*)."""
    now = time.monotonic_ns()
    start = recorder.pending_sends.pop(id(batch), now)
    track = recorder.this_thread()
    nbytes, shared = len(payload), shared_bytes(payload)
    recorder.add_slice(track, f"send {_describe(batch, 0, batch.n)}", start, now, "send",
                       pipe_bytes=nbytes, shared_memory_bytes=shared)
    recorder.batches[(id(worker), batch_id)] = (track, start, now, nbytes, shared)


@never_breaks_the_program
def ran(recorder: Recorder, worker: Any, batch: Any, offset: int, count: int,
        errors: tuple[tuple[int, bytes], ...], busy_ns: int, ended_ns: int, pickle_ns: int,
        nbytes: int) -> None:
    """Items ``offset .. offset+count-1`` of *batch* ran on *worker* (a DONE message)."""
    track = _worker_track(recorder, worker)
    start = ended_ns - busy_ns
    details: dict[str, Any] = {
        "items": count, "result_pipe_bytes": nbytes,
        "result_shared_memory_bytes": recorder.shared_results.pop((batch.id, offset), 0),
        "outcome": "ok" if not errors else f"{len(errors)} raised"}
    send = recorder.batches.get((id(worker), batch.id))
    if send is not None and offset == 0:
        sender, sent_from, sent_at, arg_bytes, shared = send
        details["argument_pipe_bytes"] = arg_bytes
        details["argument_shared_memory_bytes"] = shared
        details["waited_at_worker_ms"] = round(max(0, start - sent_at) / 1e6, 3)
        recorder.add_flow("run", (sender, sent_from), (track, start))
    submitted = _submitted(batch, offset)
    if submitted:
        details["waited_in_parent_ms"] = round(
            max(0, (send[1] if send else start) - submitted) / 1e6, 3)
    if offset + count >= batch.n:
        recorder.batches.pop((id(worker), batch.id), None)
    recorder.add_slice(track, _describe(batch, offset, count), start, ended_ns, "task",
                       **details)
    if pickle_ns:
        recorder.add_slice(track, "pickle results", ended_ns, ended_ns + pickle_ns, "pickle")


@never_breaks_the_program
def arrived(recorder: Recorder, batch_id: int, offset: int, payload: Any) -> None:
    """The results of items from *offset* of batch *batch_id* arrived in *payload*."""
    shared = shared_bytes(payload)  # 0 for a plain pickle
    if shared:
        recorder.shared_results[(batch_id, offset)] = shared


@never_breaks_the_program
def fault(recorder: Recorder, worker: Any, what: str, **details: Any) -> None:
    """A worker died, a task timed out, or one will run again (*what* says which)."""
    recorder.add_instant(_worker_track(recorder, worker), what, time.monotonic_ns(), "fault",
                         **details)
