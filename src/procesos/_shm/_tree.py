"""Which process tree this process belongs to: its root's pid and the tree's token.

Decided when procesos' serialization is imported (``_transport`` imports this
module), before this process can start a child: the root founds the tree and
writes it to ``PROCESOS_SHM_TREE``, which every child (fork, spawn, and the
zygote, started from the parent's environment) inherits and joins. Deciding it
later, where the shared-memory client is first used, would leave a zygote
started before that outside the tree, and would change the parent's
environment after the zygote's start (each zygote child is then sent the whole
environment to apply). Standard library only: ``_client`` and the rest of the
shared-memory layer load at the first frame that needs them.
"""

from __future__ import annotations

import os

__all__ = ["TREE_ENV", "root_pid", "token"]

TREE_ENV = "PROCESOS_SHM_TREE"


def _pid_alive(pid: int) -> bool:
    # The tracker, a script that imports nothing of procesos, has its own copy.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _join_or_found_tree() -> tuple[int, str]:
    value = os.environ.get(TREE_ENV, "")
    root, _, token = value.partition(":")
    name, _, secret = token.partition(".")
    if (root.isdigit() and name and secret
            and (int(root) == os.getpid() or _pid_alive(int(root)))):
        return int(root), token
    token = f"{os.urandom(8).hex()}.{os.urandom(16).hex()}"
    os.environ[TREE_ENV] = f"{os.getpid()}:{token}"
    return os.getpid(), token


root_pid, token = _join_or_found_tree()
