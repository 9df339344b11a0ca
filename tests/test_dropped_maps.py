"""A map's iterator dropped, generated: every task once, or none twice.

A map whose iterator is dropped before anything was read from it (called
for its effects) runs every task exactly once, as ``concurrent.futures`` and
``multiprocessing``'s ``imap`` do; one dropped after *k* results runs no task
twice, and every task whose result was read ran. Hypothesis draws the API
(``Executor.map``, ``Pool.imap``, ``Pool.imap_unordered``), the input (a list
or a generator, of any length up to a few times the read-ahead) and when the
iterator is dropped. ``make test`` runs a few examples; ``make test-deep``
(``PROCESOS_HYPOTHESIS_PROFILE=deep``) many more.
"""

from __future__ import annotations

import functools
import gc
import os
import shutil
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import procesos
from engine_tasks import counted, runs_of

EXAMPLES = 300 if os.environ.get("PROCESOS_HYPOTHESIS_PROFILE") == "deep" else 6


@st.composite
def dropped_maps(draw: Any) -> tuple[str, str, int, int | None]:
    kind = draw(st.sampled_from(["executor", "imap", "imap_unordered"]))
    source = draw(st.sampled_from(["list", "generator"]))
    count = draw(st.integers(min_value=0, max_value=600))
    read = draw(st.none() | st.integers(min_value=1, max_value=max(count, 1)))
    return kind, source, count, None if count == 0 else read


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=dropped_maps())
def test_a_dropped_map_runs_every_task_once_or_none_twice(
    case: tuple[str, str, int, int | None],
) -> None:
    kind, source, count, read = case
    directory = tempfile.mkdtemp(prefix="procesos-dropped-")
    try:
        fn = functools.partial(counted, directory)
        items: Any = list(range(count)) if source == "list" else (i for i in range(count))
        owner: Any = procesos.Executor(2) if kind == "executor" else procesos.Pool(2)
        try:
            if kind == "executor":
                results = owner.map(fn, items)
            else:
                results = getattr(owner, kind)(fn, items)
            taken = [next(results) for _ in range(read or 0)]
            del results
            gc.collect()
        finally:
            if kind == "executor":
                owner.shutdown(wait=True)
            else:
                owner.close()
                owner.join()
        runs = runs_of(directory)
        if read is None:
            assert runs == {i: 1 for i in range(count)}  # every task, once
        else:
            assert set(runs.values()) <= {1}  # none twice
            assert set(runs) <= set(range(count))
            ran = {value // 10 for value in taken}
            assert ran <= set(runs)  # what was read ran
            if kind != "imap_unordered":
                assert taken == [i * 10 for i in range(read)]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
