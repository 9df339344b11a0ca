"""SharedArray: one numpy array in shared memory that every process sees and writes."""

from __future__ import annotations

import pickle
import signal
import textwrap
from pathlib import Path

import numpy as np
import pytest

import procesos
from conftest import run_script
from procesos import SharedArray
from procesos._shm import tracker_stats
from shm_helpers import (  # noqa: F401  (fixtures)
    dev_shm_unchanged_by_module,
    live_shared_memory,
    no_resource_tracker_warning,
    no_shared_memory_left,
)


def test_a_new_shared_array_is_a_zero_filled_numpy_array() -> None:
    with SharedArray((3, 4), dtype="int32") as a:
        assert isinstance(a, np.ndarray) and a.shape == (3, 4) and a.dtype == np.int32
        assert not a.any() and a.is_shared
        a[1, 2] = 7
        assert a.sum() == 7
        assert repr(a).startswith("SharedArray(")
    assert not a.is_shared


def test_from_array_copies_shape_dtype_and_values() -> None:
    source = np.arange(12.0).reshape(3, 4).T  # not contiguous
    with SharedArray.from_array(source) as a:
        np.testing.assert_array_equal(a, source)


@pytest.mark.parametrize("shape", [0, (0,), (2, 0)])
def test_zero_size_shared_arrays_work(shape: object) -> None:
    with SharedArray(shape, "f8") as a:  # type: ignore[arg-type]
        assert a.size == 0
        b = pickle.loads(pickle.dumps(a))
        assert b.shape == a.shape
        b.close()


def test_arithmetic_gives_ordinary_arrays() -> None:
    with SharedArray((4,), "f8") as a:
        b = a + 1
        assert type(b) is np.ndarray
        np.add(a, 1, out=a)  # out= writes in place
        assert a.sum() == 4
        view = a[1:3]
        assert isinstance(view, SharedArray) and view.is_shared


def test_object_dtype_is_refused() -> None:
    with pytest.raises(TypeError, match="Python objects"):
        SharedArray((2,), dtype=object)


@pytest.mark.parametrize(("shape", "error", "message"), [
    ((-1,), ValueError, r"negative dimensions, got \(-1,\)"),
    ((3, -2), ValueError, r"negative dimensions, got \(3, -2\)"),
    ((2.5,), TypeError, "cannot be interpreted as an integer"),
    (2.5, TypeError, "not iterable|cannot be interpreted as an integer"),
])
def test_a_shape_numpy_would_refuse_is_refused(shape: object, error: type[Exception],
                                               message: str) -> None:
    # Before: (-1,) made an empty array, and 2.5 a dimension of 2.
    with pytest.raises(error, match=message):
        SharedArray(shape, "f8")  # type: ignore[arg-type]


# -- between processes --------------------------------------------------------------------

def fill_squares(a: SharedArray) -> None:
    for i in range(len(a)):
        a[i] = i * i


def test_writes_in_a_child_are_seen_by_the_parent(ctx: procesos.ProcesosContext) -> None:
    # The lesson's global list, done right.
    with SharedArray(10, "int64") as a:
        p = ctx.Process(target=fill_squares, args=(a,))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        assert a.tolist() == [i * i for i in range(10)]
        p.close()


def wait_then_read(a: SharedArray, written: object, done: object) -> float:
    written.wait()  # type: ignore[attr-defined]
    return float(a.sum())


def test_writes_in_the_parent_are_seen_by_a_running_child() -> None:
    written = procesos.Event()
    with SharedArray((1000,), "f8") as a:
        p = procesos.Process(target=wait_then_read, args=(a, written, None))
        p.start()
        a[:] = 2.0
        written.set()
        assert p.result(timeout=30) == 2000.0
        p.join()
        p.close()


def add_to_half(a: SharedArray, half: int) -> None:
    n = len(a) // 2
    a[half * n:(half + 1) * n] += half + 1


def test_two_children_write_the_same_array() -> None:
    with SharedArray((2_000_000,), "f8") as a:
        children = [procesos.Process(target=add_to_half, args=(a, h)) for h in (0, 1)]
        for c in children:
            c.start()
        for c in children:
            c.join(30)
            assert c.exitcode == 0
            c.close()
        assert a[:1_000_000].sum() == 1_000_000 and a[1_000_000:].sum() == 2_000_000


def fill_view(view: SharedArray) -> None:
    view[:] = -1


def test_a_slice_sent_to_a_child_writes_into_the_whole() -> None:
    with SharedArray((10,), "i8") as a:
        p = procesos.Process(target=fill_view, args=(a[2:8:2],))
        p.start()
        p.join(30)
        assert a.tolist() == [0, 0, -1, 0, -1, 0, -1, 0, 0, 0]
        p.close()


def take_from(queue: procesos.Queue) -> None:  # type: ignore[valid-type]
    a = queue.get()
    a *= 3  # numpy's in-place ops on a SharedArray stay in shared memory
    a.close()


def test_a_shared_array_sent_through_a_queue_is_shared() -> None:
    queue = procesos.Queue()
    with SharedArray.from_array(np.ones(100)) as a:
        p = procesos.Process(target=take_from, args=(queue,))
        p.start()
        queue.put(a)
        p.join(30)
        assert a.sum() == 300
        p.close()
    queue.close()
    queue.join_thread()


def make_and_return(n: int) -> SharedArray:
    a = SharedArray((n,), "f8")
    a[:] = 1.5
    return a


def test_a_child_can_return_a_shared_array_it_made() -> None:
    p = procesos.Process(target=make_and_return, args=(100,))
    p.start()
    a = p.result(timeout=30)
    p.join()
    p.close()
    assert isinstance(a, SharedArray) and a.is_shared and a.sum() == 150
    a.close()


def hold(a: SharedArray, ready: object, release: object) -> None:
    ready.set()  # type: ignore[attr-defined]
    if release is None:
        signal.pause()
    release.wait()  # type: ignore[attr-defined]
    a.close()


def test_memory_lives_until_the_last_holder_closes_it() -> None:
    ready, release = procesos.Event(), procesos.Event()
    a = SharedArray((1000,), "f8")
    p = procesos.Process(target=hold, args=(a, ready, release))
    p.start()
    assert ready.wait(30)
    a.close()
    assert live_shared_memory()["segments"] == 1  # the child still holds it
    release.set()
    p.join(30)
    p.close()


def test_memory_is_freed_when_the_last_holder_is_killed() -> None:
    ready = procesos.Event()
    a = SharedArray((1000,), "f8")
    p = procesos.Process(target=hold, args=(a, ready, None))
    p.start()
    assert ready.wait(30)
    a.close()
    assert live_shared_memory()["segments"] == 1
    p.kill()
    p.join(30)
    p.close()


def test_a_shared_array_that_is_garbage_gives_its_hold_back() -> None:
    a = SharedArray((1000,), "f8")
    view = a[10:]
    del a
    assert live_shared_memory()["segments"] == 1  # the view keeps it
    del view


# -- whole programs, as users run them ---------------------------------------------------------

PROGRAM = textwrap.dedent("""
    import os, signal
    import numpy as np
    import procesos as mp
    from procesos._shm import tracker_stats

    def work(a, i, ready):
        a[i] = i + 1
        ready.set()
        if i == 0:
            signal.pause()   # killed by the parent while it holds the array

    a = mp.SharedArray((4,), "f8")
    events = [mp.Event() for _ in range(4)]
    ps = [mp.Process(target=work, args=(a, i, events[i])) for i in range(4)]
    for p in ps:
        p.start()
    for e in events:
        e.wait()
    ps[0].kill()
    for p in ps:
        p.join()
    print(a.tolist(), tracker_stats()["pid"])
    b = mp.SharedArray((10,), "i8")   # never closed: freed at exit
""")


def test_a_program_prints_no_resource_tracker_warning(tmp_path: Path) -> None:
    done = run_script(PROGRAM, tmp_path, env={"PROCESOS_SHM_TREE": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("]")[0] == "[1.0, 2.0, 3.0, 4.0"
    assert "resource_tracker" not in done.stderr and "leaked" not in done.stderr
    assert done.stderr == ""


def test_tracker_counts_are_exposed() -> None:
    stats = tracker_stats()
    assert {"segments", "tickets", "pooled", "connections"} <= set(stats)


WITHOUT_NUMPY = """
import sys
sys.modules["numpy"] = None  # as if it were not installed
import procesos
try:
    procesos.SharedArray((3,))
except ModuleNotFoundError as exc:
    print(exc.name, "|", exc)
"""


def test_without_numpy_the_error_says_how_to_install_it(tmp_path: Path) -> None:
    result = run_script(WITHOUT_NUMPY, tmp_path)
    assert result.stdout == (
        "numpy | procesos.SharedArray needs numpy, which is not installed: "
        "pip install 'procesos[numpy]'\n"
    ), result.stderr


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="needs /proc/meminfo")
def test_a_shared_array_larger_than_the_memory_is_refused_with_the_sizes() -> None:
    # Not tried: shared memory belongs to no process, so the OOM killer would end
    # others while the segment filled the memory.
    from procesos._shm import ShmError
    from procesos._shm._tracker import available_memory

    available = available_memory()
    assert available is not None
    with pytest.raises(ShmError, match=rf"no room for {4 * available} bytes .* available"):
        SharedArray((4 * available,), "u1")
