"""Chunk sizes chosen from measured task durations (joblib's auto-batching, adapted).

A :class:`ChunkSizer` keeps a smoothed estimate of the time one item takes in
a worker (weighted by items, so that large batches count more than small
ones). The next chunk aims at ``TARGET_S`` of work: it grows at most 2x per
completed batch and shrinks at once. When the number of items left is known,
no chunk takes more than a share of them, so that the tail stays balanced
across workers.

A map of a function that already ran in this engine starts from what was
learned about it, at a sixteenth of the size that estimate asks for (so that
a function that became slower overshoots at most 16 times), instead of from
one item.

Time is not all a chunk costs: its arguments and results cross the pipes
whole, so a chunk of many items that carry data (arrays of kilobytes) makes
large frames that are pickled, copied and unpickled at once instead of
flowing. The sizer also keeps the smoothed bytes per item of both, as they
crossed the pipes (data that travels in shared memory counts as its small
reference), and no chunk carries more than about ``TARGET_BYTES``.
"""

from __future__ import annotations

__all__ = ["MAX_CHUNK", "TARGET_BYTES", "TARGET_S", "TRACK_ABOVE_S", "ChunkSizer"]

TARGET_S = 0.02
TARGET_BYTES = 1 << 17
TAIL_MIN_S = 0.002
MAX_CHUNK = 1 << 16
# Items quicker than this run without per-item bookkeeping in the worker.
TRACK_ABOVE_S = 20e-6
_DECAY = 0.8
_LEARNED_START = 16


class ChunkSizer:
    """The next chunk size for one stream of similar tasks."""

    __slots__ = ("_arg_bytes", "_busy", "_items", "_result_bytes", "fixed", "size", "workers")

    def __init__(self, workers: int, fixed: int | None = None,
                 learned_s: float | None = None) -> None:
        self.workers = max(1, workers)
        self.fixed = fixed
        self.size = fixed or 1
        self._busy = 0.0
        self._items = 0.0
        self._arg_bytes = 0.0  # smoothed, per item
        self._result_bytes = 0.0
        if learned_s is not None and learned_s > 0:
            # One item's weight: the first real measurement outweighs it.
            self._busy, self._items = learned_s, 1.0
            if fixed is None:
                self.size = max(1, min(MAX_CHUNK, int(TARGET_S / learned_s)) // _LEARNED_START)

    @property
    def per_item_s(self) -> float | None:
        """The smoothed duration of one item, or None before any measurement."""
        return self._busy / self._items if self._items else None

    @property
    def tracked(self) -> bool:
        """Whether items should be tracked one by one (slow or not yet measured)."""
        per_item = self.per_item_s
        return per_item is None or per_item >= TRACK_ABOVE_S

    def next_size(self, remaining: int | None) -> int:
        """How many items the next chunk should hold (*remaining*: items left, if known)."""
        size = self.size
        per_item_bytes = self._arg_bytes + self._result_bytes
        if self.fixed is None and per_item_bytes * size > TARGET_BYTES:
            size = max(1, int(TARGET_BYTES / per_item_bytes))
        if self.fixed is None and remaining is not None:
            # Balance the tail, but never below chunks of TAIL_MIN_S of work.
            per_item = self.per_item_s
            floor = max(1, int(TAIL_MIN_S / per_item)) if per_item else 1
            size = min(size, max(floor, -(-remaining // (2 * self.workers))))
        return size if remaining is None else max(1, min(size, remaining))

    def record(self, items: int, busy_s: float) -> None:
        """Learn from a finished piece: *items* ran in *busy_s* seconds of worker time.

        With a size the caller fixed, only the items' duration is learnt: it
        decides whether they are tracked one by one (:attr:`tracked`), which
        costs quick items more than they take.
        """
        if items <= 0:
            return
        self._busy = self._busy * _DECAY + busy_s
        self._items = self._items * _DECAY + items
        if self.fixed is not None:
            return
        per_item = self._busy / self._items
        ideal = MAX_CHUNK if per_item <= 0 else max(1, min(MAX_CHUNK, int(TARGET_S / per_item)))
        self.size = min(ideal, 2 * self.size) if ideal > self.size else ideal

    def record_bytes(self, items: int, nbytes: int, results: bool) -> None:
        """Learn from a frame: *items* arguments (or results) took *nbytes* in a pipe."""
        if items <= 0 or self.fixed is not None:
            return
        per_item = nbytes / items
        if results:
            self._result_bytes = _smoothed(self._result_bytes, per_item)
        else:
            self._arg_bytes = _smoothed(self._arg_bytes, per_item)


def _smoothed(previous: float, value: float) -> float:
    """An exponential average; the first value (no previous one) as it is."""
    return value if not previous else previous * _DECAY + value * (1 - _DECAY)
