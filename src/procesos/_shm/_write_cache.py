"""Writable mappings of transport segments, kept for a moment between two sends.

Into a fresh segment, writing costs a copy plus a page-table entry for every
4 KiB page: about twice a ``memcpy`` on tmpfs, whether the kernel does it
(``pwrite``) or a new mapping is faulted in. The tracker pools segments, so a
process sending large data back to back is handed the same segments again;
through the mapping it kept from the last send, a write is one ``memcpy``.

A kept mapping holds the segment's memory even after the tracker frees it, so
only segments small enough for the tracker's pool are kept, and a mapping
unused for :data:`IDLE` seconds is closed by a timer thread (one, while there
is something to close). A forked child closes what it inherited at once.
"""

from __future__ import annotations

import mmap
import os
import threading
import time

from .._compat import lock_after_fork
from ._client import DEFAULT_POOL_BYTES, POOL_ENV, map_segment

__all__ = ["IDLE", "drop_all", "give_back", "take"]

IDLE = 1.0
"""Seconds a mapping is kept unused before it is closed."""

_Key = tuple[str, int]  # (tracker token, segment id)

_lock = threading.Lock()
_kept: dict[_Key, tuple[mmap.mmap, float]] = {}
_timer: threading.Timer | None = None


def _pool_budget() -> int:
    try:
        return int(os.environ.get(POOL_ENV, DEFAULT_POOL_BYTES))
    except ValueError:
        return DEFAULT_POOL_BYTES


def take(token: str, seg: int, path: str, capacity: int) -> mmap.mmap:
    """A writable, shared mapping of segment *seg*: the kept one, or a new one."""
    with _lock:
        kept = _kept.pop((token, seg), None)
    if kept is not None:
        mapping = kept[0]
        if len(mapping) == capacity:
            return mapping
        mapping.close()
    return map_segment(path, capacity, "write")


def give_back(token: str, seg: int, mapping: mmap.mmap) -> None:
    """Keep *mapping* (from :func:`take`) for the next send into the same segment."""
    global _timer
    if len(mapping) > _pool_budget():
        mapping.close()  # the tracker frees it: it must not live on here
        return
    with _lock:
        replaced = _kept.pop((token, seg), None)
        if _timer is None:
            _timer = _start_timer(IDLE)
        kept = _timer is not None
        if kept:
            _kept[(token, seg)] = (mapping, time.monotonic())
    if replaced is not None:
        replaced[0].close()
    if not kept:
        mapping.close()


def _start_timer(wait: float) -> threading.Timer | None:
    """The timer that closes idle mappings; None while the interpreter finalizes
    (no new threads then, so nothing is kept)."""
    timer = threading.Timer(wait, _expire)
    timer.daemon = True
    try:
        timer.start()
    except RuntimeError:
        return None
    return timer


def _expire() -> None:
    global _timer
    now = time.monotonic()
    with _lock:
        old = [key for key, (_, used) in _kept.items() if now - used >= IDLE]
        closing = [_kept.pop(key)[0] for key in old]
        if _kept:
            wait = IDLE - (now - min(used for _, used in _kept.values()))
            _timer = _start_timer(max(wait, 0.01))
            if _timer is None:
                closing += [mapping for mapping, _ in _kept.values()]
                _kept.clear()
        else:
            _timer = None
    for mapping in closing:
        mapping.close()


def drop_all() -> None:
    """Close every kept mapping now."""
    with _lock:
        closing = [mapping for mapping, _ in _kept.values()]
        _kept.clear()
    for mapping in closing:
        mapping.close()


def _after_fork_in_child() -> None:
    global _lock, _timer
    _lock = lock_after_fork(_lock)
    _timer = None  # the parent's thread: not here
    if _kept:
        drop_all()


os.register_at_fork(after_in_child=_after_fork_in_child)
