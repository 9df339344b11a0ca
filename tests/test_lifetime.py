"""Lifetime: nothing outlives its parent, Ctrl-C ends everything once, the zygote heals.

Scripts run as their own process (and process group); each reports the pids
it wants checked on its first line of output, then the test acts on it and
waits, bounded, for the pids to be gone. Waits are on conditions, never on
sleeps; the bounds are generous so that a loaded machine cannot fail them.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import procesos
from conftest import run_script
from procesos._launch import _zygote_client

BOUND = 15.0  # seconds: the longest any wait below may take

# Starts a child under every start method, each blocked until killed, and
# reports every pid that must die with the script.
CHILDREN_OF_EVERY_METHOD = """
import json, os, sys, time
import procesos
from procesos._launch import _zygote_client

def wait_forever(ready):
    ready.set()
    time.sleep(3600)

children = []
for method in ("zygote", "fork", "spawn"):
    ctx = procesos.get_context(method)
    ready = ctx.Event()
    p = ctx.Process(target=wait_forever, args=(ready,))
    p.start()
    assert ready.wait(60), method
    children.append(p)

import psutil
print(json.dumps({
    "children": [p.pid for p in children],
    "zygote": procesos.zygote_pid(),
    "zygote_directory": _zygote_client._zygote.directory,
    "descendants": [c.pid for c in psutil.Process().children(recursive=True)],
}), flush=True)
for p in children:
    p.join()
"""


def start_script(source: str, tmp_path: Path, stdin: int | None = None,
                 ) -> subprocess.Popen[str]:
    """Start *source* as a script in a new session (so that its group can be signalled)."""
    script = tmp_path / "script.py"
    script.write_text(source)
    env = dict(os.environ)
    env.pop("PROCESOS_START_METHOD", None)
    return subprocess.Popen(
        [sys.executable, str(script)], stdin=stdin, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, start_new_session=True,
    )


def first_report(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The JSON line the script prints once everything it starts is running."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    if not ready:
        proc.kill()
        pytest.fail("the script did not report its processes within 120 s")
    line = proc.stdout.readline()
    if not line:
        _, err = proc.communicate(timeout=BOUND)
        pytest.fail(f"the script ended without reporting (exit code {proc.returncode}):\n{err}")
    report: dict[str, Any] = json.loads(line)
    return report


def is_gone(pid: int) -> bool:
    """True when *pid* has exited (a zombie waiting for init counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def survivors(pids: list[int], timeout: float = BOUND) -> list[int]:
    """The pids still alive once *timeout* has passed (returns as soon as none is)."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if not is_gone(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)  # polling a condition, with a bound
        alive = [pid for pid in alive if not is_gone(pid)]
    return alive


def kill_everything(proc: subprocess.Popen[str], pids: list[int]) -> None:
    """Clean up after a failed test: the script's group, then any pid left."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate(timeout=BOUND)


def zygote_children(zygote: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(zygote).children()]
    except psutil.NoSuchProcess:
        return []


# -- the parent dies --------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_parent_killed_leaves_no_survivor(sig: int, tmp_path: Path) -> None:
    proc = start_script(CHILDREN_OF_EVERY_METHOD, tmp_path)
    report = first_report(proc)
    pids = sorted({*report["children"], report["zygote"], *report["descendants"]})
    assert len(report["children"]) == 3 and report["zygote"] in report["descendants"]
    try:
        os.kill(proc.pid, sig)
        proc.communicate(timeout=BOUND)
        assert proc.returncode == -sig
        assert survivors(pids) == []
        assert not os.path.exists(report["zygote_directory"])
    finally:
        kill_everything(proc, pids)


PARENT_STUCK_COPYING_A_CHILDS_ARGUMENTS = """
import json, threading, time
import numpy as np
import psutil
import procesos
from procesos._shm import _transport

def stuck(self):  # the copy into shared memory never ends: the child waits for it
    zygote = psutil.Process(procesos.zygote_pid())
    deadline = time.monotonic() + 60
    children = zygote.children()
    while len(children) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # the waiting child, and the spares the zygote forks next
        children = zygote.children()
    print(json.dumps({"zygote": zygote.pid, "children": [c.pid for c in children]}),
          flush=True)
    threading.Event().wait()

warm = procesos.Process(target=sum, args=([1],))
warm.start()
warm.join()
_transport.PendingCopy.copy = stuck
procesos.Process(target=sum, args=(np.ones(1 << 20),)).start()
"""


def test_parent_killed_while_copying_a_childs_arguments_leaves_no_survivor(
        tmp_path: Path) -> None:
    proc = start_script(PARENT_STUCK_COPYING_A_CHILDS_ARGUMENTS, tmp_path)
    report = first_report(proc)
    pids = [report["zygote"], *report["children"]]  # the waiting child and the spares
    try:
        assert len(pids) >= 3
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=BOUND)
        assert survivors(pids) == []
    finally:
        kill_everything(proc, pids)


ZYGOTE_STUCK_IN_A_PRELOAD = """
import json, os, threading
import procesos
from procesos._launch import _zygote_client

os.mkfifo("reached")
os.mkfifo("go")
with open("hanging_library.py", "w") as f:
    f.write("open('reached', 'w').close()\\nopen('go').read()\\n")
procesos.set_zygote_preload(["hanging_library"])
_zygote_client._zygote.ensure_running()
print(json.dumps({"zygote": procesos.zygote_pid(),
                  "zygote_directory": _zygote_client._zygote.directory}), flush=True)
threading.Event().wait()
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_zygote_stuck_in_an_import_ends_with_its_parent(sig: int, tmp_path: Path) -> None:
    # Not in its select() loop, the zygote cannot see the end of its parent's
    # pipe there: SIGIO from that pipe ends it.
    proc = start_script(ZYGOTE_STUCK_IN_A_PRELOAD, tmp_path)
    report = first_report(proc)
    zygote = report["zygote"]
    try:
        with open(tmp_path / "reached") as reached:  # the zygote is in the import
            reached.read()
        assert not is_gone(zygote)
        os.kill(proc.pid, sig)
        proc.communicate(timeout=BOUND)
        assert survivors([zygote]) == []
        assert not os.path.exists(report["zygote_directory"])
    finally:
        kill_everything(proc, [zygote])


ZYGOTE_OF_A_LIVING_PARENT = """
import json, sys
import procesos
from procesos._launch import _zygote_client

def hello():
    return "hello"

def run():
    p = procesos.get_context("zygote").Process(target=hello)
    p.start()
    value = p.result(timeout=60)
    p.join()
    return value

run()
print(json.dumps({"zygote": procesos.zygote_pid(),
                  "zygote_directory": _zygote_client._zygote.directory}), flush=True)
sys.stdin.readline()  # meanwhile the test terminates the zygote
print(run(), flush=True)
"""


def test_a_terminated_zygote_removes_its_directory_and_is_replaced(tmp_path: Path) -> None:
    proc = start_script(ZYGOTE_OF_A_LIVING_PARENT, tmp_path, stdin=subprocess.PIPE)
    zygote = 0
    try:
        report = first_report(proc)
        zygote = report["zygote"]
        os.kill(zygote, signal.SIGTERM)
        assert survivors([zygote]) == []
        assert not os.path.exists(report["zygote_directory"])
        out, err = proc.communicate("go\n", timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "hello"
    finally:
        kill_everything(proc, [zygote] if zygote else [])


# -- Ctrl-C -------------------------------------------------------------------------------


@pytest.mark.parametrize("whom", ["group", "parent"])
def test_ctrl_c_ends_parent_and_children_with_one_clean_traceback(
    whom: str, tmp_path: Path
) -> None:
    # "group" is Ctrl-C on a terminal: every process of the foreground group
    # gets SIGINT. "parent": only the parent does, and must end its children.
    proc = start_script(CHILDREN_OF_EVERY_METHOD, tmp_path)
    report = first_report(proc)
    pids = sorted({*report["children"], report["zygote"], *report["descendants"]})
    try:
        if whom == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=BOUND)
        assert survivors(pids) == []
    finally:
        kill_everything(proc, pids)
    assert proc.returncode == -signal.SIGINT, err
    # One traceback: the parent's own KeyboardInterrupt; none from a child,
    # none from an exit handler.
    assert err.count("Traceback (most recent call last)") == 1, err
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    assert err.count("KeyboardInterrupt") == 1, err
    assert "Exception ignored" not in err, err
    assert not os.path.exists(report["zygote_directory"])


CTRL_C_CAUGHT_THEN_START_AGAIN = """
import os, signal
import procesos

def noop():
    return "done"

p = procesos.get_context("zygote").Process(target=noop)
p.start()
print(p.result(), flush=True)
try:
    os.killpg(0, signal.SIGINT)  # Ctrl-C: the whole group, the zygote's spare included
    for _ in range(10 ** 9):  # the handler raises KeyboardInterrupt at the next jump
        pass
except KeyboardInterrupt:
    print("interrupted", flush=True)
q = procesos.get_context("zygote").Process(target=noop)
q.start()
print(q.result(), q.exitcode, flush=True)
"""


def test_ctrl_c_caught_by_the_parent_does_not_reach_a_later_process(tmp_path: Path) -> None:
    proc = start_script(CTRL_C_CAUGHT_THEN_START_AGAIN, tmp_path)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            kill_everything(proc, [])
    assert proc.returncode == 0, err
    assert out.splitlines() == ["done", "interrupted", "done 0"]
    assert "Traceback" not in err


# -- the zygote -----------------------------------------------------------------------------


def return_pid() -> int:
    return os.getpid()


def start_and_result(target: Any = return_pid) -> Any:
    p = procesos.get_context("zygote").Process(target=target)
    p.start()
    try:
        return p.result(timeout=60)
    finally:
        p.join(60)
        p.close()


def running_zygote() -> int:
    start_and_result()
    zygote = procesos.zygote_pid()
    assert zygote is not None
    return zygote


@pytest.mark.parametrize("wait_for_its_end", [True, False])
def test_zygote_killed_between_two_starts_is_replaced(wait_for_its_end: bool) -> None:
    old = running_zygote()
    old_directory = _zygote_client._zygote.directory
    spares = zygote_children(old)
    os.kill(old, signal.SIGKILL)
    if wait_for_its_end:
        assert survivors([old]) == []
        child = start_and_result()
    else:
        # Without waiting, the next start may still reach the dying zygote (or
        # a spare it had offered): that process then dies with it, and says
        # so; the start after it gets a new zygote.
        try:
            child = start_and_result()
        except procesos.ProcessCrashedError as exc:
            assert "its zygote died" in str(exc)
            child = start_and_result()
    new = procesos.zygote_pid()
    assert new is not None and new != old
    assert child not in (old, new)
    assert survivors(spares) == []  # the old zygote's spare went with it
    assert not os.path.exists(old_directory)


def test_a_spare_killed_while_it_waits_is_replaced() -> None:
    zygote = running_zygote()
    spares: list[int] = []
    deadline = time.monotonic() + BOUND
    while not spares and time.monotonic() < deadline:  # the zygote forks it when idle
        spares = zygote_children(zygote)
        time.sleep(0.01)
    assert spares, "the zygote keeps a spare child while it is idle"
    for spare in spares:
        try:
            os.kill(spare, signal.SIGKILL)
        except ProcessLookupError:
            pass  # a child of an earlier test, ending (it had reported its end)
    # The zygote forks another, which the next start takes.
    replaced: list[int] = []
    while not replaced and time.monotonic() < deadline:
        replaced = [pid for pid in zygote_children(zygote) if pid not in spares]
        time.sleep(0.01)
    assert replaced, "the zygote replaces a spare that was killed"
    assert start_and_result() not in spares
    assert procesos.zygote_pid() == zygote


def test_a_spare_killed_as_a_start_takes_it_is_that_process_killed() -> None:
    """The parent may already have sent its request to a spare that is being killed:
    the process it started is then the one killed (SIGKILL, by its pid), which
    start() and join() say, and no start hangs or is lost silently."""
    zygote = running_zygote()
    context = procesos.get_context("zygote")
    for _ in range(20):
        spares: list[int] = []
        deadline = time.monotonic() + BOUND
        while not spares and time.monotonic() < deadline:
            spares = zygote_children(zygote)
            time.sleep(0.005)
        for spare in spares:
            try:
                os.kill(spare, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process = context.Process(target=os.getpid)
        process.start()
        process.join(BOUND)
        assert process.exitcode is not None, "join() returned: the process ended"
        if process.pid in spares:
            assert process.exitcode == -signal.SIGKILL
            with pytest.raises(procesos.ProcessCrashedError, match="SIGKILL") as caught:
                process.result()
            assert "zygote died" not in str(caught.value)
        else:
            assert process.exitcode == 0
            assert process.result() == process.pid
        process.close()
    assert procesos.zygote_pid() == zygote


SPARES_OFF = """
import json, os
os.environ["PROCESOS_ZYGOTE_SPARE"] = "0"
from multiprocessing.connection import wait
import psutil
import procesos
from procesos._launch import _zygote_client

def square(x):
    return x * x

started = [procesos.Process(target=square, args=(i,)) for i in range(3)]
for p in started:
    p.start()
results = [p.result() for p in started]
q = procesos.Process(target=square, args=(7,))
q.start()
results.append(q.result())
started.append(q)
for p in started:
    p.join()
pending = [p.sentinel for p in started]
while pending:  # each is ready once the zygote has reaped its process
    ready = wait(pending, timeout=60)
    assert ready, "a process was never reaped"
    pending = [s for s in pending if s not in ready]
zygote = psutil.Process(procesos.zygote_pid())
print(json.dumps({"results": results, "exitcodes": [p.exitcode for p in started],
                  "zygote_children": [c.pid for c in zygote.children()],
                  "mailbox": _zygote_client._zygote.mailbox is not None}), flush=True)
"""


def test_with_spares_off_the_zygote_forks_each_process_and_keeps_none(tmp_path: Path) -> None:
    proc = start_script(SPARES_OFF, tmp_path)
    try:
        report = first_report(proc)
        _, err = proc.communicate(timeout=BOUND)
    finally:
        if proc.poll() is None:
            kill_everything(proc, [])
    assert proc.returncode == 0, err
    assert report["results"] == [0, 1, 4, 49]
    assert report["exitcodes"] == [0, 0, 0, 0]
    assert report["zygote_children"] == []  # no spare waits
    assert report["mailbox"] is False  # nothing to offer: every start asks the zygote


def test_the_next_spare_waits_for_a_lone_start_and_not_in_a_loop_of_starts() -> None:
    from procesos._launch._zygote_server import _SPARE_DELAY, SpareTiming

    timing = SpareTiming()
    assert timing.delay(set(), 100.0) is None  # nothing started yet: fork it now
    timing.started(1, 100.0, spare_age=1.0)
    # A lone start: the spare waits for that child to end, or for the delay.
    assert timing.delay({1}, 100.0) == pytest.approx(_SPARE_DELAY)
    assert timing.delay(set(), 100.0) is None  # it has ended
    assert timing.delay({1}, 100.0 + _SPARE_DELAY) is None  # waited long enough
    # A start that finds a young spare: still so.
    timing.started(2, 101.0, spare_age=_SPARE_DELAY / 2)
    assert timing.delay({2}, 101.0) == pytest.approx(_SPARE_DELAY)
    # One that finds none (a loop of starts): the next spares come at once,
    # however young the child, as long as the spares found are young.
    timing.started(3, 102.0, spare_age=None)
    assert timing.delay({3}, 102.0) is None
    timing.started(4, 103.0, spare_age=_SPARE_DELAY / 2)
    assert timing.delay({4}, 103.0) is None
    # A start that finds a spare that has waited: waiting costs nothing again.
    timing.started(5, 104.0, spare_age=_SPARE_DELAY)
    assert timing.delay({5}, 104.0) == pytest.approx(_SPARE_DELAY)


def test_a_loop_of_starts_back_to_back_runs_every_child_and_leaves_none() -> None:
    zygote = running_zygote()
    pids = {start_and_result() for _ in range(30)}  # the next spare forked at once
    assert len(pids) == 30  # each its own process
    assert procesos.zygote_pid() == zygote
    assert survivors(list(pids)) == []


def where_am_i() -> tuple[str, str | None, str | None]:
    return os.getcwd(), os.environ.get("PROCESOS_TEST_VARIABLE"), os.environ.get("HOME")


def test_children_follow_the_parents_directory_and_environment_as_they_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running_zygote()  # started with the directory and environment of now
    home = os.environ.get("HOME")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROCESOS_TEST_VARIABLE", "changed")
    assert start_and_result(where_am_i) == (str(tmp_path), "changed", home)
    monkeypatch.undo()
    # Back to what the zygote has: nothing to send, and still right.
    assert start_and_result(where_am_i) == (os.getcwd(), None, home)


def connect_to_the_zygote() -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(BOUND)
    sock.connect(_zygote_client._zygote.address)
    return sock


@pytest.mark.parametrize(
    "request_bytes",
    [b"\0" * 33, b"not the secret", b""],
    ids=["wrong-secret", "short", "empty"],
)
def test_request_without_the_secret_is_refused_and_the_zygote_serves_on(
    request_bytes: bytes,
) -> None:
    zygote = running_zygote()
    status_r, status_w = os.pipe()
    try:
        with connect_to_the_zygote() as sock:
            if request_bytes:
                socket.send_fds(sock, [request_bytes], [status_w])
            sock.shutdown(socket.SHUT_WR)
            os.close(status_w)
            status_w = -1
            # Refused: the connection closed unanswered, the descriptor closed.
            assert sock.recv(64) == b""
        # No process was started for it: the zygote writes the pid of every
        # child it starts there. (Counting its children would also count the
        # next spare, which it forks a few milliseconds after a child ended.)
        ready, _, _ = select.select([status_r], [], [], BOUND)
        assert ready and os.read(status_r, 64) == b""
    finally:
        os.close(status_r)
        if status_w >= 0:
            os.close(status_w)
    assert start_and_result() != zygote
    assert procesos.zygote_pid() == zygote


def test_zygote_directory_is_private() -> None:
    running_zygote()
    directory = Path(_zygote_client._zygote.directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert directory.stat().st_uid == os.getuid()
    sock = directory / "zygote.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) & 0o077 == 0


# -- what is left behind ----------------------------------------------------------------------

LEAVES_NOTHING = """
import json, os
import numpy
import procesos

def shm():
    try:
        # procesos' names only: another program's entries come and go meanwhile.
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith("procesos-"))
    except FileNotFoundError:
        return []

before = shm()
q = procesos.Queue()
big = numpy.arange(1 << 19, dtype="float64")  # 4 MiB: travels through shared memory
p = procesos.Process(target=lambda a, q: q.put(a * 2), args=(big, q))
p.start()
assert float(q.get(timeout=60)[-1]) == 2.0 * ((1 << 19) - 1)
p.join()
shared = procesos.SharedArray((1000,), dtype="float64")
shared[:] = 1.0
p = procesos.Process(target=lambda a: float(a.sum()), args=(shared,))
p.start()
assert p.result() == 1000.0
from procesos._launch import _zygote_client
print(json.dumps({
    "zygote_directory": _zygote_client._zygote.directory,
    "new_shm": sorted(set(shm()) - set(before)),
}), flush=True)
"""


def test_normal_exit_leaves_no_zygote_directory_and_no_shared_memory(tmp_path: Path) -> None:
    result = run_script(LEAVES_NOTHING, tmp_path, "zygote", timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[0])
    assert report["zygote_directory"]
    assert not os.path.exists(report["zygote_directory"])
    leftover = [n for n in report["new_shm"] if os.path.exists(f"/dev/shm/{n}")]
    assert leftover == []


# -- daemonic processes ------------------------------------------------------------------

DAEMON_WITH_CHILDREN = """
import json, os, time
import procesos

def wait_forever(ready):
    ready.set()
    time.sleep(3600)

def daemon(queue):
    ready = procesos.Event()
    grandchild = procesos.Process(target=wait_forever, args=(ready,))
    grandchild.start()
    assert ready.wait(60)
    with procesos.Executor(1) as ex:
        square = ex.submit(pow, 7, 2).result()
    queue.put((grandchild.pid, square))
    time.sleep(3600)

queue = procesos.Queue()
d = procesos.Process(target=daemon, args=(queue,), daemon=True)
d.start()
grandchild, square = queue.get(timeout=60)
print(json.dumps({"daemon": d.pid, "grandchild": grandchild, "square": square}), flush=True)
# The script ends here: multiprocessing's exit handler terminates the daemon.
"""


def test_a_daemonic_process_may_start_children_and_they_end_with_it(tmp_path: Path) -> None:
    # The standard library refuses ("daemonic processes are not allowed to have
    # children"), since they would be orphaned; a procesos child ends with its parent.
    proc = start_script(DAEMON_WITH_CHILDREN, tmp_path)
    report = first_report(proc)
    pids = [report["daemon"], report["grandchild"]]
    try:
        assert report["square"] == 49
        _, err = proc.communicate(timeout=BOUND)
        assert proc.returncode == 0, err
        assert survivors(pids) == []
    finally:
        if proc.returncode is None or not all(is_gone(pid) for pid in pids):
            kill_everything(proc, pids)


_FORK_BY_HAND = """
import os, sys
import procesos as mp

if __name__ == "__main__":
    stop = mp.Event()
    guard = mp.Process(target=stop.wait, daemon=True)
    guard.start()
    ex = mp.Executor(1)
    assert ex.submit(abs, -1).result(timeout=30) == 1
    results = ex.map(abs, [-5] * 100_000)
    pid = os.fork()
    if pid == 0:
        print("child's children:", mp.active_children())
        try:
            ex.submit(abs, -2)
        except mp.BrokenExecutorError as exc:
            print("child's submit:", exc)
        try:
            list(results)
        except mp.BrokenExecutorError:
            print("child's map: BrokenExecutorError")
        sys.stdout.flush()
        sys.exit(0)  # a normal exit: multiprocessing's exit handler runs
    _, status = os.waitpid(pid, 0)
    print("child's exit code:", os.waitstatus_to_exitcode(status))
    print("parent's daemon alive:", guard.is_alive())
    print("parent's map:", sum(results))
    print("parent's executor:", ex.submit(abs, -3).result(timeout=30))
    stop.set()
    guard.join()
    ex.shutdown()
"""


@pytest.mark.timeout(120)
def test_a_child_made_by_os_fork_leaves_the_parents_processes_alone(tmp_path: Path) -> None:
    result = run_script(_FORK_BY_HAND, tmp_path)
    assert result.returncode == 0, result.stderr
    # Nothing from the child's exit ("can only join a child process"); Python 3.13
    # warns about fork() in a process with threads.
    assert "Traceback" not in result.stderr and "can only join" not in result.stderr
    lines = result.stdout.splitlines()
    assert "child's children: []" in lines
    assert any(line.startswith("child's submit: this executor belongs to process ")
               and "os.fork()" in line for line in lines), lines
    assert "child's map: BrokenExecutorError" in lines
    assert lines[-4:] == ["child's exit code: 0", "parent's daemon alive: True",
                          "parent's map: 500000", "parent's executor: 3"]
