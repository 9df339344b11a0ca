"""The engine's faults, as the caller sees them: each fails only the tasks it touches."""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import procesos
from conftest import START_METHODS, still_alive
from engine_tasks import (
    HangsWhenLoaded,
    LoadsNowhere,
    announce_and_block,
    block_on_fifo,
    die_on,
    die_once,
    exit_only_after_fifo,
    fail_on,
    fork_and_return,
    get_state,
    hang_on,
    hold_memory,
    init_blocked_on,
    init_that_exits,
    init_that_raises,
    is_alive,
    leave_a_thread_running,
    pid_of,
    raise_unpicklable,
    return_a_lock_in_a_list,
    return_lock,
    square,
    sum_with_a_pool_of_its_own,
)
from procesos._engine import _crash, _faults
from procesos._engine._batching import MAX_CHUNK

TESTS = Path(__file__).resolve().parent

@pytest.mark.timeout(60)
@pytest.mark.parametrize("max_tasks", [None, 1])  # 1: a task's process is a fork of its worker
@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize("how", ["sigkill", "exit", "segfault"])
def test_worker_killed_mid_task_fails_only_its_tasks(method: str, how: str,
                                                     max_tasks: int | None) -> None:
    if how == "segfault" and method != "zygote":
        pytest.skip("one start method is enough for the third way to die")
    with procesos.Executor(2, context=method, max_tasks_per_worker=max_tasks) as ex:
        results = list(ex.map(die_on, range(20), [7] * 20, [how] * 20, return_exceptions=True))
        assert [r for i, r in enumerate(results) if i != 7] == [i * 10 for i in range(20) if i != 7]
        error = results[7]
        assert isinstance(error, procesos.WorkerCrashedError)
        assert "task 7 of map(die_on)" in str(error)
        expected = {"sigkill": "SIGKILL", "exit": "exited with code 3", "segfault": "SIGSEGV"}
        assert expected[how] in str(error)
        # The pool replaced the worker and goes on.
        assert ex.submit(square, 5).result() == 25
        assert sum(s.crashes for s in ex.stats()) >= 1
        assert sum(s.replacements for s in ex.stats()) >= 1


@pytest.mark.parametrize("method", START_METHODS)
def test_retries_recover_a_task_that_killed_its_worker_once(method: str, tmp_path: Path) -> None:
    marker = str(tmp_path / "died")
    with procesos.Executor(2, retries=1, context=method) as ex:
        assert list(ex.map(die_once, range(20), [5] * 20, [marker] * 20)) == [
            i * 10 for i in range(20)]
    assert Path(marker).exists()


def test_a_submitted_task_that_kills_its_worker_fails_alone() -> None:
    with procesos.Executor(2) as ex:
        doomed = ex.submit(die_on, 1, 1, "sigkill")
        fine = [ex.submit(square, i) for i in range(10)]
        with pytest.raises(procesos.WorkerCrashedError,
                           match=re.escape("die_on(1, 1, 'sigkill')")):
            doomed.result()
        assert [f.result() for f in fine] == [i * i for i in range(10)]


def test_retries_give_up_after_the_last_attempt() -> None:
    with procesos.Executor(2, retries=2) as ex:
        future = ex.submit(die_on, 1, 1, "exit")
        with pytest.raises(procesos.WorkerCrashedError, match=r"\(attempt 3\)"):
            future.result()
        assert sum(s.crashes for s in ex.stats()) == 3


@pytest.mark.parametrize("method", START_METHODS)
def test_task_timeout_stops_that_task_and_the_pool_goes_on(method: str, tmp_path: Path) -> None:
    fifo = str(tmp_path / "never")
    os.mkfifo(fifo)
    with procesos.Executor(2, timeout=0.5, context=method) as ex:
        results = list(ex.map(hang_on, range(6), [3] * 6, [fifo] * 6, return_exceptions=True))
        assert isinstance(results[3], procesos.TaskTimeoutError)
        assert isinstance(results[3], TimeoutError)
        assert "task 3 of map(hang_on)" in str(results[3])
        assert [r for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4, 5]
        assert ex.submit(square, 3).result() == 9


@pytest.mark.parametrize("max_tasks", [None, 1])
def test_an_argument_whose_unpickling_hangs_times_out_and_the_pool_goes_on(
    max_tasks: int | None, tmp_path: Path,
) -> None:
    fifo = str(tmp_path / "never")
    os.mkfifo(fifo)
    with procesos.Executor(1, timeout=0.5, max_tasks_per_worker=max_tasks) as ex:
        future = ex.submit(square, HangsWhenLoaded(fifo))
        with pytest.raises(procesos.TaskTimeoutError, match="did not start within its timeout"):
            future.result(timeout=30)
        assert ex.submit(square, 3).result(timeout=30) == 9


def test_a_slow_initializer_is_not_held_to_the_task_timeout(tmp_path: Path) -> None:
    # A worker's start (its initializer) is not a task: one that takes longer
    # than the timeout (loading a model, say) is waited for.
    fifo = str(tmp_path / "release")
    os.mkfifo(fifo)
    release = threading.Thread(target=_release_after_timeouts, args=(fifo, 3 * 0.2))
    with procesos.Executor(1, timeout=0.2, initializer=init_blocked_on,
                           initargs=(fifo,)) as ex:
        future = ex.submit(square, 2)
        release.start()
        assert future.result(timeout=60) == 4
    release.join()


def _release_after_timeouts(fifo: str, seconds: float) -> None:
    # The initializer waits on the FIFO, which this opens only once the timeout
    # has passed thrice over: a slow initializer is what is tested, so a sleep.
    time.sleep(seconds)
    with open(fifo, "w") as writer:
        writer.write("go")


def test_a_worker_stopped_while_idle_does_not_hold_a_task_past_its_timeout() -> None:
    with procesos.Executor(1, timeout=0.5) as ex:
        worker = ex.submit(pid_of).result(timeout=30)
        os.kill(worker, signal.SIGSTOP)
        try:
            # Killed once the task has waited its timeout; it runs on a replacement.
            assert ex.submit(pid_of).result(timeout=30) != worker
        finally:
            try:
                os.kill(worker, signal.SIGCONT)
            except ProcessLookupError:
                pass


def test_unpicklable_argument_fails_only_its_task() -> None:
    import threading

    with procesos.Executor(2) as ex:
        results = list(ex.map(square, [1, threading.Lock(), 3], return_exceptions=True))
        assert results[0] == 1 and results[2] == 9
        assert isinstance(results[1], procesos.SerializationError)
        assert "argument 0, a _thread.lock object" in str(results[1])
        assert "task 1 of map(square)" in str(results[1])
        future = ex.submit(square, threading.Lock())
        with pytest.raises(procesos.SerializationError, match=r"argument 0, a _thread\.lock"):
            future.result()


class _Holder:
    def __init__(self, held: object) -> None:
        self.held = held


def test_an_unpicklable_part_deep_in_an_argument_or_result_is_named_where_it_lies() -> None:
    import threading

    lock = threading.Lock()
    with procesos.Executor(1) as ex:
        with pytest.raises(procesos.SerializationError) as caught:
            ex.submit(len, {"a": [1, _Holder(lock)]}).result(timeout=30)
        assert ("argument 0, a builtins.dict object, cannot be pickled" in str(caught.value))
        assert "inside it, ['a'][1].held is a _thread.lock object" in str(caught.value)
        with pytest.raises(procesos.SerializationError) as caught:
            ex.submit(return_a_lock_in_a_list).result(timeout=30)
        assert "inside it, [0] is a _thread.lock object" in str(caught.value)
    p = procesos.Process(target=len, args=([_Holder(lock)],))
    with pytest.raises(procesos.SerializationError, match=r"inside it, \[0\]\.held is a _thread"):
        p.start()


def _function_holding(held: object) -> Any:
    def task() -> object:  # local: pickled by value, with its closure
        return held
    return task


def test_a_function_that_cannot_be_pickled_names_the_global_or_closure_variable() -> None:
    import threading

    namespace: dict[str, Any] = {"the_lock": threading.Lock()}
    exec("def uses_a_global():\n    return [x for x in [the_lock]]\n", namespace)
    by_global = namespace["uses_a_global"]  # as a script's own function: pickled by value
    by_global.__module__ = "__main__"
    counter = procesos.Value("i", 0)
    with procesos.Executor(1) as ex:
        with pytest.raises(procesos.SerializationError) as caught:
            ex.submit(by_global)
        assert "inside it, its global the_lock is a _thread.lock object" in str(caught.value)
        with pytest.raises(procesos.SerializationError) as caught:
            ex.submit(_function_holding(counter))
        text = str(caught.value)
        assert ("inside it, its closure's variable held is a "
                "multiprocessing.sharedctypes.Synchronized object") in text
        assert "._obj" not in text  # the Value pickles itself: not its attributes
        assert "initargs=" in text  # the way that works
    p = procesos.Process(target=by_global)
    with pytest.raises(procesos.SerializationError, match="its global the_lock is a _thread"):
        p.start()


def test_a_queue_or_lock_as_a_task_argument_is_refused_with_the_ways_that_work() -> None:
    queue, lock = procesos.Queue(), procesos.Lock()
    with procesos.Executor(1) as ex:
        for thing, kind in ((queue, "Queue"), (lock, "Lock")):
            with pytest.raises(procesos.SerializationError) as caught:
                ex.submit(square, thing).result(timeout=30)
            text = str(caught.value)
            assert f"{kind} objects should only be shared between processes" in text
            assert "initargs=" in text and "Manager().Queue()" in text
        results = list(ex.map(square, [2, queue], return_exceptions=True))
        assert results[0] == 4 and "initargs=" in str(results[1])
    queue.close()
    queue.join_thread()


def test_unpicklable_result_fails_only_its_task() -> None:
    with procesos.Executor(2) as ex:
        results = list(ex.map(return_lock, range(3), return_exceptions=True))
        assert results[0] == 0 and results[2] == 2
        assert isinstance(results[1], procesos.SerializationError)
        assert "the result, a _thread.lock object" in str(results[1])


def test_unpicklable_exception_fails_only_its_task() -> None:
    with procesos.Executor(2) as ex:
        results = list(ex.map(raise_unpicklable, range(3), return_exceptions=True))
        assert results[0] == 0 and results[2] == 2
        # As from a Process: its own class, without the lock it held.
        assert type(results[1]).__qualname__ == "Unpicklable"
        assert not hasattr(results[1], "lock")


def test_unpicklable_function_is_refused_at_once() -> None:
    import threading

    lock = threading.Lock()
    with procesos.Executor(1) as ex, pytest.raises(procesos.SerializationError, match="function"):
        ex.submit(lambda: lock)


def test_task_exception_keeps_its_type_and_the_workers_traceback() -> None:
    with procesos.Executor(2) as ex:
        with pytest.raises(ValueError, match="bad item 2") as info:
            ex.submit(fail_on, 2).result()
        cause = info.value.__cause__
        assert isinstance(cause, procesos.RemoteTraceback)
        assert "in fail_on" in cause.text and "engine_tasks.py" in cause.text
        assert "_worker.py" not in cause.text
        assert cause.tb == cause.text  # the standard library's name for it
        with pytest.raises(ValueError, match="bad item 2"):
            list(ex.map(fail_on, range(5)))


@pytest.mark.parametrize("method", START_METHODS)
def test_initializer_that_raises_breaks_the_pool_with_a_clear_error(method: str) -> None:
    ex = procesos.Executor(2, initializer=init_that_raises, context=method)
    try:
        with pytest.raises(procesos.BrokenExecutorError, match="initializer raised RuntimeError"
                           ) as info:
            ex.submit(square, 2).result()
        assert isinstance(info.value.__cause__, RuntimeError)
        with pytest.raises(procesos.BrokenExecutorError):
            ex.submit(square, 2)
        assert sum(s.replacements for s in ex.stats()) <= 2
    finally:
        ex.shutdown()


def test_initializer_that_exits_does_not_respawn_forever() -> None:
    ex = procesos.Executor(1, initializer=init_that_exits)
    try:
        with pytest.raises(procesos.BrokenExecutorError, match="keep dying"):
            ex.submit(square, 2).result()
        assert ex.stats()[0].replacements < 5
    finally:
        ex.shutdown()


def test_max_memory_per_worker_replaces_a_worker_above_it() -> None:
    with procesos.Executor(1, max_memory_per_worker=150 << 20) as ex:
        first = ex.submit(hold_memory, 200).result()
        second = ex.submit(pid_of).result()
        assert first != second
        assert ex.stats()[0].crashes == 0 and ex.stats()[0].replacements == 1


def test_max_tasks_per_worker_replaces_workers() -> None:
    with procesos.Executor(2, max_tasks_per_worker=3) as ex:
        pids = list(ex.map(pid_of, range(30)))
    counts = {pid: pids.count(pid) for pid in set(pids)}
    assert max(counts.values()) <= 3
    assert len(counts) >= 10


def test_sigkill_after_an_out_of_memory_kill_is_named_so(monkeypatch: pytest.MonkeyPatch) -> None:
    kills = iter(range(1000, 1100))  # more than the engine saw when it started
    monkeypatch.setattr(_faults, "oom_kills", lambda: next(kills))
    with procesos.Executor(1) as ex:
        with pytest.raises(procesos.WorkerCrashedError, match=_crash.OOM_HINT):
            ex.submit(die_on, 1, 1, "sigkill").result()


def test_crash_hint_names_high_memory_and_signals() -> None:
    assert _crash.OOM_HINT in _crash.crash_hint(-signal.SIGKILL, 300 << 20, 100 << 20, False)
    assert _crash.OOM_HINT not in _crash.crash_hint(-signal.SIGKILL, 1 << 20, 100 << 20, False)
    assert _crash.OOM_HINT not in _crash.crash_hint(-signal.SIGSEGV, 300 << 20, 100 << 20, True)
    assert "segmentation fault" in _crash.crash_hint(-signal.SIGSEGV, 0, None, False)
    # Without memory evidence, a worker's SIGKILL is not put on the memory killer.
    assert _crash.crash_hint(-signal.SIGKILL, 1 << 20, None, False) == (
        "SIGKILL comes from another process or from the kernel")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("end", ["shutdown", "terminate", "answer, then shutdown"])
def test_a_pool_ended_while_its_workers_start_leaves_nothing(end: str) -> None:
    # Under the zygote, the workers after the first start in a thread of their
    # own: however early the pool ends, each that started is stopped (and the
    # no_leftovers fixture finds no other process).
    ex = procesos.Executor(4, context="zygote")
    if end == "answer, then shutdown":
        assert ex.submit(square, 3).result(timeout=30) == 9
    first = [s.pid for s in ex.stats() if s.pid]
    assert first, "the constructor starts the first worker"
    if end == "terminate":
        ex.terminate()
    else:
        ex.shutdown(wait=True)
    assert not [pid for pid in first if psutil.pid_exists(pid)]
    assert all(s.pid is None for s in ex.stats())


def test_a_late_wake_never_writes_into_a_file_that_reused_the_pipes_number(tmp_path: Path) -> None:
    # Threads wake the dispatcher without the engine's lock (a future's done(),
    # a lock-free submit). One that does so after the engine has ended must not
    # write into whatever file took its wake pipe's descriptor number.
    ex = procesos.Executor(1)
    assert ex.submit(square, 2).result(timeout=30) == 4
    engine = ex._engine
    ex.shutdown(wait=True)
    files = [os.open(tmp_path / f"f{i}", os.O_RDWR | os.O_CREAT) for i in range(4)]
    try:
        engine.woken = False  # as a thread that checked it before the end would see it
        engine.wake()
        assert [os.fstat(fd).st_size for fd in files] == [0, 0, 0, 0]
    finally:
        for fd in files:
            os.close(fd)


def test_a_dead_workers_exit_is_waited_for_outside_the_engines_lock(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Waiting for a worker's exit can take seconds (its relayed output): under
    # the lock, every submit() and every caller reading its own result would wait.
    ex = procesos.Executor(1)
    assert ex.submit(square, 2).result(timeout=30) == 4
    engine = ex._engine
    worker = engine.books.workers[0]
    lock_free_while_waiting: list[bool] = []
    waited = threading.Event()
    join = worker.process.join

    def recording_join(timeout: float | None = None) -> None:
        free = engine.lock.acquire(blocking=False)
        if free:
            engine.lock.release()
        lock_free_while_waiting.append(free)
        join(timeout)
        waited.set()

    monkeypatch.setattr(worker.process, "join", recording_join)
    os.kill(worker.pid, signal.SIGKILL)
    assert waited.wait(30)
    assert ex.submit(square, 3).result(timeout=30) == 9  # its replacement
    ex.shutdown(wait=True)
    assert lock_free_while_waiting == [True]


def test_closed_pools_refuse_new_work() -> None:
    ex = procesos.Executor(1)
    ex.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1)
    pool = procesos.Pool(1)
    pool.close()
    with pytest.raises(ValueError, match="Pool not running"):
        pool.apply(square, (1,))
    pool.join()


def test_shutdown_cancel_futures_cancels_what_has_not_started(tmp_path: Path) -> None:
    fifo = str(tmp_path / "go")
    os.mkfifo(fifo)
    ex = procesos.Executor(1)
    first = ex.submit(block_on_fifo, fifo, "first")
    rest = [ex.submit(square, i) for i in range(10)]
    with open(fifo, "w") as release:  # opens once the first task is running
        ex.shutdown(wait=False, cancel_futures=True)
        release.write("go")
    ex.shutdown(wait=True)
    assert first.result() == "first"
    assert all(f.cancelled() or f.result() == i * i for i, f in enumerate(rest))
    assert sum(f.cancelled() for f in rest) >= 8


def test_a_callback_of_a_future_cancelled_by_shutdown_may_submit_and_is_refused(
        tmp_path: Path) -> None:
    # cancel() runs the future's callbacks: under the engine's lock, one that
    # submits (and would be told the executor is shut down) waited for ever.
    fifo = str(tmp_path / "go")
    os.mkfifo(fifo)
    ex = procesos.Executor(1)
    first = ex.submit(block_on_fifo, fifo, "first")
    queued = [ex.submit(square, i) for i in range(4)]  # one may go ahead to the worker
    refused: list[BaseException] = []

    def submit_again(_: object) -> None:
        try:
            ex.submit(square, 9)
        except RuntimeError as exc:
            refused.append(exc)

    queued[-1].add_done_callback(submit_again)
    ended = threading.Event()

    def shut_down() -> None:
        ex.shutdown(wait=False, cancel_futures=True)
        ended.set()

    with open(fifo, "w") as release:  # opens once the first task is running
        threading.Thread(target=shut_down, daemon=True).start()
        returned = ended.wait(30)
        release.write("go")
    ex.shutdown(wait=True)
    assert returned, "shutdown(cancel_futures=True) hung in a future's callback"
    assert first.result() == "first"
    assert queued[-1].cancelled()
    assert [str(e) for e in refused] == ["cannot schedule new futures after shutdown"]


def test_imap_over_an_endless_generator_reads_input_lazily() -> None:
    pulled = 0

    def endless():
        nonlocal pulled
        while True:
            pulled += 1
            yield pulled

    with procesos.Pool(2) as pool:
        results = pool.imap(square, endless())
        for i in range(1, 300_001):
            assert next(results) == i * i
            if i % 10_000 == 0:  # never more than a few chunks per worker ahead
                assert pulled - i <= (2 * 2 + 2) * MAX_CHUNK + 64
        results.close()


def _script(tmp_path: Path, body: str, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / "script.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n{body}")
    return subprocess.Popen([sys.executable, str(script), str(tmp_path), *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_files(directory: Path, pattern: str, count: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while len(list(directory.glob(pattern))) < count:
        assert time.monotonic() < deadline, f"no {pattern} in {directory}"
        time.sleep(0.01)


_BLOCKING_MAP = """
import os, procesos
from engine_tasks import record_start_and_block
ex = procesos.Executor(2, max_tasks_per_worker=int(sys.argv[2]) or None)
open(os.path.join(sys.argv[1], "zygote.tmp"), "w").write(str(procesos.zygote_pid()))
os.rename(os.path.join(sys.argv[1], "zygote.tmp"), os.path.join(sys.argv[1], "zygote"))
list(ex.map(record_start_and_block, [sys.argv[1]] * 10, range(10)))
"""


def _pids(tmp_path: Path) -> list[int]:
    """The zygote's, the workers' and the tasks' pids (each task's marker file names
    its process and holds its parent's: its worker's, if a worker forked it)."""
    started = list(tmp_path.glob("started-*[0-9]"))
    processes = {int(p.name.split("-")[1]) for p in started}
    processes |= {int(p.read_text()) for p in started}
    return [int((tmp_path / "zygote").read_text()), *processes]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("max_tasks", [0, 1])  # 1: a worker forks per task
def test_ctrl_c_during_a_map_ends_everything_promptly(tmp_path: Path, max_tasks: int) -> None:
    proc = _script(tmp_path, _BLOCKING_MAP, str(max_tasks))
    try:
        _wait_for_files(tmp_path, "zygote", 1)
        _wait_for_files(tmp_path, "started-*[0-9]", 2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert "KeyboardInterrupt" in err
    assert err.count("Traceback") == 1, err
    workers = [psutil.Process(pid) for pid in _pids(tmp_path) if psutil.pid_exists(pid)]
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert not alive


@pytest.mark.timeout(60)
@pytest.mark.parametrize("max_tasks", [0, 1])  # 1: a worker forks per task
def test_killed_parent_leaves_no_orphans(tmp_path: Path, max_tasks: int) -> None:
    proc = _script(tmp_path, _BLOCKING_MAP, str(max_tasks))
    try:
        _wait_for_files(tmp_path, "zygote", 1)
        _wait_for_files(tmp_path, "started-*[0-9]", 2)
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert not still_alive(_pids(tmp_path), timeout=5)


def test_workers_started_under_the_state_of_the_initializer() -> None:
    from engine_tasks import set_state

    with procesos.Executor(2, initializer=set_state, initargs=("ready",)) as ex:
        assert set(ex.map(get_state, range(10))) == {"ready"}


def test_what_cannot_be_unpickled_in_the_worker_fails_only_its_task() -> None:
    with procesos.Executor(1) as ex:
        with pytest.raises(procesos.SerializationError,
                           match="the arguments could not be unpickled in the worker"):
            ex.submit(abs, LoadsNowhere()).result(timeout=60)
        with pytest.raises(procesos.SerializationError,
                           match="the function could not be unpickled in the worker"):
            ex.submit(LoadsNowhere(), 3).result(timeout=60)
        assert ex.submit(abs, -1).result(timeout=60) == 1


@pytest.mark.parametrize("fork_per_task", ["1", "0"])
@pytest.mark.parametrize("max_tasks", [1, 2])
def test_what_cannot_be_unpickled_does_not_use_up_a_limited_workers_tasks(
        max_tasks: int, fork_per_task: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker never ran the item whose argument it could not load: it must
    # still take max_tasks tasks (it once waited for them while the parent,
    # having counted that item, sent it nothing: the pool hung).
    monkeypatch.setenv("PROCESOS_FORK_PER_TASK", fork_per_task)
    with procesos.Executor(1, max_tasks_per_worker=max_tasks) as ex:
        for _ in range(2):
            with pytest.raises(procesos.SerializationError, match="arguments could not"):
                ex.submit(abs, LoadsNowhere()).result(timeout=60)
            with pytest.raises(procesos.SerializationError, match="function could not"):
                ex.submit(LoadsNowhere(), 3).result(timeout=60)
            mapped = list(ex.map(LoadsNowhere(), [1, 2], return_exceptions=True))
            assert all(isinstance(r, procesos.SerializationError) for r in mapped), mapped
            assert [ex.submit(abs, -x).result(timeout=60) for x in range(3)] == [0, 1, 2]


def _main_thread_waits() -> bool:
    """Whether the main thread is blocked in a ``threading`` wait (a condition's, an event's)."""
    frame = sys._current_frames().get(threading.main_thread().ident)  # type: ignore[arg-type]
    return (frame is not None and frame.f_code.co_name == "wait"
            and frame.f_code.co_filename == threading.__file__)


def _interrupt_once_running(fifo: Path, count: int, once_main_waits: bool = False
                            ) -> tuple[threading.Thread, list[int]]:
    """A thread that waits until *count* tasks have written their worker's pid to
    *fifo* (and, with *once_main_waits*, until the main thread waits for a result),
    then sends SIGINT to this process's main thread (Ctrl-C)."""
    os.mkfifo(fifo)
    pids: list[int] = []

    def wait_then_interrupt() -> None:
        fd = os.open(fifo, os.O_RDWR)  # never blocks, and never sees end-of-file
        try:
            received = b""
            while received.count(b"\n") < count:
                received += os.read(fd, 64)
        finally:
            os.close(fd)
        pids.extend(int(line) for line in received.split())
        while once_main_waits and not _main_thread_waits():
            time.sleep(0.001)  # it is on its way there: a Ctrl-C before would hit something else
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # type: ignore[arg-type]

    thread = threading.Thread(target=wait_then_interrupt, daemon=True)
    thread.start()
    return thread, pids


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["Executor.map", "Pool.map", "Pool.starmap", "Pool.imap",
                                 "Pool.imap_unordered"])
def test_ctrl_c_while_waiting_for_a_map_stops_its_tasks_and_the_pool_goes_on(
        how: str, tmp_path: Path) -> None:
    # As in Jupyter, where interrupting a cell must stop what the cell started
    # while the executor made in an earlier cell stays usable.
    fifo = tmp_path / "started"
    face, method = how.split(".")
    pool: Any = procesos.Executor(2) if face == "Executor" else procesos.Pool(2)
    try:
        thread, pids = _interrupt_once_running(fifo, 2)
        items = [(str(fifo), x) for x in range(6)]
        with pytest.raises(KeyboardInterrupt):
            if method == "starmap":
                pool.starmap(announce_and_block, items)
            elif method == "map" and face == "Pool":
                pool.map(functools.partial(announce_and_block, str(fifo)), range(6))
            elif face == "Executor":
                list(pool.map(announce_and_block, *zip(*items)))
            else:
                list(getattr(pool, method)(functools.partial(announce_and_block, str(fifo)),
                                           range(6)))
        thread.join(30)
        assert len(pids) == 2
        # The blocked tasks were stopped: their workers are gone, new ones answer.
        assert not still_alive(pids)
        if face == "Executor":
            assert pool.submit(square, 7).result(timeout=30) == 49
            assert list(pool.map(square, range(4))) == [0, 1, 4, 9]
            stats = pool.stats()
        else:
            assert pool.apply_async(square, (7,)).get(timeout=30) == 49
            assert pool.map(square, range(4)) == [0, 1, 4, 9]
            stats = pool._engine.stats()
        assert sum(s.crashes for s in stats) == 0  # stopped on purpose, not crashed
        assert sum(s.replacements for s in stats) == 2
    finally:
        pool.terminate()
    if face == "Pool":
        pool.join()


@pytest.mark.timeout(60)
def test_other_work_held_by_a_stopped_worker_still_runs(tmp_path: Path) -> None:
    fifo = tmp_path / "started"
    with procesos.Executor(1) as ex:
        # Once it waits in next(): a Ctrl-C while submit() runs would interrupt that.
        thread, pids = _interrupt_once_running(fifo, 1, once_main_waits=True)
        results = ex.map(announce_and_block, [str(fifo)] * 3, range(3))
        later = ex.submit(square, 5)  # queued behind the blocked task, in the same worker
        with pytest.raises(KeyboardInterrupt):
            next(results)
        thread.join(30)
        assert later.result(timeout=30) == 25
        assert not still_alive(pids)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("max_tasks", [1, None])
def test_threads_that_tasks_leave_running_do_not_keep_a_worker_alive(
        max_tasks: int | None, capfd: pytest.CaptureFixture[str]) -> None:
    # The interpreter waits for such threads at exit: a retired worker never
    # left (its slot got no replacement, the map hung) and shutdown never ended.
    with procesos.Executor(2, max_tasks_per_worker=max_tasks) as ex:
        answers = [f.result(timeout=30)
                   for f in [ex.submit(leave_a_thread_running, x) for x in range(4)]]
    assert [x for x, _ in answers] == [0, 1, 2, 3]
    pids = sorted({pid for _, pid in answers})
    if max_tasks == 1:
        assert len(pids) == 4  # else the tasks share the workers that are ready first
    assert not still_alive(pids)
    err = capfd.readouterr().err
    for pid in pids:
        assert (f"procesos: worker {pid} leaves the pool while threads started by its tasks "
                "still run (left-by-") in err


@pytest.mark.timeout(60)
def test_a_retired_worker_is_replaced_while_it_exits(tmp_path: Path) -> None:
    fifo = tmp_path / "exit"
    os.mkfifo(fifo)
    with procesos.Executor(1, max_tasks_per_worker=1) as ex:
        first = ex.submit(exit_only_after_fifo, str(fifo)).result(timeout=30)
        # The first worker cannot exit yet; its replacement already runs tasks.
        assert ex.submit(is_alive, first).result(timeout=30) is True
        fd = os.open(fifo, os.O_WRONLY)
        os.close(fd)  # end of file: the first worker's exit goes on
    assert not still_alive([first])


@pytest.mark.timeout(60)
def test_a_process_forked_by_a_task_does_not_become_a_second_worker(
        capfd: pytest.CaptureFixture[str]) -> None:
    # It returned into the worker's loop on the same pipes: its result was taken
    # for the worker's, the two read each other's batches, and shutdown hung.
    with procesos.Executor(2) as ex:
        assert list(ex.map(fork_and_return, range(6))) == [("worker", x) for x in range(6)]
        assert list(ex.map(square, range(50))) == [x * x for x in range(50)]
        assert sum(s.crashes for s in ex.stats()) == 0
    assert "forked by a task in worker" in capfd.readouterr().err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["zygote", "fork"])
def test_a_task_may_run_a_pool_of_its_own_under_fork(
        method: str, capfd: pytest.CaptureFixture[str]) -> None:
    # The inner pool's workers are forks of a worker: each took itself for a
    # stray copy made by a task and left after its first task.
    with procesos.Executor(2, context=method) as ex:
        assert list(ex.map(sum_with_a_pool_of_its_own, [10, 20])) == [55, 210]
        assert sum(s.crashes for s in ex.stats()) == 0
    assert "forked by a task" not in capfd.readouterr().err


@pytest.mark.timeout(60)
def test_a_call_sent_ahead_to_a_worker_stopped_for_ctrl_c_still_runs(tmp_path: Path) -> None:
    fifo = tmp_path / "started"
    with procesos.Executor(1) as ex:
        thread, pids = _interrupt_once_running(fifo, 1)
        results = ex.map(announce_and_block, [str(fifo)], [0])  # one item: nothing else ahead
        later = ex.submit(square, 5)  # sent ahead to the same worker, behind the blocked task
        with pytest.raises(KeyboardInterrupt):
            next(results)
        thread.join(30)
        assert later.result() == 25
        assert not still_alive(pids)


@pytest.mark.timeout(120)
def test_workers_that_each_run_one_task_are_replaced_by_the_starter_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Under the zygote the replacements start in a thread of their own while the
    # dispatcher serves the other workers: none lost, none doubled. (Else such
    # workers fork per task and are never replaced: test_task_fork.py.)
    monkeypatch.setenv("PROCESOS_FORK_PER_TASK", "0")
    with procesos.Executor(3, max_tasks_per_worker=1) as ex:
        pids = list(ex.map(pid_of, range(40)))
        replacements = sum(s.replacements for s in ex.stats())
    assert len(set(pids)) == 40
    assert replacements >= 37 - 3  # the last ones may retire after the map ended


@pytest.mark.timeout(120)
@pytest.mark.parametrize("end", ["shutdown", "terminate"])
def test_a_pool_of_one_task_workers_ended_mid_map_leaves_nothing(end: str) -> None:
    ex = procesos.Executor(3, max_tasks_per_worker=1)
    results = ex.map(pid_of, range(200))
    first = [next(results) for _ in range(10)]
    assert len(set(first)) == 10
    if end == "terminate":
        ex.terminate()
    else:
        ex.shutdown(wait=True, cancel_futures=True)
    assert all(s.pid is None for s in ex.stats())
