"""``multiprocessing.resource_sharer``: the standard library's."""

from multiprocessing.resource_sharer import DupFd, stop

__all__ = ["DupFd", "stop"]
