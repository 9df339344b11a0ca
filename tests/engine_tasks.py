"""Tasks for the engine's tests (importable, so every start method can run them)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

STATE: dict[str, Any] = {}


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def pid_of(_: object = None) -> int:
    return os.getpid()


def fail_on(x: int, bad: int = 2) -> int:
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def stop_on(x: int, bad: int = 2) -> int:
    """x * 10, but StopIteration for *bad* (a helper that calls next() past the end)."""
    if x == bad:
        next(iter(()))
    return x * 10


def die_on(x: int, bad: int, how: str) -> int:
    """Kill this worker when *x* is *bad*."""
    if x == bad:
        if how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif how == "exit":
            os._exit(3)
        elif how == "segfault":
            ctypes.string_at(0)
    return x * 10


def die_once(x: int, bad: int, marker: str) -> int:
    """Kill this worker the first time *x* is *bad* (a marker file remembers)."""
    if x == bad and not os.path.exists(marker):
        Path(marker).write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


def write_pid_then_exit(path: str, code: int) -> None:
    """Write this process's pid to *path*, then end it with *code*."""
    Path(path).write_text(str(os.getpid()))
    os._exit(code)


class HangsWhenLoaded:
    """An argument whose unpickling waits for a writer on the FIFO at *path*
    (a ``__setstate__`` that reconnects to something that never answers)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (block_on_fifo, (self.path,))


def init_blocked_on(path: str) -> None:
    """An initializer that waits for a writer on the FIFO at *path*."""
    block_on_fifo(path)


def block_on_fifo(path: str, value: object = None) -> object:
    """Wait until someone writes to the FIFO at *path*."""
    with open(path) as fifo:
        fifo.read()
    return value


def hang_on(x: int, bad: int, fifo: str) -> int:
    if x == bad:
        block_on_fifo(fifo)  # nobody writes: only the timeout ends it
    return x


def record_start_and_block(directory: str, x: int) -> int:
    """Leave a file named after this process (holding its parent's pid); block for good."""
    Path(directory, f"started-{os.getpid()}-{x}.tmp").write_text(str(os.getppid()))
    os.rename(Path(directory, f"started-{os.getpid()}-{x}.tmp"),
              Path(directory, f"started-{os.getpid()}-{x}"))
    threading.Event().wait()
    return x


def announce_and_block(fifo: str, x: int) -> int:
    """Write this worker's pid to the FIFO at *fifo*, then block for good."""
    fd = os.open(fifo, os.O_WRONLY)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
    threading.Event().wait()
    return x


def leave_a_thread_running(x: int) -> tuple[int, int]:
    """Start a thread (not a daemon) that never ends; the item and this worker's pid."""
    threading.Thread(target=threading.Event().wait, name=f"left-by-{x}").start()
    return x, os.getpid()


def exit_only_after_fifo(fifo: str) -> int:
    """Make this worker's exit wait until someone writes to the FIFO at *fifo*; its pid."""
    from multiprocessing import util

    util.Finalize(None, block_on_fifo, args=(fifo,), exitpriority=100)
    return os.getpid()


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def fork_and_return(x: int) -> tuple[str, int]:
    """Fork; both processes return from the task (the child should not)."""
    return ("child" if os.fork() == 0 else "worker"), x


def return_lock(x: int) -> object:
    return threading.Lock() if x == 1 else x


def return_a_lock_in_a_list(_: object = None) -> list[object]:
    return [threading.Lock()]


class Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def raise_unpicklable(x: int) -> int:
    if x == 1:
        raise Unpicklable
    return x


class TwoArguments(Exception):
    """An ``__init__`` that takes other arguments than it gives to Exception's:
    pickle's ``cls(*args)`` cannot rebuild it."""

    def __init__(self, low: int, high: int) -> None:
        super().__init__(f"{low}-{high}")
        self.low, self.high = low, high


def raise_two_arguments(low: int, high: int) -> None:
    raise TwoArguments(low, high)


class NewRefuses(Exception):
    """Neither pickled (it holds a lock) nor made without its ``__init__``."""

    making = False  # set by raise_new_refuses, in the process that raises it

    def __new__(cls, *args: object) -> NewRefuses:
        if not cls.making:
            raise TypeError("only made by raise_new_refuses")
        return super().__new__(cls, *args)

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.lock = threading.Lock()


def raise_new_refuses() -> None:
    NewRefuses.making = True
    raise NewRefuses("made here")


def set_state(value: object) -> None:
    STATE["value"] = value


def get_state(_: object = None) -> object:
    return STATE.get("value")


def put_square(x: int) -> int:
    """Put x*x in the queue that set_state() gave this worker."""
    STATE["value"].put(x * x)  # type: ignore[attr-defined]
    return x


def init_that_raises() -> None:
    raise RuntimeError("the initializer broke")


def init_that_logs_to_and_raises(log_queue: Any) -> None:
    """Send the ``concurrent.futures`` logger's records to *log_queue*, then raise
    (as CPython's test_concurrent_futures.test_init does)."""
    import logging
    from logging.handlers import QueueHandler

    logger = logging.getLogger("concurrent.futures")
    logger.addHandler(QueueHandler(log_queue))
    logger.setLevel("CRITICAL")
    logger.propagate = False
    raise ValueError("error in initializer")


def init_that_exits() -> None:
    os._exit(7)


def hold_memory(megabytes: int) -> int:
    block = bytearray(b"x" * (megabytes << 20))  # touched, so resident
    STATE.setdefault("blocks", []).append(block)
    return os.getpid()


def thread_limits(_: object = None) -> dict[str, str | None]:
    from procesos._engine._threads import THREAD_VARIABLES

    return {name: os.environ.get(name) for name in THREAD_VARIABLES}


def openblas_threads(_: object = None) -> int | None:
    import numpy  # noqa: F401

    from procesos._engine._threads import _loaded_libraries

    for path in _loaded_libraries():
        if "openblas" in os.path.basename(path):
            lib = ctypes.CDLL(path)
            for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads"):
                if hasattr(lib, name):
                    return int(getattr(lib, name)())
    return None


def found_libraries_without_a_scan(_: object = None) -> bool:
    """Whether this worker's thread limits used its zygote's snapshot of loaded libraries."""
    from procesos._engine import _threads

    return _threads._snapshot is not None and _threads._snapshot[0] == len(sys.modules)


def engine_modules(_: object = None) -> list[str]:
    """The parent-side engine modules loaded in this process."""
    import sys

    parent_side = ("_api", "_dispatcher", "_jobs", "_faults", "_direct", "_progress", "_books",
                   "_sending", "_receiving", "_starting", "_ending")
    return [m for m in parent_side if f"procesos._engine.{m}" in sys.modules]


def _refuse_to_load() -> None:
    raise ValueError("this object cannot be loaded here")


class LoadsNowhere:
    """Pickles fine; unpickling it (in a worker) raises."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_refuse_to_load, ())

    def __call__(self, x: int) -> int:
        return x


def modules_loaded(names: list[str]) -> list[bool]:
    """Whether each module of *names* is loaded in this process."""
    import sys

    return [name in sys.modules for name in names]


def _exit_on_load(how: str) -> None:
    if how == "exit":
        raise SystemExit(3)
    raise KeyboardInterrupt


class EndsWhenPickled:
    """Pickling it raises ``SystemExit`` (*how* ``"exit"``) or ``KeyboardInterrupt``."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self) -> tuple[object, tuple[str]]:
        _exit_on_load(self.how)
        raise AssertionError("unreachable")


class EndsWhenLoaded:
    """Pickles fine; loading it raises ``SystemExit`` or ``KeyboardInterrupt``."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_exit_on_load, (self.how,))


def return_ends_when_pickled(how: str) -> EndsWhenPickled:
    return EndsWhenPickled(how)


def return_ends_when_loaded(how: str) -> EndsWhenLoaded:
    return EndsWhenLoaded(how)
def _exit_now(code: int) -> None:
    os._exit(code)


class KillsWhenLoaded:
    """Pickles fine; unpickling it (in a worker) ends that worker at once."""

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (_exit_now, (9,))


class KillsWhenPickled:
    """Pickling it (a task's result, in the worker) ends that worker at once."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        os._exit(8)


def _die_instead_of_noting(worker: object, pid: int) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _die_before_the_next_fork_is_noted() -> None:
    from procesos._engine import _worker

    _worker._Worker._note_task_process = _die_instead_of_noting  # type: ignore[method-assign]


class DiesBeforeItsForkIsNoted:
    """Loaded by a worker that forks per task (it unpickles the task's arguments):
    the worker then dies right after its next fork, before writing that fork's pid."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_die_before_the_next_fork_is_noted, ())


def identity(x: object) -> object:
    return x


def counted(directory: str, x: int) -> int:
    """Leave one marker file per run of this task, then: x == -1 ends the worker,
    x == -2 returns a result that ends it while pickled, else x * 10."""
    Path(directory, f"{x}-{os.getpid()}-{os.urandom(4).hex()}").touch()
    if x == -1:
        os._exit(1)
    if x == -2:
        return KillsWhenPickled()  # type: ignore[return-value]
    return x * 10


def runs_of(directory: str) -> dict[int, int]:
    """How many times each item of :func:`counted` ran."""
    runs: dict[int, int] = {}
    for name in os.listdir(directory):
        x = int(name.rsplit("-", 2)[0])
        runs[x] = runs.get(x, 0) + 1
    return runs


def quick_unless_told(fifo: str, x: object) -> object:
    """Return *x* at once, except "block": wait for a writer on the FIFO first;
    and "die": wait so, then end the worker."""
    if x in ("block", "die"):
        block_on_fifo(fifo)
    if x == "die":
        os._exit(1)
    return x


class Payload:
    """An object a test can watch with a weak reference."""

    def size(self, extra: int = 0) -> int:
        return 1 + extra


class Items(list):  # type: ignore[type-arg]
    """A list a test can watch with a weak reference."""


def make_payload(_: object = None) -> Payload:
    return Payload()


def size_of(payload: Payload) -> int:
    return payload.size()


def count_run(x: int, bad: int) -> int:
    """Count this run of item *x* in the shared array that set_state() gave this
    worker (quick: no file); item *bad* ends the worker."""
    STATE["value"][x] += 1  # type: ignore[index]
    if x == bad:
        os._exit(5)
    return x


def model_task(spec: tuple[str, int, str, object]) -> object:
    """The task of the engine's model-based test: leave one marker file per run in
    *directory*, then do what *action* says."""
    directory, key, action, _ = spec
    Path(directory, f"{key}-{os.getpid()}-{os.urandom(4).hex()}").touch()
    if action == "raise":
        raise ValueError(f"task {key} raised")
    if action == "exit":
        os._exit(4)
    if action == "sleep":
        threading.Event().wait()  # past any timeout: the engine kills it
    if action == "pickle":
        return KillsWhenPickled()
    return ("ok", key)


def sum_with_a_pool_of_its_own(n: int) -> int:
    """A task that runs a pool of its own (a worker's children), under ``fork``."""
    import procesos

    with procesos.Pool(2, context="fork") as pool:
        return sum(pool.map(abs, range(-n, 0)))


def pids_of(x: int) -> tuple[int, int, int]:
    """The item, this process's pid and its parent's."""
    return x, os.getpid(), os.getppid()


def remember_pid() -> None:
    """An initializer: note the pid of the process it runs in."""
    STATE["initialized_in"] = os.getpid()


def initialized_here(x: int) -> bool:
    """Whether remember_pid() ran in this very process."""
    return STATE.get("initialized_in") == os.getpid()


def initialized_here_and_pid(x: object) -> tuple[bool, int]:
    """Whether remember_pid() ran in this very process, and its pid."""
    return STATE.get("initialized_in") == os.getpid(), os.getpid()


def _start_an_idle_thread() -> str:
    threading.Thread(target=threading.Event().wait, name="started-by-load", daemon=True).start()
    return "loaded"


class StartsThreadWhenLoaded:
    """An argument whose unpickling starts a thread in the process that loads it."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _start_an_idle_thread, ()


def make_a_result_frame_and_die(megabytes: int) -> None:
    """Pickle a large result for the parent (into shared memory), then die before sending it."""
    from procesos._engine._messages import RESULTS_CHANNEL
    from procesos._serialization import dumps

    dumps(bytearray(megabytes << 20), channel=RESULTS_CHANNEL)
    os._exit(5)


def fill(array: Any, value: float) -> None:
    """Write *value* into every element of *array* (a numpy array or view) here."""
    array[...] = value


def array_facts(array: Any) -> tuple[str, bool, str | None, list[float]]:
    """What arrived: its type's name, whether it is writable, its file, its values."""
    return (type(array).__name__, bool(array.flags.writeable),
            getattr(array, "filename", None), [float(v) for v in array.ravel()])
