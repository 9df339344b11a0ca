"""The zygote imports the user's own modules once: children fork with them loaded."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import run_script

# Records, in imports.log, the pid of every process that runs its top-level code.
USER_MODULE = """
import os
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "imports.log"), "a") as log:
    log.write(f"{os.getpid()}\\n")

def pid_and_double(x):
    return os.getpid(), x * 2
"""

PROGRAM = """
import os
import procesos
{before}
import usermod
{after}
ctx = procesos.get_context("zygote")
child_pids = []
for i in range(3):
    p = ctx.Process(target=usermod.pid_and_double, args=(i,))
    p.start()
    pid, double = p.result(timeout=60)
    assert double == 2 * i
    child_pids.append(pid)
    p.join()
with procesos.Executor(2) as ex:
    child_pids += [pid for pid, _ in ex.map(usermod.pid_and_double, range(8))]
print(os.getpid(), procesos.zygote_pid(), *sorted(set(child_pids)))
"""


def _run(tmp_path: Path, module: str = USER_MODULE, before: str = "", after: str = "",
         env: dict[str, str] | None = None) -> tuple[int, int, list[int], list[int]]:
    """Parent pid, zygote pid, the children's pids, and the pids that imported usermod."""
    (tmp_path / "usermod.py").write_text(textwrap.dedent(module))
    result = run_script(PROGRAM.format(before=before, after=after), tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    parent, zygote, *children = map(int, result.stdout.split())
    importers = [int(line) for line in (tmp_path / "imports.log").read_text().split()]
    return parent, zygote, children, importers


def test_a_user_module_runs_once_in_the_parent_and_once_in_the_zygote(tmp_path: Path) -> None:
    parent, zygote, children, importers = _run(tmp_path)
    assert len(children) >= 3
    assert sorted(importers) == sorted([parent, zygote])


def test_a_module_imported_after_the_zygote_started_is_imported_there_at_the_next_start(
        tmp_path: Path) -> None:
    # A first process starts the zygote before the parent has imported usermod.
    before = "p = procesos.Process(target=len, args=((),)); p.start(); p.join()"
    parent, zygote, _, importers = _run(tmp_path, before=before)
    assert sorted(importers) == sorted([parent, zygote])


@pytest.mark.parametrize("how", ["api", "environment"])
def test_an_excluded_module_is_imported_by_each_child_that_needs_it(
        tmp_path: Path, how: str) -> None:
    before = "procesos.set_zygote_exclude(['usermod'])" if how == "api" else ""
    env = {"PROCESOS_ZYGOTE_EXCLUDE": "usermod"} if how == "environment" else None
    parent, zygote, children, importers = _run(tmp_path, before=before, env=env)
    assert zygote not in importers
    assert parent in importers
    assert set(children) <= set(importers)


def test_an_explicit_preload_list_turns_the_mirroring_off(tmp_path: Path) -> None:
    _, zygote, children, importers = _run(
        tmp_path, env={"PROCESOS_ZYGOTE_PRELOAD": "json"})
    assert zygote not in importers
    assert set(children) <= set(importers)


FAILS_IN_THE_ZYGOTE = USER_MODULE + """
import procesos
if os.getppid() == int(os.environ["PARENT_PID"]):  # the zygote
    raise ImportError("not here")
"""


def test_a_module_whose_import_fails_in_the_zygote_is_imported_by_the_children(
        tmp_path: Path) -> None:
    before = "os.environ['PARENT_PID'] = str(os.getpid())"
    _, zygote, children, importers = _run(tmp_path, FAILS_IN_THE_ZYGOTE, before=before)
    assert importers.count(zygote) == 1  # tried once, never again
    assert set(children) <= set(importers)


STARTS_A_THREAD = USER_MODULE + """
import threading
threading.Thread(target=threading.Event().wait, daemon=True).start()
"""


def test_the_zygote_warns_when_an_import_leaves_a_thread_running(tmp_path: Path) -> None:
    (tmp_path / "usermod.py").write_text(STARTS_A_THREAD)
    result = run_script(PROGRAM.format(before="", after=""), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "importing 'usermod' in the zygote started a thread" in result.stderr
    assert "PROCESOS_ZYGOTE_EXCLUDE=usermod" in result.stderr


MOVED_PARENT = """
import os, sys
import procesos
p = procesos.Process(target=len, args=((),))  # the zygote starts here, in this directory
p.start()
p.join()
os.chdir("other")
sys.path.insert(0, "sub")  # relative: other/sub for the parent, sub for the zygote's directory
import usermod
ctx = procesos.get_context("zygote")
doubles = []
for i in range(3):
    q = ctx.Process(target=usermod.pid_and_double, args=(i,))
    q.start()
    doubles.append(q.result(timeout=60)[1])
    q.join()
print(doubles)
"""

DECOY = """
import os
def pid_and_double(x):
    return os.getpid(), "decoy"
"""


def test_the_zygote_imports_the_module_the_parent_has_not_another_of_that_name(
        tmp_path: Path) -> None:
    # The parent moved and imported through a relative sys.path entry: in the
    # zygote's own directory the same entry leads to another usermod.
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "usermod.py").write_text(DECOY)
    (tmp_path / "other" / "sub").mkdir(parents=True)
    (tmp_path / "other" / "sub" / "usermod.py").write_text(textwrap.dedent(USER_MODULE))
    result = run_script(MOVED_PARENT, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0, 2, 4]"


STARTS_A_PROCESS = USER_MODULE + """
import procesos
_p = procesos.Process(target=len, args=((),))  # at import: in every process that imports it
_p.start()
_p.join()
"""


def test_a_module_that_starts_a_process_when_imported_is_not_imported_by_the_zygote(
        tmp_path: Path) -> None:
    # Imported there, it would start processes from the zygote itself.
    (tmp_path / "usermod.py").write_text(STARTS_A_PROCESS)
    result = run_script(PROGRAM.format(before="", after=""), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "the zygote did not import 'usermod': it starts a process when imported" in (
        result.stderr)
    _, zygote, *children = map(int, result.stdout.split())
    importers = [int(line) for line in (tmp_path / "imports.log").read_text().split()]
    assert importers.count(zygote) == 1  # tried once
    assert set(children) <= set(importers)  # then each child imported it itself


def test_the_zygotes_list_of_modules_is_read_while_another_thread_imports() -> None:
    # A worker's replacement starts on the engine's starter thread while the
    # program goes on (in Jupyter, formatting an interrupted cell's traceback
    # imports modules): reading sys.modules must not fail with "dictionary
    # changed size during iteration". A collection that imports, forced at
    # each allocation, stands for that thread.
    import gc
    import itertools
    import sys

    from procesos._launch._mirror import ModuleMirror

    mirror = ModuleMirror()
    names = (f"procesos_test_imported_{i}" for i in itertools.count())

    def import_one(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            sys.modules[next(names)] = sys

    thresholds = gc.get_threshold()
    gc.callbacks.append(import_one)
    gc.set_threshold(1)
    try:
        mirror.new_modules()
    finally:
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(import_one)
        for name in [n for n in sys.modules if n.startswith("procesos_test_imported_")]:
            del sys.modules[name]


# -- the zygote's start: requests first, libraries after ----------------------------------------

def _booting_server(monkeypatch: pytest.MonkeyPatch, log: list[object]) -> Any:
    """A zygote server object as main() has it before boot(), its imports and
    serving recorded in *log* instead of done."""
    from procesos._launch import _zygote_server as server

    monkeypatch.setattr(server, "_preload", lambda names: log.append(("import", list(names))))
    monkeypatch.setattr(server, "_drop_strangers", lambda files: None)
    monkeypatch.setattr(server, "_become_like_the_parent", lambda config: None)
    zygote = object.__new__(server._ZygoteServer)
    zygote.booting = True
    zygote.boot_imports = ["numpy", "cloudpickle"]
    zygote.boot_files = {}
    zygote.generation = 0
    zygote.spares = []
    zygote.config = None
    return zygote


def test_a_booting_zygote_serves_what_waits_before_the_libraries_it_imports(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[object] = []
    zygote = _booting_server(monkeypatch, log)

    def serve_waiting() -> None:
        log.append("serve")
        zygote.boot_imports.append("requests.adapters")  # a request's import list

    monkeypatch.setattr(zygote, "serve_waiting", serve_waiting)
    monkeypatch.setattr(zygote, "finish_boot", lambda: log.append("spares from now on"))
    zygote.boot()
    assert log == ["serve", ("import", ["numpy"]), ("import", ["cloudpickle"]),
                   ("import", ["requests.adapters"]), "spares from now on"]


def test_a_booting_zygote_imports_the_users_modules_before_the_child_and_libraries_after(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A module of the user's runs its top-level code in the zygote, never in a
    # child: imported before the request's child is forked. A library the
    # parent imported meanwhile waits for the boot's own imports.
    from procesos._launch._zygote_server import MirrorRequest

    log: list[object] = []
    zygote = _booting_server(monkeypatch, log)
    request = MirrorRequest(list(sys.path), os.getcwd(),
                            [("usermod", "/home/me/usermod.py"), ("json", None)], ["json"])
    zygote.mirror(request)
    assert log == [("import", ["usermod"])]
    assert zygote.boot_imports == ["numpy", "cloudpickle", "json"]
    zygote.booting = False
    log.clear()
    zygote.mirror(request)
    assert log == [("import", ["usermod", "json"])]


ENGINE_WORKER_PROBE = """
import procesos
from procesos._launch._mirror import ModuleMirror

mirror = ModuleMirror()
first, later = mirror.split_for_boot(mirror.initial())
print("procesos._engine._worker" in first + later)
import procesos._engine._api  # what an Executor or a Pool loads
new = mirror.new_modules()
print("procesos._engine._worker" in new, "procesos._engine._worker" in mirror.libraries)
print(mirror.new_modules())
"""


def test_a_parent_that_uses_the_engine_has_the_zygote_import_its_worker_before_serving(
        tmp_path: Path) -> None:
    # Given out like a module of the user's: a new zygote imports it before it
    # serves the pool's first workers, which each imported it (7 ms) otherwise.
    result = run_script(ENGINE_WORKER_PROBE, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["False", "True False", "[]"]
