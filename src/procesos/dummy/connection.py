"""``multiprocessing.dummy.connection``: the standard library's (queues between threads)."""

from multiprocessing.dummy.connection import Client, Connection, Listener, Pipe

__all__ = ["Client", "Connection", "Listener", "Pipe"]
