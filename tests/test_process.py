"""Process: the multiprocessing API, plus results and exceptions handed back."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

import procesos
from conftest import START_METHODS, run_script, still_alive


def square(x: int) -> int:
    return x * x


def fail_with_value_error(message: str) -> None:
    raise ValueError(message)


def read_all(file: Any) -> Any:
    return file.read()


def exit_with(code: int) -> None:
    os._exit(code)


def kill_myself(sig: int) -> None:
    os.kill(os.getpid(), sig)


def wait_then_square(event: Any, x: int) -> int:
    assert event.wait(60)
    return x * x


def wait_for(event: procesos.synchronize.Event) -> None:  # type: ignore[name-defined]
    event.wait()


class NeedsTwoArguments(Exception):
    # Cannot be rebuilt from its args ("x-y",), nor by tblib's pickling
    # support (installed for every exception class that exists when
    # ``distributed`` is imported), which calls ``__new__`` with none.
    def __new__(cls, a: str, b: str) -> NeedsTwoArguments:
        return super().__new__(cls, a, b)

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}-{b}")


def raise_needs_two() -> None:
    raise NeedsTwoArguments("x", "y")


def return_a_lock() -> object:
    return threading.Lock()


def describe_me() -> tuple[str, int, int | None, int]:
    parent = procesos.parent_process()
    return (
        procesos.current_process().name,
        os.getpid(),
        None if parent is None else parent.pid,
        os.getppid(),
    )


def test_result_returns_the_targets_value(ctx: procesos.ProcesosContext) -> None:
    p = ctx.Process(target=square, args=(7,))
    p.start()
    assert p.result(timeout=30) == 49
    assert p.exitcode == 0
    assert p.exception() is None


class _FinalFlushHeld:
    """A stdout whose flush, when the zygote child's last lines call it (after the
    outcome was sent), waits for *release*: the child cannot end before that."""

    def __init__(self, release: Any) -> None:
        self.release = release

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        import sys

        if sys._getframe(1).f_code.co_name == "zygote_child_main":
            self.release.wait(30)


def return_with_the_end_held(release: Any) -> str:
    import sys

    sys.stdout = _FinalFlushHeld(release)
    return "value"


def test_result_comes_as_soon_as_the_value_is_sent_not_when_the_process_has_ended() -> None:
    release = procesos.Event()
    p = procesos.get_context("zygote").Process(target=return_with_the_end_held,
                                               args=(release,), output="inherit")
    p.start()
    try:
        assert p.result(timeout=30) == "value"
        assert p._popen is not None and p._popen.poll() is None  # still ending
    finally:
        release.set()
    assert p.exitcode == 0  # waits for the end: the value has come, the process is ending
    p.join()


def test_a_result_sent_just_before_an_end_that_a_poll_found_first_is_not_lost(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A poll() reads the channel, then reaps the process; a process that sent
    # its result and ended between the two (this thread held up meanwhile)
    # must still deliver it. Forced: the process ends unreaped (WNOWAIT), then
    # a poll() whose read finds nothing.
    p = procesos.get_context("fork").Process(target=square, args=(7,))
    p.start()
    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
    popen = p._popen
    assert popen is not None
    monkeypatch.setattr(popen, "_drain", lambda timeout, until_outcome=False: False)
    assert popen.poll() == 0
    monkeypatch.undo()
    assert p.result(timeout=10) == 49
    p.join()


def print_then_return(lines: int) -> int:
    import sys

    sys.stdout.write("".join(f"line {i}\n" for i in range(lines)))  # at once: the relay lags
    return lines


@pytest.mark.parametrize("output", ["relay", "capture"])
def test_what_a_child_printed_is_delivered_before_its_result(
        ctx: procesos.ProcesosContext, output: str) -> None:
    import contextlib
    import io

    seen = io.StringIO()
    with contextlib.redirect_stdout(seen):
        p = ctx.Process(target=print_then_return, args=(100_000,), output=output)
        p.start()
        assert p.result(timeout=30) == 100_000
    printed = seen.getvalue() if output == "relay" else p.stdout
    assert printed == "".join(f"line {i}\n" for i in range(100_000))
    # and the process agrees with its result without a join()
    assert not p.is_alive() and p.exitcode == 0
    p.close()


def test_lambdas_and_closures_work_under_every_start_method(ctx: procesos.ProcesosContext) -> None:
    offset = 10
    p = ctx.Process(target=lambda x: x + offset, args=(5,))
    p.start()
    assert p.result(timeout=30) == 15


def test_exception_is_reraised_with_its_type_and_the_childs_traceback(
    ctx: procesos.ProcesosContext,
) -> None:
    p = ctx.Process(target=fail_with_value_error, args=("boom",))
    p.start()
    with pytest.raises(ValueError, match="boom") as info:
        p.result(timeout=30)
    assert p.exitcode == 1
    cause = info.value.__cause__
    assert isinstance(cause, procesos.RemoteTraceback)
    assert "fail_with_value_error" in cause.text  # the child's frame
    assert "raise ValueError(message)" in cause.text
    # The child printed it on our stderr as it ended: the chain points there.
    text = "".join(traceback.format_exception(info.value))
    assert f"the traceback above, printed by process {p.name!r} (pid {p.pid})" in text
    assert "raise ValueError(message)" not in text
    assert isinstance(p.exception(), ValueError)


def test_a_captured_childs_traceback_is_shown_with_the_error(
    ctx: procesos.ProcesosContext,
) -> None:
    # Captured, the child's stderr is not where our errors show: the chain has it.
    p = ctx.Process(target=fail_with_value_error, args=("boom",), output="capture")
    p.start()
    error = p.exception(timeout=30)
    assert error is not None
    text = "".join(traceback.format_exception(error))
    assert "raise ValueError(message)" in text and "printed by" not in text


def test_the_childs_traceback_is_printed_once_with_the_users_frames_only(
    ctx: procesos.ProcesosContext,
) -> None:
    p = ctx.Process(target=fail_with_value_error, args=("boom",), output="capture")
    p.start()
    with pytest.raises(ValueError, match="boom") as info:
        p.result(timeout=30)
    p.join(30)
    package = os.path.dirname(procesos.__file__)
    printed = p.stderr or ""
    assert printed.startswith(f"Process {p.name}:\nTraceback (most recent call last):\n")
    assert printed.count("Traceback") == 1 and "in fail_with_value_error" in printed
    attached = info.value.__cause__
    assert isinstance(attached, procesos.RemoteTraceback)
    assert "in fail_with_value_error" in attached.text
    for text in (printed, attached.text):
        assert package not in text  # no frame of procesos' own
    assert p.exitcode == 1


def test_an_open_text_file_as_an_argument_is_refused_naming_it(
    ctx: procesos.ProcesosContext, tmp_path: Path
) -> None:
    # It used to arrive as a StringIO of what the file held then.
    path = tmp_path / "data.txt"
    path.write_text("hello")
    with open(path) as file:
        with procesos.Executor(1, context=ctx) as ex:
            with pytest.raises(procesos.PicklingError, match="an open file; pass its path"):
                ex.submit(read_all, file).result(timeout=30)
        p = ctx.Process(target=read_all, args=(file,))
        if ctx.get_start_method() == "fork":  # nothing is pickled: the child has the file
            p.start()
            assert p.result(timeout=30) == "hello"
        else:
            with pytest.raises(procesos.PicklingError, match="an open file; pass its path"):
                p.start()


def test_traceback_of_a_function_sent_by_value_names_its_file(
    ctx: procesos.ProcesosContext,
) -> None:
    p = ctx.Process(target=lambda: 1 / 0)  # a lambda travels by value
    p.start()
    with pytest.raises(ZeroDivisionError) as info:
        p.result(timeout=30)
    assert isinstance(info.value.__cause__, procesos.RemoteTraceback)
    text = info.value.__cause__.text
    assert f'File "{__file__}"' in text
    assert "<dynamic-code>" not in text
    assert "lambda: 1 / 0" in text  # the source line, read from that file


def test_exception_that_cannot_be_rebuilt_becomes_remote_error(
    ctx: procesos.ProcesosContext,
) -> None:
    p = ctx.Process(target=raise_needs_two)
    p.start()
    with pytest.raises(procesos.RemoteError) as info:
        p.result(timeout=30)
    assert "NeedsTwoArguments" in str(info.value)
    assert "x-y" in str(info.value)
    assert "raise_needs_two" in info.value.remote_traceback


def test_os_exit_is_reported_as_a_crash_with_its_code(ctx: procesos.ProcesosContext) -> None:
    p = ctx.Process(target=exit_with, args=(3,))
    p.start()
    with pytest.raises(procesos.ProcessCrashedError, match="exited with code 3") as info:
        p.result(timeout=30)
    assert info.value.exitcode == 3 == p.exitcode


def call_sys_exit(code: object) -> None:
    sys.exit(code)


@pytest.mark.parametrize(("code", "exitcode"), [(7, 7), ("bad config", 1)])
def test_sys_exit_is_reported_with_the_call(ctx: procesos.ProcesosContext, code: object,
                                            exitcode: int) -> None:
    # The parent could not tell it from os._exit(): the child says so.
    p = ctx.Process(target=call_sys_exit, args=(code,), output="capture")
    p.start()
    with pytest.raises(procesos.ProcessCrashedError) as info:
        p.result(timeout=30)
    p.join(30)
    assert str(info.value) == (f"process {p.name!r} (pid {p.pid}) exited with code {exitcode} "
                               f"before returning; it called sys.exit({code!r})")
    assert info.value.exitcode == exitcode == p.exitcode
    assert not getattr(info.value, "__notes__", None)  # the message names the process already
    if isinstance(code, str):
        assert p.stderr == "bad config\n"  # printed, as the standard library does


def test_sys_exit_zero_returns_none(ctx: procesos.ProcesosContext) -> None:
    p = ctx.Process(target=call_sys_exit, args=(0,))
    p.start()
    assert p.result(timeout=30) is None
    p.join(30)
    assert p.exitcode == 0


def test_sigkill_is_named_in_the_crash(ctx: procesos.ProcesosContext) -> None:
    p = ctx.Process(target=kill_myself, args=(signal.SIGKILL,))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    error = p.exception()
    assert isinstance(error, procesos.ProcessCrashedError)
    assert error.signal_name == "SIGKILL"
    assert "SIGKILL" in str(error)
    # A Process does not watch its memory as the engine does: the hint names both causes.
    assert error.hint == ("SIGKILL comes from another process or from the kernel's "
                          "out-of-memory killer")


def test_unpicklable_result_is_a_serialization_error(ctx: procesos.ProcesosContext) -> None:
    p = ctx.Process(target=return_a_lock)
    p.start()
    with pytest.raises(procesos.SerializationError, match="result of process"):
        p.result(timeout=30)


@pytest.mark.parametrize("method", ["zygote", "spawn"])
def test_unpicklable_argument_fails_at_start_naming_it(method: str) -> None:
    p = procesos.get_context(method).Process(target=square, args=(1, threading.Lock()))
    with pytest.raises(procesos.SerializationError, match=r"argument 1 \(args\[1\]\)") as info:
        p.start()
    assert "_thread.lock" in str(info.value)
    assert p.pid is None  # nothing was started


def test_unpicklable_argument_is_fine_under_fork() -> None:
    lock = threading.Lock()
    p = procesos.get_context("fork").Process(target=lambda lk: lk.locked(), args=(lock,))
    p.start()
    assert p.result(timeout=30) is False


def test_args_and_kwargs_that_are_not_arguments_are_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"args must be a tuple of arguments, got 5 \(int\)"):
        procesos.Process(target=square, args=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"kwargs must be a dict of keyword arguments, got \[1\]"):
        procesos.Process(target=square, kwargs=[1])  # type: ignore[arg-type]


def test_args_and_kwargs_take_what_the_standard_library_takes() -> None:
    # A string is a sequence of one-character arguments; pairs make keyword arguments.
    p = procesos.Process(target=lambda *a, **k: (a, k), args="ab", kwargs=[("x", 1)])
    p.start()
    assert p.result(timeout=30) == (("a", "b"), {"x": 1})
    p.join()


def test_target_that_is_not_callable_is_refused_at_construction() -> None:
    with pytest.raises(TypeError, match="callable"):
        procesos.Process(target=42)  # type: ignore[arg-type]


def test_result_before_start_says_so() -> None:
    with pytest.raises(ValueError, match="never started"):
        procesos.Process(target=square, args=(1,)).result()


def test_result_timeout_leaves_the_process_running(ctx: procesos.ProcesosContext) -> None:
    event = ctx.Event()
    p = ctx.Process(target=wait_for, args=(event,))
    p.start()
    with pytest.raises(procesos.TimeoutError) as info:
        p.result(timeout=0.05)
    # One class answers every way a caller may spell it.
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, multiprocessing.TimeoutError)
    assert p.name in str(info.value)
    assert p.is_alive()
    event.set()
    assert p.result(timeout=30) is None


def test_terminate_and_kill_give_negative_exit_codes(ctx: procesos.ProcesosContext) -> None:
    for stop, sig in ((procesos.Process.terminate, signal.SIGTERM),
                      (procesos.Process.kill, signal.SIGKILL)):
        event = ctx.Event()
        p = ctx.Process(target=wait_for, args=(event,))
        p.start()
        assert p.is_alive()
        stop(p)
        p.join(30)
        assert p.exitcode == -sig
        assert not p.is_alive()


def test_join_with_timeout_returns_while_running(ctx: procesos.ProcesosContext) -> None:
    event = ctx.Event()
    p = ctx.Process(target=wait_for, args=(event,))
    p.start()
    p.join(0.01)
    assert p.exitcode is None
    assert p in procesos.active_children()
    event.set()
    p.join(30)
    assert p.exitcode == 0
    assert p not in procesos.active_children()


def test_identity_of_child_and_parent(ctx: procesos.ProcesosContext) -> None:
    p = ctx.Process(target=describe_me, name="worker-a")
    p.start()
    name, pid, parent_pid, ppid = p.result(timeout=30)
    assert name == "worker-a"
    assert pid == p.pid
    assert parent_pid == os.getpid()
    if ctx.get_start_method() == "zygote":
        assert ppid == procesos.zygote_pid()
    else:
        assert ppid == os.getpid()


def test_result_survives_close(ctx: procesos.ProcesosContext) -> None:
    p = ctx.Process(target=square, args=(3,))
    p.start()
    p.join(30)
    p.close()
    assert p.result() == 9
    with pytest.raises(ValueError):
        p.is_alive()


def test_large_result_does_not_block_the_childs_exit(ctx: procesos.ProcesosContext) -> None:
    p = ctx.Process(target=lambda: b"x" * (8 << 20))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert len(p.result()) == 8 << 20


def test_interrupt_ends_the_child_quietly(ctx: procesos.ProcesosContext) -> None:
    event = ctx.Event()
    p = ctx.Process(target=wait_for, args=(event,))
    p.start()
    # At once: the child may still be starting. SIGINT is held back until its
    # target runs, so it is never lost and never shows procesos' own frames.
    p.interrupt()
    p.join(30)
    assert p.exitcode == -signal.SIGINT


def test_interrupt_while_the_target_runs(ctx: procesos.ProcesosContext) -> None:
    running, never = ctx.Event(), ctx.Event()
    p = ctx.Process(target=lambda: (running.set(), never.wait()))
    p.start()
    assert running.wait(30)
    # A SIGINT that lands between the interpreter's last check for signals and
    # the blocking call it then makes (here the semaphore wait in Event.wait)
    # is only acted on when that call returns: CPython's own race, the same with
    # os.kill(). Sent again until the child ends.
    deadline = time.monotonic() + 30
    while p.exitcode is None and time.monotonic() < deadline:
        p.interrupt()
        p.join(1)
    assert p.exitcode == -signal.SIGINT


MAIN_CLASSES = """
import procesos as mp

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm2(self):
        return self.x ** 2 + self.y ** 2

def make(x, y):
    return Point(x, y)

p = mp.Process(target=lambda pt: pt.norm2(), args=(Point(3, 4),))
p.start()
print(p.result())
q = mp.Process(target=make, args=(1, 2))
q.start()
r = q.result()
print(type(r).__name__, isinstance(r, Point), r.x, r.y)
"""


@pytest.mark.parametrize("method", ["zygote", "fork", "spawn"])
def test_main_module_functions_and_classes_work_without_guard(method: str, tmp_path) -> None:
    result = run_script(MAIN_CLASSES, tmp_path, method)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["25", "Point True 1 2"]


def test_unknown_start_method_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown start method 'forkk'"):
        procesos.get_context("forkk")


FORKSERVER_SCRIPT = """
import os
import procesos

def where():
    return os.getppid()

procesos.set_start_method("forkserver")
p = procesos.Process(target=where)
p.start()
print(procesos.get_start_method(), p.start_method, p.result(timeout=30) == procesos.zygote_pid())
p.join()
print(procesos.get_context("forkserver").get_start_method())
"""


def test_forkserver_is_another_name_for_the_zygote(tmp_path: Path) -> None:
    # The standard library's default on Linux from Python 3.14: programs that
    # choose it by name run unchanged, on procesos' own fork server.
    result = run_script(FORKSERVER_SCRIPT, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["zygote zygote True", "zygote"]
    from_env = "import procesos; print(procesos.get_start_method())"
    assert run_script(from_env, tmp_path, "forkserver").stdout.strip() == "zygote"


def test_start_method_from_environment(tmp_path) -> None:
    source = "import procesos; print(procesos.get_start_method())"
    assert run_script(source, tmp_path, "spawn").stdout.strip() == "spawn"
    bad = run_script(source, tmp_path, "nope")
    assert bad.returncode != 0 and "PROCESOS_START_METHOD='nope'" in bad.stderr


def test_a_process_started_from_a_thread_pools_worker_returns_its_result(
        ctx: procesos.ProcesosContext) -> None:
    # Under fork, the child inherits concurrent.futures' list of the pool's
    # threads, its own among them; multiprocessing's end of the child joined
    # each (cpython gh-88110): "cannot join current thread", exit code 1.
    # Started from a thread that is not the main one, a child watches its
    # channel for the parent's end; it took its own closing of the channel at
    # its end for that, and killed itself after its result (-SIGKILL, one
    # child in six to ten): twenty children.
    def start_one(x: int) -> tuple[int | None, int]:
        p = ctx.Process(target=square, args=(x,))
        p.start()
        value = p.result(timeout=60)
        p.join(60)
        return p.exitcode, value

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(start_one, range(20)))
    assert outcomes == [(0, x * x) for x in range(20)]


def test_processes_started_from_several_threads_at_once(ctx: procesos.ProcesosContext) -> None:
    # multiprocessing's own clean-up in one thread polls the processes of the
    # others: none of them may see its channel closed under it.
    errors: list[BaseException] = []
    results: list[int] = []

    def starter(base: int) -> None:
        try:
            for i in range(8):
                p = ctx.Process(target=square, args=(base + i,))
                p.start()
                results.append(p.result(timeout=60))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=starter, args=(k * 100,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert sorted(results) == sorted((k * 100 + i) ** 2 for k in range(4) for i in range(8))


def _count_fds(started: Any, go: Any) -> int:
    count = len(os.listdir("/proc/self/fd")) - 1  # minus the listing's own
    started.release()
    go.wait(60)
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("method", ["zygote", "spawn"])
def test_children_do_not_inherit_more_descriptors_as_more_run(method: str) -> None:
    # CPython's test_child_fd_inflation: the number of descriptors a child has
    # open must not depend on how many others run (or on the zygote's spare).
    ctx = procesos.get_context(method)
    for _ in range(2):
        started, go = ctx.Semaphore(0), ctx.Event()
        procs = [ctx.Process(target=_count_fds, args=(started, go)) for _ in range(5)]
        for p in procs:
            p.start()
        for _ in procs:
            assert started.acquire(timeout=60)
        go.set()
        counts = [p.result(timeout=60) for p in procs]
        assert len(set(counts)) == 1, counts


# -- what the zygote preloads ---------------------------------------------------------------

PRELOAD_PROBE = """
import sys
import multiprocessing.sharedctypes  # a submodule, from the standard library
import procesos

def loaded(names):
    return [name in sys.modules for name in names]

if USE_ENGINE:
    with procesos.Executor(1) as ex:
        ex.submit(abs, 1).result()
# Once booted: the zygote's first starts may come before its last imports.
import procesos.forkserver
from procesos._launch._zygote_client import _zygote
procesos.forkserver.ensure_running()
assert _zygote.wait_for_spares(30)
names = ["multiprocessing.sharedctypes", "procesos._engine._worker"]
p = procesos.get_context("zygote").Process(target=loaded, args=(names,))
p.start()
print(p.result(timeout=30))
p.join()
"""


@pytest.mark.parametrize("use_engine", [True, False])
def test_the_zygote_preloads_submodules_and_the_engine_worker_whatever_the_parent_used(
        tmp_path: Path, use_engine: bool) -> None:
    # Also when the parent started a Process before its first pool: its
    # workers must not import the worker's code each.
    source = f"USE_ENGINE = {use_engine}\n" + PRELOAD_PROBE
    result = run_script(source, tmp_path)
    assert result.returncode == 0, result.stderr
    # the child imported nothing itself: what it has came from its zygote
    assert result.stdout.strip() == str([True, True])


SHARING_PRELOAD_PROBE = """
import sys
import procesos

def loaded(names):
    return [name in sys.modules for name in names]

procesos.set_zygote_preload([])  # procesos' own modules come all the same
queue, shared = procesos.Queue(), procesos.SharedArray((4,), "f8")
names = ["procesos._sharing._queues", "procesos._sharing._shared_array"]
p = procesos.get_context("zygote").Process(target=loaded, args=(names,))  # neither passed
p.start()
print(p.result(timeout=30))
p.join()
shared.close()
"""


def test_the_zygote_preloads_the_sharing_modules_the_parent_uses(tmp_path: Path) -> None:
    # A child given a queue or a shared array unpickles it with these: imported
    # once in the zygote, not in every child (1.5 ms of each start).
    result = run_script(SHARING_PRELOAD_PROBE, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str([True, True])


USER_PRELOAD_PROBE = """
import sys
import procesos

def loaded():
    return "decimal" in sys.modules

procesos.set_zygote_preload(["decimal"])
p = procesos.get_context("zygote").Process(target=loaded)
p.start()
print(p.result(timeout=30))
p.join()
"""


def test_modules_the_user_names_are_preloaded_for_the_first_start(tmp_path: Path) -> None:
    result = run_script(USER_PRELOAD_PROBE, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


# -- cloudpickle, imported when first needed ---------------------------------------------------

LAZY_PICKLER_PROBE = """
import sys
import procesos

def has_cloudpickle():
    return "cloudpickle" in sys.modules

print("parent after import:", "cloudpickle" in sys.modules)
for method in ("spawn", "zygote"):
    ctx = procesos.get_context(method)
    if method == "zygote":  # once booted: its first starts may come before its last imports
        import procesos.forkserver
        from procesos._launch._zygote_client import _zygote
        procesos.forkserver.ensure_running()
        assert _zygote.wait_for_spares(30)
    p = ctx.Process(target=has_cloudpickle)
    p.start()
    print(method, "child:", p.result(timeout=60))
    p.join()
    q = ctx.Process(target=lambda: 6 * 7)  # by value: the child needs cloudpickle
    q.start()
    print(method, "lambda:", q.result(timeout=60))
    q.join()
"""


def test_cloudpickle_is_imported_only_where_something_is_pickled_by_value(
        tmp_path: Path) -> None:
    result = run_script(LAZY_PICKLER_PROBE, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "parent after import: False",
        # The target is __main__'s, so the parent pickled it by value; a spawn
        # child loads it with procesos._rebuild's helpers, not cloudpickle's
        # (which the zygote has preloaded anyway).
        "spawn child: False",
        "spawn lambda: 42",
        "zygote child: True",
        "zygote lambda: 42",
    ]


def test_a_spawn_child_of_importable_code_returning_plain_data_never_imports_cloudpickle(
        ) -> None:
    from engine_tasks import modules_loaded

    p = procesos.get_context("spawn").Process(target=modules_loaded, args=(["cloudpickle"],))
    p.start()
    assert p.result(timeout=60) == [False]
    p.join()
    p.close()


SPAWN_IMPORTS_PROBE = """
import functools
import sys

import procesos

OFFSET = 10
HEAVY = ("cloudpickle", "concurrent.futures", "logging", "multiprocessing.connection",
         "procesos._shm._client", "procesos._pool_errors", "procesos._launch._popen")


def outer(n):
    base = n * 2

    def inner(x, scale=3, *, extra=1):
        "the closure's doc"
        return base + x * scale + extra + OFFSET + functools.reduce(lambda a, b: a + b, [1, 2])

    return inner


def factorial(n):
    return 1 if n <= 1 else n * factorial(n - 1)


def run(f, g):
    return ([name for name in HEAVY if name in sys.modules], f(1), g(5), f.__qualname__,
            f.__doc__, f.__defaults__, f.__kwdefaults__, f.__code__.co_filename == __file__)


p = procesos.get_context("spawn").Process(target=run, args=(outer(4), factorial))
p.start()
print(p.result(timeout=60))
p.join()
"""


def test_a_spawn_child_loads_functions_sent_by_value_without_the_heavy_imports(
        tmp_path: Path) -> None:
    # What a spawn child imports before its target runs is its start's cost:
    # cloudpickle (its helpers are procesos._rebuild's in the stream), the
    # engine's errors (concurrent.futures), logging when the parent configured
    # none, the connection module (the child's channel is a plain descriptor),
    # the shared-memory client and the parent side of a start all stay out.
    result = run_script(SPAWN_IMPORTS_PROBE, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "([], 25, 120, 'outer.<locals>.inner', \"the closure's doc\", (3,), {'extra': 1}, True)")


TREE_PROBE = """
import os
os.environ.pop("PROCESOS_SHM_TREE", None)  # a program of its own: it founds its tree

import procesos


def tree():
    from procesos._shm import _client

    return os.environ["PROCESOS_SHM_TREE"], _client.tree_token()


for method in ("zygote", "spawn", "fork"):
    p = procesos.get_context(method).Process(target=tree)
    p.start()
    print(method, p.result(timeout=60) == (os.environ["PROCESOS_SHM_TREE"],
                                           os.environ["PROCESOS_SHM_TREE"].partition(":")[2]))
    p.join()
with open(f"/proc/{procesos.zygote_pid()}/environ", "rb") as f:
    started_with = f.read().split(b"\\0")
print("zygote", os.fsencode("PROCESOS_SHM_TREE=" + os.environ["PROCESOS_SHM_TREE"]) in started_with)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_every_child_and_the_zygote_belong_to_the_tree_that_import_procesos_founded(
        tmp_path: Path) -> None:
    # The tree (its tracker's name and secret, in PROCESOS_SHM_TREE) is decided
    # at import, before any start: the zygote starts inside it, so its children
    # share the parent's tracker, and the parent's environment does not change
    # after the zygote's start (which would send every zygote child the whole
    # environment to apply).
    result = run_script(TREE_PROBE, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == ["zygote True", "spawn True", "fork True",
                                              "zygote True"]


MAIN_FILE_PROBE = """
import procesos

def main_has_file():
    import __main__
    return hasattr(__main__, "__file__")

p = procesos.Process(target=main_has_file)
p.start()
print(p.result(timeout=30))
p.join()
"""


@pytest.mark.parametrize("method", ["zygote", "spawn"])
def test_a_childs_main_never_gets_the_parents_script_file(tmp_path: Path, method: str) -> None:
    # Functions of __main__ live in the child's __main__, but not the script's
    # __file__: with it, the standard library's spawn would run the script
    # again in a grandchild started with it.
    result = run_script(MAIN_FILE_PROBE, tmp_path, method=method)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# -- descriptors numbered 1024 and above ----------------------------------------------------

@pytest.fixture
def high_descriptors() -> Any:
    """Fill descriptors 0..1099, so that every new one is numbered 1100 or more
    (select() refuses those: a parent with a few hundred children has them)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1400
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the descriptor limit here is {hard}")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    fillers = []
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        fillers.append(null)
        while fillers[-1] < 1100:
            fillers.append(os.dup(null))
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_processes_work_with_descriptors_numbered_above_1024(
        ctx: procesos.ProcesosContext, high_descriptors: None) -> None:
    # Before: start() raised "filedescriptor out of range in select()" (zygote),
    # and join() took such a process for ended at once.
    r, w = os.pipe()
    assert r > 1024
    event = ctx.Event()
    p = ctx.Process(target=wait_then_square, args=(event, 7))
    p.start()
    p.join(0.05)
    assert p.is_alive()  # join() waited, and timed out
    event.set()
    assert p.result(timeout=60) == 49
    p.join(60)
    assert p.exitcode == 0
    os.close(r)
    os.close(w)


def test_executors_and_queues_work_with_descriptors_numbered_above_1024(
        high_descriptors: None) -> None:
    queue = procesos.Queue()
    with procesos.Executor(2) as ex:
        assert ex.submit(square, 6).result(timeout=60) == 36
        assert list(ex.map(square, range(50))) == [n * n for n in range(50)]
    p = procesos.Process(target=queue.put, args=("through the queue",))
    p.start()
    assert queue.get(timeout=60) == "through the queue"
    p.join(60)
    assert p.exitcode == 0


def test_readiness_is_seen_on_descriptors_numbered_above_1024(high_descriptors: None) -> None:
    from procesos._shm._tracker import _readable as tracker_readable
    from procesos._wait import readable

    r, w = os.pipe()
    try:
        assert r > 1024
        assert readable([r], 0) == [] == tracker_readable([r], 0)
        os.write(w, b"x")
        assert readable([r], 0) == [r] == tracker_readable([r], 0)
    finally:
        os.close(r)
        os.close(w)


def _fork_and_return() -> str:
    return "grandchild" if os.fork() == 0 else "child"


def test_a_fork_made_by_the_target_does_not_answer_for_the_child(
        ctx: procesos.ProcesosContext) -> None:
    # Both return from the target; only the child's value is the result (the
    # grandchild's arrived first under spawn, and now and then under the others).
    for _ in range(5):
        p = ctx.Process(target=_fork_and_return)
        p.start()
        p.join(60)
        assert p.result() == "child"
        assert p.exitcode == 0
        p.close()


def _leave_an_executor_and_a_pool_open() -> list[int]:
    ex = procesos.Executor(2)
    pool = procesos.Pool(2)
    first = ex.submit(os.getpid).result(timeout=30)
    second = pool.apply(os.getpid)
    return [first, second]


@pytest.mark.timeout(120)
def test_a_child_that_leaves_an_executor_open_still_ends(
        ctx: procesos.ProcesosContext) -> None:
    # multiprocessing's exit handler in the child joined the executor's workers
    # before anything had shut them down: result() and join() waited for good.
    p = ctx.Process(target=_leave_an_executor_and_a_pool_open)
    p.start()
    workers = p.result(timeout=60)
    p.join(60)
    assert p.exitcode == 0
    p.close()
    assert not still_alive(workers)  # the child's workers ended with it


def _wait_for(started: Any, go: Any) -> None:
    started.set()
    go.wait(60)


def test_a_parent_that_ignores_ctrl_c_starts_children_that_ignore_it(
        ctx: procesos.ProcesosContext) -> None:
    # As a forked or exec'd child inherits SIG_IGN; a zygote child started from
    # the zygote's default handler and died of a terminal's Ctrl-C.
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        started, go = ctx.Event(), ctx.Event()
        p = ctx.Process(target=_wait_for, args=(started, go))
        p.start()
    finally:
        signal.signal(signal.SIGINT, old)
    assert started.wait(60)
    p.interrupt()  # ignored, as in the parent when it started the child
    go.set()
    p.join(60)
    assert p.exitcode == 0
    p.close()


def test_a_traceback_pickled_with_the_exception_is_not_shown_again(tmp_path: Path) -> None:
    # tblib (which Dask installs) pickles an exception's traceback with it: the
    # child's frames must still show once, in the RemoteTraceback.
    pytest.importorskip("tblib")
    done = run_script(textwrap.dedent("""
        import traceback
        import tblib.pickling_support
        tblib.pickling_support.install()
        import procesos

        def fail_in_the_child():
            raise ValueError("boom")

        for method in ("fork", "zygote", "spawn"):
            p = procesos.get_context(method).Process(target=fail_in_the_child,
                                                     output="capture")
            p.start()
            text = "".join(traceback.format_exception(p.exception()))
            print(method, text.count('raise ValueError("boom")'))
    """), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["fork", "1", "zygote", "1", "spawn", "1"], done.stdout


MANY_AT_ONCE = """
import resource, sys
import procesos

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100 if sys.argv[-1] == "fixed" else hard))
go = procesos.Event()
started = []
try:
    for i in range(60):  # 4 or 5 descriptors each: more than 100
        p = procesos.Process(target=go.wait)
        p.start()
        started.append(p)
except OSError as exc:
    print("refused after", len(started), exc.errno, " ".join(getattr(exc, "__notes__", [])))
go.set()
for p in started:
    p.join()
print(len(started), [p.exitcode for p in started] == [0] * len(started),
      resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 100)
"""


@pytest.mark.parametrize("method", ["zygote", "fork"])
def test_many_processes_at_once_raise_the_soft_limit_on_open_files(
        method: str, tmp_path: Path) -> None:
    # Each running child holds a few descriptors in its parent (the standard
    # library's fork one): a start that finds none free raises the soft limit.
    result = run_script(MANY_AT_ONCE, tmp_path, method=method)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "60 True True\n"


def test_without_room_for_more_descriptors_the_error_says_what_to_do(tmp_path: Path) -> None:
    script = MANY_AT_ONCE.replace('sys.argv[-1] == "fixed"', "True")
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    first, last = result.stdout.splitlines()
    assert first.startswith("refused after ")
    assert " 24 procesos: this process has no descriptor left (its limit: 100)" in first
    assert "ulimit -Hn" in first
    started = int(first.split()[2])
    assert last == f"{started} True False"


LAUNCH_PARENT_SIDE = ("procesos._launch._zygote_client", "procesos._launch._zygote_server",
                      "procesos._launch._zygote_popen", "procesos._launch._popens",
                      "procesos._launch._spawn", "procesos._launch._fork")


def launch_modules_loaded() -> list[str]:
    return [name for name in LAUNCH_PARENT_SIDE if name in sys.modules]


def test_the_start_methods_parent_side_loads_at_the_first_start(tmp_path: Path) -> None:
    # 14 ms of `import procesos` (and of every spawn child's start) that a
    # program, or a child, that starts nothing does not need; a start loads its
    # own method's side only (the zygote is spawned before its popen loads).
    result = run_script(
        "import sys, procesos\n"
        f"names = {LAUNCH_PARENT_SIDE!r}\n"
        "print([n for n in names if n in sys.modules])\n"
        "p = procesos.Process(target=print, args=('child',))\n"
        "p.start(); p.join()\n"
        "print([n.rsplit('.', 1)[1] for n in names if n in sys.modules])\n",
        tmp_path, method="zygote")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[]", "child", "['_zygote_client', '_zygote_server', '_zygote_popen', '_popens']"]
    p = procesos.get_context("spawn").Process(target=launch_modules_loaded)
    p.start()
    p.join()
    assert p.result() == []


FOLLOWS_THE_PARENTS_STATE = """
import json, os, resource, signal, stat, sys
import procesos

def state(path):
    open(path, "w").close()
    mask = os.umask(0)
    os.umask(mask)
    return {"mask": mask, "file_mode": stat.S_IMODE(os.stat(path).st_mode),
            "core": resource.getrlimit(resource.RLIMIT_CORE)[0],
            "nice": os.getpriority(os.PRIO_PROCESS, 0),
            "cpus": sorted(os.sched_getaffinity(0)),
            "sigterm_ignored": signal.getsignal(signal.SIGTERM) == signal.SIG_IGN,
            "sighup_ignored": signal.getsignal(signal.SIGHUP) == signal.SIG_IGN}

def in_a_child(path):
    p = procesos.Process(target=state, args=(path,))
    p.start()
    try:
        return p.result(timeout=60)
    finally:
        p.join()

directory = sys.argv[1]
in_a_child(os.path.join(directory, "first"))  # the zygote starts now, as we are
os.umask(0o077)
resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
os.nice(1)
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
expected = state(os.path.join(directory, "parent"))
with procesos.Executor(1) as ex:
    in_worker = ex.submit(state, os.path.join(directory, "worker")).result(timeout=60)
print(json.dumps({"expected": expected, "process": in_a_child(os.path.join(directory, "child")),
                  "worker": in_worker}))
"""


def test_a_zygote_child_follows_the_umask_limits_cpus_niceness_and_ignored_signals(
    tmp_path: Path,
) -> None:
    # Set in the parent after the zygote started: a forked or exec'd child
    # would have them, so must a zygote child and a pool's worker. The umask
    # keeps what the child creates private (it was 0o644, not 0o600).
    script = tmp_path / "follow.py"
    script.write_text(FOLLOWS_THE_PARENTS_STATE)
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    expected = report["expected"]
    assert expected["mask"] == 0o077 and expected["file_mode"] == 0o600
    assert report["process"] == expected
    assert report["worker"] == expected


def test_process_state_reads_the_umask_without_setting_it_and_copes_without_proc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from procesos._launch import _process_state

    old = os.umask(0o027)
    try:
        assert _process_state.current().umask == 0o027
        assert os.umask(0o027) == 0o027  # reading it left it as it was

        def no_proc(*args: object) -> int:
            raise FileNotFoundError("/proc/self/status")

        monkeypatch.setattr(_process_state.os, "open", no_proc)
        state = _process_state.current()
        assert state.umask is None  # unknown: a child keeps the zygote's
        _process_state.apply(state)  # the rest applies; nothing fails
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(old)


def _hold_a_lock_and_return(path: str) -> None:
    import fcntl

    held = open(path, "w")  # left open: the process's end must let it go
    fcntl.flock(held, fcntl.LOCK_EX)
    _hold_a_lock_and_return.held = held  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", START_METHODS)
def test_what_the_target_left_open_is_closed_when_join_returns(
    method: str, tmp_path: Path,
) -> None:
    import fcntl

    path = str(tmp_path / "lock")
    p = procesos.get_context(method).Process(target=_hold_a_lock_and_return, args=(path,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    with open(path, "w") as mine:
        fcntl.flock(mine, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the child still held it


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("listing", [True, False], ids=["proc listing", "closerange fallback"])
def test_close_all_but_leaves_only_the_descriptor_kept(listing: bool) -> None:
    from procesos._launch._child import close_all_but

    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a process of our own to close everything in
        try:
            high = os.dup2(os.open(os.devnull, os.O_RDONLY), 1500)
            os.set_inheritable(high, False)
            real_listdir = os.listdir
            if not listing:
                def no_proc(path: str) -> list[str]:
                    raise OSError("no /proc")
                os.listdir = no_proc  # type: ignore[assignment]
            close_all_but(report_w)
            os.listdir = real_listdir
            left = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
            os.write(report_w, json.dumps(left).encode())
        finally:
            os._exit(0)
    os.close(report_w)
    with os.fdopen(report_r) as report:
        left = report.read()
    os.waitpid(pid, 0)
    # The kept descriptor, and the listing's own, open while it was read.
    fds = json.loads(left)
    assert len(fds) == 2 and report_w in fds, left
