"""What a child hands back: its target's return value or its exception.

An outcome is one frame, pickled by :mod:`procesos._serialization`:

* ``("value", payload)``: *payload* is the pickled return value, a frame of
  :mod:`procesos._serialization` (its large buffers are in shared memory);
* ``("error", payload, type_name, message, traceback_text, by_state)``:
  *payload* is the pickled exception, or None when it could not be pickled;
  *by_state* (None when not needed) is the exception as its state
  (:mod:`procesos._exception_state`), for a parent that cannot rebuild it
  from *payload*.

Value and exception are pickled on their own so that a failure to pickle or
unpickle either is reported for what it is, never lost.
"""

from __future__ import annotations

import pickle
import weakref
from typing import Any

from . import _exception_state
from ._errors import PicklingError, RemoteError, RemoteTraceback, UnpicklingError
from ._serialization import (
    PICKLING_FAILURES,
    PROTOCOL,
    discard,
    dumps_for_parent,
    is_shared,
    loads,
    unpicklable_inside,
)

__all__ = ["OUTCOME_CHANNEL", "PICKLING_FAILURES", "ReceivedOutcome", "decode", "encode_error",
           "encode_value"]


#: The channel (``_transport.pack``) of a child's outcome, read by its popen.
OUTCOME_CHANNEL = "outcome"


def _describe(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def encode_error(exc: BaseException, traceback_text: str | None = None,
                 channel: str = OUTCOME_CHANNEL) -> bytes:
    """The outcome frame for an exception raised in this process, to be sent on
    *channel* (see ``_transport.pack``)."""
    if traceback_text is None:
        import traceback  # here: only an error needs it (4 ms of import)

        traceback_text = "".join(traceback.format_exception(exc))
    payload: bytes | None
    try:
        # By reference first, so that a class of the caller's own arrives as
        # that class (see _serialization's policy).
        payload = dumps_for_parent(exc, channel)
    except PICKLING_FAILURES:
        payload = None
    by_state = _exception_state.pack_if_needed(exc, pickled=payload is not None)
    return pickle.dumps(("error", payload, _describe(exc), str(exc), traceback_text, by_state),
                        PROTOCOL)


def encode_value(value: object, where: str) -> bytes:
    """The outcome frame for a child's return value; *where* names it for error
    messages."""
    try:
        payload = dumps_for_parent(value, OUTCOME_CHANNEL)
        return pickle.dumps(("value", payload), PROTOCOL)
    except PICKLING_FAILURES as exc:
        import traceback

        error = PicklingError.caused_by(
            f"{where} could not be pickled: a {_describe(value)} object "
            f"({exc!r}{unpicklable_inside(value)}). "
            "Return something picklable, or share it through procesos' sharing objects.",
            exc,
        )
        return encode_error(error, "".join(traceback.format_exception(exc)))


def rebuild_exception(
    payload: bytes | None, type_name: str, message: str, traceback_text: str,
    by_state: bytes | None = None,
) -> BaseException:
    """The child's exception, as an instance of its own type when that is possible:
    from its pickle, else from its state (*by_state*), else a :class:`RemoteError`."""
    exc: BaseException
    try:
        if payload is None:
            raise TypeError("not pickled")
        exc = loads(payload)
        if not isinstance(exc, BaseException):
            raise TypeError("not an exception")
        # A traceback pickled with it (tblib, which Dask installs, does that) is
        # the child's: its frames are in the RemoteTraceback, once.
        exc.__traceback__ = None
    except PICKLING_FAILURES:
        exc = RemoteError(type_name, message, traceback_text)
        if by_state is not None:
            try:
                exc = _exception_state.unpack(by_state)
            except PICKLING_FAILURES:
                pass  # not even its state can be made here
    exc.__cause__ = RemoteTraceback(traceback_text)
    return exc


def decode(frame: bytes, where: str) -> tuple[bool, Any]:
    """Read an outcome frame: ``(True, value)`` or ``(False, exception)``."""
    return _decode_parts(pickle.loads(frame), where)


def _decode_parts(parts: tuple[Any, ...], where: str) -> tuple[bool, Any]:
    kind, payload, *rest = parts
    if kind == "value":
        try:
            return True, loads(payload)
        except PICKLING_FAILURES as exc:
            error = UnpicklingError(f"{where} could not be unpickled in the parent: {exc!r}")
            error.__cause__ = exc
            return False, error
    type_name, message, traceback_text, by_state = rest
    return False, rebuild_exception(payload, type_name, message, traceback_text, by_state)


class ReceivedOutcome:
    """An outcome frame that arrived from a child, until it is read (at most once).

    Its value or exception may lie in shared memory, held for the reader: if
    nobody ever reads it (a ``Process`` joined whose ``result()`` is never
    asked for), that memory goes back when this object is garbage, not at the
    end of the process tree.
    """

    __slots__ = ("__weakref__", "_parts", "_unread", "payload")

    def __init__(self, frame: bytes) -> None:
        self._parts: tuple[Any, ...] = pickle.loads(frame)  # (kind, payload, ...)
        payload = self._parts[1]
        self.payload: bytes | None = payload
        self._unread = None
        if payload is not None and is_shared(payload):
            self._unread = weakref.finalize(self, discard, payload)
            self._unread.atexit = False  # the tree's end frees it then

    def decode(self, where: str) -> tuple[bool, Any]:
        """``(True, value)`` or ``(False, exception)``; call it once."""
        if self._unread is not None:
            self._unread.detach()
        return _decode_parts(self._parts, where)
