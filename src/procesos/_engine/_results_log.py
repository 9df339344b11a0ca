"""Finished results that survive their worker: a small shared-memory log per worker.

While a worker runs a tracked batch of several items, it appends each finished
item's outcome (its pickled value, or its error frame) to its log before it
starts the next item; DONE messages still carry the results as usual. The
parent reads the log when the worker dies, so that the items that had
finished are delivered instead of run again (at most once), and when the
worker has stayed on one item for a while, so that finished results are not
held behind a slow one. An outcome that does not fit (large, or not plainly
picklable) is sent in a DONE message at once instead.

One worker's region, ``LOG_BYTES`` of one shared array::

    int64 generation   incremented before and after a reset (odd meanwhile)
    int64 first_seq    the sequence number of the first entry
    int64 used         bytes of complete entries
    int64 (unused)
    entries            each ``!BI`` (kind, length) then the data; kind VALUE (a
                       pickle), MARSHALLED (plain types) or ERROR (an error frame)

The worker writes an entry's bytes before it raises ``used``; the parent
copies the entries and keeps the copy only if the generation did not change
meanwhile (a seqlock).
"""

from __future__ import annotations

import marshal
import pickle
import struct
from typing import Any

__all__ = ["ERROR", "LOG_BYTES", "MARSHALLED", "VALUE", "ResultLog", "load_entry", "log_value",
           "read_log"]

LOG_BYTES = 1 << 16
VALUE, ERROR, MARSHALLED = 0, 1, 2
# Results of these exact types are marshalled: four times quicker than a pickle.
_MARSHAL_TYPES = frozenset([int, float, str, bytes, bool, type(None)])
_HEADER = 32
_ENTRY = struct.Struct("!BI")
_ROOM = LOG_BYTES - _HEADER
_GEN, _FIRST, _USED = range(3)


def _region(array: Any, slot: int) -> tuple[memoryview, memoryview]:
    base = slot * LOG_BYTES
    region = memoryview(array).cast("B")[base:base + LOG_BYTES]
    return region, region[:_HEADER].cast("q")


class ResultLog:
    """The worker's side: append outcomes, reset after they went in a DONE message."""

    def __init__(self, array: Any, slot: int) -> None:
        region, self.header = _region(array, slot)
        self.entries = region[_HEADER:]
        self.used = 0

    def reset(self, first_seq: int) -> None:
        header = self.header
        header[_GEN] += 1
        header[_FIRST] = first_seq
        header[_USED] = 0
        header[_GEN] += 1
        self.used = 0

    def append(self, kind: int, data: bytes) -> bool:
        """Add one outcome; False (nothing written) when it does not fit."""
        used = self.used
        end = used + _ENTRY.size + len(data)
        if end > _ROOM:
            return False
        self.entries[used:end] = _ENTRY.pack(kind, len(data)) + data
        self.used = self.header[_USED] = end
        return True


class _Large(Exception):
    pass


def _refuse_large(buffer: pickle.PickleBuffer) -> bool:
    if memoryview(buffer).nbytes > _ROOM:
        raise _Large  # it would not fit: pickle nothing more of it
    return True


def log_value(value: Any) -> tuple[int, bytes | None]:
    """*value* as a log entry: ``(kind, data)``, data None when it is too large.
    Pickled with the C pickler, as results are; raises what the pickler raised."""
    if type(value) in _MARSHAL_TYPES:
        return MARSHALLED, marshal.dumps(value)
    try:
        return VALUE, pickle.dumps(value, 5, buffer_callback=_refuse_large)
    except _Large:
        return VALUE, None


def load_entry(kind: int, data: bytes) -> Any:
    """The value of a VALUE or MARSHALLED entry."""
    return marshal.loads(data) if kind == MARSHALLED else pickle.loads(data)


def read_log(array: Any, slot: int) -> tuple[int, list[tuple[int, bytes]]] | None:
    """The parent's side: ``(first_seq, [(kind, data), ...])`` of worker *slot*'s log,
    or None when it is being reset (read again later)."""
    region, header = _region(array, slot)
    generation = header[_GEN]
    if generation & 1:
        return None
    first, used = header[_FIRST], header[_USED]
    if not 0 <= used <= _ROOM:
        return None
    data = bytes(region[_HEADER:_HEADER + used])
    if header[_GEN] != generation:
        return None
    entries: list[tuple[int, bytes]] = []
    at = 0
    while at + _ENTRY.size <= len(data):
        kind, length = _ENTRY.unpack_from(data, at)
        at += _ENTRY.size
        if at + length > len(data):
            break
        entries.append((kind, data[at:at + length]))
        at += length
    return first, entries
