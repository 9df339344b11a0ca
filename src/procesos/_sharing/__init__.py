"""Layer 4: sharing objects procesos owns (``SharedArray``, queues and pipes without copies).

``SharedArray`` lives in :mod:`._shared_array`, imported only when used, so
that importing procesos does not import numpy.
"""

from __future__ import annotations

from ._queues import Connection, JoinableQueue, Pipe, Queue, SimpleQueue

__all__ = ["Connection", "JoinableQueue", "Pipe", "Queue", "SimpleQueue"]
