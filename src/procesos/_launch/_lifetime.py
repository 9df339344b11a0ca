"""No orphans: a child ends when its parent does, however the parent ends.

On Linux a child asks the kernel for ``SIGKILL`` when its parent dies
(``PR_SET_PDEATHSIG``). The kernel ties that to the parent *thread* that forked
the child, so it is used only when that thread is the parent's main thread (or
the single-threaded zygote). Otherwise, and on other systems, a watcher thread
waits for the end of file on the channel to the parent and kills the child.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from typing import Any

from .._wait import readable

__all__ = ["death_signal_available", "die_with_parent", "kill_with_parent", "watcher_threads"]

_PR_SET_PDEATHSIG = 1


def _load_libc() -> ctypes.CDLL | None:
    # The interpreter's own symbols include the C library's: no search needed.
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _load_prctl() -> Any:
    libc = _load_libc() if sys.platform.startswith("linux") else None
    # Looked up here, once: ctypes resolves a function at its first use, which
    # cost every child of the zygote (which never calls it) 50 µs and more.
    return getattr(libc, "prctl", None)


# Loaded once here, inherited by every forked child.
_PRCTL = _load_prctl()


def _set_pdeathsig(sig: int) -> bool:
    if _PRCTL is None:
        return False
    try:
        return bool(_PRCTL(_PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0)
    except OSError:
        return False


def death_signal_available() -> bool:
    """Whether the kernel can kill a child when its parent dies (Linux's prctl found)."""
    return _PRCTL is not None


def kill_with_parent() -> bool:
    """Ask for ``SIGKILL`` when the thread that forked this process ends; whether
    the kernel took the request (the caller checks ``os.getppid()`` after it)."""
    return _set_pdeathsig(signal.SIGKILL)


def watcher_threads() -> frozenset[threading.Thread]:
    """The threads :func:`die_with_parent` started in this process (they hold no lock:
    a fork beside them is safe)."""
    return frozenset(_watchers)


_watchers: list[threading.Thread] = []


def _watch(fd: int) -> None:
    try:
        readable([fd])
    except OSError:
        pass
    # Readable means end of file: the parent has gone (it sends nothing on the
    # channel once the child has read its process object).
    os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent(parent_pid: int, channel_fd: int, use_pdeathsig: bool) -> None:
    """Arrange for this process to be killed when its parent ends.

    *parent_pid* is the process whose death the kernel reports (the zygote for
    zygote children); *channel_fd* reaches end of file when the user's parent
    process ends.
    """
    if use_pdeathsig and _set_pdeathsig(signal.SIGKILL):
        # The parent may have died before the request took effect.
        if os.getppid() != parent_pid:
            os._exit(1)
        return
    # A descriptor of the watcher's own: the channel's may be closed by this
    # process as it ends (its poll then saw POLLNVAL, taken for the parent's
    # end: a child killed itself after its result, exit code -SIGKILL), and its
    # number reused by another file (/dev/null is always readable).
    watched = os.dup(channel_fd)
    watcher = threading.Thread(target=_watch, args=(watched,), name="procesos-parent-watch",
                               daemon=True)
    _watchers.append(watcher)
    watcher.start()
