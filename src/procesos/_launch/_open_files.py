"""Room for descriptors: what a start does when this process has none left.

A running child costs its parent a few descriptors (its channel, the zygote's
status pipe or the ``fork`` sentinel, a pidfd, and with relayed output the
two pipes of its standard streams), where the standard library's ``fork``
keeps one. A program that starts a few hundred processes at once can run
out under the soft limit that many systems set by default (1024). A start
that fails for that (``EMFILE``) raises this process's soft limit, doubled
and never above the hard limit (which any process may do), and tries once
more; where the limit cannot rise, the error says what to do.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TypeVar

__all__ = ["more_open_files", "start_with_room"]

T = TypeVar("T")


def _limits() -> tuple[int, int] | None:
    try:
        import resource
    except ImportError:
        return None
    try:
        return resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return None


def more_open_files() -> bool:
    """Double this process's soft limit on open descriptors, never above its hard
    limit; whether it rose."""
    limits = _limits()
    if limits is None:
        return False
    import resource  # there: _limits() imported it

    soft, hard = limits
    if soft == resource.RLIM_INFINITY or (hard != resource.RLIM_INFINITY and soft >= hard):
        return False
    wanted = max(2 * soft, soft + 64)
    new = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (OSError, ValueError):
        return False
    return True


def start_with_room(start: Callable[[], T]) -> T:
    """``start()``; once more after :func:`more_open_files` if it found no free descriptor."""
    try:
        return start()
    except OSError as exc:
        if exc.errno != errno.EMFILE:
            raise
        if not more_open_files():
            limits = _limits()
            limit = f" (its limit: {limits[0]})" if limits is not None else ""
            exc.add_note(
                f"procesos: this process has no descriptor left{limit}. Each running child "
                "holds a few in its parent (its channel, its status pipe, a pidfd and, with "
                "output relayed, one pipe per stream). Raise the hard limit (ulimit -Hn), "
                "start fewer processes at once, or use output='inherit'.")
            raise
    # Out of the except block: what the failed start held is freed by now.
    return start()
