"""The standard library's sharing objects work as arguments to a procesos Process.

Under every start method, made by procesos (``mp.Queue()`` etc., bound to its
context) or by a standard-library context that supports sending them to a
new process. Objects are made inline, as temporaries, on purpose: the child
must be able to open them even after the parent dropped its own references.
"""

from __future__ import annotations

import gc
import multiprocessing
from multiprocessing import shared_memory
from typing import Any

import pytest

import procesos
from conftest import START_METHODS, run_script


def _use_queues(q: Any, sq: Any, jq: Any, conn: Any) -> str:
    q.put("queue")
    sq.put("simple")
    jq.put("joinable")
    conn.send("pipe")
    jq.join()  # returns once the parent called task_done()
    return "done"


def test_queues_and_pipes(ctx: procesos.ProcesosContext) -> None:
    q, sq, jq = ctx.Queue(), ctx.SimpleQueue(), ctx.JoinableQueue()
    here, there = ctx.Pipe()
    p = ctx.Process(target=_use_queues, args=(q, sq, jq, there))
    p.start()
    assert q.get(timeout=30) == "queue"
    assert sq.get() == "simple"
    assert jq.get(timeout=30) == "joinable"
    assert here.poll(30) and here.recv() == "pipe"
    jq.task_done()
    assert p.result(timeout=30) == "done"


def _use_locks(lock: Any, rlock: Any, sem: Any, bsem: Any, cond: Any, event: Any,
               barrier: Any) -> str:
    with lock:
        pass
    with rlock, rlock:
        pass
    with sem, bsem:
        pass
    with cond:
        cond.notify_all()
    barrier.wait(30)
    event.wait(30)
    return "synchronised"


def test_locks_semaphores_conditions_events_barriers(ctx: procesos.ProcesosContext) -> None:
    event, barrier = ctx.Event(), ctx.Barrier(2)
    p = ctx.Process(target=_use_locks, args=(ctx.Lock(), ctx.RLock(), ctx.Semaphore(1),
                                             ctx.BoundedSemaphore(1), ctx.Condition(),
                                             event, barrier))
    p.start()
    barrier.wait(30)
    event.set()
    assert p.result(timeout=30) == "synchronised"


def _use_shared_values(value: Any, array: Any, raw_value: Any, raw_array: Any) -> None:
    with value.get_lock():
        value.value += 1
    array[0] = 42
    raw_value.value = 2.5
    raw_array[:] = [7, 8, 9]


def test_values_and_arrays_are_shared(ctx: procesos.ProcesosContext) -> None:
    value, array = ctx.Value("i", 0), ctx.Array("i", 3)
    raw_value, raw_array = ctx.RawValue("d", 0.0), ctx.RawArray("i", 3)
    p = ctx.Process(target=_use_shared_values, args=(value, array, raw_value, raw_array))
    p.start()
    p.result(timeout=30)
    assert value.value == 1
    assert list(array) == [42, 0, 0]
    assert raw_value.value == 2.5
    assert list(raw_array) == [7, 8, 9]


def _use_manager(d: Any, items: Any, lock: Any) -> None:
    with lock:
        d["child"] = "yes"
        items.append(3)


def test_manager_proxies(ctx: procesos.ProcesosContext) -> None:
    with ctx.Manager() as manager:
        d, items = manager.dict(), manager.list([1, 2])
        p = ctx.Process(target=_use_manager, args=(d, items, manager.Lock()))
        p.start()
        p.result(timeout=30)
        assert dict(d) == {"child": "yes"}
        assert list(items) == [1, 2, 3]


def _use_queue_and_event(q: Any, event: Any) -> None:
    q.put("from the child")
    event.set()


def test_a_child_given_proxies_leaves_the_managers_objects_to_their_owner(
    ctx: procesos.ProcesosContext,
) -> None:
    # A child that got proxies with its process object holds references only
    # while it runs; once it has ended and the parent has dropped its proxies,
    # the manager holds nothing (CPython's manager tests check this).
    with ctx.Manager() as manager:
        q, event = manager.Queue(), manager.Event()
        p = ctx.Process(target=_use_queue_and_event, args=(q, event))
        p.start()
        p.result(timeout=30)
        assert q.get(timeout=30) == "from the child" and event.is_set()
        del q, event
        gc.collect()
        assert manager._number_of_objects() == 0, manager._debug_info()  # type: ignore[attr-defined]


def _write_shared_memory(block: shared_memory.SharedMemory, name: str) -> None:
    block.buf[0] = 7
    other = shared_memory.SharedMemory(name=name)
    other.buf[1] = 8
    other.close()
    block.close()


def test_shared_memory_block(ctx: procesos.ProcesosContext) -> None:
    block = shared_memory.SharedMemory(create=True, size=16)
    try:
        p = ctx.Process(target=_write_shared_memory, args=(block, block.name))
        p.start()
        p.result(timeout=30)
        assert bytes(block.buf[:2]) == b"\x07\x08"
    finally:
        block.close()
        block.unlink()


@pytest.mark.parametrize("method", ["zygote", "spawn"])
def test_stdlib_spawn_context_objects_work_too(method: str) -> None:
    std = multiprocessing.get_context("spawn")
    ctx = procesos.get_context(method)
    q = std.Queue()
    p = ctx.Process(target=lambda queue, lock: (lock.acquire(), queue.put("std")),
                    args=(q, std.Lock()))
    p.start()
    assert q.get(timeout=30) == "std"
    p.result(timeout=30)


@pytest.mark.parametrize("method", ["zygote", "spawn"])
def test_stdlib_fork_context_lock_is_refused_with_the_fix(method: str) -> None:
    lock = multiprocessing.get_context("fork").Lock()
    p = procesos.get_context(method).Process(target=lambda lk: None, args=(lock,))
    with pytest.raises(procesos.SerializationError) as info:
        p.start()
    message = str(info.value)
    assert "argument 0" in message and "Lock" in message
    assert "procesos.Queue()" in message


def test_fork_context_objects_work_under_fork() -> None:
    std = multiprocessing.get_context("fork")
    q = std.Queue()
    p = procesos.get_context("fork").Process(target=lambda queue: queue.put(1), args=(q,))
    p.start()
    assert q.get(timeout=30) == 1
    p.result(timeout=30)


@pytest.mark.parametrize("method", START_METHODS)
def test_module_level_names_are_bound_to_procesos(method: str) -> None:
    # mp.Queue() and friends come from the default procesos context.
    assert procesos.Queue().__class__.__module__.startswith(("procesos", "multiprocessing"))
    q = procesos.Queue()
    p = procesos.get_context(method).Process(target=lambda queue: queue.put(method), args=(q,))
    p.start()
    assert q.get(timeout=30) == method
    p.result(timeout=30)


SCRIPT_STRUCTURE_SCRIPT = """
import ctypes

import procesos


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double)]


class Shape(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("corners", Point * 2), ("tag", ctypes.c_char * 4), ("flags", ctypes.c_uint8)]


class Number(ctypes.Union):
    _fields_ = [("whole", ctypes.c_int64), ("real", ctypes.c_double)]


def move(point, shapes, number):
    point.x = 10.5
    shapes[1].corners[1].y = 7.0
    shapes[1].tag = b"done"
    number.whole = 42
    return type(point._obj) is type(shapes[0].corners[0])  # one Point class here


ctx = procesos.get_context()  # PROCESOS_START_METHOD
point = ctx.Value(Point, 1.0, 2.0)
shapes = ctx.Array(Shape, 2)
number = ctx.Value(Number)
p = ctx.Process(target=move, args=(point, shapes, number))
p.start()
same_class = p.result(timeout=60)
p.join()
print(same_class, point.x, shapes[1].corners[1].y, shapes[1].tag, number.whole, p.exitcode)
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_a_value_or_array_of_a_structure_of_the_script_reaches_the_child(
        method: str, tmp_path: Any) -> None:
    # cloudpickle cannot send a ctypes structure's class (its fields are
    # descriptors): zygote and spawn children could not get one of the
    # script's, which the standard library's spawn imports with the script.
    done = run_script(SCRIPT_STRUCTURE_SCRIPT, tmp_path, method, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "10.5", "7.0", "b'done'", "42", "0"]
