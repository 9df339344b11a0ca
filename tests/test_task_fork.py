"""One task per worker (``max_tasks_per_worker=1``, ``maxtasksperchild=1``): each task
runs in a fork of a worker that stays (``procesos._engine._task_fork``), and the
faults look as they do without it: a task that ends its process fails alone (or
is retried), a hung one times out and its process is gone, the initializer runs
in each task's process, Ctrl-C and a killed parent leave nothing behind (those
three, killed tasks under each start method among them, in
test_engine_faults.py, parametrized)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import procesos
from conftest import START_METHODS, still_alive
from engine_tasks import (
    DiesBeforeItsForkIsNoted,
    LoadsNowhere,
    StartsThreadWhenLoaded,
    block_on_fifo,
    die_on,
    die_once,
    fork_and_return,
    init_that_exits,
    init_that_raises,
    initialized_here,
    initialized_here_and_pid,
    make_a_result_frame_and_die,
    pid_of,
    pids_of,
    put_square,
    record_start_and_block,
    remember_pid,
    return_lock,
    set_state,
    square,
    write_pid_then_exit,
)
from procesos._engine._task_fork import SUPPORTED
from procesos._shm import tracker_stats

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not SUPPORTED, reason="a worker forks per task on Linux only")]


def _replacements(ex: procesos.Executor) -> int:
    return sum(s.replacements for s in ex.stats())


@pytest.mark.parametrize("method", [*START_METHODS, "forkserver"])
def test_each_task_runs_in_a_process_of_its_own_forked_by_a_worker_that_stays(
        method: str) -> None:
    with procesos.Executor(2, context=method, max_tasks_per_worker=1) as ex:
        rows = list(ex.map(pids_of, range(30)))
        submitted = [ex.submit(pids_of, x).result(timeout=60) for x in range(30, 35)]
        replacements = _replacements(ex)
        workers = {s.pid for s in ex.stats()}
    rows += submitted
    assert [row[0] for row in rows] == list(range(35))
    assert len({row[1] for row in rows}) == 35  # a process per task
    assert {row[2] for row in rows} <= workers  # each forked by a worker of the pool
    assert replacements == 0


def test_a_pool_with_maxtasksperchild_1_gives_every_item_of_a_chunk_its_own_process() -> None:
    with procesos.Pool(2, maxtasksperchild=1) as pool:
        rows = pool.map(pids_of, range(20), chunksize=5)
    assert [row[0] for row in rows] == list(range(20))
    assert len({row[1] for row in rows}) == 20


def test_the_initializer_runs_in_each_tasks_process() -> None:
    with procesos.Executor(2, max_tasks_per_worker=1, initializer=remember_pid) as ex:
        assert list(ex.map(initialized_here, range(12))) == [True] * 12


def test_a_submitted_task_that_ends_its_process_fails_alone() -> None:
    with procesos.Executor(2, max_tasks_per_worker=1) as ex:
        doomed = ex.submit(die_on, 1, 1, "sigkill")
        fine = [ex.submit(square, i) for i in range(10)]
        with pytest.raises(procesos.WorkerCrashedError,
                           match=re.escape("die_on(1, 1, 'sigkill')")):
            doomed.result(timeout=60)
        assert [f.result(timeout=60) for f in fine] == [i * i for i in range(10)]


def test_retries_run_a_task_that_ended_its_process_again_once(tmp_path: Path) -> None:
    marker = str(tmp_path / "died")
    with procesos.Executor(2, retries=1, max_tasks_per_worker=1) as ex:
        assert list(ex.map(die_once, range(10), [5] * 10, [marker] * 10)) == [
            i * 10 for i in range(10)]
        assert sum(s.crashes for s in ex.stats()) == 1
    assert Path(marker).exists()


@pytest.mark.parametrize("method", START_METHODS)
def test_a_hung_task_times_out_and_its_process_is_gone(method: str, tmp_path: Path) -> None:
    with procesos.Executor(2, timeout=0.5, context=method, max_tasks_per_worker=1) as ex:
        hung = ex.submit(record_start_and_block, str(tmp_path), 1)
        with pytest.raises(procesos.TaskTimeoutError):
            hung.result(timeout=60)
        assert list(ex.map(square, range(6))) == [x * x for x in range(6)]
    started = list(tmp_path.glob("started-*[0-9]"))
    assert len(started) == 1
    pid = int(started[0].name.split("-")[1])
    assert not still_alive([pid], timeout=10)  # the kernel killed it with its worker


def test_what_a_dead_tasks_process_made_for_the_parent_is_freed() -> None:
    # Made in shared memory for the results channel, never sent: the parent frees
    # it when the worker that forked that process has died after it.
    with procesos.Executor(1, max_tasks_per_worker=1) as ex:
        with pytest.raises(procesos.WorkerCrashedError, match="exited with code 5"):
            ex.submit(make_a_result_frame_and_die, 8).result(timeout=60)
        assert ex.submit(square, 3).result(timeout=60) == 9
        assert tracker_stats()["segment_bytes"] < 8 << 20


def test_an_argument_that_cannot_be_unpickled_fails_only_its_task() -> None:
    with procesos.Executor(1, max_tasks_per_worker=1) as ex:
        with pytest.raises(procesos.SerializationError,
                           match="the arguments could not be unpickled in the worker"):
            ex.submit(abs, LoadsNowhere()).result(timeout=60)
        assert ex.submit(abs, -1).result(timeout=60) == 1


def test_a_result_that_cannot_be_pickled_fails_only_its_task() -> None:
    with procesos.Executor(2, max_tasks_per_worker=1) as ex:
        results = list(ex.map(return_lock, range(3), return_exceptions=True))
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], procesos.SerializationError)
    assert "the result, a _thread.lock object" in str(results[1])


def test_an_initializer_that_raises_breaks_the_pool_with_its_error() -> None:
    ex = procesos.Executor(2, max_tasks_per_worker=1, initializer=init_that_raises)
    try:
        with pytest.raises(procesos.BrokenExecutorError,
                           match="initializer raised RuntimeError") as info:
            ex.submit(square, 2).result(timeout=60)
        assert isinstance(info.value.__cause__, RuntimeError)
    finally:
        ex.shutdown()


def test_an_initializer_that_ends_its_process_breaks_the_pool_and_says_so() -> None:
    ex = procesos.Executor(1, max_tasks_per_worker=1, initializer=init_that_exits)
    try:
        with pytest.raises(procesos.BrokenExecutorError,
                           match=r"initializer ended its process \(exited with code 7\)"):
            ex.submit(square, 2).result(timeout=60)
    finally:
        ex.shutdown()


def test_what_a_task_puts_on_a_queue_arrives_though_its_process_ends_at_once() -> None:
    queue = procesos.Queue()
    try:
        with procesos.Executor(2, max_tasks_per_worker=1, initializer=set_state,
                               initargs=(queue,)) as ex:
            assert list(ex.map(put_square, range(20))) == list(range(20))
        assert sorted(queue.get(timeout=30) for _ in range(20)) == [x * x for x in range(20)]
    finally:
        queue.close()
        queue.join_thread()


def test_a_process_a_task_forks_does_not_go_on_as_a_worker() -> None:
    with procesos.Executor(2, max_tasks_per_worker=1) as ex:
        assert list(ex.map(fork_and_return, range(6))) == [("worker", x) for x in range(6)]


def test_a_worker_with_a_thread_of_its_own_runs_the_task_itself_and_is_replaced() -> None:
    # Loading this argument starts a thread in the worker: a fork beside it would
    # not be safe, so the worker runs the task (after the initializer) and retires.
    with procesos.Executor(1, max_tasks_per_worker=1, initializer=remember_pid) as ex:
        initialized, first_worker = ex.submit(
            initialized_here_and_pid, StartsThreadWhenLoaded()).result(timeout=60)
        rows = list(ex.map(pids_of, range(4)))
        assert _replacements(ex) == 1
    assert initialized is True
    assert first_worker not in {row[2] for row in rows}  # it ran the task itself and left
    assert len({row[1] for row in rows}) == 4


def test_a_memory_limit_keeps_one_process_per_worker() -> None:
    # The limit is on a worker's memory: such workers run their task themselves.
    with procesos.Executor(1, max_tasks_per_worker=1, max_memory_per_worker="1GB") as ex:
        rows = list(ex.map(pids_of, range(3)))
        assert _replacements(ex) >= 2
    assert len({row[1] for row in rows}) == 3
    assert all(row[2] == os.getpid() or row[2] == procesos.zygote_pid() for row in rows)


def test_fork_per_task_off_replaces_the_worker_after_each_task(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESOS_FORK_PER_TASK", "0")
    with procesos.Executor(1, max_tasks_per_worker=1) as ex:
        rows = list(ex.map(pids_of, range(4)))
        assert _replacements(ex) >= 3
    assert len({row[1] for row in rows}) == 4


def test_a_task_whose_process_dies_is_named_with_that_process_pid(tmp_path: Path) -> None:
    # The task's own process (a fork of its worker) died, not the worker: the
    # error gives the pid that a user finds in their logs or the kernel's.
    marker = str(tmp_path / "pid")
    with procesos.Executor(1, max_tasks_per_worker=1) as ex:
        future = ex.submit(write_pid_then_exit, marker, 3)
        with pytest.raises(procesos.WorkerCrashedError, match="a fork of its worker") as info:
            future.result(timeout=60)
    task_pid = int(Path(marker).read_text())
    assert info.value.pid == task_pid
    assert f"(pid {task_pid})" in str(info.value)
    assert info.value.exitcode == 3


def test_a_worker_that_dies_before_noting_its_fork_is_named_not_the_fork_before(
        tmp_path: Path) -> None:
    # The slot still held the pid of the task before's process: the report
    # named that process, long gone, as the one that died.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with procesos.Executor(1, max_tasks_per_worker=1) as ex:
        before = ex.submit(pid_of).result(timeout=60)
        future = ex.submit(block_on_fifo, str(fifo), DiesBeforeItsForkIsNoted())
        with pytest.raises(procesos.WorkerCrashedError) as info:
            future.result(timeout=60)
    assert info.value.pid != before
    assert info.value.exitcode == -9
    assert "a fork of its worker" not in str(info.value)
