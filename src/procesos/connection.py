"""``multiprocessing.connection`` for procesos: ``Pipe`` carries large buffers without copies.

``Client``, ``Listener``, ``wait`` and ``Connection`` are the standard
library's (a ``Listener`` with an ``authkey`` authenticates its clients before
it unpickles anything they send).
"""

from multiprocessing.connection import Client, Connection, Listener, wait

from ._sharing._queues import Pipe

__all__ = ["Client", "Connection", "Listener", "Pipe", "wait"]
