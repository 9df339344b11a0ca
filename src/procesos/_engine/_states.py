"""The engine's states and message kinds, in one place: the engine, its handles
on workers and the worker processes all take them from here.

This module imports nothing, so that a worker loads it for free. What each
message carries is :mod:`._messages`'s (the wire format); who changes each
state, and how, is written where it changes: the engine's in :mod:`._books`,
a worker handle's in :mod:`._workers`.

The engine (``Books.state``)::

    RUNNING --shutdown()--> CLOSING --all work done--> CLOSED
       |  \\--terminate()--> TERMINATING --workers dead--> CLOSED
       \\--initializer fails / workers cannot start--> BROKEN --> CLOSED

A worker handle's life (``WorkerHandle.life``), only forward::

    SERVING --it says RETIRE--> RETIRING
    SERVING or RETIRING --asked to stop--> STOPPING
    any --closed (or disowned in a forked child)--> DEAD

Who reads a worker's result pipe (``WorkerHandle.reader_role``)::

    DISPATCHER --lent to a caller--> WAITING --the caller comes--> READING
    WAITING --taken back--> DISPATCHER;  READING --given back--> DISPATCHER
"""

from __future__ import annotations

__all__ = [
    "BROKEN", "CALL", "CLOSED", "CLOSING", "DEAD", "DISPATCHER", "DONE", "INIT_FAILED", "ONE",
    "READING", "READY", "RETIRE", "RETIRING", "RUN", "RUNNING", "SERVING", "SLOT_RSS", "SLOT_SEQ",
    "SLOT_START", "SLOT_TASK_PID", "SLOT_WIDTH", "STAR", "STOP", "STOPPING", "TERMINATING",
    "UNREADABLE", "WAITING",
]

# Message kinds: the first element of every header (parent -> worker: RUN, STOP).
# A header is a plain tuple (each one's fields: _messages.py), unpacked into
# names where it is read. Not a NamedTuple: headers are pickled, and a DONE
# header as a NamedTuple took 1.7 + 1.3 µs to pickle and load against 0.32 +
# 0.24 µs as a tuple (timeit, 2026-12-07): about 5 µs more on a round trip of
# 17 µs (a RUN and a DONE).
RUN, STOP, READY, INIT_FAILED, DONE, UNREADABLE, RETIRE = range(7)
# How a RUN batch's items are called: fn(item), fn(*item), or each its own call.
ONE, STAR, CALL = range(3)
# A worker's progress slot in shared memory: its width in int64, and what each holds.
SLOT_WIDTH, SLOT_SEQ, SLOT_START, SLOT_RSS, SLOT_TASK_PID = 4, 0, 1, 2, 3

# The engine's states.
RUNNING, CLOSING, TERMINATING, BROKEN, CLOSED = (
    "running", "closing", "terminating", "broken", "closed")
# A worker handle's life, in its order (a worker never goes back).
SERVING, RETIRING, STOPPING, DEAD = range(4)
# Who reads a worker's result pipe.
DISPATCHER, WAITING, READING = "dispatcher", "waiting", "reading"
