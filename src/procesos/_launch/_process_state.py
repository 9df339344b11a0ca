"""What a child inherits from its parent besides memory and descriptors.

A forked or exec'd child starts with its parent's file mode creation mask
(umask), resource limits, CPU affinity, niceness and ignored signals. A
zygote child starts with the zygote's, which are the parent's as they were
when the zygote started: :func:`current` reads them in the parent at each
start, and the zygote client sends them only when they differ from that
snapshot; :func:`apply` sets them in the child. A mask of 0o077 set by the
parent after the zygote started must still keep a child's new files private.

Best effort where the system says no: a child cannot raise a hard resource
limit or lower its niceness without the privilege to do so, nor be bound to
CPUs it is not allowed; those stay as the zygote had them.
"""

from __future__ import annotations

import os
import signal
from typing import NamedTuple

__all__ = ["ProcessState", "apply", "current"]

try:
    import resource
except ImportError:  # not on this system: no limits to follow
    resource = None  # type: ignore[assignment]

_LIMITS: tuple[int, ...] = () if resource is None else tuple(
    getattr(resource, name) for name in sorted(dir(resource)) if name.startswith("RLIMIT_"))

# Signals whose "ignored" a child inherits across fork and exec (SIGINT has
# its own field in ChildSetup; a handler function of the parent's is not
# inherited across exec, nor here).
_FOLLOWED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGHUP", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2",
                                       "SIGALRM", "SIGTSTP", "SIGTTIN", "SIGTTOU")
    if hasattr(signal, name))


class ProcessState(NamedTuple):
    """A process's umask, resource limits, CPU affinity, niceness and ignored signals."""

    umask: int | None  # None: unknown here
    limits: tuple[tuple[int, int], ...]  # (soft, hard) for each of _LIMITS
    affinity: frozenset[int] | None
    niceness: int | None
    ignored: frozenset[int]  # which of _FOLLOWED_SIGNALS are ignored


def _read_umask() -> int | None:
    """The umask, read without changing it (``/proc/self/status``, Linux 4.7+):
    setting it to read it would give a file another thread creates meanwhile
    the wrong mode."""
    try:
        fd = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 8192)
    finally:
        os.close(fd)
    start = data.find(b"\nUmask:")
    if start < 0:
        return None
    end = data.find(b"\n", start + 1)
    try:
        return int(data[start + 7:end], 8)
    except ValueError:
        return None


def current() -> ProcessState:
    """This process's state now (about 10 µs)."""
    limits = () if resource is None else tuple(resource.getrlimit(limit) for limit in _LIMITS)
    try:
        affinity: frozenset[int] | None = frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        niceness: int | None = os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        niceness = None
    ignored = frozenset(int(signum) for signum in _FOLLOWED_SIGNALS
                        if signal.getsignal(signum) == signal.SIG_IGN)
    return ProcessState(_read_umask(), limits, affinity, niceness, ignored)


def apply(state: ProcessState) -> None:
    """Make this process's state *state*, as far as it is allowed to."""
    if state.umask is not None:
        os.umask(state.umask)
    if resource is not None and len(state.limits) == len(_LIMITS):
        for limit, wanted in zip(_LIMITS, state.limits, strict=True):
            try:
                if resource.getrlimit(limit) != wanted:
                    resource.setrlimit(limit, wanted)
            except (OSError, ValueError):
                pass  # above our hard limit: it stays
    if state.affinity is not None:
        try:
            if frozenset(os.sched_getaffinity(0)) != state.affinity:
                os.sched_setaffinity(0, state.affinity)
        except (AttributeError, OSError):
            pass
    if state.niceness is not None:
        try:
            if os.getpriority(os.PRIO_PROCESS, 0) != state.niceness:
                os.setpriority(os.PRIO_PROCESS, 0, state.niceness)
        except (AttributeError, OSError):
            pass  # a higher priority needs the privilege
    for signum in _FOLLOWED_SIGNALS:
        ignored = signal.getsignal(signum) == signal.SIG_IGN
        if int(signum) in state.ignored and not ignored:
            signal.signal(signum, signal.SIG_IGN)
        elif int(signum) not in state.ignored and ignored:
            signal.signal(signum, signal.SIG_DFL)
