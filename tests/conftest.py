"""Shared fixtures: every test must leave no process and no shared memory behind."""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.synchronize
import os
import secrets
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import procesos
from procesos._shm import _client as shm_client
from procesos._shm import tracker_stats
from procesos._shm._client import client, segment_name_prefix, tree_token

START_METHODS = ["zygote", "fork", "spawn"]
ROOT = Path(__file__).resolve().parent.parent


# -- shared memory: only what this test tree made is checked --------------------------
#
# /dev/shm is the whole machine's: another program's psm_* or sem.mp-* entries
# must not fail procesos' tests. So the check looks only at names this test
# tree made: procesos' own segments (counted by this tree's tracker; named
# /procesos-<tree token>-<n> where segments are not memfds), and the standard
# library's shared memory and semaphores created by this process or its fork
# children, whose names carry this process's pid (set below). Names the
# standard library makes in spawned or zygote children carry no mark and are
# not checked (no test makes such a name; the children of procesos use memfds).
_MARK = f"t{os.getpid()}x"
_SHM_PREFIX = f"/psm_{_MARK}"


def _marked_shared_memory_name() -> str:
    """A name for a standard-library ``SharedMemory`` that says it is this tree's."""
    return _SHM_PREFIX + secrets.token_hex(8)


#: How the standard library names a semaphore. loky (imported with joblib) replaces
#: it process-wide with ``/loky-<pid>-<n>``, names this check cannot tell from
#: loky's own (its warm pool keeps some until exit): semaphores made after that
#: are not checked; a test that needs the check restores this.
STANDARD_SEMAPHORE_NAMES = multiprocessing.synchronize.SemLock._make_name


def _mark_standard_library_names() -> None:
    # Private in the standard library (3.8 to 3.14 at least); where it changed,
    # names are not marked and only procesos' own segments are checked.
    from multiprocessing import process, shared_memory

    if callable(getattr(shared_memory, "_make_filename", None)):
        shared_memory._make_filename = _marked_shared_memory_name  # type: ignore[attr-defined]
    config = getattr(process.current_process(), "_config", None)
    if isinstance(config, dict) and "semprefix" in config:
        config["semprefix"] = f"/mp-{_MARK}"


_mark_standard_library_names()


def is_this_trees_name(name: str) -> bool:
    """Whether the ``/dev/shm`` entry *name* was made by this test tree."""
    return name.startswith(
        (segment_name_prefix(tree_token()), _SHM_PREFIX[1:], f"sem.mp-{_MARK}")
    )


def _shm_entries() -> set[str]:
    """This tree's shared memory in /dev/shm (semaphores apart: see below)."""
    try:
        return {n for n in os.listdir("/dev/shm")
                if is_this_trees_name(n) and not n.startswith("sem.")}
    except FileNotFoundError:
        return set()


def semaphore_entries() -> set[str]:
    """This tree's named semaphores in /dev/shm."""
    try:
        return {n for n in os.listdir("/dev/shm")
                if is_this_trees_name(n) and n.startswith("sem.")}
    except FileNotFoundError:
        return set()


@pytest.fixture(autouse=True, scope="session")
def no_semaphore_left_by_the_session() -> Iterator[None]:
    """A named semaphore (``spawn``, ``zygote``) lives until its object is garbage,
    which a queue's threads may delay past the test that made it: they are
    checked once, when the session ends."""
    yield
    _stop_joblib_pools()
    gc.collect()
    left = semaphore_entries()
    assert not left, f"the tests left named semaphores behind: {sorted(left)}"


def _stop_joblib_pools() -> None:
    """The pools joblib keeps warm between calls (loky's, and procesos' backend's)
    live until exit, with their semaphores: stop them before counting."""
    if "joblib" not in sys.modules:
        return
    from joblib.externals.loky import reusable_executor

    loky_pool = getattr(reusable_executor, "_executor", None)  # None: never started
    if loky_pool is not None:
        loky_pool.shutdown(wait=True)
    procesos_joblib = sys.modules.get("procesos.joblib")
    if procesos_joblib is not None:
        procesos_joblib.shutdown()


def _tracker_running() -> bool:
    """Whether this tree's shared-memory tracker runs (asking it must not start one)."""
    if client().sock is not None:
        return True
    address = shm_client._address(tree_token())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(address)
        except OSError:
            return False
    return True


def procesos_segments_in_use() -> tuple[int, int]:
    """This tree's segments in use and tickets waiting, or (0, 0) without a tracker."""
    if not _tracker_running():
        return 0, 0
    gc.collect()  # a mapping gives its hold back when its last view is garbage
    stats = tracker_stats()
    return stats["segments"], stats["tickets"]


def shared_memory_leaks(before: tuple[set[str], tuple[int, int]]) -> list[str]:
    """What this tree made since the snapshot *before* and did not give back."""
    names_before, (segments_before, tickets_before) = before
    gc.collect()  # a semaphore's name goes when the object is garbage
    leaks = sorted(_shm_entries() - names_before)
    segments, tickets = procesos_segments_in_use()
    if segments > segments_before or tickets > tickets_before:
        leaks.append(
            f"procesos segments in use {segments_before} -> {segments},"
            f" tickets {tickets_before} -> {tickets}"
        )
    return leaks


def shared_memory_snapshot() -> tuple[set[str], tuple[int, int]]:
    """What :func:`shared_memory_leaks` compares against."""
    return _shm_entries(), procesos_segments_in_use()


FIXTURE_CHILDREN: set[int] = set()
"""Pids of processes that a module- or session-scoped fixture owns (a Dask
cluster): it stops them itself and checks that they are gone, so they are not
any one test's leftovers. Empty outside such fixtures."""


def _stray_children() -> list[psutil.Process]:
    """Children of this test process other than the zygote, the stdlib resource
    tracker and the processes of the fixtures in :data:`FIXTURE_CHILDREN`."""
    me = psutil.Process()
    zygote = procesos.zygote_pid()
    strays = []
    for child in me.children(recursive=False):
        if child.pid == zygote or child.pid in FIXTURE_CHILDREN:
            continue
        try:
            cmdline = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            cmdline = ""
        if "resource_tracker" in cmdline:
            continue
        strays.append(child)
    return strays


def _wait_for_an_end(children: list[psutil.Process], timeout: float) -> None:
    """Wait until one of *children* has ended, or *timeout*, without reaping it: a
    child of a popen is reaped by its popen (``multiprocessing.active_children()``),
    which would never learn its exit code if this read it first (psutil's
    ``wait_procs`` does: such a process then stayed "alive" for ever, and what
    its popen keeps for it, a test's semaphores among them, with it)."""
    poller = select.poll()
    fds = []
    try:
        for child in children:
            try:
                fds.append(os.pidfd_open(child.pid))
            except OSError:
                continue
            poller.register(fds[-1], select.POLLIN)
        if fds:
            poller.poll(int(timeout * 1000))
    finally:
        for fd in fds:
            os.close(fd)


def _reap_unmanaged_zombies(children: list[psutil.Process]) -> None:
    """Reap the children that have ended and that no popen reaped (after
    ``multiprocessing.active_children()``, none of those is a popen's)."""
    for child in children:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.NoSuchProcess, ChildProcessError):
            pass


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Fail a test that leaves a child process or a shared-memory segment behind."""
    shm_before = shared_memory_snapshot()
    yield
    multiprocessing.active_children()  # reaps finished children
    deadline = time.monotonic() + 5.0
    strays = _stray_children()
    while strays and time.monotonic() < deadline:
        multiprocessing.active_children()
        _reap_unmanaged_zombies(strays)
        _wait_for_an_end(strays, 0.1)
        strays = [p for p in _stray_children() if p.is_running()]
    if strays:
        # Fail, but end them (our own children, by pid): a live non-daemon child
        # would otherwise hold the whole session at exit, where multiprocessing
        # joins it.
        for stray in strays:
            try:
                stray.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(strays, timeout=5)
        multiprocessing.active_children()
    assert not strays, f"test left child processes behind: {strays}"
    leaked = shared_memory_leaks(shm_before)
    assert not leaked, f"test left shared memory behind: {leaked}"


@pytest.fixture(params=START_METHODS)
def ctx(request: pytest.FixtureRequest) -> procesos.ProcesosContext:
    """A procesos context for each start method."""
    return procesos.get_context(request.param)


def wait_for_the_zygote() -> None:
    """Start this process's zygote if needed and wait until it has imported what it
    imports at its start: its first starts may be served before that."""
    import procesos.forkserver
    from procesos._launch._zygote_client import _zygote

    procesos.forkserver.ensure_running()
    assert _zygote.wait_for_spares(60), "the zygote offered no spare"


def run_script(
    source: str,
    tmp_path: Path,
    method: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run *source* as a script (its own ``__main__``) and return the finished process."""
    script = tmp_path / "script.py"
    script.write_text(source)
    full_env = dict(os.environ)
    if method:
        full_env["PROCESOS_START_METHOD"] = method
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=tmp_path,
    )


def still_alive(pids: list[int], timeout: float = 10) -> list[psutil.Process]:
    """Those of *pids* (any processes, not only children) still running *timeout* s on."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    return psutil.wait_procs(procs, timeout=timeout)[1]
