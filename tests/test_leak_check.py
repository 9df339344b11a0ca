"""The suite's own shared-memory leak check (``conftest.no_leftovers``): it reports
what this test tree left behind, and only that."""

from __future__ import annotations

import gc
import secrets
from collections.abc import Iterator
from multiprocessing import shared_memory
from pathlib import Path

import pytest

import procesos
from conftest import semaphore_entries, shared_memory_leaks, shared_memory_snapshot

DEV_SHM = Path("/dev/shm")
needs_dev_shm = pytest.mark.skipif(not DEV_SHM.is_dir(), reason="no /dev/shm here")


@pytest.fixture
def foreign_entries() -> Iterator[list[Path]]:
    """Entries as another program on the machine makes them; removed afterwards."""
    made: list[Path] = []
    yield made
    for path in made:
        path.unlink(missing_ok=True)


@needs_dev_shm
def test_another_programs_shared_memory_and_semaphores_are_not_reported(
    foreign_entries: list[Path],
) -> None:
    before = shared_memory_snapshot()
    for name in (f"psm_{secrets.token_hex(4)}", f"sem.mp-{secrets.token_hex(4)}",
                 f"procesos-{secrets.token_hex(6)}-1"):
        path = DEV_SHM / name
        path.write_bytes(b"x")
        foreign_entries.append(path)
    assert shared_memory_leaks(before) == []


@needs_dev_shm
def test_a_procesos_segment_name_of_this_tree_is_reported(foreign_entries: list[Path]) -> None:
    # Where segments are not memfds (not Linux), the tracker names them so.
    from procesos._shm._client import segment_name_prefix, tree_token

    before = shared_memory_snapshot()
    name = f"{segment_name_prefix(tree_token())}99999"
    (DEV_SHM / name).write_bytes(b"x")
    foreign_entries.append(DEV_SHM / name)
    assert shared_memory_leaks(before) == [name]


def test_a_leaked_procesos_segment_is_reported() -> None:
    pytest.importorskip("numpy")
    before = shared_memory_snapshot()
    kept = procesos.SharedArray((1000,), dtype="float64")
    leaks = shared_memory_leaks(before)
    assert len(leaks) == 1 and "procesos segments in use" in leaks[0], leaks
    del kept
    gc.collect()
    assert shared_memory_leaks(before) == []


def test_a_frame_never_received_is_reported() -> None:
    from procesos._serialization import discard, dumps

    before = shared_memory_snapshot()
    frame = dumps(bytearray(8 << 20))  # large: its data waits in a segment, under a ticket
    leaks = shared_memory_leaks(before)
    assert len(leaks) == 1 and "tickets" in leaks[0], leaks
    discard(frame)
    assert shared_memory_leaks(before) == []


def _leave_shared_memory(size: int, names: procesos.SimpleQueue) -> None:  # type: ignore[type-arg]
    from multiprocessing import resource_tracker

    block = shared_memory.SharedMemory(create=True, size=size)
    # The test's process unlinks it: this child's resource tracker must not.
    resource_tracker.unregister(block._name, "shared_memory")  # type: ignore[attr-defined]
    names.put(block.name)
    block.close()


@needs_dev_shm
@pytest.mark.parametrize("where", ["here", "fork child"])
def test_standard_library_shared_memory_left_by_the_test_is_reported(where: str) -> None:
    before = shared_memory_snapshot()
    if where == "here":
        block = shared_memory.SharedMemory(create=True, size=64)
        name = block.name
        block.close()
    else:
        ctx = procesos.get_context("fork")
        names = ctx.SimpleQueue()
        p = ctx.Process(target=_leave_shared_memory, args=(64, names))
        p.start()
        name = names.get()
        p.join()
        names.close()
    try:
        assert shared_memory_leaks(before) == [name.lstrip("/")]
    finally:
        block = shared_memory.SharedMemory(name=name)
        block.close()
        block.unlink()
    assert shared_memory_leaks(before) == []


@needs_dev_shm
def test_a_standard_library_semaphore_the_test_keeps_is_seen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing
    import multiprocessing.synchronize

    from conftest import STANDARD_SEMAPHORE_NAMES

    monkeypatch.setattr(multiprocessing.synchronize.SemLock, "_make_name",
                        staticmethod(STANDARD_SEMAPHORE_NAMES))  # as before joblib's import
    before = semaphore_entries()
    lock = multiprocessing.get_context("spawn").Lock()  # named while it lives
    made = semaphore_entries() - before
    assert len(made) == 1 and made.pop().startswith("sem.mp-"), made
    del lock
    gc.collect()
    assert semaphore_entries() == before
