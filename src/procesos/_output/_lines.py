"""One stream of one child: bytes from a pipe in, whole lines of text out.

A :class:`LineSink` keeps the unfinished last line until its newline comes, so
what it hands on always ends at a line boundary; a line longer than
:data:`MAX_PENDING` bytes is handed on in pieces, so memory stays bounded
whatever the child writes. A line being redrawn is the exception: text after
a carriage return is handed on as it comes, so that a progress bar (tqdm
writes ``"\r"`` and the bar at each update) moves in the parent as it would
on the child's own terminal.

Text is decoded in the encoding of the parent's stream (the child's streams
use the same one), so what the child wrote reaches a file or terminal
unchanged. Bytes that do not decode (binary data, another encoding) go to a
file or terminal as they are, as they would from a child writing there
itself; to a stream that takes only text (Jupyter, ``StringIO``, a capture)
they become backslash escapes.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import re
from typing import TYPE_CHECKING, Any

from ._turns import turns_of

if TYPE_CHECKING:
    from ._pipes import ChildOutput

__all__ = ["MAX_PENDING", "LineSink"]

#: The longest unfinished line kept back; a longer one is handed on in pieces.
MAX_PENDING = 1 << 20
_LINE_ENDS = re.compile(r"(\n|\r)")
_LINE_START, _REDRAW, _IN_LINE = range(3)


class LineSink:
    """Where one stream of one child goes: a text stream, with an optional prefix, or a capture.

    *target* is a stream (anything with ``write``), a list (capture: text is
    appended) or None (discard). Only the relay thread calls its methods.
    """

    def __init__(self, owner: ChildOutput | None, fd: int, target: Any, prefix: str = "") -> None:
        self.owner = owner
        self.fd = fd  # -1 once closed
        self.target = target
        self.prefix = prefix
        self.pending = b""
        self.position = _LINE_START  # where the next text goes, for the prefix
        self.broken = False  # the target refused a write: drop the rest
        self.dirty = False  # written since the last flush
        self.encoding = _encoding_of(target)
        self._decoder = codecs.getincrementaldecoder(self.encoding)("strict")
        # Written between the parent's own lines (see ._turns), with the stream's own write.
        self._turns = None if target is None or isinstance(target, list) else turns_of(target)

    def feed(self, data: bytes) -> None:
        """Take *data*; hand on every complete line in it."""
        if self.pending:
            data = self.pending + data
        end = data.rfind(b"\n") + 1
        if data.find(b"\r", end) >= 0:  # a line being redrawn: hand it on now
            end = len(data)
        if end:
            self.pending = data[end:]
            self._emit(data[:end] if end < len(data) else data)
        else:
            self.pending = data
        if len(self.pending) >= MAX_PENDING:
            data, self.pending = self.pending, b""
            self._emit(data)

    def close_pipe(self) -> None:
        """Close the pipe (once): nothing more comes from it, nor goes to the target."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            if self._turns is not None:
                self._turns.let_go()

    def _turn(self) -> contextlib.AbstractContextManager[None]:
        """Held while this sink writes to its stream: the parent is between two lines."""
        return contextlib.nullcontext() if self._turns is None else self._turns.relay_turn()

    def holds_nothing(self) -> bool:
        """Whether no text waits here: no unfinished line, no unflushed write."""
        return not self.pending and not self.dirty and not self._decoder.getstate()[0]

    def end(self) -> None:
        """End of the stream: hand on the unfinished last line, as it is."""
        data, self.pending = self.pending, b""
        self._emit(data, final=True)

    def _emit(self, data: bytes, final: bool = False) -> None:
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError:
            held = self._decoder.getstate()[0]  # the start of a character cut by the last read
            self._decoder.reset()
            self._deliver_undecodable(held + data)
            return
        if text:
            self._deliver(text)

    def _deliver_undecodable(self, data: bytes) -> None:
        # The exact bytes to a binary stream under the target; else escapes.
        raw = getattr(self.target, "buffer", None)
        if raw is None or not isinstance(self.target, io.TextIOWrapper) or self.broken:
            self._deliver(data.decode(self.encoding, "backslashreplace"))
            return
        if self.prefix:
            text = self._prefixed(data.decode(self.encoding, "surrogateescape"))
            data = text.encode(self.encoding, "surrogateescape")
        try:
            with self._turn():
                self.target.flush()  # what was written as text goes first
                raw.write(data)
            self.dirty = True
        except Exception:
            self.broken = True

    def _deliver(self, text: str) -> None:
        if self.prefix:
            text = self._prefixed(text)
        target = self.target
        if target is None or self.broken:
            return
        if isinstance(target, list):
            target.append(text)
            return
        write = target.write if self._turns is None else self._turns.write
        try:
            with self._turn():
                try:
                    write(text)
                except UnicodeEncodeError:
                    encoding = getattr(target, "encoding", None) or "ascii"
                    write(text.encode(encoding, "backslashreplace").decode(encoding))
            self.dirty = True
        except Exception:
            # A closed or failing stream (a broken pipe, a closed StringIO):
            # the child must not notice, and the relay must go on for the others.
            self.broken = True

    def _prefixed(self, text: str) -> str:
        # The prefix begins every line, empty ones included, and every redraw
        # after a carriage return (but not the newline of a "\r\n").
        out = []
        for piece in _LINE_ENDS.split(text):
            if piece == "\n":
                if self.position == _LINE_START:
                    out.append(self.prefix)
                out.append(piece)
                self.position = _LINE_START
            elif piece == "\r":
                out.append(piece)
                self.position = _REDRAW
            elif piece:
                if self.position != _IN_LINE:
                    out.append(self.prefix)
                out.append(piece)
                self.position = _IN_LINE
        return "".join(out)

    def flush(self) -> None:
        """Flush the target if something was written to it since the last flush."""
        if not self.dirty:
            return
        self.dirty = False
        try:
            self.target.flush()
        except Exception:
            self.broken = True


def _encoding_of(target: Any) -> str:
    """The encoding to decode a child's bytes with: the target stream's, when it
    has one that splits lines at byte level (ASCII-compatible), else UTF-8."""
    name = getattr(target, "encoding", None)
    if isinstance(name, str):
        try:
            encoding = codecs.lookup(name).name
        except LookupError:
            return "utf-8"
        if "\r\n".encode(encoding, "replace") == b"\r\n":
            return encoding
    return "utf-8"
