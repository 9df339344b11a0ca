"""Copying a large buffer into a shared mapping, in several threads where that is faster.

One thread's ``memcpy`` does not use all of a machine's memory bandwidth: on
the 2-CPU machine of BENCHMARKS.md, 200 MB into a mapping already faulted in
take 20 ms from one thread and 12 ms from two. numpy's ``copyto`` lets go of
the GIL while it copies, so threads copy side by side. Without numpy (which
procesos never imports itself), or for a small buffer, one copy is made in
the calling thread.
"""

from __future__ import annotations

import itertools
import mmap
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["PARALLEL_MIN", "copy_into", "in_pieces", "threads_for"]

PARALLEL_MIN = 16 << 20
"""Bytes from which a copy is split between threads (below, starting a thread costs
more than it saves)."""
_PIECE_MIN = 8 << 20
_MAX_THREADS = 4


def threads_for(nbytes: int) -> int:
    """How many threads should copy (or compare) *nbytes*: one below
    :data:`PARALLEL_MIN`, else up to one per CPU this process may use (at most
    four), each with 8 MiB or more."""
    if nbytes < PARALLEL_MIN:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(_MAX_THREADS, cpus, nbytes // _PIECE_MIN))


def copy_into(mapping: mmap.mmap, start: int, data: Any) -> None:
    """Copy *data* (``bytes``, a ``memoryview``, or a numpy array of any strides,
    written C-ordered) into *mapping* at *start*."""
    numpy = sys.modules.get("numpy")
    contiguous = isinstance(data, memoryview) or type(data) is bytes
    nbytes = memoryview(data).nbytes if contiguous else int(data.nbytes)
    threads = threads_for(nbytes) if numpy is not None else 1
    if contiguous and threads == 1:
        view = memoryview(data).cast("B")
        mapping[start:start + nbytes] = view
        return
    assert numpy is not None  # a numpy array was given, so numpy is imported
    # numpy's views of the window do not pin the mapping; the window does, until
    # released. So it is released only once every copy is done: after an error or
    # Ctrl-C, a helper may still be writing, and the window (garbage once the
    # helpers' views are) keeps the mapping from being closed under it.
    window = memoryview(mapping)
    if contiguous:
        source = numpy.frombuffer(data, numpy.uint8)
        target = numpy.frombuffer(window, numpy.uint8, nbytes, start)
    else:
        source = data
        target = numpy.ndarray(data.shape, data.dtype, buffer=window, offset=start)
    _copy_pieces(numpy, target, source, threads)
    del source, target
    window.release()


def _copy_pieces(numpy: Any, target: Any, source: Any, threads: int) -> None:
    """``numpy.copyto(target, source)``, split along the first axis between *threads*.

    On Ctrl-C the interrupt goes on at once (the caller gives the segment back),
    and helpers still copying finish on their own: see :func:`copy_into` for
    what keeps their target mapped meanwhile.
    """
    rows = source.shape[0] if source.ndim else 0
    threads = min(threads, rows)
    if threads <= 1:
        numpy.copyto(target, source, casting="no")
        return

    def copy(start: int, stop: int) -> None:
        numpy.copyto(target[start:stop], source[start:stop], casting="no")

    in_pieces(copy, rows, threads, "procesos-copy")


def in_pieces(work: Callable[[int, int], object], total: int, threads: int,
              name: str) -> None:
    """``work(start, stop)`` over ``0:total`` cut into *threads* pieces: the first
    in this thread, the others in daemon helpers named *name* (in this thread too
    when no thread can start: the interpreter is finalizing), then joined.

    On Ctrl-C the interrupt goes on at once and helpers still working finish on
    their own: what they need must be referenced by *work*.
    """
    bounds = [total * i // threads for i in range(threads + 1)]
    started = []
    for start, stop in itertools.pairwise(bounds[1:]):
        helper = threading.Thread(target=work, args=(start, stop), name=name, daemon=True)
        try:
            helper.start()
        except RuntimeError:
            helper.run()
        else:
            started.append(helper)
    work(bounds[0], bounds[1])
    for helper in started:
        helper.join()
