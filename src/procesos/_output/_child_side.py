"""In a relayed child: ``sys.stdout`` and ``sys.stderr`` write to fds 1 and 2, line by line.

A pipe makes Python block-buffer ``sys.stdout``; line buffering (what a
terminal gets) makes each ``print`` reach the parent as soon as it ends a line.
Under ``fork`` the inherited streams may not be descriptors at all (the parent
ran inside ``contextlib.redirect_stdout``): they are replaced by streams on
descriptors 1 and 2, whose pipes lead to the parent's relay.
"""

from __future__ import annotations

import fcntl
import io
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["above_std_fds", "adopt_std_streams", "install_std_fds"]


def above_std_fds(fd: int) -> int:
    """*fd*, or a duplicate above 2 if it is 0, 1 or 2 (closing *fd*): out of install_std_fds' way.

    A parent (or zygote) whose own 1 or 2 was closed hands out those numbers
    for the next descriptors it makes.
    """
    if fd > 2:
        return fd
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 3)
    os.close(fd)
    return high


def install_std_fds(fds: Sequence[int | None]) -> None:
    """Make ``fds[0]`` descriptor 1 and ``fds[1]`` descriptor 2 (None: leave it); close them.

    Right even when some of them already are 1 or 2 (a parent that had closed
    its own): each is first moved above 2.
    """
    moved: list[int | None] = []
    for fd in fds:
        if fd is None:
            moved.append(None)
            continue
        moved.append(fcntl.fcntl(fd, fcntl.F_DUPFD, 3))
        os.close(fd)
    for target, fd in enumerate(moved, start=1):
        if fd is not None:
            os.dup2(fd, target)
            os.close(fd)


def _writes_to(stream: Any, fd: int) -> bool:
    try:
        return bool(stream.fileno() == fd)
    except (AttributeError, OSError, ValueError):
        return False


def _on_fd(stream: TextIO | None, fd: int, line_buffered: bool) -> TextIO:
    if stream is not None and _writes_to(stream, fd) and isinstance(stream, io.TextIOWrapper):
        try:
            stream.reconfigure(line_buffering=line_buffered)
            return stream
        except (AttributeError, ValueError, OSError):
            pass
    encoding = getattr(stream, "encoding", None) or "utf-8"
    errors = "backslashreplace" if fd == 2 else (getattr(stream, "errors", None) or "strict")
    return open(fd, "w", buffering=1 if line_buffered else -1, encoding=encoding,
                errors=errors, closefd=False)


def adopt_std_streams(line_buffered_stdout: bool = True) -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` streams on descriptors 1 and 2.

    stderr is line-buffered, as Python's own is; stdout is line-buffered when
    *line_buffered_stdout* (the parent's stream is a terminal or not a file:
    lines should show as they are printed), block-buffered otherwise, as it
    would be writing to the parent's file or pipe itself.
    """
    for name, fd in (("stdout", 1), ("stderr", 2)):
        current = getattr(sys, name)
        try:
            if current is not None:
                current.flush()
        except (AttributeError, OSError, ValueError):
            pass
        try:
            setattr(sys, name, _on_fd(current, fd, fd == 2 or line_buffered_stdout))
        except (OSError, LookupError):
            pass  # no such descriptor, or an unknown encoding: keep what there is
