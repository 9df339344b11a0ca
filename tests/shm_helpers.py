"""Helpers shared by the tests of data without copies (issue 5)."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

from conftest import is_this_trees_name
from procesos._shm import tracker_stats


def live_shared_memory() -> dict[str, int]:
    """The tracker's counts once garbage is collected and every release has arrived."""
    gc.collect()
    stats = tracker_stats()
    return {"segments": stats["segments"], "tickets": stats["tickets"]}


def shm_entries() -> set[str]:
    try:
        return {n for n in os.listdir("/dev/shm") if is_this_trees_name(n)}
    except FileNotFoundError:
        return set()


@pytest.fixture(autouse=True, scope="module")
def dev_shm_unchanged_by_module() -> Iterator[None]:
    """Nothing this module does may leave a name of its own in /dev/shm."""
    before = shm_entries()
    yield
    gc.collect()
    tracker_stats()
    assert shm_entries() - before == set()


@pytest.fixture(autouse=True)
def no_shared_memory_left() -> Iterator[None]:
    """Every test must give back every segment and ticket it made."""
    assert live_shared_memory() == {"segments": 0, "tickets": 0}, "a previous test leaked"
    yield
    assert live_shared_memory() == {"segments": 0, "tickets": 0}


@pytest.fixture(autouse=True)
def no_resource_tracker_warning(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Nothing (this process, its children) may print a resource-tracker warning."""
    yield
    _, err = capfd.readouterr()
    assert "resource_tracker" not in err and "leaked" not in err, err
