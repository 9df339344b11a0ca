"""``multiprocessing.forkserver`` for procesos, whose fork server is the zygote.

``set_forkserver_preload`` chooses what the zygote preloads (see
:func:`procesos.set_zygote_preload`); ``ensure_running`` starts the zygote.
The standard library's descriptor-passing helpers have no meaning for the
zygote and are not provided.
"""

from __future__ import annotations

from ._launch._zygote_client import _zygote
from ._launch._zygote_client import set_zygote_preload as _set_zygote_preload

__all__ = ["ensure_running", "set_forkserver_preload"]


def ensure_running() -> None:
    """Start this process's zygote if it is not running (it boots in the background)."""
    _zygote.ensure_running()


def set_forkserver_preload(modules_names: list[str]) -> None:
    """The modules the next zygote imports before it forks children."""
    _set_zygote_preload(list(modules_names))
