"""procesos' after-fork hooks: a bare ``os.fork()`` leaves the child usable.

The hooks run in every forked child (each of the zygote's spares too), so
they do as little as they can: a module lock is replaced only when it was
held at the fork, tables are cleared only when they hold something. These
tests hold each lock in another thread of the parent while it forks: the
child must find it free, where the parent's copy would be held for ever.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conftest import run_script

# (module, the expression of its lock, a call in the child that takes that lock)
LOCKS = [
    ("procesos._shm._sent", "_sent._lock", "_sent.find(object(), 0, 'tree')"),
    ("procesos._shm._write_cache", "_write_cache._lock", "_write_cache.drop_all()"),
    ("procesos._shm._client", "_client._clients_lock",
     "_client._clients_lock.acquire(timeout=5) or fail()"),
    ("procesos._output._turns", "_turns._installing", "_turns.turns_of(io.StringIO())"),
    ("procesos._output._relay", "_relay._relay._lock", "_relay._relay.running()"),
    ("procesos._launch._zygote_client", "_zygote_client._zygote.lock",
     "_zygote_client._zygote.lock.acquire(timeout=5) or fail()"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("module", "lock", "use"), LOCKS,
                         ids=[module.rsplit(".", 1)[1] for module, _, _ in LOCKS])
def test_a_lock_another_thread_held_at_the_fork_is_free_in_the_child(
    module: str, lock: str, use: str, tmp_path: Path,
) -> None:
    short = module.rsplit(".", 1)[1]
    done = run_script(textwrap.dedent(f"""
        import io, os, select, sys, threading, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() beside a thread: on purpose
        import procesos
        import {module} as {short}

        def fail():
            raise SystemExit("the lock stayed held")

        held, release = threading.Event(), threading.Event()

        def hold():
            with {lock}:
                held.set()
                release.wait(60)

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(60)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                {use}
                os.write(write_end, b"ok")
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        answered = select.select([read_end], [], [], 20)[0]
        if not answered:
            os.kill(pid, 9)  # our own child, by its pid
        os.waitpid(pid, 0)
        release.set()
        holder.join(60)
        print("child:", os.read(read_end, 2).decode() if answered else "hung")
    """), tmp_path, timeout=50)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "child: ok\n", done.stderr
