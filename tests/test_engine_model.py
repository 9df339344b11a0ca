"""The engine against a model of what each task must end as (Hypothesis, stateful).

Random sequences of submit(), map/imap/imap_unordered with random chunk sizes,
cancel() and shutdown(cancel_futures=...), on an Executor or a Pool under each
start method, with or without one task per worker (which forks per task), of
tasks that return, raise, run past the per-task timeout, or end their worker
(in the body, while their argument is unpickled, while their result is
pickled). After every step and at the end: each task's outcome is
the one the model allows, no task body ran twice (retries=0; marker files
count the runs), every future resolves, and once the pool has ended, the
engine holds no task's argument and no thread of it is left (the suite's
fixture checks processes and shared memory).

``make test`` runs a few examples; ``make test-deep`` (the ``deep`` profile,
``PROCESOS_HYPOTHESIS_PROFILE=deep``) many more.
"""

from __future__ import annotations

import gc
import os
import re
import threading
import weakref
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import procesos
from conftest import START_METHODS
from engine_tasks import KillsWhenLoaded, Payload, model_task

settings.register_profile(
    "default", max_examples=5, stateful_step_count=6, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "deep", max_examples=200, stateful_step_count=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = os.environ.get("PROCESOS_HYPOTHESIS_PROFILE", "default")
settings.load_profile(PROFILE)

TASK_TIMEOUT_S = 1.0
KILLERS = ("exit", "load", "pickle")  # end their worker
# "sleep" costs a whole timeout: rarer than the others.
ACTIONS = st.sampled_from(["return"] * 4 + ["raise", "exit", "load", "pickle", "sleep"])
CHUNKS = st.sampled_from(["auto", 1, 2, 3, 5])


class Task:
    """One task as the model sees it: what it does, and how it may end."""

    def __init__(self, key: int, action: str, directory: str) -> None:
        self.key = key
        self.action = action
        payload: object = KillsWhenLoaded() if action == "load" else Payload()
        self.spec = (directory, key, action, payload)
        self.watched = None if action == "load" else weakref.ref(payload)
        self.may_be_lost = False  # in an automatic chunk beside a task that kills its worker
        self.may_be_cancelled = False
        self.outcome: tuple[str, Any] | None = None  # ("ok", value) or ("error", exception)

    def check(self, runs: int) -> None:
        assert runs <= 1, f"task {self.key} ({self.action}) ran {runs} times"
        if self.outcome is None:
            return
        kind, value = self.outcome
        if self.may_be_cancelled and isinstance(value, CancelledError):
            assert runs == 0, f"cancelled task {self.key} ran"
            return
        if self.may_be_lost and isinstance(value, procesos.WorkerCrashedError):
            return  # its chunk's results were lost with the worker; it did not run again
        expected: type[BaseException] = {
            "raise": ValueError, "sleep": procesos.TaskTimeoutError,
        }.get(self.action, procesos.WorkerCrashedError)
        if self.action == "return":
            assert kind == "ok" and value == ("ok", self.key), (self.key, self.outcome)
        else:
            assert kind == "error" and isinstance(value, expected), (self.key, self.outcome)
        assert runs == (0 if self.action == "load" else 1), (self.key, self.action, runs)


class EngineModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(os.environ["PROCESOS_MODEL_TMP"])
        self.directory = ""
        self.pool: Any = None
        self.kind = ""
        self.tasks: list[Task] = []
        self.futures: list[tuple[Task, Any]] = []
        self.open = True

    @initialize(kind=st.sampled_from(["executor", "pool"]), method=st.sampled_from(START_METHODS),
                one_task=st.booleans())
    def start(self, kind: str, method: str, one_task: bool) -> None:
        directory = self.tmp / f"run-{os.urandom(6).hex()}"
        directory.mkdir()
        self.directory = str(directory)
        self.kind = kind
        # One task per worker: on Linux each task runs in a fork of its worker.
        max_tasks = 1 if one_task else None
        if kind == "executor":
            self.pool = procesos.Executor(2, context=method, timeout=TASK_TIMEOUT_S,
                                          max_tasks_per_worker=max_tasks)
        else:
            self.pool = procesos.Pool(2, context=method, timeout=TASK_TIMEOUT_S,
                                      maxtasksperchild=max_tasks)

    def _task(self, action: str) -> Task:
        task = Task(len(self.tasks), action, self.directory)
        self.tasks.append(task)
        return task

    @precondition(lambda self: self.open)
    @rule(action=ACTIONS)
    def submit(self, action: str) -> None:
        task = self._task(action)
        if self.kind == "executor":
            future = self.pool.submit(model_task, task.spec)
        else:
            future = self.pool.apply_async(model_task, (task.spec,))
        self.futures.append((task, future))

    @precondition(lambda self: self.open)
    @rule(actions=st.lists(ACTIONS, min_size=1, max_size=8), chunksize=CHUNKS,
          flavour=st.sampled_from(["map", "imap", "imap_unordered"]))
    def map(self, actions: list[str], chunksize: Any, flavour: str) -> None:
        tasks = [self._task(a) for a in actions]
        if chunksize == "auto" and any(a in KILLERS for a in actions):
            for task in tasks:
                task.may_be_lost = True
        specs = [t.spec for t in tasks]
        if self.kind == "executor":
            if flavour == "imap_unordered":
                flavour = "map"
            results = list(self.pool.map(model_task, specs, chunksize=chunksize,
                                         return_exceptions=True))
            keyed = list(zip(tasks, results, strict=True))
        else:
            size = None if chunksize == "auto" else chunksize
            call = getattr(self.pool, flavour)
            results = list(call(model_task, specs, size, return_exceptions=True))
            if flavour == "imap_unordered":
                keyed = _match_unordered(tasks, results)
            else:
                keyed = list(zip(tasks, results, strict=True))
        for task, result in keyed:
            failed = isinstance(result, BaseException)
            task.outcome = ("error", result) if failed else ("ok", result)

    @precondition(lambda self: self.open and self.kind == "executor" and self.futures)
    @rule(which=st.integers(min_value=0))
    def cancel(self, which: int) -> None:
        task, future = self.futures[which % len(self.futures)]
        if future.cancel():
            task.may_be_cancelled = True

    @rule(which=st.integers(min_value=0))
    def wait_for_one(self, which: int) -> None:
        """Wait until one submitted task has resolved (the test's timeout bounds it)."""
        if self.futures:
            _, future = self.futures[which % len(self.futures)]
            _resolved(self.kind, future)

    @precondition(lambda self: self.open)
    @rule(cancel_futures=st.booleans())
    def shutdown(self, cancel_futures: bool) -> None:
        self.open = False
        if self.kind == "executor":
            for task, future in self.futures:
                if cancel_futures and not future.done():
                    task.may_be_cancelled = True
            self.pool.shutdown(wait=False, cancel_futures=cancel_futures)
        else:
            self.pool.close()

    @invariant()
    def outcomes_so_far_are_right(self) -> None:
        for task, future in self.futures:
            if future.done() if self.kind == "executor" else future.ready():
                task.outcome = _outcome(self.kind, future)
        runs = self._runs()
        for task in self.tasks:
            if task.outcome is not None:
                task.check(runs.get(task.key, 0))
            else:
                assert runs.get(task.key, 0) <= 1

    def _runs(self) -> dict[int, int]:
        runs: dict[int, int] = {}
        if self.directory:
            for name in os.listdir(self.directory):
                key = int(name.split("-", 1)[0])
                runs[key] = runs.get(key, 0) + 1
        return runs

    def teardown(self) -> None:
        if self.pool is None:
            return
        task = future = one = None
        try:
            # Every future resolves (the test's timeout bounds the wait).
            for task, future in self.futures:
                _resolved(self.kind, future)
                task.outcome = _outcome(self.kind, future)
        finally:
            if self.kind == "executor":
                self.pool.shutdown(wait=True)
            else:
                self.pool.close()
                self.pool.join()
        runs = self._runs()
        for one in self.tasks:
            assert one.outcome is not None, f"task {one.key} never resolved"
            one.check(runs.get(one.key, 0))
        # The engine holds nothing of the tasks: only our Task objects held their
        # specs, and those are dropped now.
        watched = [t.watched for t in self.tasks if t.watched is not None]
        self.tasks.clear()
        self.futures.clear()
        del task, future, one
        gc.collect()
        assert all(ref() is None for ref in watched), "the engine kept a task's argument"
        assert not [t for t in threading.enumerate()
                    if t.name in ("procesos-dispatcher", "procesos-worker-starter")]


def _resolved(kind: str, future: Any) -> None:
    """Wait until *future* (an Executor's, or a Pool's async result) has resolved."""
    if kind == "executor":
        try:
            future.exception()
        except CancelledError:
            pass
    else:
        future.wait()


def _outcome(kind: str, future: Any) -> tuple[str, Any]:
    if kind == "executor":
        if future.cancelled():
            return ("error", CancelledError())
        error = future.exception()
        return ("error", error) if error is not None else ("ok", future.result())
    try:
        return ("ok", future.get())
    except BaseException as exc:
        return ("error", exc)


def _match_unordered(tasks: list[Task], results: list[Any]) -> list[tuple[Task, Any]]:
    """Pair imap_unordered's results with their tasks: a value names its key, the
    task's own error too, and the engine's errors name the item's index."""
    keyed: list[tuple[Task, Any]] = []
    for result in results:
        if isinstance(result, tuple):
            task = next(t for t in tasks if t.key == result[1])
        elif isinstance(result, ValueError):
            task = next(t for t in tasks if f"task {t.key} raised" in str(result))
        else:
            found = re.search(r"task (\d+) of map", str(result))
            assert found is not None, result
            task = tasks[int(found.group(1))]
        keyed.append((task, result))
    assert sorted(t.key for t, _ in keyed) == [t.key for t in tasks]
    return keyed


@pytest.mark.timeout(600 if PROFILE == "default" else 7200)
def test_the_engine_keeps_its_promises_under_random_use(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESOS_MODEL_TMP", str(tmp_path))
    EngineModel.TestCase().runTest()
