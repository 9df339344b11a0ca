"""procesos as joblib's backend: what joblib expects of a backend, faults, scikit-learn.

The checks marked "joblib:" are ported from joblib's own suite
(``joblib/test/test_parallel.py``), run with ``backend="procesos"``.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

joblib = pytest.importorskip("joblib")
np = pytest.importorskip("numpy")

from joblib import Parallel, delayed, parallel_config  # noqa: E402
from joblib.externals.loky.process_executor import TerminatedWorkerError  # noqa: E402

import procesos  # noqa: E402
import procesos.joblib as procesos_joblib  # noqa: E402
from conftest import still_alive  # noqa: E402
from engine_tasks import (  # noqa: E402
    die_on,
    die_once,
    fail_on,
    modules_loaded,
    openblas_threads,
    pid_of,
    return_lock,
    set_state,
    square,
    thread_limits,
)
from joblib_tasks import (  # noqa: E402
    array_storage,
    initialized,
    mark_and_block,
    nested_squares,
    wait_for_file,
)

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def shared_pool_stopped_afterwards() -> Any:
    """Calls keep a pool warm between them: stop it after each test, so that the
    next test (and the leftover check) starts from nothing."""
    yield
    procesos_joblib.shutdown()


def _started_pids(directory: Path) -> list[int]:
    return sorted({int(p.name.split("-")[1]) for p in directory.glob("started-*")})


def _wait_for_files(directory: Path, pattern: str, count: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while len(list(directory.glob(pattern))) < count:
        assert time.monotonic() < deadline, f"no {pattern} in {directory}"
        time.sleep(0.01)


# Registration and the package's promise to stay light


def test_import_procesos_imports_no_joblib() -> None:
    code = ("import sys, procesos; procesos.Executor; procesos.Pool\n"
            "assert 'joblib' not in sys.modules, 'joblib imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_importing_procesos_joblib_registers_the_backend() -> None:
    assert "procesos" in joblib.parallel.BACKENDS
    with parallel_config(backend="procesos", n_jobs=2):
        assert Parallel()(delayed(square)(i) for i in range(50)) == [i * i for i in range(50)]


def test_tasks_run_in_at_most_n_jobs_worker_processes() -> None:
    with parallel_config(backend="procesos", n_jobs=2):
        pids = Parallel(batch_size=1)(delayed(pid_of)() for _ in range(40))
    assert os.getpid() not in pids
    assert 1 <= len(set(pids)) <= 2


@pytest.mark.parametrize("n_jobs", [2, -1, -2, 3])
def test_n_jobs_sets_the_pool_size(n_jobs: int) -> None:
    # joblib: negative n_jobs count back from the number of CPUs.
    with Parallel(n_jobs=n_jobs, backend="procesos") as parallel:
        expected = n_jobs if n_jobs > 0 else max(joblib.cpu_count() + 1 + n_jobs, 1)
        if expected == 1:
            assert type(parallel._backend).__name__ == "SequentialBackend"
        else:
            assert parallel._backend._executor.max_workers == expected
        assert parallel(delayed(square)(i) for i in range(5)) == [0, 1, 4, 9, 16]


def test_one_job_runs_in_this_process_as_joblib_does() -> None:
    pids = Parallel(n_jobs=1, backend="procesos")(delayed(pid_of)() for _ in range(3))
    assert pids == [os.getpid()] * 3


def test_zero_jobs_is_refused() -> None:
    # joblib: test_invalid_njobs
    with pytest.raises(ValueError, match="n_jobs == 0"):
        Parallel(n_jobs=0, backend="procesos")(delayed(square)(1) for _ in range(2))


def test_unknown_options_are_named() -> None:
    with pytest.raises(TypeError, match="bogus"):
        with parallel_config(backend="procesos", bogus=1):
            pass
    with pytest.raises(TypeError, match=r"must be a procesos\.Executor"):
        with parallel_config(backend="procesos", executor=object()):
            pass


def test_calls_share_a_warm_pool_until_shutdown() -> None:
    first = set(Parallel(n_jobs=2, backend="procesos", batch_size=1)(
        delayed(pid_of)() for _ in range(10)))
    second = set(Parallel(n_jobs=2, backend="procesos", batch_size=1)(
        delayed(pid_of)() for _ in range(10)))
    assert len(first | second) <= 2  # the same workers, kept between the calls
    procesos_joblib.shutdown()
    assert not still_alive(sorted(first | second))


def test_other_settings_replace_the_shared_pool() -> None:
    two = Parallel(n_jobs=2, backend="procesos", batch_size=1)(
        delayed(pid_of)() for _ in range(10))
    three = Parallel(n_jobs=3, backend="procesos", batch_size=1)(
        delayed(pid_of)() for _ in range(12))
    assert not set(two) & set(three)
    assert not still_alive(sorted(set(two)))


def test_a_call_while_another_uses_the_shared_pool_gets_its_own(tmp_path: Path) -> None:
    release = str(tmp_path / "release")
    outer = Parallel(n_jobs=2, backend="procesos", batch_size=1, return_as="generator")
    running = outer(delayed(wait_for_file)(release, i) for i in range(2))
    # joblib has dispatched already: the shared pool is in use (its workers wait)
    inner = Parallel(n_jobs=3, backend="procesos", batch_size=1)(
        delayed(pid_of)() for _ in range(6))
    Path(release).touch()
    assert list(running) == [0, 1]
    assert len(set(inner)) <= 3
    assert not still_alive(sorted(set(inner)))  # a pool of that call alone, stopped


def test_workers_do_not_load_the_backend_or_the_engine_s_parent_side() -> None:
    # A fresh worker importing them paid about 40 ms before its first batch.
    names = ["procesos.joblib", "procesos._engine._executor", "procesos._engine._dispatcher"]
    loaded = Parallel(n_jobs=2, backend="procesos", batch_size=1)(
        delayed(modules_loaded)(names) for _ in range(4))
    assert loaded == [[False, False, False]] * 4


# joblib's conformance expectations


def test_lambdas_and_closures_work() -> None:
    # joblib: test_lambda_expression, test_parallel_with_interactively_defined_functions
    offset = 3
    results = Parallel(n_jobs=2, backend="procesos")(
        delayed(lambda x: x ** 2 + offset)(i) for i in range(10))
    assert results == [i ** 2 + offset for i in range(10)]


def test_exception_keeps_its_type_and_message() -> None:
    # joblib: test_error_capture
    with pytest.raises(ValueError, match="bad item 2"):
        Parallel(n_jobs=2, backend="procesos")(delayed(fail_on)(i) for i in range(5))


def test_managed_pool_stays_usable_after_an_error() -> None:
    # joblib: test_error_capture (context manager part)
    with Parallel(n_jobs=2, backend="procesos") as parallel:
        with pytest.raises(ValueError):
            parallel(delayed(fail_on)(i) for i in range(5))
        assert parallel._backend._executor is not None
        assert parallel(delayed(square)(i) for i in range(4)) == [0, 1, 4, 9]


def test_a_call_after_a_failed_call_gets_only_its_own_results(tmp_path: Path) -> None:
    # joblib 1.6 slices its input ahead: item 0's completion dispatches item 2
    # and keeps item 3 ready. Item 2 fails; joblib kept item 3 and dispatched
    # it first in the next call of the same Parallel (loky does too).
    release = str(tmp_path / "release")

    def task(i: int) -> Any:
        if i == 0:
            return delayed(square)(0)
        if i == 2:
            return delayed(fail_on)(2, 2)
        return delayed(wait_for_file)(release, i)

    with Parallel(n_jobs=2, backend="procesos", batch_size=1, pre_dispatch="2") as parallel:
        with pytest.raises(ValueError, match="bad item 2"):
            parallel(task(i) for i in range(8))
        Path(release).touch()
        assert parallel(delayed(square)(i) for i in range(4)) == [0, 1, 4, 9]


def test_error_in_the_task_iterator_reaches_the_caller() -> None:
    # joblib: test_error_in_task_iterator
    def produce(raise_at: int) -> Any:
        for i in range(20):
            if i == raise_at:
                raise ValueError("Iterator Raising Error")
            yield i

    with Parallel(n_jobs=2, backend="procesos") as parallel:
        for raise_at in (0, 5, 19):
            with pytest.raises(ValueError, match="Iterator Raising Error"):
                parallel(delayed(square)(i) for i in produce(raise_at))


def test_auto_batching_groups_many_fast_tasks() -> None:
    # joblib: test_batching_auto_subprocesses, test_backend_batch_statistics_reset
    with Parallel(n_jobs=2, batch_size="auto", backend="procesos") as parallel:
        results = parallel(delayed(square)(i) for i in range(5000))
        assert results == [i * i for i in range(5000)]
        assert parallel._backend.compute_batch_size() > 0
        assert parallel.n_dispatched_batches < 5000
    backend = parallel._backend
    assert backend._effective_batch_size == backend._DEFAULT_EFFECTIVE_BATCH_SIZE
    assert backend._smoothed_batch_duration == backend._DEFAULT_SMOOTHED_BATCH_DURATION


@pytest.mark.parametrize("return_as", ["generator", "generator_unordered"])
def test_generators_give_every_result(return_as: str) -> None:
    # joblib: test_multiple_generator_call_separated
    results = Parallel(n_jobs=2, backend="procesos", return_as=return_as)(
        delayed(square)(i) for i in range(30))
    got = list(results)
    if return_as == "generator_unordered":
        got = sorted(got)
    assert got == [i * i for i in range(30)]


def test_unordered_generator_returns_what_is_ready_first(tmp_path: Path) -> None:
    # joblib: test_parallel_unordered_generator_returns_fastest_first, on an event
    # instead of a sleep: the first task waits until nine others have come back.
    release = str(tmp_path / "release")
    results = Parallel(n_jobs=2, backend="procesos", batch_size=1,
                       return_as="generator_unordered")(
        delayed(wait_for_file)(release, 0) if i == 0 else delayed(square)(i)
        for i in range(10))
    first_nine = sorted(next(results) for _ in range(9))
    Path(release).touch()
    assert first_nine == [i * i for i in range(1, 10)]
    assert list(results) == [0]


def test_dropping_a_generator_early_gives_its_pool_back() -> None:
    # joblib: test_deadlock_with_generator
    parallel = Parallel(n_jobs=2, backend="procesos", return_as="generator")
    results = parallel(delayed(np.ones)(500_000) for _ in range(10))
    next(results)
    next(results)
    results.close()
    assert parallel._backend._executor is None
    assert procesos_joblib.SHARED_POOL._users == 0
    # The batches still running when the generator was dropped end in the warm
    # pool after this test; their results' shared memory goes back when they
    # do. Waiting for that keeps the next test's leak check to its own.
    procesos_joblib.shutdown()


def test_nested_parallel_in_a_worker_uses_threads() -> None:
    # joblib: test_nested_loop
    results = Parallel(n_jobs=2, backend="procesos")(delayed(nested_squares)(n) for n in (3, 4))
    assert results == [[0, 1, 4], [0, 1, 4, 9]]


@pytest.mark.parametrize("where", ["parallel_config", "Parallel"])
def test_initializer_runs_in_every_worker(where: str) -> None:
    # joblib: test_initializer_context, test_initializer_parallel
    options = {"initializer": set_state, "initargs": ("ready",)}
    if where == "parallel_config":
        with parallel_config(backend="procesos", n_jobs=2, **options):
            states = Parallel(batch_size=1)(delayed(initialized)() for _ in range(20))
    else:
        states = Parallel(n_jobs=2, backend="procesos", batch_size=1, **options)(
            delayed(initialized)() for _ in range(20))
    assert states == ["ready"] * 20


@pytest.mark.parametrize("threads", [None, 1, 3])
def test_inner_max_num_threads_limits_numeric_libraries_in_workers(threads: int | None) -> None:
    # joblib: test_parallel_thread_limit (default: cpu_count() // n_jobs, at least 1)
    expected = threads if threads is not None else max(joblib.cpu_count() // 2, 1)
    with parallel_config(backend="procesos", n_jobs=2, inner_max_num_threads=threads):
        limits = Parallel(batch_size=1)(delayed(thread_limits)() for _ in range(4))
        blas = Parallel(batch_size=1)(delayed(openblas_threads)() for _ in range(4))
    for limit in limits:
        assert set(limit.values()) == {str(expected)}
    for count in blas:
        assert count is None or count == expected


def test_arrays_travel_through_shared_memory_not_a_memmapping_folder(tmp_path: Path) -> None:
    folder = tmp_path / "joblib_memmapping"
    array = np.arange(256 * 1024, dtype=np.float64)  # 2 MiB
    with parallel_config(backend="procesos", n_jobs=2, max_nbytes=1, temp_folder=str(folder)):
        seen = Parallel(batch_size=1)(delayed(array_storage)(array) for _ in range(4))
    for chain, total in seen:
        assert total == float(array.sum())
        assert "memmap" not in chain
        assert chain[-1] == "memoryview:mmap"  # a mapping of procesos' shared memory
    assert not folder.exists()


def test_workers_write_into_a_memmap_passed_to_them_as_with_loky(tmp_path: Path) -> None:
    # joblib's documented pattern: the output in a memmap, each task its row.
    # Sent as a copy, every row was lost without a word (loky sends its file).
    from engine_tasks import fill

    out = np.memmap(tmp_path / "out.mmap", dtype=np.float64, mode="w+", shape=(8, 3))
    with parallel_config(backend="procesos", n_jobs=2):
        Parallel()(delayed(fill)(out[i], float(i)) for i in range(8))
    assert out.tolist() == [[float(i)] * 3 for i in range(8)]
    loaded = joblib.load(_dumped(tmp_path, np.arange(6.0)), mmap_mode="r")
    with parallel_config(backend="procesos", n_jobs=1):
        (chain, total), = Parallel()(delayed(array_storage)(loaded) for _ in range(1))
    assert chain[0] == "memmap" and total == 15.0  # the file's, read-only there too


def _dumped(tmp_path: Path, array: Any) -> str:
    path = str(tmp_path / "array.joblib")
    joblib.dump(array, path)
    return path


# Faults


def test_killed_worker_raises_what_joblib_code_catches() -> None:
    with pytest.raises(TerminatedWorkerError) as caught:
        Parallel(n_jobs=2, backend="procesos", batch_size=1)(
            delayed(die_on)(i, 3, "sigkill") for i in range(8))
    error = caught.value
    assert isinstance(error, procesos.WorkerCrashedError)
    assert isinstance(error, procesos_joblib.WorkerCrashedError)
    assert error.signal_name == "SIGKILL"
    assert "joblib batch: die_on(3, 3, 'sigkill')" in str(error)


def test_killed_worker_fails_its_batch_and_the_pool_goes_on() -> None:
    with Parallel(n_jobs=2, backend="procesos", batch_size=1,
                  return_as="generator") as parallel:
        results = parallel(delayed(die_on)(i, 3, "exit") for i in range(8))
        got = []
        with pytest.raises(procesos.WorkerCrashedError, match="exited with code 3"):
            for value in results:
                got.append(value)
        # joblib raises the first error as soon as it is known (fail fast): what
        # was delivered before it is right, and nothing after the crash came.
        assert got == [0, 10, 20][:len(got)]
        assert list(parallel(delayed(square)(i) for i in range(6))) == [0, 1, 4, 9, 16, 25]


def test_retries_run_a_crashed_batch_again(tmp_path: Path) -> None:
    marker = str(tmp_path / "died")
    with parallel_config(backend="procesos", n_jobs=2, retries=1):
        results = Parallel(batch_size=1)(delayed(die_once)(i, 4, marker) for i in range(8))
    assert results == [i * 10 for i in range(8)]
    assert os.path.exists(marker)


@pytest.mark.parametrize("return_as", ["list", "generator", "generator_unordered"])
def test_hung_task_times_out_and_its_worker_is_stopped(tmp_path: Path, return_as: str) -> None:
    # joblib: test_parallel_timeout_fail, test_parallel_timeout_fail_with_generator.
    # joblib raises multiprocessing's TimeoutError; procesos' TaskTimeoutError is one.
    with pytest.raises(multiprocessing.TimeoutError):
        list(Parallel(n_jobs=2, backend="procesos", timeout=0.5, return_as=return_as)(
            delayed(mark_and_block)(str(tmp_path), i) for i in range(4)))
    pids = _started_pids(tmp_path)
    assert pids
    assert not still_alive(pids)


def test_timeout_not_reached_changes_nothing() -> None:
    # joblib: test_parallel_timeout_success
    assert Parallel(n_jobs=2, backend="procesos", timeout=30)(
        delayed(square)(i) for i in range(10)) == [i * i for i in range(10)]


def test_unpicklable_argument_fails_the_call_with_a_clear_error() -> None:
    # The lock is in the tenth batch: dispatched from joblib's callback thread,
    # where an error must still reach the caller instead of being lost.
    for position in (0, 9):
        args: list[Any] = list(range(12))
        args[position] = threading.Lock()
        with pytest.raises(procesos.SerializationError, match="lock"):
            Parallel(n_jobs=2, backend="procesos", batch_size=1, pre_dispatch="2")(
                delayed(square)(a) for a in args)


def test_unpicklable_result_fails_the_call_with_a_clear_error() -> None:
    with pytest.raises(procesos.SerializationError, match="lock"):
        Parallel(n_jobs=2, backend="procesos")(delayed(return_lock)(i) for i in range(4))


def test_errors_name_the_joblib_calls_not_the_engines_wrapper() -> None:
    # The engine notes which task raised, and names what cannot be pickled:
    # here that was run_batch(<joblib.parallel.BatchedCalls ...>).
    with pytest.raises(ValueError) as raised:
        Parallel(n_jobs=2, backend="procesos", batch_size=1)(
            delayed(fail_on)(i) for i in range(4))
    notes = getattr(raised.value, "__notes__", [])
    assert any(note.startswith("(raised in a joblib batch: fail_on(2)") for note in notes), notes
    assert not any("run_batch" in note for note in notes)
    with pytest.raises(procesos.PicklingError) as unpicklable:
        Parallel(n_jobs=2, backend="procesos")(delayed(len)([threading.Lock()]) for _ in range(2))
    text = str(unpicklable.value)
    assert text.startswith("a joblib batch: len(")
    assert "len: argument 0, a builtins.list object, cannot be pickled" in text
    assert "inside it, [0] is a _thread.lock object" in text and "run_batch" not in text


def test_abort_kills_running_tasks_promptly() -> None:
    # joblib: test_abort_backend. The first batch fails at once; the others
    # sleep for 10 s each and are killed rather than waited for.
    with pytest.raises(TypeError):
        Parallel(n_jobs=2, backend="procesos", batch_size=1)(
            delayed(time.sleep)(s) for s in ["a", *[10] * 20])


_CTRL_C_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import joblib, procesos.joblib
from joblib_tasks import mark_and_block
with joblib.parallel_config(backend="procesos", n_jobs=2):
    joblib.Parallel(batch_size=1)(joblib.delayed(mark_and_block)(sys.argv[1], i)
                                  for i in range(10))
"""


@pytest.mark.timeout(90)
def test_ctrl_c_during_parallel_ends_everything(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(_CTRL_C_SCRIPT.format(tests=str(TESTS)))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_files(tmp_path, "started-*", 2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err
    assert not still_alive(_started_pids(tmp_path))


# A pool you own


def test_an_executor_you_pass_is_reused_and_left_running() -> None:
    with procesos.Executor(2) as executor:
        with parallel_config(backend="procesos", executor=executor):
            first = set(Parallel(batch_size=1)(delayed(pid_of)() for _ in range(20)))
            with pytest.raises(ValueError):
                Parallel()(delayed(fail_on)(i) for i in range(5))
            second = set(Parallel(batch_size=1)(delayed(pid_of)() for _ in range(20)))
        assert len(first | second) <= 2  # the same two workers throughout
        assert executor.submit(square, 6).result(timeout=60) == 36


def test_pool_options_with_your_executor_are_refused() -> None:
    with procesos.Executor(2) as executor:
        with pytest.raises(ValueError, match="give them to the Executor"):
            with parallel_config(backend="procesos", executor=executor, retries=2):
                pass


# scikit-learn, the reason most users meet joblib


def _with_backend(backend: str, fit: Any) -> Any:
    with parallel_config(backend=backend):
        return fit()


@pytest.fixture
def loky_stopped_afterwards() -> Any:
    """joblib's default backend keeps its workers for later calls, and its
    memmapping folders in /dev/shm until its process exits: stop and remove
    them (loky's, the reference run's, not procesos')."""
    shm = Path("/dev/shm")
    before = set(shm.glob("joblib_memmapping_folder_*")) if shm.is_dir() else set()
    yield
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)
    if shm.is_dir():
        for folder in set(shm.glob("joblib_memmapping_folder_*")) - before:
            shutil.rmtree(folder, ignore_errors=True)


def test_cross_val_score_matches_the_default_backend(monkeypatch: pytest.MonkeyPatch,
                                                     loky_stopped_afterwards: None) -> None:
    sklearn = pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    assert sklearn
    x, y = load_iris(return_X_y=True)
    submitted = _count_submits(monkeypatch)

    def fit() -> Any:
        return cross_val_score(LogisticRegression(max_iter=500), x, y, cv=5, n_jobs=2)

    ours = _with_backend("procesos", fit)
    assert submitted
    np.testing.assert_array_equal(ours, _with_backend("loky", fit))


def test_grid_search_matches_the_default_backend(monkeypatch: pytest.MonkeyPatch,
                                                 loky_stopped_afterwards: None) -> None:
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    x, y = load_digits(return_X_y=True)
    x, y = x[:600], y[:600]
    submitted = _count_submits(monkeypatch)

    def fit() -> Any:
        search = GridSearchCV(SVC(), {"C": [0.1, 1, 10], "gamma": [1e-3, 1e-4]}, cv=3, n_jobs=2)
        search.fit(x, y)
        return search

    ours = _with_backend("procesos", fit)
    assert submitted
    theirs = _with_backend("loky", fit)
    assert ours.best_params_ == theirs.best_params_
    np.testing.assert_array_equal(ours.cv_results_["mean_test_score"],
                                  theirs.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(ours.predict(x), theirs.predict(x))


def _count_submits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record every batch the procesos backend submits (proof that it ran the fits)."""
    submitted: list[int] = []
    original = procesos_joblib.ProcesosBackend.submit

    def counting_submit(self: Any, func: Any, callback: Any = None) -> Any:
        submitted.append(len(func))
        return original(self, func, callback)

    monkeypatch.setattr(procesos_joblib.ProcesosBackend, "submit", counting_submit)
    return submitted
