"""Every import path of ``multiprocessing`` works with ``procesos`` in its place."""

from __future__ import annotations

import concurrent.futures
import importlib
import multiprocessing
import pkgutil
import sys
from multiprocessing import managers as std_managers
from multiprocessing import queues as std_queues

import pytest

import procesos

# The start methods' own modules: procesos has its own start methods
# (procesos._launch), and no program imports these.
_IMPLEMENTATION_DETAILS = {"popen_fork", "popen_forkserver", "popen_spawn_posix",
                           "popen_spawn_win32"}
# Names of the standard library's modules that only the standard library's own
# machinery uses: the zygote replaces the fork server's descriptor passing, and
# procesos' children never run spawn's preparation of ``__main__``.
_NOT_PROVIDED = {
    ("forkserver", "get_inherited_fds"), ("forkserver", "connect_to_new_process"),
    ("spawn", "_main"), ("spawn", "get_preparation_data"), ("spawn", "get_command_line"),
    ("spawn", "import_main_path"),
}


def _public_submodules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(multiprocessing.__path__, "multiprocessing."):
        short = info.name.removeprefix("multiprocessing.")
        if any(part.startswith("_") for part in short.split(".")):
            continue
        if short in _IMPLEMENTATION_DETAILS:
            continue
        names.append(short)
    return sorted(names)


@pytest.mark.parametrize("name", _public_submodules())
def test_every_public_name_of_every_submodule_is_there(name: str) -> None:
    standard = importlib.import_module(f"multiprocessing.{name}")
    ours = importlib.import_module(f"procesos.{name}")
    expected = getattr(standard, "__all__", None)
    assert expected is not None, f"multiprocessing.{name} has no __all__"
    missing = [n for n in expected if (name, n) not in _NOT_PROVIDED and not hasattr(ours, n)]
    assert not missing, f"procesos.{name} lacks {missing}"
    assert set(ours.__all__) >= {n for n in expected if (name, n) not in _NOT_PROVIDED}


def test_the_top_level_has_every_name_of_multiprocessing() -> None:
    missing = [n for n in multiprocessing.__all__ if not hasattr(procesos, n)]
    assert not missing


def test_what_starts_processes_is_procesos_own() -> None:
    from procesos import pool, process, queues, shared_memory

    assert pool.Pool is procesos.Pool
    assert process.Process is procesos.Process
    assert issubclass(queues.Queue, std_queues.Queue)
    assert type(procesos.Queue()) is queues.Queue
    assert shared_memory.SharedMemory is multiprocessing.shared_memory.SharedMemory
    assert procesos.shared_memory is shared_memory


@pytest.mark.parametrize("manager_class", ["BaseManager", "SyncManager", "SharedMemoryManager"])
def test_managers_start_their_server_with_procesos(manager_class: str) -> None:
    from procesos import managers

    cls = getattr(managers, manager_class)
    assert issubclass(cls, getattr(std_managers, manager_class))
    manager = cls()
    assert manager._ctx is procesos.get_context()  # type: ignore[attr-defined]
    spawn = cls(ctx=procesos.get_context("spawn"))
    assert spawn._ctx is procesos.get_context("spawn")  # type: ignore[attr-defined]


def test_a_sync_manager_from_the_submodule_works(ctx: procesos.ProcesosContext) -> None:
    from procesos.managers import SyncManager

    def put_twice(shared: dict[str, int]) -> None:
        shared["x"] = shared.get("x", 0) + 2

    with SyncManager(ctx=ctx) as manager:
        shared = manager.dict()
        p = ctx.Process(target=put_twice, args=(shared,))
        p.start()
        p.join()
        assert p.exitcode == 0
        assert dict(shared) == {"x": 2}


def test_a_subclassed_base_manager_registers_its_own_types() -> None:
    from procesos.managers import BaseManager

    class Counter:
        def __init__(self) -> None:
            self.n = 0

        def add(self, k: int) -> int:
            self.n += k
            return self.n

    class CounterManager(BaseManager):
        pass

    CounterManager.register("Counter", Counter)
    with CounterManager() as manager:
        counter = manager.Counter()  # type: ignore[attr-defined]
        counter.add(2)
        assert counter.add(3) == 5


def test_shared_ctypes_default_to_procesos_context(ctx: procesos.ProcesosContext) -> None:
    from procesos.sharedctypes import Array, Value, synchronized

    counter = Value("i", 0)
    numbers = Array("d", [1.0, 2.0])

    def bump(c: object, a: object) -> None:
        with c.get_lock():  # type: ignore[attr-defined]
            c.value += 1  # type: ignore[attr-defined]
        a[0] = 10.0  # type: ignore[index]

    p = ctx.Process(target=bump, args=(counter, numbers))
    p.start()
    p.join()
    assert p.exitcode == 0
    assert counter.value == 1 and numbers[:] == [10.0, 2.0]
    from procesos.sharedctypes import RawValue

    assert synchronized(RawValue("i", 7)).value == 7


def test_process_pool_executor_takes_the_standard_constructor() -> None:
    from procesos import ProcessPoolExecutor

    def setup(value: int) -> None:
        globals()["SEEN"] = value

    def seen(_: object) -> int:
        return int(globals()["SEEN"])

    with ProcessPoolExecutor(2, multiprocessing.get_context("spawn"), setup, (5,),
                             max_tasks_per_child=1) as ex:
        assert isinstance(ex, concurrent.futures.Executor)
        assert isinstance(ex, procesos.Executor)
        assert list(ex.map(seen, range(3))) == [5, 5, 5]
    with ProcessPoolExecutor(max_workers=1, mp_context="fork") as ex:
        assert ex.submit(pow, 2, 5).result() == 32


def test_process_pool_executor_refuses_what_the_standard_one_refuses() -> None:
    from procesos import ProcessPoolExecutor

    with pytest.raises(ValueError, match="max_workers"):
        ProcessPoolExecutor(0)
    with pytest.raises(TypeError):
        ProcessPoolExecutor(1, None, None, (), 5)  # type: ignore[misc]


def test_dummy_is_the_threads_api() -> None:
    import procesos.dummy
    import procesos.dummy.connection

    with procesos.dummy.Pool(2) as pool:
        assert pool.map(abs, [-1, -2]) == [1, 2]
    assert procesos.dummy.connection.Pipe is multiprocessing.dummy.connection.Pipe


def test_forkserver_preload_sets_the_zygotes() -> None:
    from procesos import forkserver
    from procesos._launch import _zygote_client

    forkserver.set_forkserver_preload(["json"])
    try:
        chosen = _zygote_client.default_preload()
        procesos.set_zygote_preload(["json"])
        assert chosen == _zygote_client.default_preload() and "json" in chosen
    finally:
        procesos.set_zygote_preload(None)
    assert "procesos.forkserver" in sys.modules
