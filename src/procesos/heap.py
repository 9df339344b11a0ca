"""``multiprocessing.heap``: the standard library's (shared ctypes' memory, no processes)."""

from multiprocessing.heap import BufferWrapper

__all__ = ["BufferWrapper"]
