"""``multiprocessing.reduction``: the standard library's pickling helpers.

procesos pickles with cloudpickle on top of them (functions by value);
``register()`` here adds a reducer that procesos uses too.
"""

from multiprocessing.reduction import (
    DupFd,
    ForkingPickler,
    dump,
    recv_handle,
    recvfds,
    register,
    send_handle,
    sendfds,
)

__all__ = ["DupFd", "ForkingPickler", "dump", "recv_handle", "recvfds", "register",
           "send_handle", "sendfds"]
