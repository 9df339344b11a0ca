"""Large buffers this process has sent, found again by identity and checked byte for byte.

Sending one array to several tasks or processes would copy it once per send,
and hold one segment per send while the receivers use it: two workers given
the same 2 GB array would cost 4 GB of shared memory. So the sender remembers,
for each large buffer it copied into a segment, which object it came from and
where it lies. A later send of the same object (the same object, alive, of
the same size) asks the tracker for a new ticket on that segment, which the
tracker grants only while the segment is still in use and still holds what
was written there (never back in the pool, never handed to another writer
since), then compares the bytes: a buffer that changed in between is copied
anew. Receivers map segments copy-on-write, so nothing but the first writer
ever changes a segment's bytes.

Only numpy arrays are remembered (weakly: the table never keeps one alive),
and only contiguous ones, whose address numpy gives for ``memcmp``.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections import OrderedDict
from typing import Any, NamedTuple

from .._compat import lock_after_fork
from ._copy import in_pieces, threads_for

__all__ = ["Location", "find", "remember", "same_bytes"]

_LIMIT = 64  # objects remembered, the most recently sent kept
_CHUNK = 64 << 20  # bytes compared per memcmp call, so that Ctrl-C is seen between calls


class Location:
    """Where a buffer that was sent lies: a segment (as first written) and an offset."""

    __slots__ = ("capacity", "offset", "origin", "path", "seg", "token")

    def __init__(self, token: str, seg: int, origin: int, path: str, capacity: int,
                 offset: int) -> None:
        self.token = token
        self.seg = seg
        self.origin = origin  # the ticket the segment was written under
        self.path = path
        self.capacity = capacity
        self.offset = offset


class _Entry(NamedTuple):
    ref: weakref.ref[Any]
    nbytes: int
    where: Location


_lock = threading.Lock()
_table: OrderedDict[int, _Entry] = OrderedDict()


def _forget(key: int, ref: weakref.ref[Any]) -> None:
    with _lock:
        entry = _table.get(key)
        if entry is not None and entry.ref is ref:
            del _table[key]


def _numpy_array(obj: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(obj, numpy.ndarray)


def remember(obj: Any, nbytes: int, where: Location) -> None:
    """Note that the buffer of *obj* (*nbytes* long) now lies at *where*."""
    if not _numpy_array(obj) or not obj.flags.c_contiguous:
        return
    key = id(obj)
    try:
        ref = weakref.ref(obj, lambda dead: _forget(key, dead))
    except TypeError:
        return
    with _lock:
        _table[key] = _Entry(ref, nbytes, where)
        _table.move_to_end(key)
        while len(_table) > _LIMIT:
            _table.popitem(last=False)


def find(obj: Any, nbytes: int, token: str) -> Location | None:
    """Where the same object, of the same size, was last sent in this tree, if it was."""
    with _lock:
        entry = _table.get(id(obj))
    if entry is None or entry.ref() is not obj or entry.nbytes != nbytes:
        return None
    return entry.where if entry.where.token == token else None


def _after_fork_in_child() -> None:
    # What the parent sent is not this process's.
    global _lock
    _lock = lock_after_fork(_lock)
    if _table:
        _table.clear()


_memcmp: Any = None


def _load_memcmp() -> Any:
    global _memcmp
    if _memcmp is None:
        import ctypes

        function = ctypes.CDLL(None).memcmp
        function.restype = ctypes.c_int
        function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        _memcmp = function
    return _memcmp


def same_bytes(source: memoryview, mapping: Any, offset: int) -> bool:
    """Whether *source* (a contiguous buffer of a numpy array) equals the
    mapping's bytes from *offset* on.

    A large buffer is compared by several threads, as it is copied
    (``_copy.py``: one thread does not use the memory bandwidth; ``memcmp``
    through ctypes lets go of the GIL). On Ctrl-C the interrupt goes on at
    once; helpers still comparing hold a view of the mapping, which keeps it
    from being closed under them (closing it raises ``BufferError`` then).
    """
    numpy = sys.modules["numpy"]
    nbytes = source.nbytes
    if offset + nbytes > len(mapping):
        return False
    try:
        memcmp = _load_memcmp()
    except (ImportError, OSError, AttributeError):
        return False
    window = memoryview(mapping)
    ours = numpy.frombuffer(source, numpy.uint8)
    theirs = numpy.frombuffer(window, numpy.uint8, count=nbytes, offset=offset)
    left = ours.__array_interface__["data"][0]
    right = theirs.__array_interface__["data"][0]
    del ours, theirs
    differs: list[int] = []  # where a piece found a difference

    def compare(start: int, stop: int, keep: object = (source, window)) -> None:
        # In chunks, so that Ctrl-C is seen between them; *keep* holds the two
        # buffers alive (and the mapping open) while a helper still compares.
        for at in range(start, stop, _CHUNK):
            if differs or memcmp(left + at, right + at, min(_CHUNK, stop - at)) != 0:
                differs.append(at)
                return

    in_pieces(compare, nbytes, threads_for(nbytes), "procesos-compare")
    window.release()  # every helper is done with it: the mapping may be closed next
    return not differs


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
