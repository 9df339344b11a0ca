"""Tasks for the cluster backend tests; importable by the cluster's workers
(the tests put this folder on their ``PYTHONPATH``)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def square(x: int) -> int:
    return x * x


def add(a: int, b: int = 0) -> int:
    return a + b


def fail_on(x: int, bad: int = 2) -> int:
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def stop_on(x: int, bad: int = 2) -> int:
    """x * 10, but StopIteration for *bad* (a helper that calls next() past the end)."""
    if x == bad:
        next(iter(()))
    return x * 10


def sleep_then(seconds: float, value: object = None) -> object:
    time.sleep(seconds)
    return value


def sleep_then_mark(seconds: float, marker: str) -> None:
    """Sleep, then create the file *marker*: a trace that this call ran to its end."""
    time.sleep(seconds)
    open(marker, "w").close()


def total(array: object, offset: int = 0) -> float:
    return float(array.sum()) + offset  # type: ignore[attr-defined]


def pid_of(_: object = None) -> int:
    return os.getpid()


def hold_until_released(item: int, directory: str, hold: int) -> tuple[int, int]:
    """Item *hold*, unless ``killed`` exists (its second run), writes this
    worker's pid to ``started`` and waits (at most 60 s) for ``released``;
    every item returns ``(item, pid)``."""
    folder = Path(directory)
    if item == hold and not (folder / "killed").exists():
        (folder / "started.tmp").write_text(str(os.getpid()))
        (folder / "started.tmp").rename(folder / "started")
        deadline = time.monotonic() + 60
        while not (folder / "released").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    return item, os.getpid()
