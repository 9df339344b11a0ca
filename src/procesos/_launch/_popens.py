"""Each start method's popen class (imported apart from :mod:`._methods`, which a
child reads at start-up: only a process that starts processes loads them).

Each class is imported when its method is first used: a program's first start
under the zygote spawns the zygote before anything else of this layer is
imported (the ``fork`` method's module and the child's side, 10 ms, would
otherwise come first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._methods import default_method

if TYPE_CHECKING:
    from ._popen import BasePopen

__all__ = ["popen_class"]


def popen_class(method: str | None) -> type[BasePopen]:
    """The popen class of *method* (None: the default start method)."""
    chosen = method or default_method()
    if chosen == "zygote":
        _boot_the_zygote()
        from ._zygote_popen import ZygotePopen

        return ZygotePopen
    if chosen == "fork":
        from ._fork import ForkPopen

        return ForkPopen
    if chosen == "spawn":
        from ._spawn import SpawnPopen

        return SpawnPopen
    raise KeyError(chosen)


def _boot_the_zygote() -> None:
    """Start the zygote now if none runs, before the popen's module and the rest of
    a start are imported: it boots meanwhile (a program's first start)."""
    from ._zygote_client import _zygote

    try:
        _zygote.ensure_running()
    except OSError:
        pass  # no room for it now: the start itself tries again, and says why
