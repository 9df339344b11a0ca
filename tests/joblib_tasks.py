"""Tasks for the joblib backend's tests (importable, so workers load them by reference)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any


def array_storage(array: Any) -> tuple[list[str], float]:
    """The chain of objects under *array* (``ndarray``, ..., what holds its bytes)
    and its sum, seen in the worker."""
    chain = []
    holder = array
    while holder is not None:
        name = type(holder).__name__
        if isinstance(holder, memoryview):
            name += ":" + type(holder.obj).__name__
        chain.append(name)
        holder = getattr(holder, "base", None)
    return chain, float(array.sum())


def wait_for_file(path: str, value: int) -> int:
    """Block until *path* exists (written by the test), then return *value*."""
    while not os.path.exists(path):
        threading.Event().wait(0.01)
    return value


def mark_and_block(directory: str, x: int) -> int:
    """Leave ``started-PID-X`` in *directory*, then block for good."""
    Path(directory, f"started-{os.getpid()}-{x}").touch()
    threading.Event().wait()
    return x


def nested_squares(n: int) -> list[int]:
    """A joblib Parallel call inside a worker (joblib's nested backend: threads)."""
    from joblib import Parallel, delayed

    return list(Parallel(n_jobs=2)(delayed(pow)(i, 2) for i in range(n)))


def initialized(_: object = None) -> object:
    from engine_tasks import STATE

    return STATE.get("value")
