"""``multiprocessing.shared_memory``: the standard library's ``SharedMemory`` and
``ShareableList``, which work with procesos' processes as they are.

For numpy arrays, :class:`procesos.SharedArray` needs no name, no size
arithmetic and no ``unlink()``.
"""

from multiprocessing.shared_memory import ShareableList, SharedMemory

__all__ = ["ShareableList", "SharedMemory"]
