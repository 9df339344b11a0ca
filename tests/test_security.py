"""Other local users are the threat: no channel of procesos lets them in.

The tests that act as a second user need root (they drop to an unused uid in
a child process) and are skipped otherwise. The fuzzing tests send random,
truncated and hostile frames to the tracker and the zygote: a few hundred in
``make test``, thousands in ``make test-deep`` (``PROCESOS_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import functools
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import procesos
from conftest import run_script, still_alive
from procesos._launch import _zygote_client
from procesos._shm import _client, _tracker, tracker_stats

FUZZ_EXAMPLES = int(os.environ.get("PROCESOS_FUZZ_EXAMPLES", "300"))
OTHER_UID = 54321  # no user of this machine: a stranger
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as a second user needs root")
fuzzing = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow])


class Marker:
    """A pickle that, if anyone unpickled it, would create *path*."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (self.path, "w"))


def _run_as_stranger(python: str, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-I", "-c", code], user=OTHER_UID, group=OTHER_UID, extra_groups=[],
        capture_output=True, text=True, timeout=60, cwd="/", env={"PATH": "/usr/bin:/bin"},
    )


@functools.cache
def _strangers_python() -> str | None:
    """An interpreter another user may run (ours may lie under a private home)."""
    for python in (os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            if _run_as_stranger(python, "pass").returncode == 0:
                return python
        except OSError:
            pass
    return None


def as_stranger(code: str) -> subprocess.CompletedProcess[str]:
    """Run *code* (standard library only) as another user, with no rights to our files."""
    python = _strangers_python()
    if python is None:
        pytest.skip("no Python interpreter that another user may run")
    return _run_as_stranger(python, code)


@pytest.fixture
def tracker_pid() -> int:
    """The pid of this test process's tracker (started if needed)."""
    return int(tracker_stats()["pid"])


# -- what another user can see and do ------------------------------------------------

def test_no_secret_on_any_command_line(tracker_pid: int) -> None:
    p = procesos.Process(target=int)
    p.start()
    p.join()
    secret = _client.tree_token().partition(".")[2]
    zygote = procesos.zygote_pid()
    assert zygote is not None
    for pid in (tracker_pid, zygote):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert secret.encode() not in cmdline
        assert _zygote_client._zygote.secret not in cmdline
        assert _zygote_client._zygote.secret.hex().encode() not in cmdline


def test_sockets_live_in_a_directory_private_to_the_user(tracker_pid: int) -> None:
    address = _client._address(_client.tree_token())
    directory = os.path.dirname(address)
    assert os.stat(directory).st_mode & 0o077 == 0
    assert os.stat(directory).st_uid == os.getuid()
    procesos.Process(target=int).start()
    zygote_dir = os.path.dirname(_zygote_client._zygote.address)
    assert os.stat(zygote_dir).st_mode & 0o077 == 0
    # No abstract-namespace name another user could bind first.
    name = _client.tree_token().partition(".")[0]
    abstract = [line.split()[-1] for line in Path("/proc/net/unix").read_text().splitlines()
                if line.split()[-1].startswith("@")]
    assert not [n for n in abstract if name in n or os.path.basename(zygote_dir) in n]
    assert any(line.endswith(address) for line in Path("/proc/net/unix").read_text().splitlines())


@as_root
def test_another_user_can_neither_connect_nor_bind(tracker_pid: int) -> None:
    p = procesos.Process(target=int)
    p.start()
    p.join()
    tracker_address = _client._address(_client.tree_token())
    zygote_address = _zygote_client._zygote.address
    secret = _client.tree_token().partition(".")[2]
    code = textwrap.dedent(f"""
        import os, socket
        for address in ({tracker_address!r}, {zygote_address!r}):
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(address)
                print("CONNECTED", address)
            except OSError as exc:
                print("refused", exc.errno)
            s = socket.socket(socket.AF_UNIX)
            try:
                s.bind(os.path.join(os.path.dirname(address), "squat.sock"))
                print("BOUND", address)
            except OSError as exc:
                print("refused", exc.errno)
        for pid in ({tracker_pid}, {procesos.zygote_pid()}, {os.getpid()}):
            try:
                print("READ ENVIRON", open(f"/proc/{{pid}}/environ", "rb").read()[:0])
            except OSError as exc:
                print("refused", exc.errno)
            if {secret!r}.encode() in open(f"/proc/{{pid}}/cmdline", "rb").read():
                print("SECRET IN CMDLINE")
    """)
    done = as_stranger(code)
    assert done.returncode == 0, done.stderr
    assert "refused" in done.stdout
    for word in ("CONNECTED", "BOUND", "READ ENVIRON", "SECRET"):
        assert word not in done.stdout, done.stdout


@as_root
def test_the_tracker_refuses_another_users_connection() -> None:
    # Even where the directory would let them in (not procesos' own: made
    # open on purpose here), the tracker answers no other user.
    open_dir = tempfile.mkdtemp(dir="/tmp")
    os.chmod(open_dir, 0o777)
    address = os.path.join(open_dir, "shm-open.sock")
    started = subprocess.run(
        [sys.executable, "-I", _client._TRACKER_SCRIPT, str(os.getpid()), address, "0", "1"],
        input=b"open s3cret\n", timeout=30)
    assert started.returncode == 0
    try:
        os.chmod(address, 0o777)
        code = textwrap.dedent(f"""
            import json, socket, struct
            s = socket.socket(socket.AF_UNIX)
            s.connect({address!r})
            data = json.dumps(["hello", "s3cret"]).encode()
            try:
                s.sendall(struct.pack("!I", len(data)) + data)
                answer = s.recv(100)
            except (ConnectionResetError, BrokenPipeError):  # closed at once
                answer = b""
            print("ANSWERED" if answer else "closed")
        """)
        done = as_stranger(code)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "closed"
        assert _ask(address, "s3cret", ["sync"])[0] == "ok"  # and goes on serving us
    finally:
        _stop_tracker(address, "s3cret")
        os.rmdir(open_dir)


@as_root
def test_a_directory_made_by_another_user_is_refused(tmp_path: Path) -> None:
    # A stranger made <tmp>/procesos-<uid> first, open to all: procesos says so
    # and does not put its sockets there.
    squatted = tmp_path / f"procesos-{os.getuid()}"
    squatted.mkdir(mode=0o777)
    squatted.chmod(0o777)
    os.chown(squatted, OTHER_UID, OTHER_UID)
    done = run_script(textwrap.dedent("""
        import procesos
        from procesos._shm import tracker_stats
        with procesos.Executor(1) as ex:
            print(len(ex.submit(bytes, 10_000_000).result()))  # through the pipe
        try:
            tracker_stats()
        except procesos.ProcesosError as exc:
            print(exc)
    """), tmp_path, env={"TMPDIR": str(tmp_path), "PROCESOS_SHM_TREE": "",
                         "XDG_RUNTIME_DIR": "", "PROCESOS_RUNTIME_DIR": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("10000000\n"), done.stdout
    assert "must be a directory that belongs to this user" in done.stdout, done.stdout
    assert os.listdir(squatted) == []


# -- nothing a peer sends is executed ---------------------------------------------------

def _frame(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


def _ask(address: str, secret: str, message: list[object]) -> list[object]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(address)
        s.sendall(_tracker.encode(["hello", secret]) + _tracker.encode(message))
        answers = []
        for _ in range(2):
            (size,) = struct.unpack("!I", _recv(s, 4))
            answers.append(_tracker.decode(_recv(s, size)))
        return answers[1]


def _recv(s: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = s.recv(size - len(data))
        assert chunk, "the tracker closed the connection"
        data += chunk
    return data


def _stop_tracker(address: str, secret: str) -> None:
    pid = int(_ask(address, secret, ["sync"])[1]["pid"])  # type: ignore[index]
    os.kill(pid, signal.SIGKILL)
    assert not still_alive([pid])
    os.unlink(address)


@pytest.fixture(scope="module")
def lone_tracker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A tracker of a tree of its own, for the fuzzers: (address, secret)."""
    directory = tmp_path_factory.mktemp("tracker")
    directory.chmod(0o700)
    address = str(directory / "shm-fuzz.sock")
    started = subprocess.run(
        [sys.executable, "-I", _client._TRACKER_SCRIPT, str(os.getpid()), address,
         str(1 << 20), "1"], input=b"fuzz s3cret\n", timeout=30)
    assert started.returncode == 0
    yield address, "s3cret"
    _stop_tracker(address, "s3cret")


hostile_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"[" * 200_000, b'["claim",' + b"[" * 100_000, b"{" * 50_000,
                     b'["alloc",1e999]', b'["alloc",NaN]', b'["create",' + b"9" * 5000 + b"]",
                     rb'["hello","\ud800"]', b"\xff\xfe", b'"alloc"', b"[]"]),
    st.builds(lambda o: pickle.dumps(o), st.tuples(st.text(max_size=5), st.integers())),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                    max_size=3),
        max_leaves=12,
    ).map(lambda value: __import__("json").dumps(value).encode()),
    st.tuples(st.sampled_from(sorted({
        "alloc", "seal", "drop", "claim", "await", "discard", "release", "create",
        "ticket", "poison", "sync", "trim", "reap", "hello", "bogus"})),
        st.lists(st.one_of(st.integers(-2, 2**70), st.text(max_size=8), st.booleans(),
                           st.none(), st.lists(st.integers(-2, 2**64), max_size=3)),
                 max_size=3)).map(
        lambda verb_args: __import__("json").dumps([verb_args[0], *verb_args[1]]).encode()),
)


@fuzzing
@given(body=hostile_bodies, authenticated=st.booleans(), cut=st.integers(0, 8),
       length_lie=st.sampled_from([None, 0, 3, 1 << 20, (1 << 20) + 1, 0xFFFFFFFF]))
# A lone surrogate in the secret ended the tracker (its UTF-8 encoding failed).
@example(body=rb'["hello","\ud800"]', authenticated=False, cut=0, length_lie=None)
@example(body=b'["reap",1,"results",[[]]]', authenticated=True, cut=0, length_lie=None)
def test_fuzzed_tracker_frames_crash_nothing_and_run_nothing(
        lone_tracker: tuple[str, str], tmp_path: Path, body: bytes, authenticated: bool,
        cut: int, length_lie: int | None) -> None:
    address, secret = lone_tracker
    marker = tmp_path / "unpickled"
    evil = pickle.dumps(Marker(str(marker)))
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(address)
        if authenticated:
            s.sendall(_tracker.encode(["hello", secret]))
            (size,) = struct.unpack("!I", _recv(s, 4))
            assert _tracker.decode(_recv(s, size))[0] == "ok"
        header = struct.pack("!I", len(body) if length_lie is None else length_lie)
        wire = header + body + _frame(evil)
        try:
            s.sendall(wire[:len(wire) - cut] if cut else wire)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the tracker hung up before the rest was sent: what it should do
    # Still serving, and nothing was unpickled.
    stats = _ask(address, secret, ["sync"])
    assert stats[0] == "ok"
    assert not marker.exists()


def test_a_wrong_secret_gets_no_answer(lone_tracker: tuple[str, str]) -> None:
    address, _ = lone_tracker
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(address)
        s.sendall(_tracker.encode(["hello", "guess"]) + _tracker.encode(["sync"]))
        assert s.recv(100) == b""


def test_a_client_that_reads_nothing_cannot_stall_the_tracker(
        lone_tracker: tuple[str, str]) -> None:
    address, secret = lone_tracker
    with socket.socket(socket.AF_UNIX) as greedy:
        greedy.connect(address)
        greedy.setblocking(False)
        greedy.sendall(_tracker.encode(["hello", secret]))
        request = _tracker.encode(["ticket", 0])
        sent = 0
        try:
            for _ in range(100_000):  # requests whose answers it never reads
                sent += greedy.send(request)
        except BlockingIOError:
            pass
        # Another client is answered meanwhile; the greedy one is cut off
        # after the tracker's send timeout, at the latest.
        assert _ask(address, secret, ["sync"])[0] == "ok"


def test_a_reply_that_is_a_pickle_is_not_loaded(tmp_path: Path) -> None:
    # Whatever answers at the tracker's address (here a fake of ours), the
    # client only ever decodes JSON.
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    marker = tmp_path / "unpickled"
    token = "fake." + "ab" * 16
    with socket.socket(socket.AF_UNIX) as fake:
        fake.bind(str(runtime / "shm-fake.sock"))
        fake.listen(4)
        script = textwrap.dedent("""
            from procesos._shm import ShmError, tracker_stats
            try:
                tracker_stats()
                print("ACCEPTED")
            except ShmError as exc:
                print("refused:", exc)
        """)
        child = subprocess.Popen(
            [sys.executable, "-c", script], text=True, stdout=subprocess.PIPE,
            env={**os.environ, "PROCESOS_RUNTIME_DIR": str(runtime),
                 "PROCESOS_SHM_TREE": f"{os.getpid()}:{token}"})
        try:
            fake.settimeout(30)
            conn, _ = fake.accept()
            with conn:
                conn.recv(1000)
                conn.sendall(_frame(pickle.dumps(Marker(str(marker)))))
            out, _ = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert "refused" in out and "ACCEPTED" not in out, out
    assert not marker.exists()


def _zygote_alive_and_serving() -> int:
    p = procesos.get_context("zygote").Process(target=os.getpid)
    p.start()
    p.join()
    assert p.exitcode == 0 and p.result() == p.pid
    pid = procesos.zygote_pid()
    assert pid is not None
    return pid


@fuzzing
@given(data=st.binary(max_size=120), with_fd=st.booleans(), secret_prefix=st.booleans())
def test_fuzzed_zygote_requests_crash_nothing(data: bytes, with_fd: bool,
                                              secret_prefix: bool) -> None:
    before = _zygote_alive_and_serving() if procesos.zygote_pid() is None else \
        procesos.zygote_pid()
    zygote = _zygote_client._zygote
    if secret_prefix:  # the secret, then a request that is cut or malformed
        data = zygote.secret + data[:1]
    r, w = os.pipe()
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(zygote.address)
            if with_fd:
                socket.send_fds(s, [data or b"x"], [w])
            elif data:
                s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            # Refused (closed unanswered), or a child that finds its channel
            # empty and exits: either way nothing is left and nothing hangs.
            try:
                s.recv(100)
            except ConnectionResetError:  # closed with our bytes unread
                pass
    finally:
        os.close(w)
    try:
        assert procesos.zygote_pid() == before
    finally:
        os.close(r)


def test_the_zygote_offers_its_spares_to_its_parent_only_once() -> None:
    """The mailbox where the zygote offers its spares is the parent's first
    connection: a second one, even with the secret, is closed unanswered, and
    the parent's own starts still take the zygote's offers."""
    from procesos._launch._zygote_server import _MAILBOX, _REQUEST

    before = _zygote_alive_and_serving()
    zygote = _zygote_client._zygote
    assert zygote.mailbox is not None
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(zygote.address)
        s.sendall(zygote.secret + _REQUEST.pack(_MAILBOX))
        assert s.recv(100) == b""  # closed, no offer
    taken = []
    for _ in range(5):
        offers = zygote.take_offer
        zygote.take_offer = lambda: taken.append(offers()) or taken[-1]  # type: ignore[method-assign]
        try:
            assert _zygote_alive_and_serving() == before
        finally:
            del zygote.take_offer
    assert any(offer is not None for offer in taken), "the parent's mailbox still works"


# -- the tracker recovers ---------------------------------------------------------------

def test_a_killed_tracker_is_replaced(tmp_path: Path) -> None:
    done = run_script(textwrap.dedent("""
        import os, signal, time
        import procesos
        from procesos._shm import tracker_stats

        def big(n):
            return b"x" * n

        def through_a_process():
            p = procesos.Process(target=big, args=(20_000_000,))
            p.start(); p.join()
            return len(p.result())

        with procesos.Executor(2) as ex:
            assert len(ex.submit(big, 20_000_000).result()) == 20_000_000
            assert through_a_process() == 20_000_000
            first = tracker_stats()["pid"]
            os.kill(first, signal.SIGKILL)
            while os.path.exists(f"/proc/{first}") and \\
                    open(f"/proc/{first}/stat").read().split()[2] != "Z":
                time.sleep(0.01)
            for _ in range(3):
                assert through_a_process() == 20_000_000
                assert len(ex.submit(big, 20_000_000).result()) == 20_000_000
                assert ex.submit(len, b"y" * 20_000_000).result() == 20_000_000
            with procesos.SharedArray((1000,)) as array:
                array[:] = 1
                assert ex.submit(sum, array).result() == 1000
            second = tracker_stats()["pid"]
        print("OK", first != second)
    """), tmp_path, env={"PROCESOS_SHM_TREE": ""}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["OK", "True"], done.stdout


#: A module planted where it must not be imported: it leaves a mark beside itself.
PLANTED_MODULE = (
    "import os\nopen(os.path.join(os.path.dirname(__file__), f'imported-{os.getpid()}'), "
    "'w').close()\nraise ImportError('not the standard library')\n")


def test_a_typing_module_in_the_starting_directory_is_not_imported(tmp_path: Path) -> None:
    (tmp_path / "typing.py").write_text(PLANTED_MODULE)
    program = tmp_path / "elsewhere"
    program.mkdir()
    (program / "main.py").write_text(textwrap.dedent("""
        import procesos
        for method in ("zygote", "spawn"):
            p = procesos.get_context(method).Process(target=abs, args=(-3,))
            p.start(); p.join()
            print(method, p.result())
    """))
    done = subprocess.run([sys.executable, str(program / "main.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["zygote", "3", "spawn", "3"]
    assert not [name for name in os.listdir(tmp_path) if name.startswith("imported-")]


def test_the_standard_librarys_helpers_do_not_import_from_the_starting_directory(
        tmp_path: Path) -> None:
    # A named semaphore (a Lock, a Queue) or a SharedMemory starts the standard
    # library's resource tracker, "python -c ...": the current directory came
    # first on its sys.path, so a multiprocessing package planted there ran.
    planted = tmp_path / "multiprocessing"
    planted.mkdir()
    (planted / "__init__.py").write_text(PLANTED_MODULE)
    program = tmp_path / "elsewhere"
    program.mkdir()
    (program / "main.py").write_text(textwrap.dedent("""
        import multiprocessing
        import procesos
        from multiprocessing import resource_tracker
        from procesos import shared_memory

        if __name__ == "__main__":
            for method in ("zygote", "spawn"):
                ctx = procesos.get_context(method)
                queue, lock = ctx.Queue(), ctx.Lock()
                with lock:
                    queue.put(method)
                print(queue.get(timeout=30))
            segment = shared_memory.SharedMemory(create=True, size=16)
            segment.close()
            segment.unlink()
            print("tracker", resource_tracker._resource_tracker._pid is not None)
            p = multiprocessing.get_context("spawn").Process(target=abs, args=(-3,))
            p.start(); p.join()
            print("stdlib spawn", p.exitcode)
    """))
    done = subprocess.run([sys.executable, str(program / "main.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["zygote", "spawn", "tracker", "True", "stdlib", "spawn", "0"]
    assert not [name for name in os.listdir(planted) if name.startswith("imported-")]


def test_tracker_processes_are_this_users(tracker_pid: int) -> None:
    assert psutil.Process(tracker_pid).uids().real == os.getuid()


def test_the_spares_offered_to_a_program_do_not_reach_what_it_executes() -> None:
    """The socket to each offered spare is the program's alone: a program it
    executes (``os.system``, ``subprocess`` with ``close_fds=False``) does not
    inherit it, nor the mailbox."""
    _zygote_alive_and_serving()
    zygote = _zygote_client._zygote
    with zygote.lock:
        zygote.read_mail(0)
        held = [offer.channel.fileno() for offer in zygote.offers]
        mailbox = zygote.mailbox
    assert held, "the zygote offered its spares"
    assert mailbox is not None
    for fd in [*held, mailbox.fileno()]:
        assert not os.get_inheritable(fd)
