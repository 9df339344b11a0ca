"""Each start method's popen class (imported apart from :mod:`._methods`, which a
child reads at start-up: only a process that starts processes loads them all)."""

from __future__ import annotations

from ._fork import ForkPopen
from ._methods import default_method
from ._popen import BasePopen
from ._spawn import SpawnPopen
from ._zygote_client import ZygotePopen

__all__ = ["popen_class"]

_POPENS: dict[str, type[BasePopen]] = {
    "zygote": ZygotePopen,
    "fork": ForkPopen,
    "spawn": SpawnPopen,
}


def popen_class(method: str | None) -> type[BasePopen]:
    """The popen class of *method* (None: the default start method)."""
    return _POPENS[method or default_method()]
