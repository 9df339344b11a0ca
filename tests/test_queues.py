"""procesos' ``Queue`` and ``JoinableQueue``: their own feeder thread.

The feeder writes every message waiting in its buffer with one system call;
these tests check that what arrives is what was put, in order, whatever mix of
small, large and shared-memory messages, and that a message the feeder cannot
send is reported as the standard library reports it.
"""

from __future__ import annotations

import multiprocessing
import os
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import procesos
from conftest import run_script
from procesos._serialization import is_small_immutable
from procesos._sharing import _queues

# Small tuples (batched), text longer than one batch (written alone), a list
# (pickled by put), bytes below and above the shared-memory threshold.
MESSAGES: list[Any] = [
    (1, "a", 2.5),
    "x" * 100_000,
    [1, 2, {"three": 3}],
    b"y" * 20_000,
    None,
    np.arange(300_000, dtype=np.float64),  # 2.4 MB: through shared memory
    *[(i, str(i)) for i in range(500)],
    b"z" * (2 << 20),
    "s" * (2 << 20),  # text too: through shared memory
]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    return bool(type(a) is type(b) and a == b)


def put_all(queue: Any, messages: list[Any]) -> None:
    for message in messages:
        queue.put(message)


@pytest.mark.parametrize("kind", ["Queue", "JoinableQueue"])
def test_a_mix_of_messages_arrives_whole_and_in_order(kind: str) -> None:
    queue = getattr(procesos, kind)()
    p = procesos.Process(target=put_all, args=(queue, MESSAGES * 3))
    p.start()
    received = [queue.get(timeout=30) for _ in range(3 * len(MESSAGES))]
    p.join(30)
    assert p.exitcode == 0
    assert all(same(a, b) for a, b in zip(received, MESSAGES * 3, strict=True))
    p.close()
    queue.close()
    queue.join_thread()


def test_two_producers_never_interleave_their_batches() -> None:
    queue = procesos.Queue()
    first = [("first", i, "." * (i % 50)) for i in range(3000)]
    second = [("second", i, "." * (i % 70)) for i in range(3000)]
    producers = [procesos.Process(target=put_all, args=(queue, messages))
                 for messages in (first, second)]
    for p in producers:
        p.start()
    received = [queue.get(timeout=30) for _ in range(6000)]
    for p in producers:
        p.join(30)
        assert p.exitcode == 0
        p.close()
    # Each producer's messages arrive whole and in its own order.
    assert [m for m in received if m[0] == "first"] == first
    assert [m for m in received if m[0] == "second"] == second
    queue.close()
    queue.join_thread()


def test_a_tuple_holding_a_mutable_object_is_pickled_at_put() -> None:
    queue = procesos.Queue()
    inner = [1, 2]
    message = ("tuple", inner)
    assert not is_small_immutable(message)
    queue.put(message)
    inner.append(3)  # after put: not what is received
    assert queue.get(timeout=30) == ("tuple", [1, 2])
    queue.close()
    queue.join_thread()


@pytest.mark.parametrize("message, plain", [
    ((1, 2.5, None, True, 3j, "text", b"bytes"), True),
    (tuple(range(32)), True),
    ("t" * 100, True),
    (b"b" * 100, True),
    # Long text and bytes go through procesos' pickler (shared memory from 1 MiB).
    ("t" * (1 << 14), False),
    (b"b" * (1 << 14), False),
    ((1, "t" * (2 << 20)), False),
    (tuple(range(33)), False),
    ((1, [2]), False),
    (bytearray(b"mutable"), False),
])
def test_which_messages_the_feeder_pickles(message: Any, plain: bool) -> None:
    assert is_small_immutable(message) is plain


class ReportingQueue(_queues.Queue):
    """Records what the feeder could not send, instead of printing it."""

    def __init__(self) -> None:
        super().__init__(ctx=procesos.get_context())
        self.lost: list[Any] = []
        self.all_lost = threading.Event()

    def _on_queue_feeder_error(self, exc: BaseException, obj: Any) -> None:
        self.lost.append((type(exc), obj))
        if len(self.lost) == 4:
            self.all_lost.set()


def test_messages_the_feeder_cannot_write_are_each_reported() -> None:
    queue = ReportingQueue()
    queue._reader.close()  # nobody can read: the write fails with EPIPE
    sent = [(1, "one"), "two", ["three"], "four" * 20_000]  # the last written alone
    with queue._wlock:  # the feeder waits: the later messages fail as one batch
        for message in sent:
            queue.put(message)
    assert queue.all_lost.wait(30)
    assert [kind for kind, _ in queue.lost] == [BrokenPipeError] * 4
    # What put() handed the feeder: the object, or its pickle in a frame.
    reported = [_queues.loads(obj.data) if isinstance(obj, _queues._Frame) else obj
                for _, obj in queue.lost]
    assert reported == sent
    # Each lost message counts as taken off the queue, as in the standard library.
    assert queue._sem.get_value() == queue._maxsize
    queue.close()
    queue.join_thread()


def pipe_holding(data: bytes) -> int:
    """The read end of a pipe that holds *data* and whose writer is closed."""
    reader, writer = os.pipe()
    os.write(writer, data)
    os.close(writer)
    return reader


@pytest.mark.parametrize("one_byte_reads", [False, True])
def test_messages_are_read_as_connection_writes_them(
    one_byte_reads: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if one_byte_reads:  # as if every read were cut short
        monkeypatch.setattr(_queues, "_read", lambda fd, n: os.read(fd, min(n, 1)))
    reader, writer = multiprocessing.Pipe(duplex=False)
    payloads = [b"", b"small", b"x" * 40_000]  # all fit in the pipe
    for payload in payloads:
        writer.send_bytes(payload)
    assert [_queues._recv_message(reader.fileno()) for _ in payloads] == payloads
    # The header for messages above 2 GiB: -1, then the size in 8 bytes.
    fd = pipe_holding(struct.pack("!i", -1) + struct.pack("!Q", 5) + b"hello")
    assert _queues._recv_message(fd) == b"hello"
    os.close(fd)
    reader.close()
    writer.close()


def test_end_of_file_is_reported_as_connection_reports_it() -> None:
    fd = pipe_holding(b"")
    with pytest.raises(EOFError):
        _queues._recv_message(fd)
    os.close(fd)
    fd = pipe_holding(struct.pack("!i", 10) + b"short")
    with pytest.raises(OSError, match="end of file during message"):
        _queues._recv_message(fd)
    os.close(fd)


def test_a_queue_closed_with_messages_it_cannot_write_still_ends_its_thread() -> None:
    queue = ReportingQueue()
    queue._reader.close()
    with queue._wlock:
        queue.put("first")
        queue.put("second")
        queue.close()  # the feeder meets the end after messages it cannot write
    queue.join_thread()  # returns: the feeder thread ended
    assert [obj for _, obj in queue.lost] == ["first", "second"]


def send_through(conn: Any, message: str) -> str:
    conn.send(message)
    return "sent"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make_pipe", [procesos.Pipe, multiprocessing.Pipe],
                         ids=["procesos.Pipe", "multiprocessing.Pipe"])
@pytest.mark.parametrize("kind", ["Executor", "Pool"])
@pytest.mark.parametrize("method", ["zygote", "fork"])
def test_a_pipe_end_given_to_a_task_is_a_working_connection_in_the_worker(
        make_pipe: Any, kind: str, method: str) -> None:
    # As with the standard library's pools. A Connection went as its bare
    # descriptor number: the task wrote to whatever descriptor had it there.
    reader, writer = make_pipe()
    if kind == "Executor":
        with procesos.Executor(1, context=method) as ex:
            assert ex.submit(send_through, writer, "hello").result(timeout=30) == "sent"
    else:
        with procesos.Pool(1, context=method) as pool:
            assert pool.apply(send_through, (writer, "hello")) == "sent"
    assert reader.poll(30) and reader.recv() == "hello"
    reader.close()
    writer.close()


LATE_CONNECTION_SCRIPT = """
import sys

import procesos

assert "multiprocessing.connection" not in sys.modules, "loaded by import procesos"
from multiprocessing import Pipe  # loads it now, after procesos' pickler


def send_through(conn, message):
    conn.send(message)
    return "sent"


reader, writer = Pipe()
with procesos.Executor(1) as ex:
    print(ex.submit(send_through, writer, "hello").result(timeout=30))
print(reader.recv() if reader.poll(30) else "nothing arrived")
"""


@pytest.mark.timeout(90)
def test_a_connection_made_after_import_procesos_still_travels_as_a_connection(
        tmp_path: Any) -> None:
    # procesos registers Connection's reducer for its in-band pickling when
    # multiprocessing.connection is loaded, no longer by importing it itself:
    # a connection made only then must not go as its bare descriptor number.
    from conftest import run_script

    result = run_script(LATE_CONNECTION_SCRIPT, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["sent", "hello"]


SCRIPT_CLASSES_SCRIPT = """
import dataclasses
import enum

import procesos

FACTOR = 2


class Cmd(enum.Enum):
    WORK = "work"
    STOP = "stop"


@dataclasses.dataclass
class Point:
    x: int

    def scaled(self):
        return self.x * FACTOR


class Refused(Exception):
    pass


def worker(inbox, outbox, pipe):
    while inbox.get() is not Cmd.STOP:  # the parent's STOP ends the loop
        outbox.put(Point(5))
    outbox.put(Refused("no"))
    pipe.send(Cmd.WORK)


ctx = procesos.get_context()  # PROCESOS_START_METHOD
inbox, outbox = ctx.Queue(), ctx.Queue()
here, there = ctx.Pipe()
original = Point.scaled
p = ctx.Process(target=worker, args=(inbox, outbox, there))
p.start()
inbox.put(Cmd.WORK)
point = outbox.get(timeout=60)
inbox.put(Cmd.STOP)
error = outbox.get(timeout=60)
p.join(60)
FACTOR = 3
try:
    raise error
except Refused:
    caught = True
print(type(point) is Point, point == Point(5), caught, here.recv() is Cmd.WORK, p.exitcode)
print(Point.scaled is original, Point(1).scaled())
"""


@pytest.mark.parametrize("method", ["zygote", "fork", "spawn"])
def test_objects_of_the_scripts_classes_arrive_as_the_receivers_own(
        method: str, tmp_path: Path) -> None:
    # Under fork they arrived as instances of copies of the classes (the
    # worker's loop never saw STOP); under zygote and spawn, receiving one
    # replaced the methods of the parent's own class with copies whose
    # globals were a snapshot (Point(1).scaled() gave 2 after FACTOR = 3).
    done = run_script(SCRIPT_CLASSES_SCRIPT, tmp_path, method, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True True True True 0", "True 3"]
