"""Tasks for ``bench_transport.py``, in a module of their own so that every library's
workers import them by reference (and keep their per-worker cache)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import psutil  # type: ignore[import-untyped]

_cache: dict[int, np.ndarray] = {}


def total(a: np.ndarray) -> float:
    """The argument's sum: what a task does with a large argument."""
    return float(a.sum())


def cached_array(nbytes: int) -> np.ndarray:
    """A large array made once per worker: returning it measures the transfer only."""
    array = _cache.get(nbytes)
    if array is None:
        array = _cache[nbytes] = np.ones(nbytes // 8)
    return array


def fresh_array(nbytes: int) -> np.ndarray:
    """A large array made now (for a fresh ``Process``)."""
    return np.ones(nbytes // 8)


def echo(x: Any) -> Any:
    return x


def total_and_memory(a: np.ndarray) -> tuple[float, int, int]:
    """The sum, then this worker's RSS and PSS while it still holds *a*."""
    s = float(a.sum())
    info = psutil.Process(os.getpid()).memory_full_info()
    return s, int(info.rss), int(info.pss)


def queue_worker(inbox: Any, outbox: Any) -> None:
    """Answer each array from *inbox* with its sum on *outbox*, until None."""
    while True:
        item = inbox.get()
        if item is None:
            return
        outbox.put(float(item.sum()))


def queue_drain(inbox: Any, count: int, outbox: Any) -> None:
    """Get *count* small messages, then say so."""
    for _ in range(count):
        inbox.get()
    outbox.put(count)


def queue_produce(outbox: Any, count: int) -> None:
    """Put *count* small messages."""
    message = (1, "procesos", 2.5)
    for _ in range(count):
        outbox.put(message)


def doubled(a: np.ndarray) -> np.ndarray:
    """The argument times two: a task whose argument and result carry data."""
    return a * 2
