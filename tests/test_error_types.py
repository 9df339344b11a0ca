"""The caller's exception classes: code written for the standard library catches
procesos' errors, and a task's exception arrives as the caller's own class."""

from __future__ import annotations

import concurrent.futures
import gc
import pickle
import threading
import weakref
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

import procesos
from conftest import run_script
from engine_tasks import (
    EndsWhenLoaded,
    LoadsNowhere,
    TwoArguments,
    Unpicklable,
    die_on,
    init_that_logs_to_and_raises,
    init_that_raises,
    pid_of,
    raise_new_refuses,
    raise_two_arguments,
    raise_unpicklable,
    return_ends_when_loaded,
    return_ends_when_pickled,
    return_lock,
    square,
)

MAIN_CLASS = """
import procesos

class MyError(Exception):
    pass

def boom():
    raise MyError("boom")

if __name__ == "__main__":
    p = procesos.Process(target=boom)
    p.start()
    try:
        p.result(timeout=60)
    except MyError:
        print("Process: caught")
    with procesos.Executor(1) as ex:
        try:
            ex.submit(boom).result(timeout=60)
        except MyError:
            print("Executor: caught")
    with procesos.Pool(1) as pool:
        try:
            pool.apply(boom)
        except MyError:
            print("Pool: caught")
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "zygote"])
def test_an_exception_class_of_main_arrives_as_the_callers_own(
    tmp_path: Path, method: str
) -> None:
    result = run_script(MAIN_CLASS, tmp_path, method)
    assert result.stdout.split("\n") == ["Process: caught", "Executor: caught",
                                         "Pool: caught", ""], result.stderr


def test_a_broken_executor_is_a_concurrent_futures_broken_executor(
    ctx: procesos.ProcesosContext,
) -> None:
    with procesos.Executor(1, initializer=init_that_raises, context=ctx) as ex:
        with pytest.raises(concurrent.futures.BrokenExecutor) as info:
            ex.submit(square, 2).result(timeout=60)
    assert isinstance(info.value, procesos.BrokenExecutorError)
    assert isinstance(info.value, BrokenProcessPool)  # what ProcessPoolExecutor raises then


def test_a_failing_initializer_is_logged_as_the_standard_library_logs_it(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written straight to descriptor 2 (no relay thread), before the worker
    # tells the parent: it is there when the error is.
    from procesos._output import _modes

    monkeypatch.setattr(_modes, "_chosen", "inherit")
    with procesos.Executor(1, initializer=init_that_raises) as ex:
        with pytest.raises(procesos.BrokenExecutorError):
            ex.submit(square, 2).result(timeout=60)
    err = capfd.readouterr().err
    assert "Exception in initializer:" in err
    assert "Traceback (most recent call last)" in err and "in init_that_raises" in err


def test_a_failing_initializer_is_logged_to_the_concurrent_futures_logger(
    ctx: procesos.ProcesosContext,
) -> None:
    # CPython's FailingInitializerMixin: a handler that the initializer puts on
    # the 'concurrent.futures' logger gets the record of its own failure.
    log_queue = ctx.Queue()
    with procesos.ProcessPoolExecutor(1, mp_context=ctx, initializer=init_that_logs_to_and_raises,
                                      initargs=(log_queue,)) as ex:
        with pytest.raises(concurrent.futures.BrokenExecutor):
            ex.submit(square, 2).result(timeout=60)
    message = log_queue.get(timeout=30).getMessage()
    assert message.startswith("Exception in initializer:"), message
    assert "ValueError: error in initializer" in message


def _break_and_catch(ctx: procesos.ProcesosContext) -> weakref.ref[procesos.Executor]:
    ex = procesos.Executor(1, initializer=init_that_raises, context=ctx)
    try:
        ex.submit(square, 2).result(timeout=60)
    except concurrent.futures.BrokenExecutor:
        pass  # the error now holds this frame, which holds the executor
    ex.shutdown(wait=True)
    return weakref.ref(ex)


def test_a_broken_executor_whose_error_was_caught_is_not_kept_alive(
    ctx: procesos.ProcesosContext,
) -> None:
    # The engine (kept by the executor's finalizer until the executor is
    # garbage) must not hold the error raised in the caller's frame: that
    # frame, its executor and its other locals (a Queue given as initargs, in
    # CPython's test_init) would live as long as the program.
    executor = _break_and_catch(ctx)
    gc.collect()
    assert executor() is None


def test_a_crashed_worker_is_a_broken_process_pool(ctx: procesos.ProcesosContext) -> None:
    with procesos.Executor(1, context=ctx) as ex:
        with pytest.raises(BrokenProcessPool) as info:
            ex.submit(die_on, 1, 1, "exit").result(timeout=60)
        assert isinstance(info.value, procesos.WorkerCrashedError)
        assert isinstance(info.value, procesos.ProcesosError)
        assert ex.submit(square, 3).result(timeout=60) == 9  # the pool goes on


def test_serialization_errors_are_the_pickle_modules_own(ctx: procesos.ProcesosContext) -> None:
    with procesos.Executor(1, context=ctx) as ex:
        with pytest.raises(pickle.PicklingError) as pickling:
            ex.submit(square, threading.Lock()).result(timeout=60)
        with pytest.raises(pickle.UnpicklingError) as unpickling:
            ex.submit(abs, LoadsNowhere()).result(timeout=60)
    for caught in (pickling.value, unpickling.value):
        assert isinstance(caught, procesos.SerializationError)
    assert isinstance(pickling.value, procesos.PicklingError)
    assert isinstance(unpickling.value, procesos.UnpicklingError)
    p = ctx.Process(target=square, args=(threading.Lock(),))
    if ctx.get_start_method() != "fork":  # a fork pickles nothing to start
        with pytest.raises(pickle.PicklingError):
            p.start()


def test_a_task_that_cannot_be_loaded_at_the_other_end_is_a_broken_process_pool(
    ctx: procesos.ProcesosContext,
) -> None:
    # ProcessPoolExecutor breaks with BrokenProcessPool when a task's arguments
    # cannot be loaded in the worker (an error, or sys.exit() while loading) or
    # its result in the parent (CPython's test_concurrent_futures.test_deadlock):
    # procesos fails that task alone, with an UnpicklingError that is also one.
    with procesos.Executor(1, context=ctx) as ex:
        caught = [ex.submit(abs, LoadsNowhere()).exception(timeout=60),
                  ex.submit(id, EndsWhenLoaded("exit")).exception(timeout=60),
                  ex.submit(lambda: LoadsNowhere()).exception(timeout=60),
                  ex.submit(return_ends_when_loaded, "exit").exception(timeout=60)]
        assert ex.submit(square, 3).result(timeout=60) == 9  # the executor goes on
    for error in caught:
        assert isinstance(error, BrokenProcessPool), repr(error)
        assert isinstance(error, procesos.UnpicklingError), repr(error)


class RefusesWithValueError:
    """Its pickling raises ValueError, as a ctypes object holding pointers does."""

    def __reduce__(self) -> Any:
        raise ValueError("ctypes objects containing pointers cannot be pickled")


def test_a_pickling_error_is_also_the_picklers_own_builtin_error(
        ctx: procesos.ProcesosContext) -> None:
    # Code written for the standard library catches what its pickler raises:
    # TypeError for a lock, RuntimeError for a Queue given to a pool task.
    import multiprocessing

    with procesos.Executor(1, context=ctx) as ex:
        with pytest.raises(TypeError, match=r"cannot pickle '_thread\.lock'") as argument:
            ex.submit(square, threading.Lock()).result(timeout=60)
        with pytest.raises(TypeError, match="the result") as result:
            ex.submit(return_lock, 1).result(timeout=60)
        with pytest.raises(ValueError, match="ctypes objects") as value:
            ex.submit(square, RefusesWithValueError()).result(timeout=60)
        assert ex.submit(square, 3).result(timeout=60) == 9  # the executor goes on
    with procesos.Pool(1, context=ctx) as pool:
        with pytest.raises(RuntimeError, match="through inheritance") as queue:
            pool.map(square, [multiprocessing.Queue()])
    for caught in (argument, result, value, queue):
        assert isinstance(caught.value, procesos.PicklingError)
        assert isinstance(caught.value, pickle.PicklingError)
    if ctx.get_start_method() != "fork":  # a fork pickles nothing to start
        with pytest.raises(TypeError) as start:
            ctx.Process(target=square, args=(threading.Lock(),)).start()
        assert isinstance(start.value, procesos.PicklingError)


@pytest.mark.parametrize("how", ["exit", "interrupt"])
def test_sys_exit_or_ctrl_c_while_pickling_a_result_fails_only_that_task(
    ctx: procesos.ProcesosContext, how: str
) -> None:
    with procesos.Executor(1, context=ctx) as ex:
        worker = ex.submit(pid_of).result(timeout=60)
        with pytest.raises(procesos.PicklingError, match="could not be pickled") as info:
            ex.submit(return_ends_when_pickled, how).result(timeout=60)
        assert ("SystemExit" if how == "exit" else "KeyboardInterrupt") in str(info.value)
        results = list(ex.map(return_ends_when_pickled, [how] * 3, chunksize=3,
                              return_exceptions=True))
        assert all(isinstance(r, procesos.PicklingError) for r in results), results
        assert ex.submit(pid_of).result(timeout=60) == worker  # the worker lives on
    p = ctx.Process(target=return_ends_when_pickled, args=(how,))
    p.start()
    with pytest.raises(procesos.PicklingError, match="could not be pickled"):
        p.result(timeout=60)
    p.join(60)


@pytest.mark.parametrize("how", ["exit", "interrupt"])
def test_sys_exit_or_ctrl_c_while_unpickling_a_result_fails_only_that_task(
    ctx: procesos.ProcesosContext, how: str
) -> None:
    with procesos.Executor(1, context=ctx) as ex:
        with pytest.raises(procesos.UnpicklingError, match="could not be unpickled"):
            ex.submit(return_ends_when_loaded, how).result(timeout=60)
        results = list(ex.map(return_ends_when_loaded, [how] * 3, return_exceptions=True))
        assert all(isinstance(r, procesos.UnpicklingError) for r in results), results
        assert ex.submit(square, 3).result(timeout=60) == 9
    with ctx.Pool(1) as pool:
        with pytest.raises(procesos.UnpicklingError):
            pool.apply(return_ends_when_loaded, (how,))
    p = ctx.Process(target=return_ends_when_loaded, args=(how,))
    p.start()
    with pytest.raises(procesos.UnpicklingError, match="could not be unpickled"):
        p.result(timeout=60)
    p.join(60)


def _raised_everywhere(ctx: procesos.ProcesosContext, fn: Any, *args: Any) -> list[Any]:
    """What *fn* raised, as an Executor's task, a Pool's task and a Process's target."""
    caught: list[Any] = []
    with procesos.Executor(1, context=ctx) as ex:
        caught.append(ex.submit(fn, *args).exception(timeout=60))
    with ctx.Pool(1) as pool, pytest.raises(BaseException) as info:
        pool.apply(fn, args)
    caught.append(info.value)
    p = ctx.Process(target=fn, args=args)
    p.start()
    caught.append(p.exception(timeout=60))
    p.join(60)
    return caught


def test_an_exception_holding_something_unpicklable_arrives_as_its_class_without_it(
    ctx: procesos.ProcesosContext,
) -> None:
    for error in _raised_everywhere(ctx, raise_unpicklable, 1):
        assert type(error) is Unpicklable, error
        assert str(error) == "holds a lock"
        assert not hasattr(error, "lock")
        assert any("lock (a _thread.lock object)" in note for note in error.__notes__)
        assert isinstance(error.__cause__, procesos.RemoteTraceback)
        assert "in raise_unpicklable" in error.__cause__.text


def test_an_exception_whose_init_takes_other_arguments_arrives_as_its_class(
    ctx: procesos.ProcesosContext,
) -> None:
    # pickle alone rebuilds it by calling TwoArguments("3-7"): a TypeError in
    # the parent (multiprocessing's Pool hangs on it: cpython #79492, bpo-35311).
    for error in _raised_everywhere(ctx, raise_two_arguments, 3, 7):
        assert type(error) is TwoArguments, error
        assert (str(error), error.low, error.high, error.args) == ("3-7", 3, 7, ("3-7",))
        assert "in raise_two_arguments" in error.__cause__.text


def test_an_exception_that_cannot_be_rebuilt_at_all_is_a_remote_error_everywhere(
    ctx: procesos.ProcesosContext,
) -> None:
    for error in _raised_everywhere(ctx, raise_new_refuses):
        assert isinstance(error, procesos.RemoteError), error
        assert error.type_name == "engine_tasks.NewRefuses"
        assert error.message == "made here"
        assert "in raise_new_refuses" in error.remote_traceback
