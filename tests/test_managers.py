"""Managers with a script's own functions and classes, no ``__main__`` guard.

A manager's server started by procesos never runs the user's script, so what
the script defines must reach it by value, and come back as the script's own.
Each test runs a script of its own (its ``__main__``) under each start method.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import START_METHODS, run_script

POINTS_SCRIPT = """
from dataclasses import dataclass

import procesos as mp


@dataclass
class Point:
    x: int
    y: int


def from_the_child(d, q):
    d["child"] = Point(3, 4)
    q.put(d["parent"])


with mp.Manager() as manager:
    d, q, items = manager.dict(), manager.Queue(), manager.list()
    d["parent"] = Point(1, 2)
    items.append(Point(5, 6))
    p = mp.Process(target=from_the_child, args=(d, q))
    p.start()
    p.join()
    print(p.exitcode, d["parent"], type(d["parent"]) is Point, type(d["child"]) is Point,
          q.get(timeout=30) == Point(1, 2), items[0] == Point(5, 6))
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_instances_of_the_scripts_classes_go_through_a_manager_and_come_back_as_its_own(
    method: str, tmp_path: Path,
) -> None:
    done = run_script(POINTS_SCRIPT, tmp_path, method, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "Point(x=1,", "y=2)", "True", "True", "True", "True"]


POOL_SCRIPT = """
import procesos as mp


def square(x):
    return x * x


with mp.Manager() as manager:
    pool = manager.Pool(2)
    print(pool.map(square, range(5)), pool.apply(square, (7,)))
    pool.close()
    pool.join()
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_a_managers_pool_runs_the_scripts_functions(method: str, tmp_path: Path) -> None:
    done = run_script(POOL_SCRIPT, tmp_path, method, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0, 1, 4, 9, 16] 49"
