"""``multiprocessing.managers`` for procesos: managers whose server process is started
with procesos' default start method unless *ctx* says otherwise.

Subclass and ``register()`` as with the standard library's; ``Token`` and
``BaseProxy`` are the standard library's. A manager authenticates every
connection with its ``authkey`` (an HMAC challenge) before it unpickles
anything, as the standard library's does.
"""

from __future__ import annotations

from multiprocessing import managers as _managers
from multiprocessing.context import BaseContext
from multiprocessing.managers import BaseProxy, Token
from typing import Any

from ._proc._context import default_context

__all__ = ["BaseManager", "BaseProxy", "SharedMemoryManager", "SyncManager", "Token"]


def _context(ctx: BaseContext | None) -> BaseContext:
    return ctx or default_context.get_context()


class BaseManager(_managers.BaseManager):
    """``multiprocessing.managers.BaseManager``, its server started by procesos."""

    def __init__(self, address: Any = None, authkey: bytes | None = None,
                 serializer: str = "pickle", ctx: BaseContext | None = None,
                 **options: Any) -> None:
        super().__init__(address, authkey, serializer, _context(ctx), **options)


class SyncManager(_managers.SyncManager):
    """``multiprocessing.managers.SyncManager`` (what ``procesos.Manager()`` returns)."""

    def __init__(self, address: Any = None, authkey: bytes | None = None,
                 serializer: str = "pickle", ctx: BaseContext | None = None,
                 **options: Any) -> None:
        super().__init__(address, authkey, serializer, _context(ctx), **options)


class SharedMemoryManager(_managers.SharedMemoryManager):
    """``multiprocessing.managers.SharedMemoryManager``, its server started by procesos."""

    def __init__(self, address: Any = None, authkey: bytes | None = None,
                 serializer: str = "pickle", ctx: BaseContext | None = None,
                 **options: Any) -> None:
        super().__init__(address, authkey, serializer, _context(ctx), **options)
