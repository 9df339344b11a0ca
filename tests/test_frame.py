"""A frame with shared memory has an owner (issue 23): ``_transport.Frame``.

Whatever happens to a frame (sent, an error while it is written or copied,
dropped at the end of a ``with`` block, handed over), the tracker ends with no
segment and no ticket of it once nobody will load it. The module's fixtures
(shm_helpers) check that after every test as well.
"""

from __future__ import annotations

import gc
from typing import Any

import numpy as np
import pytest

import procesos
from procesos._serialization import DataAbandoned, dumps_frame, loads
from procesos._shm import _transport
from shm_helpers import (  # noqa: F401  (fixtures)
    dev_shm_unchanged_by_module,
    live_shared_memory,
    no_resource_tracker_warning,
    no_shared_memory_left,
)

LARGE = 2 << 20
NOTHING = {"segments": 0, "tickets": 0}


def large() -> np.ndarray[Any, Any]:
    return np.arange(LARGE // 8, dtype=np.float64)


class Broken(Exception):
    pass


def test_a_sent_frame_is_written_then_copied_and_loads_once() -> None:
    frame = dumps_frame(large())
    assert frame.shared
    written: list[bytes] = []
    frame.send(written.append)
    assert written == [frame.data]
    assert live_shared_memory() == {"segments": 1, "tickets": 1}  # waiting for its reader
    assert np.array_equal(loads(written[0]), large())
    assert live_shared_memory() == NOTHING


def test_small_plain_data_is_a_frame_without_shared_memory() -> None:
    frame = dumps_frame((1, "two", 3.0))
    assert not frame.shared
    assert loads(frame.data) == (1, "two", 3.0)


@pytest.mark.parametrize("error", [Broken, KeyboardInterrupt])
def test_an_error_while_the_frame_is_written_gives_everything_back(
        error: type[BaseException]) -> None:
    frame = dumps_frame(large())

    def write(data: bytes) -> None:
        raise error

    with pytest.raises(error):
        frame.send(write)
    assert live_shared_memory() == NOTHING


@pytest.mark.parametrize("error", [Broken, KeyboardInterrupt])
def test_an_error_while_the_frame_is_copied_gives_its_segment_up(
        error: type[BaseException], monkeypatch: pytest.MonkeyPatch) -> None:
    def copy(self: _transport.PendingCopy) -> None:
        raise error

    monkeypatch.setattr(_transport.PendingCopy, "copy", copy)
    frame = dumps_frame(large())
    written: list[bytes] = []
    with pytest.raises(error):
        frame.send(written.append)
    assert written  # it left: its reader learns that it was given up
    with pytest.raises(DataAbandoned):
        loads(written[0])
    assert live_shared_memory() == NOTHING


def test_a_frame_neither_sent_nor_handed_over_is_discarded_by_its_with_block() -> None:
    with dumps_frame(large()) as frame:
        assert live_shared_memory() == {"segments": 1, "tickets": 1}
    assert live_shared_memory() == NOTHING
    frame.discard()  # a second time: nothing more to say to the tracker
    assert live_shared_memory() == NOTHING


def test_an_error_in_the_with_block_discards_the_frame() -> None:
    with pytest.raises(Broken), dumps_frame(large()):
        raise Broken
    assert live_shared_memory() == NOTHING


def test_a_handed_over_frame_is_kept_until_its_owner_discards_it() -> None:
    with dumps_frame(large()) as frame:
        frame.hand_over()
        frame.copy()  # written by whoever has it now
    assert live_shared_memory() == {"segments": 1, "tickets": 1}
    frame.discard()  # its reader will never load it (a batch whose worker died)
    assert live_shared_memory() == NOTHING


def test_a_handed_over_frame_whose_copy_was_never_made_is_abandoned() -> None:
    with dumps_frame(large()) as frame:
        frame.hand_over()
    with pytest.raises(DataAbandoned):
        loads(frame.data)
    assert live_shared_memory() == NOTHING


def test_a_frame_handed_to_an_owner_goes_back_when_the_owner_does() -> None:
    class Owner:
        pass

    owner = Owner()
    with dumps_frame(large()) as frame:
        frame.hand_over(owner)
        frame.copy()
    assert live_shared_memory() == {"segments": 1, "tickets": 1}
    del owner
    gc.collect()
    assert live_shared_memory() == NOTHING


def test_a_shared_array_pickled_into_a_frame_is_the_frames_to_give_back() -> None:
    array = procesos.SharedArray((LARGE // 8,), dtype=np.float64)
    with dumps_frame(array) as frame:
        assert frame.shared
        assert live_shared_memory()["tickets"] == 1
    assert live_shared_memory() == {"segments": 1, "tickets": 0}  # the array's own
    del array


def test_a_frame_copied_first_is_not_written_when_its_copy_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def copy(self: _transport.PendingCopy) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_transport.PendingCopy, "copy", copy)
    written: list[bytes] = []
    with pytest.raises(KeyboardInterrupt):
        dumps_frame(large()).send(written.append, copy_first=True)
    assert written == []
    assert live_shared_memory() == NOTHING


def test_a_joinable_queue_put_whose_copy_fails_owes_no_task_done(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_copy = _transport.PendingCopy.copy
    calls: list[int] = []

    def copy_fails_once(self: _transport.PendingCopy) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real_copy(self)

    monkeypatch.setattr(_transport.PendingCopy, "copy", copy_fails_once)
    queue = procesos.JoinableQueue()
    with pytest.raises(KeyboardInterrupt):
        queue.put(large())
    queue.put(large())
    assert np.array_equal(queue.get(timeout=30), large())
    queue.task_done()
    queue.join()  # returns: the failed put left nothing owed (the test's timeout bounds it)
    queue.close()
    queue.join_thread()
