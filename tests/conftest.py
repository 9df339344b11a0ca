"""Shared fixtures: every test must leave no process and no shared memory behind."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import procesos

START_METHODS = ["zygote", "fork", "spawn"]
ROOT = Path(__file__).resolve().parent.parent


def _shm_entries() -> set[str]:
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


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


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Fail a test that leaves a child process or a shared-memory segment behind."""
    shm_before = _shm_entries()
    yield
    multiprocessing.active_children()  # reaps finished children
    deadline = time.monotonic() + 5.0
    strays = _stray_children()
    while strays and time.monotonic() < deadline:
        multiprocessing.active_children()
        psutil.wait_procs(strays, timeout=0.1)
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
    leaked = {n for n in _shm_entries() - shm_before if not n.startswith("sem.")}
    assert not leaked, f"test left shared memory behind: {sorted(leaked)}"


@pytest.fixture(params=START_METHODS)
def ctx(request: pytest.FixtureRequest) -> procesos.ProcesosContext:
    """A procesos context for each start method."""
    return procesos.get_context(request.param)


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
