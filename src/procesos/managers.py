"""``multiprocessing.managers`` for procesos: managers whose server process is started
with procesos' default start method unless *ctx* says otherwise.

Subclass and ``register()`` as with the standard library's; ``Token`` and
``BaseProxy`` are the standard library's. A manager authenticates every
connection with its ``authkey`` (an HMAC challenge) before it unpickles
anything, as the standard library's does. Its server never runs the user's
script: functions and classes of ``__main__`` in a proxy's calls are sent by
value (see :mod:`procesos._sharing._managers`).
"""

from __future__ import annotations

from multiprocessing.managers import BaseProxy, Token

from ._sharing._managers import BaseManager, SharedMemoryManager, SyncManager

__all__ = ["BaseManager", "BaseProxy", "SharedMemoryManager", "SyncManager", "Token"]
