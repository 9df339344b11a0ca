"""Chunks of quick tasks, which a worker runs without a record per task
(``_worker.run_fast``; what it has finished goes to the parent every 20 ms
while the chunk runs), generated: whatever the mix of results, errors, a slow
task and a task that ends its worker, no task runs twice, every result that
arrives is the task's own, and the tasks whose results did not arrive fail
with ``WorkerCrashedError``, the one that ended the worker among them.

The engine's model (``test_engine_model.py``) gives its pools a per-task
timeout and its tasks leave marker files: its chunks are always tracked. Here
the runs are counted in shared memory that ``fork`` workers inherit, so that
the tasks stay quick.
"""

from __future__ import annotations

import os
import time
from multiprocessing.sharedctypes import RawArray
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import procesos

EXAMPLES = 40 if os.environ.get("PROCESOS_HYPOTHESIS_PROFILE") == "deep" else 6
WARM = 2000
MOST = 300
RUNS: Any = None  # run counts by task, inherited by the fork workers


def quick(spec: tuple[int, str]) -> int:
    key, action = spec
    RUNS[key] += 1
    if action == "raise":
        raise ValueError(key)
    if action == "slow":
        time.sleep(0.05)  # longer than a report period: what finished before is sent
    if action == "exit":
        os._exit(3)
    return key


@st.composite
def chunks(draw: st.DrawFn) -> list[str]:
    size = draw(st.integers(min_value=64, max_value=MOST))
    actions = draw(st.lists(st.sampled_from(["return"] * 6 + ["raise"]),
                            min_size=size, max_size=size))
    for special in ("slow", "exit"):
        if draw(st.booleans()):
            actions[draw(st.integers(min_value=0, max_value=size - 1))] = special
    return actions


@pytest.mark.timeout(1200)
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(actions=chunks())
def test_a_chunk_of_quick_tasks_runs_each_once_and_delivers_what_it_sent(
        actions: list[str]) -> None:
    global RUNS
    RUNS = RawArray("i", MOST + WARM)
    with procesos.Executor(1, context="fork") as ex:
        # The engine learns that the task is quick: the next map is one chunk.
        assert list(ex.map(quick, [(MOST + i, "return") for i in range(WARM)])) == [
            MOST + i for i in range(WARM)]
        results = list(ex.map(quick, list(enumerate(actions)), return_exceptions=True))
    died = actions.index("exit") if "exit" in actions else len(actions)
    for key, (action, result) in enumerate(zip(actions, results, strict=True)):
        runs = RUNS[key]
        if key > died:  # the worker died before them; none runs again (retries=0)
            assert runs == 0 and isinstance(result, procesos.WorkerCrashedError), (key, result)
            continue
        assert runs == 1, (key, action, runs)
        if isinstance(result, procesos.WorkerCrashedError):
            assert key >= 0 and died < len(actions), (key, result)  # lost with its worker
        elif action == "raise":
            assert isinstance(result, ValueError) and result.args == (key,), (key, result)
        else:
            assert action in ("return", "slow") and result == key, (key, action, result)
    if died < len(actions):
        assert isinstance(results[died], procesos.WorkerCrashedError)
