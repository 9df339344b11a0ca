"""``multiprocessing.queues`` for procesos: queues whose large buffers travel without copies.

As in the standard library the classes take the context by keyword
(``Queue(maxsize, ctx=procesos.get_context())``); ``procesos.Queue()`` needs none.
"""

from ._sharing._queues import JoinableQueue, Queue, SimpleQueue

__all__ = ["JoinableQueue", "Queue", "SimpleQueue"]
