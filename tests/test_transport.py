"""Data without copies: what crosses a process boundary travels through shared memory."""

from __future__ import annotations

import gc
import os
import pickle
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

import procesos
from conftest import run_script
from procesos._serialization import discard, dumps, dumps_fast, dumps_frame, get_threshold, loads
from procesos._shm import ShmError, tracker_stats
from shm_helpers import (  # noqa: F401  (fixtures)
    dev_shm_unchanged_by_module,
    live_shared_memory,
    no_resource_tracker_warning,
    no_shared_memory_left,
)

MB = 1 << 20
LARGE = 4 * MB


def is_plain_pickle(frame: bytes) -> bool:
    return frame[:1] == b"\x80"


def roundtrip(obj: object) -> object:
    frame = dumps(obj)
    return loads(frame)


# -- in one process: the frame ------------------------------------------------------------

DTYPES = ["float64", "float32", "int64", "uint8", "complex128", "bool", "datetime64[ns]",
          [("x", "f8"), ("n", "i4")]]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_numpy_arrays_of_every_dtype_round_trip_out_of_band(dtype: object) -> None:
    a = np.zeros(LARGE // 4, dtype=dtype)
    a.view(np.uint8)[:] = np.arange(a.nbytes, dtype=np.uint64).astype(np.uint8)
    frame = dumps(a)
    assert len(frame) < 4096  # the data went through shared memory
    b = loads(frame)
    assert b.dtype == a.dtype and b.shape == a.shape
    assert a.tobytes() == b.tobytes()
    b[0] = b[1]  # received arrays are writable, like unpickled ones


@pytest.mark.parametrize("make_view", [
    lambda a: a[::2],
    lambda a: a.T,
    lambda a: a[:, ::3],
    lambda a: a[::-1, 5:],
    lambda a: np.asfortranarray(a),
], ids=["step", "transpose", "columns", "reversed", "fortran"])
def test_non_contiguous_and_fortran_views_round_trip(make_view: object) -> None:
    a = np.arange(1024 * 1024, dtype=np.float64).reshape(1024, 1024)
    view = make_view(a)  # type: ignore[operator]
    frame = dumps(view)
    assert len(frame) < 4096
    b = loads(frame)
    np.testing.assert_array_equal(b, view)


@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0, 2)])
def test_zero_size_arrays_round_trip(shape: tuple[int, ...]) -> None:
    a = np.empty(shape, dtype=np.float64)
    b = roundtrip(a)
    assert isinstance(b, np.ndarray) and b.shape == shape and b.dtype == a.dtype


@pytest.mark.parametrize("make", [
    lambda: os.urandom(LARGE + 3),
    lambda: np.arange(LARGE // 8 + 5, dtype=np.float64),
    lambda: np.arange(1024 * 1024, dtype=np.int64).reshape(1024, 1024)[::3, 1::2],
    lambda: np.asfortranarray(np.arange(512 * 1024, dtype=np.float64).reshape(1024, 512)),
    lambda: np.arange(LARGE, dtype=np.uint8)[::-1],
    lambda: np.ones((2, LARGE // 8)),  # fewer rows than threads
], ids=["bytes", "contiguous", "strided", "fortran", "reversed", "two rows"])
def test_large_copies_split_between_threads_arrive_whole(
        make: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from procesos._shm import _copy

    splits: list[int] = []
    copy_pieces = _copy._copy_pieces

    def recorded(numpy: object, target: object, source: object, threads: int) -> None:
        splits.append(threads)
        copy_pieces(numpy, target, source, threads)

    monkeypatch.setattr(_copy, "threads_for", lambda nbytes: 3)
    monkeypatch.setattr(_copy, "_copy_pieces", recorded)
    data = make()  # type: ignore[operator]
    frame = dumps(data)
    assert splits == [3]
    received = loads(frame)
    if isinstance(data, bytes):
        assert received == data
    else:
        np.testing.assert_array_equal(received, data)


def test_a_large_copy_where_no_thread_can_start_is_made_whole_in_the_caller(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # While the interpreter finalizes (after the exit handlers: a __del__ or a
    # finalizer that sends data), Thread.start() raises RuntimeError.
    import threading

    from procesos._shm import _copy

    def refused(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(_copy, "threads_for", lambda nbytes: 4)
    monkeypatch.setattr(threading.Thread, "start", refused)
    data = np.arange(LARGE // 8, dtype=np.float64)
    np.testing.assert_array_equal(loads(dumps(data)), data)


def test_ctrl_c_while_copy_threads_run_goes_on_and_they_finish_safely(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The interrupt must reach the caller (a sender looping on send() stops),
    # and the helpers, still writing, must not find their mapping closed.
    import threading

    from procesos._shm import _copy

    def interrupted(self: threading.Thread, timeout: float | None = None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_copy, "threads_for", lambda nbytes: 4)
    monkeypatch.setattr(threading.Thread, "join", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dumps(np.ones((64, LARGE // 64)))
    monkeypatch.undo()
    for thread in threading.enumerate():
        if thread.name == "procesos-copy":
            thread.join(timeout=30)
    assert not [t for t in threading.enumerate() if t.name == "procesos-copy"]


# -- numpy.memmap: by its file ------------------------------------------------------------

def test_a_memmap_and_its_views_travel_as_their_file_and_writes_reach_it(tmp_path: Path) -> None:
    # joblib's pattern: workers write their part of the output into a memmap.
    # It arrived as a private copy: the writes were lost, silently.
    from engine_tasks import fill

    out = np.memmap(tmp_path / "out.dat", dtype="f8", mode="w+", shape=(6, 4))
    # Views that share no element: the two workers write in any order.
    views = {1.0: out[0], 2.0: out[1:3, :1], 3.0: out[3:, 1], 4.0: out[::-1, 3][::2],
             5.0: out[2, ::-2]}
    with procesos.Executor(2) as ex:
        for future in [ex.submit(fill, view, value) for value, view in views.items()]:
            future.result(timeout=60)
    expected = np.zeros((6, 4))
    for value, view in views.items():
        expected_view = {1.0: expected[0], 2.0: expected[1:3, :1], 3.0: expected[3:, 1],
                         4.0: expected[::-1, 3][::2], 5.0: expected[2, ::-2]}[value]
        expected_view[...] = value
    assert (np.asarray(out) == expected).all(), np.asarray(out)
    assert (np.fromfile(tmp_path / "out.dat").reshape(6, 4) == expected).all()


@pytest.mark.parametrize(("mode", "writable"), [("r", False), ("c", True), ("r+", True)])
def test_a_memmap_arrives_with_its_mode(tmp_path: Path, mode: str, writable: bool) -> None:
    from engine_tasks import array_facts, fill

    path = tmp_path / "data.dat"
    np.arange(8, dtype="f8").tofile(path)
    data = np.memmap(path, dtype="f8", mode=mode, shape=(8,))
    with procesos.Executor(1) as ex:
        kind, arrived_writable, filename, values = ex.submit(array_facts, data[2:6]).result(60)
        assert (kind, arrived_writable, filename) == ("memmap", writable, str(path))
        assert values == [2.0, 3.0, 4.0, 5.0]
        if mode == "c":  # copy-on-write: the receiver's writes are its own
            ex.submit(fill, data, -1.0).result(60)
    assert np.fromfile(path).tolist() == list(map(float, range(8)))


def test_a_memmap_without_its_file_arrives_as_a_copy(tmp_path: Path) -> None:
    from engine_tasks import array_facts

    path = tmp_path / "gone.dat"
    data = np.memmap(path, dtype="i4", mode="w+", shape=(5,))
    data[:] = [1, 2, 3, 4, 5]
    os.unlink(path)
    with procesos.Executor(1) as ex:
        kind, _, _, values = ex.submit(array_facts, data).result(60)
    assert kind == "ndarray" and values == [1, 2, 3, 4, 5]


def test_identity_tokens_keep_no_large_object_alive() -> None:
    import weakref

    from procesos._serialization import _identity_token as identity_token
    from procesos._serialization import _still_bound as still_bound

    array, small, large = np.zeros(4), [1, 2], list(range(100_000))
    tokens = [identity_token(v) for v in (array, small, large)]
    assert isinstance(tokens[0], weakref.ref)  # numpy arrays: weakly
    assert tokens[1] == (small,)  # small lists and dicts: held
    assert tokens[2] == id(large)  # large ones: by address only
    assert all(still_bound(t, v) for t, v in zip(tokens, (array, small, large), strict=True))
    assert not any(still_bound(t, [1, 2]) for t in tokens)


def test_small_data_stays_a_plain_pickle() -> None:
    frame = dumps({"a": np.arange(10), "b": b"x" * 100, "c": "hola"})
    assert is_plain_pickle(frame)
    assert pickle.loads(frame)["c"] == "hola"
    assert get_threshold() == MB


def test_bytes_bytearray_str_and_memoryviews_round_trip() -> None:
    data = os.urandom(LARGE)
    values = [
        data,
        bytearray(data),
        "ñ" * LARGE,
        memoryview(data),
        memoryview(bytearray(data)),
        memoryview(np.arange(LARGE // 8, dtype=np.float64)),
        memoryview(np.arange(LARGE // 8, dtype=np.int64).reshape(512, -1)),
        memoryview(np.arange(LARGE // 8, dtype=np.int64))[::2],
        memoryview(b"small"),
    ]
    frame = dumps(values)
    assert len(frame) < 64 * 1024
    back = loads(frame)
    for sent, received in zip(values, back, strict=True):
        assert type(received) is type(sent)
        if isinstance(sent, memoryview):
            assert received.tolist() == sent.tolist()
            assert received.readonly == sent.readonly
        else:
            assert received == sent


def test_one_object_shared_twice_arrives_once() -> None:
    a = np.ones(LARGE)
    b, c = roundtrip([a, a])  # type: ignore[misc]
    assert b is c


def test_c_pickler_path_sends_large_buffers_out_of_band() -> None:
    frame = dumps_fast((np.ones(LARGE), b"x" * LARGE))
    assert len(frame) < 4096
    arr, raw = loads(frame)
    assert arr.sum() == LARGE and raw == b"x" * LARGE


def test_a_frame_is_loaded_once_unless_made_reusable() -> None:
    a = np.arange(LARGE // 8)
    frame = dumps(a)
    loads(frame)
    with pytest.raises(ShmError, match="loaded once"):
        loads(frame)
    shared = dumps(a, reusable=True)
    x, y = loads(shared), loads(shared)
    x[0] = -1  # each receiver's writes stay its own
    assert y[0] == 0
    discard(shared)


def test_discarded_frame_frees_its_memory() -> None:
    frame = dumps(np.ones(LARGE))
    assert live_shared_memory() == {"segments": 1, "tickets": 1}
    discard(frame)


def test_ctrl_c_while_copying_gives_the_segment_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "copyto", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dumps(np.ones((1024, 1024))[:, ::2])  # strided: copied by numpy.copyto


def test_segments_are_reused_from_the_pool() -> None:
    a = np.ones(LARGE)
    loads(dumps(a))
    before = tracker_stats()
    loads(dumps(a))
    after = tracker_stats()
    assert after["pooled"] == before["pooled"] >= 1


def test_a_reused_segment_is_written_through_the_mapping_kept_from_the_last_send(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from procesos._shm import _write_cache

    _write_cache.drop_all()
    tracker_stats(trim=True)  # an empty pool: both sends get the same segment
    first = loads(dumps(np.ones(LARGE)))
    assert float(first.sum()) == LARGE
    del first
    assert len(_write_cache._kept) == 1
    (kept_mapping, _), = _write_cache._kept.values()
    second = loads(dumps(np.full(LARGE, 7.0)))  # the same segment, from the pool
    assert float(second.min()) == float(second.max()) == 7.0
    del second
    assert [mapping for mapping, _ in _write_cache._kept.values()] == [kept_mapping]
    monkeypatch.setattr(_write_cache, "IDLE", 0.0)
    _write_cache._expire()
    assert _write_cache._kept == {}
    assert kept_mapping.closed


def test_segments_the_pool_would_not_keep_are_not_kept_mapped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from procesos._shm import _client, _write_cache

    _write_cache.drop_all()
    monkeypatch.setenv(_client.POOL_ENV, str(MB))  # the tracker frees what is above it
    received = loads(dumps(np.ones(LARGE)))
    assert float(received.sum()) == LARGE
    del received
    assert _write_cache._kept == {}


def count_kept_mappings() -> int:
    from procesos._shm import _write_cache

    return len(_write_cache._kept)


def test_a_forked_child_does_not_keep_its_parents_mappings() -> None:
    del_me = loads(dumps(np.ones(LARGE)))
    del del_me
    p = procesos.get_context("fork").Process(target=count_kept_mappings)
    p.start()
    assert p.result(timeout=30) == 0
    p.join()
    p.close()


def test_more_than_2_gib_round_trips() -> None:
    size = (2 << 30) + 4096
    if psutil.virtual_memory().available < 3 * size:
        pytest.skip("not enough memory for a > 2 GiB array")
    a = np.empty(size, dtype=np.uint8)
    a[::4096] = 7
    a[-1] = 9
    b = loads(dumps(a))
    assert b.nbytes == size and b[-1] == 9 and int(b[::4096].sum()) == 7 * len(a[::4096])
    del a, b


# -- between processes --------------------------------------------------------------------

def total(a: np.ndarray) -> float:
    return float(a.sum())


def ones(n: int) -> np.ndarray:
    return np.ones(n)


def echo(x: object) -> object:
    return x


def test_process_arguments_and_results_travel_without_copies(
    ctx: procesos.ProcesosContext,
) -> None:
    a = np.arange(LARGE, dtype=np.float64)
    p = ctx.Process(target=total, args=(a,))
    p.start()
    assert p.result(timeout=30) == a.sum()
    p.join()
    q = ctx.Process(target=ones, args=(LARGE,))
    q.start()
    result = q.result(timeout=30)
    q.join()
    assert result.shape == (LARGE,) and result.sum() == LARGE
    values = [b"b" * LARGE, bytearray(b"c" * LARGE), np.arange(LARGE)[::3]]
    r = ctx.Process(target=echo, args=(values,))
    r.start()
    back = r.result(timeout=30)
    r.join()
    assert back[:2] == values[:2] and np.array_equal(back[2], values[2])
    for proc in (p, q, r):
        proc.close()


def digest(*values: object) -> list[str]:
    import hashlib

    return [hashlib.sha256(memoryview(np.ascontiguousarray(v)).cast("B")).hexdigest()
            if isinstance(v, np.ndarray) else hashlib.sha256(v).hexdigest()  # type: ignore[arg-type]
            for v in values]


@pytest.mark.parametrize("pool", ["fresh segment", "pooled segment"])
def test_zygote_child_maps_its_arguments_while_they_are_copied_and_reads_them_whole(
        monkeypatch: pytest.MonkeyPatch, pool: str) -> None:
    from procesos._shm import _transport

    copies_made = []
    real_copy = _transport.PendingCopy.copy

    def counted(self: _transport.PendingCopy) -> None:
        copies_made.append(self.seg)
        real_copy(self)

    monkeypatch.setattr(_transport.PendingCopy, "copy", counted)
    rng = np.random.default_rng(7)
    values = (rng.random(3 * LARGE // 8), rng.bytes(2 * LARGE),
              rng.integers(0, 9, (1024, 2 * LARGE // 1024 // 8))[:, ::2])
    if pool == "pooled segment":
        loads(dumps(values))  # leaves a segment of this size in the pool
    else:
        tracker_stats(trim=True)  # a new segment: no page exists until one of us touches it
    p = procesos.get_context("zygote").Process(target=digest, args=values)
    p.start()
    assert copies_made, "the copy was not left to start()'s request"
    assert p.result(timeout=30) == digest(*values)
    p.join()
    p.close()


def test_ctrl_c_while_a_zygote_child_waits_for_its_arguments_leaves_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from procesos._shm import _transport

    def interrupted(self: _transport.PendingCopy) -> None:
        raise KeyboardInterrupt

    ctx = procesos.get_context("zygote")
    monkeypatch.setattr(_transport.PendingCopy, "copy", interrupted)
    p = ctx.Process(target=total, args=(np.ones(LARGE),))
    with pytest.raises(KeyboardInterrupt):
        p.start()
    # The child that had mapped the memory reads the end of its channel and
    # exits; its exit gives its hold back, and only then is the segment gone.
    deadline = time.monotonic() + 30
    while live_shared_memory()["segments"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert live_shared_memory() == {"segments": 0, "tickets": 0}
    assert p.exitcode is None and not p.is_alive()  # never started, as far as the caller knows
    monkeypatch.undo()
    q = ctx.Process(target=total, args=(np.ones(LARGE),))
    q.start()
    assert q.result(timeout=30) == LARGE
    q.join()
    q.close()


def test_an_unpicklable_argument_beside_a_large_one_leaves_no_shared_memory() -> None:
    p = procesos.get_context("zygote").Process(
        target=total, args=(np.ones(LARGE), lambda: None, threading.Lock()))
    with pytest.raises(procesos.SerializationError, match="argument 2"):
        p.start()


def test_an_unpicklable_task_argument_beside_a_large_one_leaves_no_shared_memory() -> None:
    # Finding which argument cannot be pickled pickles each: the large one's
    # frame, never sent, goes back at once.
    with procesos.Executor(1) as ex:
        future = ex.submit(total, np.ones(LARGE // 8), threading.Lock())
        with pytest.raises(procesos.SerializationError, match="argument 1"):
            future.result(timeout=30)
        results = list(ex.map(total, [np.ones(LARGE // 8), threading.Lock()],
                              return_exceptions=True))
        assert results[0] == LARGE // 8
        assert isinstance(results[1], procesos.SerializationError)
    # The fixture checks that the tracker holds no segment and no ticket.


def load_in_a_thread(frame: bytes) -> tuple[threading.Thread, list[object]]:
    """``loads(frame)`` in a thread of its own; the list gets its value or error."""
    out: list[object] = []

    def load() -> None:
        try:
            out.append(loads(frame))
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=load)
    thread.start()
    return thread, out


def test_a_frame_received_before_its_copy_is_made_is_read_once_the_copy_is_sealed() -> None:

    a = np.arange(LARGE // 8, dtype=np.float64)
    tracker_stats(trim=True)  # a new segment: its receiver's reads allocate pages first
    frame = dumps_frame(a)
    reader, out = load_in_a_thread(frame.data)  # claims, faults pages in, waits for the seal
    deadline = time.monotonic() + 30
    while live_shared_memory()["tickets"] and time.monotonic() < deadline:
        time.sleep(0.01)  # until the reader has claimed the frame
    assert reader.is_alive()
    frame.copy()
    reader.join(30)
    assert len(out) == 1 and np.array_equal(out[0], a)  # type: ignore[arg-type]
    del out[:]


def test_a_frame_read_after_its_copy_was_sealed_neither_faults_in_nor_waits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from procesos._shm import _client, _transport

    frame = dumps_frame(np.arange(LARGE // 8, dtype=np.float64))
    frame.copy()

    def unexpected(*args: object) -> None:
        raise AssertionError("a written frame needs no wait and no faulting in")

    monkeypatch.setattr(_client.TrackerClient, "await_written", unexpected)
    monkeypatch.setattr(_transport, "_fault_in", unexpected)
    assert np.array_equal(loads(frame.data), np.arange(LARGE // 8, dtype=np.float64))


@pytest.mark.parametrize("early", [True, False], ids=["claimed first", "claimed after"])
def test_a_frame_whose_copy_was_given_up_raises_in_its_receiver(early: bool) -> None:
    from procesos._shm import _transport

    frame = dumps_frame(np.ones(LARGE))
    pending = frame._copy
    assert pending is not None
    if early:
        reader, out = load_in_a_thread(frame.data)
        deadline = time.monotonic() + 30
        while live_shared_memory()["tickets"] and time.monotonic() < deadline:
            time.sleep(0.01)
        with frame.hand_over():
            pass  # its copy, never made, is given up at the end of the block
        reader.join(30)
        error = out[0]
    else:
        with frame.hand_over():
            pass
        with pytest.raises(_transport.DataAbandoned) as info:
            loads(frame.data)
        error = info.value
    assert isinstance(error, _transport.DataAbandoned)
    assert "before its large parts were written" in str(error)
    pending.abandon()  # a second word is not sent: the segment may be another frame's now


def test_a_segment_is_kept_while_its_writer_copies_though_its_receiver_died() -> None:

    frame = dumps_frame(np.ones(LARGE))
    receiver = procesos.get_context("fork").Process(target=loads, args=(frame.data,))
    receiver.start()
    deadline = time.monotonic() + 30
    while live_shared_memory()["tickets"] and time.monotonic() < deadline:
        time.sleep(0.01)  # until it has claimed the frame: it waits for the seal now
    receiver.kill()
    receiver.join(30)
    # Freed or pooled now, the segment could be handed to another writer while
    # this one still writes into it.
    assert live_shared_memory()["segments"] == 1
    frame.copy()
    receiver.close()


def interrupt_the_first_copy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the next deferred copy raise KeyboardInterrupt (Ctrl-C mid-copy)."""
    from procesos._shm import _transport

    real_copy = _transport.PendingCopy.copy
    interrupted: list[int] = []

    def copy(self: _transport.PendingCopy) -> None:
        if not interrupted:
            interrupted.append(self.seg)
            raise KeyboardInterrupt
        real_copy(self)

    monkeypatch.setattr(_transport.PendingCopy, "copy", copy)
    return interrupted


@pytest.mark.parametrize("kind", ["Queue", "SimpleQueue", "Pipe"])
def test_a_message_whose_copy_was_interrupted_is_skipped_by_its_receiver(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    interrupted = interrupt_the_first_copy(monkeypatch)
    if kind == "Pipe":
        receiver, sender = procesos.Pipe()
        put, get = sender.send, receiver.recv
    else:
        queue = getattr(procesos, kind)()
        put, get = queue.put, queue.get
    with pytest.raises(KeyboardInterrupt):
        put(np.zeros(LARGE // 8))  # sent, then its copy interrupted: lost, as if never sent
    assert interrupted
    put(np.arange(LARGE // 8, dtype=np.float64))
    assert np.array_equal(get(), np.arange(LARGE // 8, dtype=np.float64))
    if kind == "Pipe":
        receiver.close()
        sender.close()
    else:
        queue.close()
        if kind == "Queue":
            queue.join_thread()


def send_then_hang_in_the_copy(put: Any, readable: Any, started: Any) -> None:
    from procesos._shm import _transport

    def hang(self: _transport.PendingCopy) -> None:
        while not readable():  # the frame is on its way (a Queue's feeder writes it)
            time.sleep(0.001)
        started.set()
        signal.pause()

    _transport.PendingCopy.copy = hang  # type: ignore[method-assign]
    put(np.zeros(LARGE // 8))


@pytest.mark.parametrize("kind", ["Queue", "Pipe"])
def test_a_message_whose_sender_was_killed_mid_copy_is_skipped(kind: str) -> None:
    started = procesos.Event()
    if kind == "Pipe":
        receiver, sender = procesos.Pipe()
        put, get, readable = sender.send, receiver.recv, receiver.poll
    else:
        queue = procesos.Queue()
        put, get, readable = queue.put, queue.get, queue._reader.poll
    child = procesos.get_context("fork").Process(target=send_then_hang_in_the_copy,
                                                 args=(put, readable, started))
    child.start()
    assert started.wait(30)
    child.kill()
    child.join(30)
    put("after")  # the receiver skips the lost message and gets this one
    assert get() == "after"
    child.close()
    if kind == "Pipe":
        receiver.close()
        sender.close()
    else:
        queue.close()
        queue.join_thread()


def test_a_task_whose_argument_copy_was_interrupted_fails_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with procesos.Executor(max_workers=1) as ex:
        assert ex.submit(total, np.ones(8)).result(timeout=30) == 8  # a warm worker
        interrupt_the_first_copy(monkeypatch)
        with pytest.raises(KeyboardInterrupt):
            ex.submit(total, np.ones(LARGE // 8))
        assert ex.submit(total, np.ones(LARGE // 8)).result(timeout=30) == LARGE // 8


def test_more_than_2_gib_reach_a_child() -> None:
    size = (2 << 30) + 4096
    if psutil.virtual_memory().available < 3 * size:
        pytest.skip("not enough memory for a > 2 GiB array")
    a = np.zeros(size, dtype=np.uint8)
    a[-1] = 5
    p = procesos.Process(target=total, args=(a,))
    p.start()
    assert p.result(timeout=60) == 5
    p.join()
    p.close()


def consume(queue: procesos.Queue, out: procesos.Queue) -> None:  # type: ignore[valid-type]
    item = queue.get()
    out.put((float(item.sum()), item[::-1]))


@pytest.mark.parametrize("kind", ["Queue", "JoinableQueue", "SimpleQueue"])
def test_queues_carry_large_arrays_both_ways(kind: str) -> None:
    queue, out = getattr(procesos, kind)(), getattr(procesos, kind)()
    a = np.arange(LARGE, dtype=np.float64)
    p = procesos.Process(target=consume, args=(queue, out))
    p.start()
    queue.put(a)
    s, reversed_a = out.get()
    p.join(30)
    assert s == a.sum() and np.array_equal(reversed_a, a[::-1])
    assert p.exitcode == 0
    p.close()
    for q in (queue, out):
        q.close()
        if hasattr(q, "join_thread"):
            q.join_thread()


def pipe_echo(conn: object) -> None:
    conn.send(conn.recv()[1:])  # type: ignore[attr-defined]


def test_pipe_carries_large_arrays_and_keeps_the_standard_api() -> None:
    here, there = procesos.Pipe()
    p = procesos.Process(target=pipe_echo, args=(there,))
    p.start()
    a = np.arange(LARGE)
    here.send(a)
    assert np.array_equal(here.recv(), a[1:])
    here.send_bytes(b"raw")  # the byte-level API is untouched
    p.join(30)
    p.close()
    here.close()
    there.close()


def put_and_die(queue: procesos.Queue) -> None:  # type: ignore[valid-type]
    queue.put(np.full(LARGE, 3.0))
    queue.close()
    queue.join_thread()
    os.kill(os.getpid(), signal.SIGKILL)


def test_data_sent_by_a_process_that_then_died_is_still_received() -> None:
    queue = procesos.Queue()
    p = procesos.Process(target=put_and_die, args=(queue,))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    received = queue.get(timeout=30)
    assert received.sum() == 3.0 * LARGE
    p.close()
    queue.close()
    queue.join_thread()


def hold_until_killed(a: np.ndarray, ready: object) -> None:
    ready.set()  # type: ignore[attr-defined]
    signal.pause()


def test_a_receiver_killed_while_holding_data_frees_it() -> None:
    ready = procesos.Event()
    p = procesos.Process(target=hold_until_killed, args=(np.ones(LARGE), ready))
    p.start()
    assert ready.wait(30)
    p.kill()
    p.join(30)
    p.close()


def test_a_child_killed_before_reading_its_arguments_frees_them() -> None:
    p = procesos.get_context("spawn").Process(target=total, args=(np.ones(LARGE),))
    p.start()
    p.kill()  # most likely still starting its interpreter
    p.join(30)
    p.close()


def send_forever(conn: object) -> None:
    a = np.ones(8 * MB)
    while True:
        conn.send(a[::2])  # type: ignore[attr-defined]  (a strided copy into shared memory)


def test_ctrl_c_in_a_sender_mid_transfer_leaves_nothing() -> None:
    here, there = procesos.Pipe(duplex=False)
    p = procesos.Process(target=send_forever, args=(there,))
    p.start()
    there.close()
    assert here.recv().sum() == 4 * MB
    p.interrupt()  # wherever it is: copying, sending or between the two
    received = 1
    while True:
        try:
            here.recv()
        except EOFError:
            break
        received += 1
    p.join(30)
    assert p.exitcode == -signal.SIGINT
    p.close()
    here.close()


def check_inherited(a: np.ndarray, go: object) -> float:
    go.wait()  # type: ignore[attr-defined]
    return float(a.sum())


def test_memory_a_fork_inherited_is_never_reused_under_it() -> None:
    received = loads(dumps(np.full(LARGE, 2.0)))
    go = procesos.Event()
    p = procesos.get_context("fork").Process(target=check_inherited, args=(received, go))
    p.start()
    del received
    # The same size again: a pooled segment would be reused here if the fork
    # had not marked it.
    other = loads(dumps(np.full(LARGE, 5.0)))
    go.set()
    assert p.result(timeout=30) == 2.0 * LARGE
    p.join()
    p.close()
    del other


# -- the process tree -----------------------------------------------------------------------

def test_importing_procesos_does_not_import_numpy() -> None:
    code = "import sys, procesos; print('numpy' in sys.modules)"
    out = os.popen(f"{sys.executable} -c \"{code}\"").read()
    assert out.strip() == "False"


TREE_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import procesos
    from procesos._serialization import dumps, loads
    from procesos._shm import tracker_stats

    def twice(a):
        return a * 2

    frame = dumps(np.ones(1 << 20))  # never loaded: freed when the tree ends
    p = procesos.Process(target=twice, args=(np.ones(1 << 20),))
    p.start()
    kept = p.result()
    print(tracker_stats()["pid"], flush=True)
    if sys.argv[-1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("end", ["exit", "kill"])
def test_the_tracker_frees_everything_when_its_tree_ends(tmp_path: Path, end: str) -> None:
    script = tmp_path / "tree.py"
    script.write_text(TREE_SCRIPT)
    done = run_script(
        TREE_SCRIPT.replace("sys.argv[-1]", repr(end)), tmp_path, env={"PROCESOS_SHM_TREE": ""}
    )
    assert "resource_tracker" not in done.stderr
    tracker = psutil.Process(int(done.stdout.split()[0]))
    psutil.wait_procs([tracker], timeout=10)
    assert not tracker.is_running()


def test_standard_library_pools_on_a_procesos_context_carry_arrays_without_copies() -> None:
    import concurrent.futures
    import multiprocessing.pool

    a = np.arange(LARGE, dtype=np.float64)
    ctx = procesos.get_context("zygote")
    with multiprocessing.pool.Pool(1, context=ctx) as pool:
        assert pool.apply(total, (a,)) == a.sum()
        assert pool.apply(ones, (LARGE,)).sum() == LARGE
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as ex:
        assert ex.submit(ones, LARGE).result().sum() == LARGE


# -- the task engine: Executor and Pool ------------------------------------------------------

def in_shared_memory(a: np.ndarray) -> bool:
    """Whether *a* is a view on a mapping (it came through shared memory)."""
    import mmap

    base = a
    while getattr(base, "base", None) is not None:
        base = base.base
    return isinstance(getattr(base, "obj", base), mmap.mmap)


def total_where(a: np.ndarray) -> tuple[float, bool]:
    return float(a.sum()), in_shared_memory(a)


def total_or_die(a: np.ndarray, die: bool) -> float:
    if die:
        os.kill(os.getpid(), signal.SIGKILL)
    return float(a.sum())


def test_executor_and_pool_carry_large_arguments_and_results_through_shared_memory(
    ctx: procesos.ProcesosContext,
) -> None:
    a = np.arange(LARGE, dtype=np.float64)
    with procesos.Executor(2, context=ctx) as ex:
        assert ex.submit(total_where, a).result(timeout=30) == (a.sum(), True)
        back = ex.submit(ones, LARGE).result(timeout=30)
        assert back.sum() == LARGE and in_shared_memory(back)
        back[0] = 7.0  # a copy on write: the receiver's own
        assert list(ex.map(total_where, [a, a[::2], a[:10]])) == [
            (a.sum(), True), (a[::2].sum(), True), (a[:10].sum(), False)]
        assert np.array_equal(ex.submit(echo, a[::3]).result(timeout=30), a[::3])
    with procesos.Pool(2, context=ctx) as pool:
        assert pool.apply(total_where, (a,)) == (a.sum(), True)
        results = pool.map(ones, [LARGE, 3, LARGE])
        assert [r.sum() for r in results] == [LARGE, 3, LARGE]
        assert pool.starmap(total_or_die, [(a, False)] * 3) == [a.sum()] * 3
        del results


def process_result(target: Any, *args: Any) -> Any:
    """``target(*args)`` in a new ``procesos.Process``, through ``result()``."""
    p = procesos.Process(target=target, args=args)
    p.start()
    try:
        return p.result(timeout=30)
    finally:
        p.join()
        p.close()


@pytest.mark.parametrize("way", ["Executor.submit", "Executor.map", "Pool.apply", "Pool.map",
                                 "Process.result"])
def test_a_large_result_the_caller_lets_go_is_given_back_without_the_garbage_collector(
        way: str) -> None:
    # A result held until the cyclic collector ran (a DirectFuture was a
    # reference cycle) made every next result take a new segment: fresh
    # memory, several times the cost of a copy into pooled pages.
    tracker_stats(trim=True)  # an empty pool: what it holds next, this test put there
    seen = []
    gc.disable()
    try:
        with procesos.Executor(1) as ex, procesos.Pool(1) as pool:
            get = {
                "Executor.submit": lambda: ex.submit(ones, LARGE).result(timeout=30),
                "Executor.map": lambda: next(ex.map(ones, [LARGE])),
                "Pool.apply": lambda: pool.apply(ones, (LARGE,)),
                "Pool.map": lambda: pool.map(ones, [LARGE])[0],
                "Process.result": lambda: process_result(ones, LARGE),
            }[way]
            for _ in range(4):
                result = get()
                assert result.sum() == LARGE and in_shared_memory(result)
                del result
                seen.append(tracker_stats())
    finally:
        gc.enable()
    assert [stats["segments"] for stats in seen] == [0, 0, 0, 0]
    assert [stats["pooled"] for stats in seen] == [1, 1, 1, 1]  # each reused the first's


def large_bytes() -> bytes:
    return b"x" * LARGE


def test_a_worker_under_a_memory_limit_does_not_count_kept_mappings_against_it() -> None:
    # A kept mapping (for the next large send) is pooled shared memory in the
    # worker's RSS; with max_memory_per_worker the worker lets it go before it
    # measures after a task, so that a large result does not get it replaced.
    # (A single call is measured before its result is sent: the mapping made
    # by that send is let go after the next task.)
    with procesos.Executor(1, max_memory_per_worker=1 << 40) as ex:
        pid = ex.submit(os.getpid).result()
        assert len(ex.submit(large_bytes).result()) == LARGE
        ex.submit(count_kept_mappings).result()
        assert ex.submit(count_kept_mappings).result() == 0
        assert ex.submit(os.getpid).result() == pid


def test_small_tasks_stay_plain_pickles() -> None:
    from procesos._engine._messages import encode_objects, encode_values, is_shared

    for data in ([(0, (3,), {})], list(range(1000)), [np.arange(10)], [b"x" * 1000]):
        assert is_plain_pickle(encode_objects(data)) and is_plain_pickle(encode_values(data))
    frame = encode_values([np.ones(LARGE)])
    assert is_shared(frame)
    assert loads(frame)[0].sum() == LARGE


@pytest.mark.timeout(60)
def test_a_worker_killed_while_holding_a_large_argument_leaves_no_shared_memory() -> None:
    a = np.ones(LARGE)
    with procesos.Executor(2) as ex:
        results = list(ex.map(total_or_die, [a] * 6, [i == 2 for i in range(6)],
                              return_exceptions=True))
        assert isinstance(results[2], procesos.WorkerCrashedError)
        assert [r for i, r in enumerate(results) if i != 2] == [float(LARGE)] * 5
        future = ex.submit(total_or_die, a, True)
        with pytest.raises(procesos.WorkerCrashedError):
            future.result(timeout=30)
        assert ex.submit(total_or_die, a, False).result(timeout=30) == LARGE
    # The fixture checks that no segment and no ticket is left in the tracker.


@pytest.mark.timeout(60)
def test_terminate_with_large_data_in_flight_leaves_no_shared_memory(tmp_path: Path) -> None:
    from engine_tasks import block_on_fifo

    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    pool = procesos.Pool(1)
    blocked = pool.apply_async(block_on_fifo, (fifo,))
    queued = pool.apply_async(total, (np.ones(LARGE),))
    # Quick batches are sent one ahead: the array waits in the busy worker's socket.
    deadline = time.monotonic() + 30
    while tracker_stats()["tickets"] == 0:
        assert time.monotonic() < deadline, "the second task was never sent"
    pool.terminate()
    pool.join()
    assert not blocked.successful() and not queued.successful()


# -- a result made and never sent ----------------------------------------------------------

def _dies_instead_of_sending_shared_memory(write_all: Any) -> Any:
    """The worker's ``write_all``, killing the worker once it has a result frame in
    shared memory to send: as if killed (terminate(), the OOM killer) in between."""
    from procesos._engine._messages import is_shared

    def write(fd: int, parts: list[bytes]) -> None:
        if any(len(part) >= 4 and is_shared(part) for part in parts):
            os.kill(os.getpid(), signal.SIGKILL)
        write_all(fd, parts)

    return write


def test_a_worker_killed_between_making_its_result_and_sending_it_leaves_no_shared_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from procesos._engine import _worker

    # Under fork the workers inherit the patched module.
    monkeypatch.setattr(_worker, "write_all", _dies_instead_of_sending_shared_memory(
        _worker.write_all))
    with procesos.Executor(1, context="fork") as ex:
        future = ex.submit(ones, LARGE // 8)
        with pytest.raises(procesos.WorkerCrashedError):
            future.result(timeout=30)
        assert ex.submit(total, np.ones(10)).result(timeout=30) == 10.0
    # The fixture checks that the tracker holds no segment and no ticket.


def test_a_child_killed_between_making_its_result_and_sending_it_leaves_no_shared_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from procesos._launch import _child

    def encode_then_die(value: object, where: str) -> bytes:
        _child.encode_value.__wrapped__(value, where)  # type: ignore[attr-defined]
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    encode_then_die.__wrapped__ = _child.encode_value  # type: ignore[attr-defined]
    monkeypatch.setattr(_child, "encode_value", encode_then_die)
    p = procesos.get_context("fork").Process(target=ones, args=(LARGE // 8,))
    p.start()
    p.join(timeout=30)
    assert p.exitcode == -signal.SIGKILL
    with pytest.raises(procesos.ProcessCrashedError):
        p.result()


@pytest.mark.parametrize("close", [False, True], ids=["joined", "closed"])
def test_a_child_result_nobody_reads_is_given_back_with_its_process(close: bool) -> None:
    p = procesos.Process(target=ones, args=(LARGE // 8,))
    p.start()
    p.join(timeout=30)
    assert p.exitcode == 0
    assert live_shared_memory()["tickets"] == 1  # kept for a result() to come
    if close:
        p.close()
    del p
    # The fixture checks that the tracker holds no segment and no ticket.


def _make_frames(fd: int) -> None:
    sent = dumps(np.full(LARGE // 8, 1.0), channel="results")
    dumps(np.full(LARGE // 8, 2.0), channel="results")  # never sent
    for frame in (sent, dumps(np.full(LARGE // 8, 3.0))):  # the second for anyone
        os.write(fd, len(frame).to_bytes(4, "big") + frame)


def test_reaping_an_ended_writer_frees_only_its_frames_for_that_channel_that_never_left() -> None:
    from procesos._serialization import reap

    read_fd, write_fd = os.pipe()
    pid = os.fork()  # a bare fork: a procesos child would be reaped by its popen
    if pid == 0:
        try:
            _make_frames(write_fd)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        kept, for_anyone = (pipe.read(int.from_bytes(pipe.read(4), "big")) for _ in range(2))
    assert os.waitpid(pid, 0)[1] == 0
    assert live_shared_memory()["tickets"] == 3
    reap(pid, "results", [kept])
    assert live_shared_memory()["tickets"] == 2
    assert loads(kept)[0] == 1.0 and loads(for_anyone)[0] == 3.0


def test_only_the_tracker_spells_its_verbs() -> None:
    # Every client names a verb by the tracker's constant (_shm/_tracker.py), so
    # that a verb renamed or misspelt there is an import error, not a request
    # the tracker refuses at run time.
    import ast

    from procesos._shm import _tracker

    verbs = {_tracker.HELLO, _tracker.ALLOC, _tracker.SEAL, _tracker.DROP, _tracker.CLAIM,
             _tracker.AWAIT, _tracker.DISCARD, _tracker.RELEASE, _tracker.CREATE,
             _tracker.TICKET, _tracker.POISON, _tracker.SYNC, _tracker.TRIM, _tracker.REAP}
    package = Path(procesos.__file__).parent
    spelt = []
    for path in package.rglob("*.py"):
        if path.name == "_tracker.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("request", "notify") and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and node.args[0].value in verbs):
                spelt.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not spelt


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="needs /proc/meminfo")
def test_the_tracker_refuses_a_segment_larger_than_the_memory_and_goes_on() -> None:
    from procesos._shm._client import client
    from procesos._shm._tracker import available_memory

    available = available_memory()
    assert available is not None
    reply = client().request("alloc", 4 * available, False)
    assert reply[0] == "err" and "no room" in reply[1], reply
    assert frame_round_trips()


def frame_round_trips() -> bool:
    a = np.arange(LARGE // 8, dtype="f8")
    return bool((loads(dumps(a)) == a).all())
