"""One stream of one child: bytes from a pipe in, whole lines of text out.

A :class:`LineSink` keeps the unfinished last line until its newline comes, so
what it hands on always ends at a line boundary; a line longer than
:data:`MAX_PENDING` bytes is handed on in pieces, so memory stays bounded
whatever the child writes. Bytes that are not UTF-8 become backslash escapes.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._pipes import ChildOutput

__all__ = ["MAX_PENDING", "LineSink"]

#: The longest unfinished line kept back; a longer one is handed on in pieces.
MAX_PENDING = 1 << 20


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
        self.at_line_start = True
        self.broken = False  # the target refused a write: drop the rest
        self.dirty = False  # written since the last flush
        self._decoder = codecs.getincrementaldecoder("utf-8")("backslashreplace")

    def feed(self, data: bytes) -> None:
        """Take *data*; hand on every complete line in it."""
        if self.pending:
            data = self.pending + data
        end = data.rfind(b"\n") + 1
        if end:
            self.pending = data[end:]
            self._emit(data[:end] if end < len(data) else data)
        else:
            self.pending = data
        if len(self.pending) >= MAX_PENDING:
            data, self.pending = self.pending, b""
            self._emit(data)

    def end(self) -> None:
        """End of the stream: hand on the unfinished last line, as it is."""
        data, self.pending = self.pending, b""
        text = self._decoder.decode(data, final=True)
        if text:
            self._deliver(text)

    def _emit(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            self._deliver(text)

    def _deliver(self, text: str) -> None:
        if self.prefix:
            text = self._prefixed(text)
        target = self.target
        if target is None or self.broken:
            return
        if isinstance(target, list):
            target.append(text)
            return
        try:
            try:
                target.write(text)
            except UnicodeEncodeError:
                encoding = getattr(target, "encoding", None) or "ascii"
                target.write(text.encode(encoding, "backslashreplace").decode(encoding))
            self.dirty = True
        except Exception:
            # A closed or failing stream (a broken pipe, a closed StringIO):
            # the child must not notice, and the relay must go on for the others.
            self.broken = True

    def _prefixed(self, text: str) -> str:
        parts = text.split("\n")
        out = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last and not part:
                break
            if self.at_line_start:
                out.append(self.prefix)
            out.append(part if last else part + "\n")
            self.at_line_start = not last
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
