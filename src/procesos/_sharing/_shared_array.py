"""``SharedArray``: a numpy array whose memory every process of the tree can map.

Passing one to a child (as an argument, a task, through a queue) sends its
segment's ticket, never its data: both processes see and write the same
memory. The segment belongs to the tree's tracker (:mod:`procesos._shm`);
each process that has the array holds it through its connection, so the
memory is freed when the last holder closes it or exits, however it exits.
No name is left in ``/dev/shm`` and no resource-tracker warning is printed.

Imported lazily (``procesos.SharedArray``), so that ``import procesos`` does
not import numpy.
"""

from __future__ import annotations

import operator
import os
import threading
import weakref
from collections.abc import Iterable
from typing import Any, Literal, SupportsIndex

try:
    import numpy as np
    import numpy.typing as npt
except ModuleNotFoundError as missing:
    if missing.name != "numpy":
        raise
    raise ModuleNotFoundError(
        "procesos.SharedArray needs numpy, which is not installed: "
        "pip install 'procesos[numpy]'", name="numpy"
    ) from missing

from .._compat import lock_after_fork
from .._shm._client import ShmError, client, map_segment, tree_token
from .._shm._tracker import CLAIM, CREATE, OK, RELEASE, TICKET
from .._shm._transport import ticket_made

__all__ = ["SharedArray"]

_ShapeLike = SupportsIndex | Iterable[SupportsIndex]


class _Share:
    """This process's mapping of one segment, and its hold on it."""

    def __init__(self, token: str, seg: int, path: str, size: int) -> None:
        self.token = token
        self.seg = seg
        self.size = size
        self.mapping = map_segment(path, size, "shared")
        self.bytes = np.frombuffer(self.mapping, dtype=np.uint8)
        self.address = int(self.bytes.__array_interface__["data"][0])
        self.closed = False
        self._finalizer = weakref.finalize(self, _release, token, seg, os.getpid())
        self._finalizer.atexit = False

    def close(self) -> None:
        """Give back this process's hold (views already made stay valid here)."""
        self.closed = True
        self._finalizer()

    def contains(self, array: np.ndarray[Any, Any]) -> bool:
        start = int(array.__array_interface__["data"][0])
        return self.address <= start < self.address + self.size or (
            array.size == 0 and start == self.address
        )

    def ticket(self) -> int:
        if self.closed:
            raise ValueError("cannot send a closed SharedArray")
        reply = client(self.token).request(TICKET, self.seg)
        if reply[0] != OK:
            raise ShmError(f"cannot send this SharedArray: {reply[1]}")
        ticket_made(self.token, int(reply[1]))
        return int(reply[1])


def _release(token: str, seg: int, pid: int) -> None:
    if os.getpid() == pid:  # a forked child inherits the mapping, not the hold
        client(token).notify(RELEASE, seg)


# One mapping per segment per process, however many times it is received.
_shares: weakref.WeakValueDictionary[tuple[str, int], _Share] = weakref.WeakValueDictionary()
_shares_lock = threading.Lock()


def _share_for(token: str, seg: int, path: str, size: int) -> _Share:
    with _shares_lock:
        share = _shares.get((token, seg))
        if share is not None and not share.closed and share._finalizer.alive:
            client(token).notify(RELEASE, seg)  # one hold per process is enough
            return share
        share = _Share(token, seg, path, size)
        _shares[(token, seg)] = share
        return share


def _after_fork_in_child() -> None:
    global _shares_lock
    _shares.clear()
    _shares_lock = lock_after_fork(_shares_lock)


os.register_at_fork(after_in_child=_after_fork_in_child)


class SharedArray(np.ndarray):
    """A numpy array in shared memory: every process it is passed to sees the same data.

    ``SharedArray(shape, dtype)`` makes a zero-filled one;
    ``SharedArray.from_array(a)`` a copy of *a*. It is a ``numpy.ndarray``;
    slices and views of it stay shared, results of arithmetic are ordinary
    arrays. Passing it to a ``Process``, a task or a procesos ``Queue`` sends
    a reference (a few dozen bytes): the receiver maps the same memory.

    ``close()`` (or leaving a ``with`` block) gives back this process's hold;
    views already made stay valid in this process. The memory is freed when
    no process holds it any more: each process's hold also ends when its last
    view is garbage, or when the process ends, whatever ends it. Writes from
    several processes to the same elements need a lock, as with any shared
    memory.
    """

    _share: _Share | None

    def __new__(
        cls, shape: _ShapeLike, dtype: npt.DTypeLike = float, order: Literal["C", "F"] = "C"
    ) -> SharedArray:
        dtype = np.dtype(dtype)
        if dtype.hasobject:
            raise TypeError(f"a SharedArray cannot hold Python objects (dtype {dtype})")
        count = 1
        dims = tuple(operator.index(dim) for dim in (
            (shape,) if isinstance(shape, SupportsIndex) else shape))
        for dim in dims:
            if dim < 0:
                raise ValueError(f"a SharedArray's shape cannot have negative dimensions, "
                                 f"got {dims}")
            count *= dim
        nbytes = max(1, count * dtype.itemsize)
        token = tree_token()
        reply = client(token).request(CREATE, nbytes)
        if reply[0] != OK:
            raise ShmError(f"cannot create a SharedArray of {nbytes} bytes: {reply[1]}")
        _, seg, path = reply
        try:
            share = _share_for(token, seg, path, nbytes)
        except BaseException:
            client(token).notify(RELEASE, seg)
            raise
        array = np.ndarray.__new__(cls, dims, dtype, buffer=share.bytes, order=order)
        array._share = share
        return array

    @classmethod
    def from_array(cls, array: npt.ArrayLike) -> SharedArray:
        """A SharedArray holding a copy of *array* (same shape and dtype, C order)."""
        source = np.asarray(array)
        shared = cls(source.shape, source.dtype)
        shared[...] = source
        return shared

    def __array_finalize__(self, obj: Any) -> None:
        share = getattr(obj, "_share", None)
        self._share = share if share is not None and share.contains(self) else None

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        # Computations give ordinary arrays; an out= SharedArray is written in place.
        args = [x.view(np.ndarray) if isinstance(x, SharedArray) else x for x in inputs]
        outs = kwargs.get("out")
        if outs:
            kwargs["out"] = tuple(
                x.view(np.ndarray) if isinstance(x, SharedArray) else x for x in outs
            )
        result = getattr(ufunc, method)(*args, **kwargs)
        if outs:
            return outs[0] if len(outs) == 1 else tuple(outs)
        return result

    @property
    def is_shared(self) -> bool:
        """Whether this array's memory is shared (false for arithmetic results)."""
        return self._share is not None and not self._share.closed

    def close(self) -> None:
        """Give back this process's hold on the memory; see the class docstring."""
        if self._share is not None:
            self._share.close()

    def __enter__(self) -> SharedArray:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        share = self._share
        if share is None:  # memory of its own: an ordinary array travels
            return self.view(np.ndarray).__reduce_ex__(protocol)
        offset = int(self.__array_interface__["data"][0]) - share.address
        return _attach, (share.token, share.ticket(), self.dtype, self.shape, self.strides,
                         offset)

    def __reduce__(self) -> Any:
        return self.__reduce_ex__(2)

    def __repr__(self) -> str:
        return repr(self.view(np.ndarray)).replace("array(", "SharedArray(", 1)


def _attach(token: str, ticket: int, dtype: np.dtype[Any], shape: tuple[int, ...],
            strides: tuple[int, ...], offset: int) -> SharedArray:
    tracker = client(token)
    reply = tracker.request(CLAIM, [ticket])
    if reply[0] != OK:
        raise ShmError(
            f"cannot attach a SharedArray: {reply[1]} (every process holding it had closed "
            "it or exited, or this reference was already received once)"
        )
    seg, path, size = reply[1][0]
    try:
        share = _share_for(token, seg, path, size)
    except BaseException:
        tracker.notify(RELEASE, seg)
        raise
    array = np.ndarray.__new__(SharedArray, shape, dtype, buffer=share.bytes, offset=offset,
                               strides=strides)
    array._share = share
    return array
