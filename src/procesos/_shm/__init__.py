"""Layer 1: shared memory that nothing can leak — the tracker, the segments, the frames.

Design, in short:

* **One owner.** A tracker process per process tree (:mod:`._tracker`) creates
  and owns every segment. On Linux a segment is a ``memfd``: it has no name in
  ``/dev/shm``, and the kernel frees it once the tracker has closed it and no
  process maps it, so nothing can outlive the processes that use it, whatever
  kills them (the tracker included).
* **Holds on connections.** Each process keeps one connection to the tracker;
  its holds live on that connection, so a process killed by SIGKILL gives them
  back when the kernel closes its socket. A mapping's hold is given back when
  the last object viewing it is garbage (a ``weakref`` finalizer).
* **Tickets for data in flight.** Written data waits for its receiver under a
  ticket, which survives its sender (a child's result is read after the child
  exited). It ends when the receiver claims it, when the data is discarded
  (a child that died before reading its arguments), or when the tree ends:
  the root process has exited and every connection has closed.
* **A pool.** Freed transport segments stay in the tracker's pool (1 GiB by
  default, ``PROCESOS_SHM_POOL_BYTES``; idle ones go after 20 s,
  ``PROCESOS_SHM_POOL_IDLE``), so a transfer costs one ``memcpy`` into pages
  that are already there, not page faults on fresh memory. A segment that a
  fork could have inherited is never pooled again.

:mod:`._transport` turns an object into a frame (pickle protocol 5, large
buffers in one segment) and back; :mod:`._client` is this process's side.
"""

from __future__ import annotations

from ._errors import ShmError
from ._transport import discard, get_threshold, pack, set_threshold, unpack

__all__ = ["ShmError", "discard", "get_threshold", "pack", "set_threshold", "tracker_stats",
           "unpack"]


def tracker_stats(token: str | None = None, trim: bool = False) -> dict[str, int]:
    """The tracker's counts, after it handled everything already sent to it
    (see :func:`procesos._shm._client.tracker_stats`)."""
    from ._client import tracker_stats as stats

    return stats(token, trim)
