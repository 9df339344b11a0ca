"""One array sent many times lies in one segment while in use; a changed one is sent anew."""

from __future__ import annotations

import gc
import signal
import weakref

import numpy as np
import pytest

import procesos
from procesos._serialization import discard, dumps, loads
from procesos._shm import _sent, tracker_stats
from shm_helpers import (  # noqa: F401  (fixtures)
    dev_shm_unchanged_by_module,
    live_shared_memory,
    no_resource_tracker_warning,
    no_shared_memory_left,
)

MB = 1 << 20
LARGE = 4 * MB


def test_an_array_sent_twice_lies_in_one_segment() -> None:
    a = np.arange(LARGE, dtype=np.float64)
    first, second = dumps(a), dumps(a)
    assert live_shared_memory() == {"segments": 1, "tickets": 2}
    x, y = loads(first), loads(second)
    assert np.array_equal(x, a) and np.array_equal(y, a)
    x[0] = -1  # each receiver's writes stay its own
    assert y[0] == 0 and a[0] == 0
    del x, y


@pytest.mark.parametrize("where", [0, LARGE // 2, LARGE - 1])
def test_an_array_changed_between_two_sends_is_copied_again(where: int) -> None:
    a = np.ones(LARGE)
    first = dumps(a)
    a[where] = 3.0
    second = dumps(a)
    assert live_shared_memory() == {"segments": 2, "tickets": 2}
    x, y = loads(first), loads(second)
    assert x[where] == 1.0 and y[where] == 3.0
    assert float(x.sum()) == LARGE and float(y.sum()) == LARGE + 2
    del x, y


@pytest.mark.parametrize("where", [0, LARGE // 3, 2 * LARGE // 3 + 1, LARGE - 1])
def test_a_change_is_found_whichever_thread_compares_its_part(
        where: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sent, "threads_for", lambda nbytes: 3)
    a = np.ones(LARGE)
    first = dumps(a)
    same = dumps(a)  # unchanged: the same segment
    assert live_shared_memory() == {"segments": 1, "tickets": 2}
    a[where] = 3.0
    changed = dumps(a)
    assert live_shared_memory() == {"segments": 2, "tickets": 3}
    assert float(loads(changed).sum()) == LARGE + 2
    assert float(loads(same).sum()) == float(loads(first).sum()) == LARGE


def test_ctrl_c_while_compare_threads_run_goes_on_and_they_finish_safely(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    def interrupted(self: threading.Thread, timeout: float | None = None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_sent, "threads_for", lambda nbytes: 4)
    a = np.ones(LARGE)
    first = dumps(a)
    monkeypatch.setattr(threading.Thread, "join", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dumps(a)
    monkeypatch.undo()
    for thread in threading.enumerate():
        if thread.name == "procesos-compare":
            thread.join(timeout=30)
    assert not [t for t in threading.enumerate() if t.name == "procesos-compare"]
    assert float(loads(first).sum()) == LARGE


def test_once_its_receivers_let_go_an_array_is_copied_again() -> None:
    a = np.ones(LARGE)
    received = loads(dumps(a))
    del received
    gc.collect()
    twin = a.copy()  # the same bytes, another object: it takes the pooled segment
    twin_frame = dumps(twin)
    frame = dumps(a)  # its old segment now holds the twin's send: not reused
    assert live_shared_memory() == {"segments": 2, "tickets": 2}
    assert float(loads(frame).sum()) == float(loads(twin_frame).sum()) == LARGE


def test_a_frame_can_mix_segments_it_reuses_and_a_new_one() -> None:
    a, b = np.full(LARGE, 2.0), np.full(LARGE, 5.0)
    alone = dumps(a)
    both = dumps((b, a, b"z" * LARGE))
    assert live_shared_memory() == {"segments": 2, "tickets": 3}
    x, y, z = loads(both)
    assert float(x.min()) == 5.0 and float(y.max()) == 2.0 and z == b"z" * LARGE
    discard(alone)
    del x, y, z


def test_discarding_one_frame_keeps_the_data_of_another_on_the_same_segment() -> None:
    a = np.arange(LARGE // 8)
    first, second = dumps(a), dumps(a)
    discard(second)
    assert np.array_equal(loads(first), a)


def test_ctrl_c_while_comparing_gives_every_segment_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object) -> bool:
        raise KeyboardInterrupt

    a = np.ones(LARGE)
    first = dumps(a)
    monkeypatch.setattr(_sent, "same_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dumps(a)
    assert live_shared_memory() == {"segments": 1, "tickets": 1}
    discard(first)


def test_frames_made_to_be_loaded_many_times_get_their_own_copy() -> None:
    a = np.ones(LARGE)
    once = dumps(a)
    many = dumps(a, reusable=True)
    assert live_shared_memory() == {"segments": 2, "tickets": 2}
    discard(once)
    discard(many)


def test_what_was_sent_is_remembered_weakly() -> None:
    a = np.ones(LARGE)
    loads(dumps(a))
    ref = weakref.ref(a)
    del a
    gc.collect()
    assert ref() is None


def sent_entries() -> int:
    return len(_sent._table)


def test_a_forked_child_does_not_reuse_what_its_parent_sent() -> None:
    a = np.ones(LARGE)
    frame = dumps(a)
    p = procesos.get_context("fork").Process(target=sent_entries)
    p.start()
    assert p.result(timeout=30) == 0
    p.join()
    p.close()
    discard(frame)


def hold(a: np.ndarray, holding: object, done: object) -> float:
    holding.wait()  # type: ignore[attr-defined]  (a Barrier: every holder, then the test)
    done.wait()  # type: ignore[attr-defined]
    return float(a.sum())


@pytest.mark.parametrize("method", ["zygote", "spawn"])
def test_two_processes_given_one_array_share_one_segment(method: str) -> None:
    ctx = procesos.get_context(method)
    a = np.ones(LARGE)
    holding, done = ctx.Barrier(3), ctx.Event()
    ps = [ctx.Process(target=hold, args=(a, holding, done)) for _ in range(2)]
    for p in ps:
        p.start()
    holding.wait(timeout=60)
    assert tracker_stats()["segments"] == 1
    done.set()
    assert [p.result(timeout=30) for p in ps] == [LARGE, LARGE]
    for p in ps:
        p.join()
        p.close()


_gate: tuple[object, object] | None = None


def set_gate(holding: object, done: object) -> None:
    global _gate
    _gate = (holding, done)


def hold_at_gate(a: np.ndarray) -> float:
    assert _gate is not None
    return hold(a, *_gate)


def test_two_workers_given_one_array_share_one_segment() -> None:
    a = np.ones(LARGE)
    holding, done = procesos.Barrier(3), procesos.Event()
    with procesos.Pool(2, initializer=set_gate, initargs=(holding, done)) as pool:
        pending = pool.map_async(hold_at_gate, [a, a], chunksize=1)
        holding.wait(timeout=60)
        assert tracker_stats()["segments"] == 1
        done.set()
        assert pending.get(timeout=30) == [LARGE, LARGE]


def hold_until_killed(a: np.ndarray, holding: object) -> None:
    holding.set()  # type: ignore[attr-defined]
    signal.pause()


def hold_until_done(a: np.ndarray, holding: object, done: object) -> float:
    holding.set()  # type: ignore[attr-defined]
    done.wait()  # type: ignore[attr-defined]
    return float(a.sum())


def test_a_holder_killed_leaves_the_shared_segment_to_the_other() -> None:
    # Events, not a Barrier: the test returns from Event.wait() only once the
    # setter has let go of the Event's lock, so the kill cannot catch a holder
    # inside a lock the other one needs.
    a = np.ones(LARGE)
    doomed_holds, survivor_holds, done = procesos.Event(), procesos.Event(), procesos.Event()
    doomed = procesos.Process(target=hold_until_killed, args=(a, doomed_holds))
    survivor = procesos.Process(target=hold_until_done, args=(a, survivor_holds, done))
    doomed.start()
    survivor.start()
    assert doomed_holds.wait(60) and survivor_holds.wait(60)
    assert tracker_stats()["segments"] == 1
    doomed.kill()
    doomed.join(30)
    done.set()
    assert survivor.result(timeout=30) == LARGE
    survivor.join()
    for p in (doomed, survivor):
        p.close()
