"""procesos' reaches into CPython's private internals (``procesos._compat``).

For each reach: the assumption it makes holds on this Python, its probe says
False where the assumption fails, and the feature still works with the
fallback forced (what a Python that changed the internals, 3.14 or later,
would get).
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import functools
import hmac
import io
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
import warnings
from concurrent.futures import _base
from multiprocessing import process as mp_process
from multiprocessing import queues as mp_queues
from multiprocessing import resource_tracker, util
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import cloudpickle  # type: ignore[import-untyped]
import pytest

import procesos
import procesos._proc._process
from conftest import run_script
from procesos import _compat, _serialization
from procesos._engine import _sending
from procesos._sharing import _queues

pytestmark = pytest.mark.timeout(120)


def _square(x: int) -> int:
    return x * x


def _put_many(queue: Any, items: list[Any]) -> None:
    for item in items:
        queue.put(item)


@pytest.fixture
def fresh_probes() -> Any:
    """The cached probes re-run after the test changes what they look at."""
    probes = (_compat.future_internals_known, _compat.queue_internals_known,
              _compat.process_start_known, _compat.forking_reducers_known)
    for probe in probes:
        probe.cache_clear()
    yield
    for probe in probes:
        probe.cache_clear()


# --- the assumptions, on this Python ---------------------------------------------

def test_every_probe_holds_on_this_python() -> None:
    assert _compat.future_internals_known()
    assert _compat.queue_internals_known()
    assert _compat.process_start_known()
    assert _compat.forking_reducers_known()
    assert _serialization._FORKING_REDUCERS is ForkingPickler._extra_reducers  # type: ignore[attr-defined]
    assert _sending.LIGHT_FUTURES and _queues._INTERNALS_KNOWN


class _RecordingWaiters(list):  # type: ignore[type-arg]
    appended = 0

    def append(self, waiter: Any) -> None:
        type(self).appended += 1
        super().append(waiter)


def _waiters_appended_by(call: Any) -> int:
    future: cf.Future[Any] = cf.Future()
    future._waiters = _RecordingWaiters()  # type: ignore[attr-defined]
    _RecordingWaiters.appended = 0
    try:
        call(future)
    except cf.TimeoutError:
        pass
    assert isinstance(future._condition, threading.Condition)  # type: ignore[attr-defined]
    return _RecordingWaiters.appended


def test_wait_and_as_completed_append_to_waiters() -> None:
    assert _waiters_appended_by(lambda f: cf.wait([f], timeout=0)) == 1
    assert _waiters_appended_by(lambda f: next(cf.as_completed([f], timeout=0))) == 1


def test_queue_fields_are_where_the_feeder_looks() -> None:
    queue = mp_queues.Queue(ctx=procesos.get_context("fork"))
    try:
        for name in _compat._QUEUE_FIELDS:
            assert hasattr(queue, name), name
    finally:
        queue.close()
        queue.join_thread()


def test_exit_and_tracker_internals_exist() -> None:
    assert callable(threading._register_atexit)  # type: ignore[attr-defined]
    assert callable(atexit._clear) and callable(atexit._run_exitfuncs)  # type: ignore[attr-defined]
    assert callable(util._exit_function)  # type: ignore[attr-defined]
    assert isinstance(util._finalizer_registry, dict)  # type: ignore[attr-defined]
    assert callable(util._flush_std_streams)  # type: ignore[attr-defined]
    assert hasattr(util, "_logger") and hasattr(util, "_log_to_stderr")
    assert callable(util._args_from_interpreter_flags)  # type: ignore[attr-defined]
    assert hasattr(resource_tracker._resource_tracker, "_fd")
    from _operator import _compare_digest

    assert _compat.compare_digest is _compare_digest
    for a, b in [(b"s" * 32, b"s" * 32), (b"s" * 32, b"t" * 32), (b"s", b"ss"), ("x", "x")]:
        assert _compare_digest(a, b) == hmac.compare_digest(a, b)
    assert isinstance(os.environ._data, dict)  # type: ignore[attr-defined]
    import _posixshmem  # type: ignore[import-not-found]  # noqa: F401


def test_raw_signal_is_the_c_module_under_signal() -> None:
    import _signal  # type: ignore[import-not-found]

    assert _compat.raw_signal is _signal
    previous = signal.getsignal(signal.SIGUSR2)
    try:
        def handler(signum: int, frame: object) -> None:
            pass

        assert _signal.signal(signal.SIGUSR2, handler) == previous  # the same, not an enum
        assert signal.getsignal(signal.SIGUSR2) is handler
        assert _signal.signal(signal.SIGUSR2, _signal.SIG_DFL) is handler
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR2, previous)
    old = _signal.pthread_sigmask(_signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        assert signal.SIGUSR2 in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        assert old == signal.pthread_sigmask(signal.SIG_BLOCK, []) - {signal.SIGUSR2}
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# --- the probes fail where the assumptions do -------------------------------------

def test_future_probe_fails_on_a_future_with_other_fields(
        monkeypatch: pytest.MonkeyPatch, fresh_probes: None) -> None:
    init = cf.Future.__init__

    def other_init(self: Any) -> None:
        init(self)
        self._cancel_message = None  # what 3.x might add

    monkeypatch.setattr(cf.Future, "__init__", other_init)
    assert not _compat.future_internals_known()


def test_future_probe_fails_without_the_waiter_machinery(
        monkeypatch: pytest.MonkeyPatch, fresh_probes: None) -> None:
    monkeypatch.delattr(_base, "_AcquireFutures")
    assert not _compat.future_internals_known()


@pytest.mark.parametrize("missing", ["_sentinel", "Queue._start_thread"])
def test_queue_probe_fails_without_its_internals(
        missing: str, monkeypatch: pytest.MonkeyPatch, fresh_probes: None) -> None:
    owner: Any = mp_queues
    for part in missing.split(".")[:-1]:
        owner = getattr(owner, part)
    monkeypatch.delattr(owner, missing.split(".")[-1])
    assert not _compat.queue_internals_known()


def test_queue_probe_fails_when_a_field_is_renamed(
        monkeypatch: pytest.MonkeyPatch, fresh_probes: None) -> None:
    monkeypatch.setattr(_compat, "_QUEUE_FIELDS", (*_compat._QUEUE_FIELDS, "_renamed"))
    assert not _compat.queue_internals_known()


class _Token:
    def __init__(self, value: str) -> None:
        self.value = value


def _rebuild_token(value: str) -> str:
    return f"rebuilt {value}"


def _reduce_token(token: _Token) -> tuple[Any, tuple[str]]:
    return _rebuild_token, (token.value,)


def test_a_reducer_registered_with_multiprocessing_later_is_used() -> None:
    # The assumption's point: procesos' picklers read multiprocessing's registry live.
    class Later(_Token):
        pass

    ForkingPickler.register(Later, _reduce_token)
    try:
        out = io.BytesIO()
        _serialization.FastPickler(out).dump(Later("later"))
        assert pickle.loads(out.getvalue()) == "rebuilt later"
    finally:
        del ForkingPickler._extra_reducers[Later]  # type: ignore[attr-defined]


def test_forking_reducers_probe_fails_without_the_registry(
        monkeypatch: pytest.MonkeyPatch, fresh_probes: None) -> None:
    monkeypatch.delattr(ForkingPickler, "_extra_reducers")
    assert not _compat.forking_reducers_known()


def test_forking_reducers_probe_fails_where_register_keeps_them_elsewhere(
        monkeypatch: pytest.MonkeyPatch, fresh_probes: None) -> None:
    elsewhere: dict[type, Any] = {}
    monkeypatch.setattr(ForkingPickler, "register",
                        classmethod(lambda cls, kind, reduce: elsewhere.update({kind: reduce})))
    assert not _compat.forking_reducers_known()
    assert elsewhere  # the probe's type went there, not into _extra_reducers


def test_process_probe_fails_without_children_set(
        monkeypatch: pytest.MonkeyPatch, fresh_probes: None) -> None:
    monkeypatch.setattr(mp_process, "_children", None)
    assert not _compat.process_start_known()


# --- each feature, with its fallback forced ---------------------------------------

def test_executor_works_with_plain_futures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sending, "LIGHT_FUTURES", False)
    with procesos.Executor(max_workers=2) as ex:
        first = ex.submit(_square, 3)
        assert type(first) is cf.Future  # no LightFuture, no direct path
        assert first.result(timeout=60) == 9
        futures = [ex.submit(_square, i) for i in range(20)]
        done, _ = cf.wait(futures, timeout=60)
        assert len(done) == 20
        assert sorted(f.result() for f in cf.as_completed(futures)) == \
            sorted(i * i for i in range(20))
        assert all(type(f) is cf.Future for f in futures)
        assert list(ex.map(_square, range(100))) == [i * i for i in range(100)]
        with pytest.raises(TypeError):
            ex.submit(_square, "x").result(timeout=60)


@pytest.mark.parametrize("method", ["fork", "zygote"])
def test_queue_works_with_the_standard_feeder(
        method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_queues, "_INTERNALS_KNOWN", False)
    monkeypatch.setattr(_queues, "_feed", None)  # procesos' feeder: never started
    ctx = procesos.get_context(method)
    big = bytes(range(256)) * 4096  # through shared memory
    items: list[Any] = [1, "two", (3, 4), big, None, list(range(1000))]
    for queue in (ctx.Queue(), ctx.JoinableQueue()):
        process = ctx.Process(target=_put_many, args=(queue, items))
        process.start()
        got = [queue.get(timeout=60) for _ in items]
        process.join(60)
        assert got == items and process.exitcode == 0
        queue.put("blocking get")
        assert queue.get() == "blocking get"
        queue.close()
        queue.join_thread()


def test_process_start_falls_back_to_the_standard_library(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(procesos._proc._process, "process_start_known", lambda: False)
    process = procesos.Process(target=_square, args=(4,))
    process.start()
    assert process in procesos.active_children()
    process.join(60)
    assert process.exitcode == 0
    with pytest.raises(AssertionError):
        process.start()


def test_spawned_child_without_the_parents_tracker(monkeypatch: pytest.MonkeyPatch) -> None:
    from procesos._launch import _popen

    monkeypatch.setattr(_popen, "resource_tracker_fd", lambda: None)
    process = procesos.get_context("spawn").Process(target=_square, args=(5,))
    process.start()
    process.join(60)
    assert process.exitcode == 0


_WITHOUT_PRIVATE_EXIT_HOOKS = """
import atexit, threading
import concurrent.futures.process, concurrent.futures.thread  # these need it at import
del threading._register_atexit, atexit._clear, atexit._run_exitfuncs
import procesos
import procesos._proc._process

def say(x):
    print("child", x, flush=False)

def touch(i):
    open(f"done-{i}", "w").close()
    return i + 1

if __name__ == "__main__":
    p = procesos.Process(target=say, args=(1,))
    p.start(); p.join(60)
    assert p.exitcode == 0, p.exitcode
    ex = procesos.Executor(max_workers=2)
    futures = [ex.submit(touch, i) for i in range(10)]
    print("result", futures[0].result(timeout=60), flush=True)
    # no shutdown(): the at-exit fallback (atexit.register) ends the engine,
    # after its submitted tasks, as concurrent.futures does
"""


@pytest.mark.parametrize("method", ["fork", "zygote"])
def test_processes_and_engines_end_without_private_exit_hooks(
        method: str, tmp_path: Path) -> None:
    result = run_script(_WITHOUT_PRIVATE_EXIT_HOOKS, tmp_path, method=method)
    assert result.returncode == 0, result.stderr
    assert "result 1" in result.stdout
    assert "child 1" in result.stdout
    assert sorted(p.name for p in tmp_path.glob("done-*")) == [f"done-{i}" for i in range(10)]
    assert "Traceback" not in result.stderr


def test_exit_handlers_fallbacks_are_harmless_without_internals(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(atexit, "_clear")
    monkeypatch.delattr(atexit, "_run_exitfuncs")
    monkeypatch.setattr(util, "_exit_function", lambda: calls.append("exit"))
    monkeypatch.setattr(util, "_finalizer_registry", None)
    calls: list[str] = []
    _compat.drop_inherited_exit_handlers()  # leaves the handlers as they are
    _compat.drop_inherited_finalizers()
    _compat.run_exit_handlers()
    assert calls == ["exit"]  # multiprocessing's own exit work still runs


def test_call_before_threads_join_falls_back_to_atexit(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: list[object] = []
    monkeypatch.delattr(threading, "_register_atexit")
    monkeypatch.setattr(atexit, "register", registered.append)
    _compat.call_before_threads_join(print)
    assert registered == [print]


def test_flush_std_streams_fallback_flushes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(util, "_flush_std_streams")
    buffer = io.BytesIO()
    stream = io.TextIOWrapper(buffer, encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", stream)
    monkeypatch.setattr(sys, "stderr", None)  # a missing stream is skipped
    stream.write("kept")
    _compat.flush_std_streams()
    assert buffer.getvalue() == b"kept"


def test_logging_and_flag_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess as sp

    expected = sp._args_from_interpreter_flags()  # type: ignore[attr-defined]
    monkeypatch.delattr(util, "_logger")
    monkeypatch.delattr(util, "_log_to_stderr")
    monkeypatch.delattr(util, "_args_from_interpreter_flags")
    assert _compat.mp_log_level() is None
    assert _compat.mp_logs_to_stderr() is False
    assert _compat.interpreter_flags() == expected
    monkeypatch.delattr(sp, "_args_from_interpreter_flags")
    assert _compat.interpreter_flags() == []


def test_the_standard_librarys_helpers_get_minus_p_once_and_the_fallback_leaves_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess as sp

    plain = sp._args_from_interpreter_flags()  # type: ignore[attr-defined]
    flags = util._args_from_interpreter_flags()  # type: ignore[attr-defined]
    assert flags == [*plain, "-P"] if "-P" not in plain else flags == plain
    _compat.keep_the_current_directory_out_of_helpers()  # again: not wrapped twice
    assert util._args_from_interpreter_flags() == flags  # type: ignore[attr-defined]
    monkeypatch.delattr(util, "_args_from_interpreter_flags")
    _compat.keep_the_current_directory_out_of_helpers()  # nothing to wrap: no error
    assert not hasattr(util, "_args_from_interpreter_flags")


def test_spawn_passes_interpreter_flags(tmp_path: Path) -> None:
    source = textwrap.dedent("""
        import sys, procesos
        def show(): print("child optimize", sys.flags.optimize, flush=True)
        if __name__ == "__main__":
            p = procesos.get_context("spawn").Process(target=show)
            p.start(); p.join(60)
    """)
    script = tmp_path / "flags.py"
    script.write_text(source)
    result = subprocess.run([sys.executable, "-O", str(script)], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert "child optimize 1" in result.stdout, result.stderr


def test_raw_signal_falls_back_to_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    import _signal

    from procesos._launch import _interrupts

    monkeypatch.delattr(_signal, "pthread_sigmask")  # a _signal without what we use
    assert _compat._pick_raw_signal() is signal
    monkeypatch.undo()
    # The child's steps with the fallback: SIGINT blocked, then as it was.
    monkeypatch.setattr(_interrupts, "raw_signal", signal)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    old = _interrupts.block_interrupts()
    try:
        assert signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    finally:
        _interrupts.unblock_interrupts(old)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def test_compare_digest_fallback_is_hmacs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "_operator", None)  # import fails
    compare = _compat._pick_compare_digest()
    assert compare is hmac.compare_digest
    assert compare(b"secret", b"secret") and not compare(b"secret", b"secreT")


def test_shm_open_fallback_opens_the_same_object(monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    name = f"/procesos-compat-test-{uuid.uuid4().hex[:8]}"
    fd = _compat.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR)  # _posixshmem
    try:
        os.write(fd, b"through _posixshmem")
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, "_posixshmem", None)
            other = _compat.shm_open(name, os.O_RDWR)
            try:
                assert os.pread(other, 19, 0) == b"through _posixshmem"
            finally:
                os.close(other)
            _compat.shm_unlink(name)
        with pytest.raises(FileNotFoundError):
            _compat.shm_open(name, os.O_RDWR)
    finally:
        os.close(fd)


def test_environ_data_fallback_compares_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    before = _compat.environ_data()
    assert before is os.environ._data  # type: ignore[attr-defined]
    monkeypatch.setattr(os, "environ", dict(os.environ))
    copied = _compat.environ_data()
    assert copied == os.environ
    os.environ["PROCESOS_COMPAT_TEST"] = "1"
    assert _compat.environ_data() != copied


def test_formatter_format_and_its_fallback() -> None:
    import logging

    from procesos._launch._log_config import _formatter_spec

    formatter = logging.Formatter("{levelname}: {message}", style="{")
    fmt, style = _compat.formatter_format(formatter)
    assert fmt == "{levelname}: {message}" and isinstance(style, logging.StrFormatStyle)
    del formatter._fmt, formatter._style  # type: ignore[attr-defined]  # a logging that moved them
    assert _compat.formatter_format(formatter) == (None, None)
    spec = _formatter_spec(formatter)
    assert spec is not None and spec.fmt is None and spec.style == "%"
    record = logging.makeLogRecord({"msg": "hello"})
    assert logging.Formatter(spec.fmt, spec.datefmt, spec.style).format(record) == "hello"


def test_the_trackers_own_compare_digest_falls_back_to_hmac(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from procesos._shm import _tracker

    assert _tracker.compare_digest is _compat.compare_digest  # a script: its own copy
    monkeypatch.setitem(sys.modules, "_operator", None)
    spec = importlib.util.spec_from_file_location("tracker_copy", _tracker.__file__)
    assert spec is not None and spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    assert copy.compare_digest is hmac.compare_digest


# --- cloudpickle's private names ---------------------------------------------------

@pytest.fixture
def fresh_cloudpickle_probes(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The cloudpickle probes re-run, and procesos' pickler is made again, after the
    test changes what they look at (the test's changes are undone after this)."""
    probes = (_compat.cloudpickle_function_reduce_known, _compat.cloudpickle_code_reduce,
              _compat.cloudpickle_module_reduce, _compat.cloudpickle_class_reduce_known)
    for probe in probes:
        probe.cache_clear()
    monkeypatch.setattr(_serialization, "_pickler", None)
    yield
    for probe in probes:
        probe.cache_clear()


def test_cloudpickle_private_names_are_as_procesos_knows_them(
        fresh_cloudpickle_probes: None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _compat.cloudpickle_function_reduce_known()
        assert _compat.cloudpickle_code_reduce() is cloudpickle.cloudpickle._code_reduce
        assert _compat.cloudpickle_module_reduce() is not None
        assert _compat.cloudpickle_class_reduce_known()


def _other_setstate(func: Any, state: Any) -> None:
    cloudpickle.cloudpickle._function_setstate(func, state)


def _reduce_with_another_setstate(self: Any, func: Any) -> Any:
    return (*_ORIGINAL_FUNCTION_REDUCE(self, func)[:5], _other_setstate)


def _reduce_in_five(self: Any, func: Any) -> Any:
    return _ORIGINAL_FUNCTION_REDUCE(self, func)[:5]


_ORIGINAL_FUNCTION_REDUCE = cloudpickle.Pickler._dynamic_function_reduce


@pytest.mark.parametrize("change", ["another setstate", "five items", "no setstate"])
def test_function_probe_fails_and_warns_where_cloudpickle_changed(
        change: str, monkeypatch: pytest.MonkeyPatch, fresh_cloudpickle_probes: None) -> None:
    if change == "no setstate":
        monkeypatch.delattr(cloudpickle.cloudpickle, "_function_setstate")
    else:
        monkeypatch.setattr(cloudpickle.Pickler, "_dynamic_function_reduce",
                            _reduce_with_another_setstate if change == "another setstate"
                            else _reduce_in_five)
    with pytest.warns(RuntimeWarning, match="no longer share their module's globals"):
        assert not _compat.cloudpickle_function_reduce_known()


@pytest.mark.parametrize("change", ["missing", "other shape"])
@pytest.mark.parametrize(("name", "probe", "warning"), [
    ("_code_reduce", "cloudpickle_code_reduce", "<dynamic-code>"),
    ("_module_reduce", "cloudpickle_module_reduce", "makes its receiver import cloudpickle"),
])
def test_reducer_probe_fails_and_warns_where_cloudpickle_changed(
        change: str, name: str, probe: str, warning: str, monkeypatch: pytest.MonkeyPatch,
        fresh_cloudpickle_probes: None) -> None:
    if change == "missing":
        monkeypatch.delattr(cloudpickle.cloudpickle, name)
    else:  # a reducer whose result is not of the shape procesos knows
        monkeypatch.setattr(cloudpickle.cloudpickle, name, lambda obj: (obj,))
    with pytest.warns(RuntimeWarning, match=warning):
        assert getattr(_compat, probe)() is None


_ORIGINAL_REDUCER_OVERRIDE = cloudpickle.Pickler.reducer_override


def _classes_in_five(self: Any, obj: Any) -> Any:
    reduced = _ORIGINAL_REDUCER_OVERRIDE(self, obj)
    return reduced[:5] if isinstance(obj, type) and isinstance(reduced, tuple) else reduced


def test_class_probe_fails_and_warns_and_classes_go_as_cloudpickle_sends_them(
        monkeypatch: pytest.MonkeyPatch, fresh_cloudpickle_probes: None) -> None:
    monkeypatch.setattr(cloudpickle.Pickler, "reducer_override", _classes_in_five)
    with pytest.warns(RuntimeWarning, match="gets its methods replaced"):
        assert not _compat.cloudpickle_class_reduce_known()
    monkeypatch.setattr(cloudpickle.Pickler, "reducer_override", _ORIGINAL_REDUCER_OVERRIDE)
    local = type("Local", (), {"__module__": "__main__", "__qualname__": "f.<locals>.Local"})
    data = _serialization.dumps(local)
    assert b"make_class" not in data  # cloudpickle's own rebuild
    assert _serialization.loads(data).__qualname__ == "f.<locals>.Local"


def test_a_function_sent_by_value_names_no_cloudpickle_helper_in_its_stream(
        fresh_cloudpickle_probes: None) -> None:
    # A closure that uses a module, a nested lambda and a code object: what a
    # receiver needs to load it is procesos._rebuild, never cloudpickle.
    import pickletools

    offset = 3

    def scaled(x: int) -> int:
        return functools.reduce(lambda a, b: a + b, [x, offset])

    data = _serialization.dumps(scaled)
    # Every module a stream names is one of its strings (STACK_GLOBAL's operands).
    names = {arg for _, arg, _ in pickletools.genops(data) if isinstance(arg, str)}
    assert not [name for name in names if name.split(".")[0] == "cloudpickle"], names
    assert "procesos._rebuild" in names
    assert _serialization.loads(data)(4) == 7


def test_functions_by_value_travel_with_cloudpickles_own_ways(
        monkeypatch: pytest.MonkeyPatch, fresh_cloudpickle_probes: None) -> None:
    monkeypatch.setattr(_serialization, "cloudpickle_function_reduce_known", lambda: False)
    monkeypatch.setattr(_serialization, "cloudpickle_code_reduce", lambda: None)
    monkeypatch.setattr(_serialization, "cloudpickle_module_reduce", lambda: None)
    offset = 5

    def add(x: int) -> int:
        return x + offset

    def fail(x: int) -> int:
        raise ValueError(x)

    assert _serialization.loads(_serialization.dumps(add))(1) == 6
    with procesos.Executor(max_workers=1) as ex:
        assert ex.submit(add, 1).result(timeout=60) == 6
        assert list(ex.map(lambda x: x * offset, range(3))) == [0, 5, 10]
        with pytest.raises(ValueError) as caught:
            ex.submit(fail, 7).result(timeout=60)
    # cloudpickle's own code reduction: the file is no longer the real one.
    assert "<dynamic-code>" in str(caught.value.__cause__)


RENAMED_REGISTRY_SCRIPT = """
import copyreg, io, pickle
from multiprocessing import reduction

# A Python whose ForkingPickler keeps its registry under another name.
FP = reduction.ForkingPickler
FP._registry = FP.__dict__["_extra_reducers"]
del FP._extra_reducers

def register(cls, kind, reduce):
    cls._registry[kind] = reduce

def init(self, *args):
    pickle.Pickler.__init__(self, *args)
    self.dispatch_table = copyreg.dispatch_table.copy()
    self.dispatch_table.update(self._registry)

FP.register = classmethod(register)
FP.__init__ = init
reduction.register = FP.register

class Token:
    def __init__(self, value):
        self.value = value

def rebuild(value):
    return "rebuilt " + value

import procesos
from procesos import _compat, _serialization

# After procesos made its picklers:
reduction.register(Token, lambda token: (rebuild, (token.value,)))

def send_through(conn, message):
    conn.send(message)
    return "sent"

if __name__ == "__main__":
    assert not _compat.forking_reducers_known()
    out = io.BytesIO()
    _serialization.FastPickler(out).dump(Token("token"))
    print(pickle.loads(out.getvalue()))
    reader, writer = procesos.Pipe()
    with procesos.Executor(1) as ex:
        print(ex.submit(send_through, writer, "hello").result(timeout=30))
    assert reader.poll(30)
    print(reader.recv())
"""


def test_pickling_falls_back_to_what_a_new_forking_pickler_holds(tmp_path: Path) -> None:
    # Where ForkingPickler keeps its reducers elsewhere: those registered with
    # multiprocessing, later than procesos' import too, are used (a worker's
    # shared arrays, of types sharedctypes registers as it makes them; a Pipe end).
    result = run_script(RENAMED_REGISTRY_SCRIPT, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["rebuilt", "token", "sent", "hello"]


def test_after_fork_hooks_run_and_their_fallback_runs_nothing() -> None:
    # In a fresh interpreter: the hooks of this process's objects (queues, locks)
    # must not run in the test's own process, which did not fork.
    script = textwrap.dedent("""
        from multiprocessing import util
        from procesos import _compat

        class Holder:
            pass

        holder = Holder()
        util.register_after_fork(holder, lambda obj: print("hook ran"))
        _compat.run_mp_after_forkers()
        del util._run_after_forkers
        _compat.run_mp_after_forkers()
        print("then nothing")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n") == ["hook ran", "then nothing", ""]
