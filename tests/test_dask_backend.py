"""``Executor(backend="dask")`` against a real Dask cluster on loopback.

The module's cluster is a ``dask scheduler`` and two ``dask worker``
processes (one worker process of one thread each, behind a nanny), started
from the CLIs that ``distributed`` installs, on free ports of 127.0.0.1, and
stopped by pid at the end. Its scheduler never retries a task itself
(``allowed-failures`` 0) and gives each worker one task at a time, so that
what a worker's death does is procesos' ``retries=`` alone.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

import procesos
from cluster_behaviour import ClusterExecutorBehaviour
from cluster_tasks import fail_on, hold_until_released, square
from conftest import FIXTURE_CHILDREN, ROOT, run_script

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(120)

TESTS = Path(__file__).resolve().parent
DASK = str(Path(sys.executable).parent / "dask")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    client: Any

    def worker_pids(self) -> set[int]:
        """The pids of the worker processes (children of the nannies) now."""
        return set(self.client.run(os.getpid).values())


def _stop(processes: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    logs = tmp_path_factory.mktemp("dask-cluster")
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT / "src"),
                                         env.get("PYTHONPATH", "")])
    env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = "0"
    env["DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION"] = "1.0"  # a worker holds one task

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(logs / f"{name}.log", "wb") as log:
            process = subprocess.Popen([DASK, *args], stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, env=env)
        FIXTURE_CHILDREN.add(process.pid)
        return process

    port = address.rsplit(":", 1)[1]
    scheduler = start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", port,
                      "--no-dashboard")
    workers = [start(f"worker{i}", "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                     "--nworkers", "1", "--no-dashboard", "--name", f"worker{i}")
               for i in range(2)]
    processes = [*workers, scheduler]
    descendants: list[psutil.Process] = []
    client = None
    try:
        client = distributed.Client(address, timeout=60, set_as_default=False)
        client.wait_for_workers(2, timeout=60)
        yield Cluster(address, scheduler, workers, client)
    finally:
        for process in processes:
            try:
                descendants.extend(psutil.Process(process.pid).children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        if client is not None:
            client.close()
        _stop(processes)
        FIXTURE_CHILDREN.difference_update(p.pid for p in processes)
        assert all(p.poll() is not None for p in processes)
        # The nannies' worker processes end after their nanny (Dask's own watch).
        _, left = psutil.wait_procs(descendants, timeout=20)
        for process in left:
            process.kill()
        assert not left, f"the cluster left processes behind: {left}"


@pytest.fixture
def make_executor(cluster: Cluster) -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(**options: Any) -> Any:
        ex = procesos.Executor(backend="dask", address=cluster.address, **options)
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.shutdown(wait=True)


class TestDaskExecutor(ClusterExecutorBehaviour):
    """The shared specification, on the module's Dask cluster."""

    @pytest.fixture(autouse=True)
    def _prelude(self, cluster: Cluster) -> None:
        self.script_prelude = (f"OPTIONS = dict(backend='dask', address={cluster.address!r})\n")


def _wait_for_file(path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} did not appear within {timeout} s"
        time.sleep(0.02)
    return path.read_text()


def _kill_worker_mid_map(cluster: Cluster, tmp_path: Path, retries: int) -> list[Any]:
    with procesos.Executor(backend="dask", address=cluster.address, retries=retries) as ex:
        results = ex.map(hold_until_released, range(6), [str(tmp_path)] * 6, [3] * 6,
                         return_exceptions=True)
        pid = int(_wait_for_file(tmp_path / "started", 60))
        assert pid in cluster.worker_pids()
        (tmp_path / "killed").touch()
        os.kill(pid, signal.SIGKILL)
        collected = list(results)
    cluster.client.wait_for_workers(2, timeout=60)  # the nanny restarts it
    return [pid, *collected]


def test_worker_killed_mid_map_its_task_runs_again_with_retries(
        cluster: Cluster, tmp_path: Path) -> None:
    killed, *results = _kill_worker_mid_map(cluster, tmp_path, retries=1)
    assert [item for item, _ in results] == list(range(6))
    assert results[3][1] != killed


def test_worker_killed_mid_map_fails_only_its_task_with_worker_crashed_error(
        cluster: Cluster, tmp_path: Path) -> None:
    _, *results = _kill_worker_mid_map(cluster, tmp_path, retries=0)
    error = results[3]
    assert isinstance(error, procesos.WorkerCrashedError)
    assert "dask worker tcp://127.0.0.1:" in str(error)
    assert "hold_until_released" in str(error)
    assert [item for item, _ in results[:3] + results[4:]] == [0, 1, 2, 4, 5]


def _hold(ex: Any, tmp_path: Path) -> Any:
    """Submit, alone, a task that waits for ``released`` in *tmp_path*; once it
    runs, its future (whose ``result()`` would fetch the result itself)."""
    future = ex.submit(hold_until_released, 0, str(tmp_path), 0)
    assert future.direct
    _wait_for_file(tmp_path / "started", 60)
    return future


def _kill_worker_under_a_lone_task(cluster: Cluster, tmp_path: Path, retries: int) -> Any:
    with procesos.Executor(backend="dask", address=cluster.address, retries=retries) as ex:
        future = _hold(ex, tmp_path)
        pid = int((tmp_path / "started").read_text())
        assert pid in cluster.worker_pids()
        (tmp_path / "killed").touch()
        os.kill(pid, signal.SIGKILL)
        try:
            outcome = future.result(timeout=60)  # read on this thread, death and retry included
        except procesos.WorkerCrashedError as exc:
            outcome = exc
    cluster.client.wait_for_workers(2, timeout=60)
    return pid, outcome


def test_a_lone_tasks_result_read_by_its_caller_survives_a_killed_worker_with_retries(
        cluster: Cluster, tmp_path: Path) -> None:
    killed, (item, pid) = _kill_worker_under_a_lone_task(cluster, tmp_path, retries=1)
    assert item == 0 and pid != killed


def test_a_lone_task_whose_worker_dies_fails_with_worker_crashed_error(
        cluster: Cluster, tmp_path: Path) -> None:
    _, error = _kill_worker_under_a_lone_task(cluster, tmp_path, retries=0)
    assert isinstance(error, procesos.WorkerCrashedError)
    assert "hold_until_released" in str(error)


def test_a_lone_tasks_future_settles_for_every_way_of_waiting(
        make_executor: Callable[..., Any]) -> None:
    ex = make_executor()
    called = threading.Event()
    future = ex.submit(square, 2)
    assert future.direct
    future.add_done_callback(lambda f: called.set())
    assert called.wait(30) and future.result() == 4
    future = ex.submit(square, 3)
    assert next(concurrent.futures.as_completed([future], timeout=30)).result() == 9
    future = ex.submit(fail_on, 2)
    assert isinstance(future.exception(timeout=30), ValueError)
    future = ex.submit(square, 5)
    ex.shutdown(wait=True)  # nobody reads it: shutdown waits for it all the same
    assert future.done() and future.result() == 25


def test_with_a_progress_bar_a_lone_task_is_settled_when_it_ends(
        make_executor: Callable[..., Any]) -> None:
    ex = make_executor(progress=True)
    future = ex.submit(square, 2)
    assert not future.direct  # the collector settles it, and the bar counts it then
    assert future.result(timeout=30) == 4


def test_a_lone_tasks_result_after_done_or_a_timeout(make_executor: Callable[..., Any],
                                                     tmp_path: Path) -> None:
    ex = make_executor()
    future = _hold(ex, tmp_path)
    with pytest.raises(TimeoutError):
        future.result(timeout=0.1)
    assert future.direct  # nothing else waits yet: result() may still fetch it
    assert not future.done()
    assert not future.direct  # done() handed it to the collector
    (tmp_path / "released").touch()
    assert future.result(timeout=30) == (0, int((tmp_path / "started").read_text()))


def test_cancelling_a_lone_task_wakes_a_caller_waiting_in_result(
        make_executor: Callable[..., Any], tmp_path: Path) -> None:
    ex = make_executor()
    future = _hold(ex, tmp_path)
    reading = threading.Event()
    read_direct = ex._read_direct

    def read_and_tell(*args: Any) -> Any:
        reading.set()
        return read_direct(*args)

    ex._read_direct = read_and_tell
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            future.result(timeout=60)
        except BaseException as exc:
            raised.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    try:
        assert reading.wait(30)
        assert future.cancel()
        waiter.join(30)
        assert not waiter.is_alive()
        assert len(raised) == 1 and isinstance(raised[0], concurrent.futures.CancelledError)
    finally:
        (tmp_path / "released").touch()  # the task goes on in the worker until then
    assert ex.submit(square, 4).result(timeout=30) == 16


@pytest.mark.timeout(30)  # the bound: connect_timeout=2 must not hang the caller
def test_unreachable_scheduler_raises_a_connection_error_in_bounded_time() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(procesos.ClusterConnectionError, match=address) as info:
        procesos.Executor(backend="dask", address=address, connect_timeout=2)
    assert isinstance(info.value, ConnectionError)


def test_closing_never_stops_the_cluster_it_connected_to(cluster: Cluster) -> None:
    with procesos.Executor(backend="dask", address=cluster.address) as ex:
        assert ex.submit(square, 2).result(timeout=30) == 4
    assert cluster.scheduler.poll() is None
    assert all(worker.poll() is None for worker in cluster.workers)
    assert cluster.client.submit(square, 3).result(timeout=30) == 9


@pytest.mark.timeout(180)
def test_without_an_address_starts_a_local_cluster_and_stops_it() -> None:
    with procesos.Executor(2, backend="dask") as ex:
        assert ex.max_workers == 2
        assert list(ex.map(square, range(20))) == [i * i for i in range(20)]
        worker_pids = set(ex.client.run(os.getpid).values())
        started = ex._cluster.processes[:]
        assert len(worker_pids) == 2
    assert all(p.poll() is not None for p in started)
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(pid) for pid in worker_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(psutil.pid_exists(pid) for pid in worker_pids)


@pytest.mark.timeout(180)
def test_the_local_cluster_admits_no_client_without_its_certificate() -> None:
    # Any local user can reach 127.0.0.1, and a scheduler runs the pickles a
    # client sends: only a client with this cluster's certificate gets in.
    with procesos.Executor(1, backend="dask") as ex:
        address = ex.client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        key = os.path.join(ex._cluster.directory, "key.pem")
        assert os.stat(ex._cluster.directory).st_mode & 0o077 == 0
        assert os.stat(key).st_mode & 0o077 == 0
        from distributed.security import Security

        # A certificate of its own (another authority), or none at all.
        for stranger, security in ((address, Security.temporary()),
                                   (address.replace("tls://", "tcp://"), None)):
            with pytest.raises((OSError, TimeoutError)):
                distributed.Client(stranger, security=security, timeout=3, set_as_default=False)
        assert ex.submit(square, 4).result() == 16


def _listening_ports(pids: list[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket that these processes or theirs listen on."""
    procs = [psutil.Process(pid) for pid in pids]
    procs += [child for proc in list(procs) for child in proc.children(recursive=True)]
    return sorted({(c.laddr.ip, c.laddr.port) for proc in procs
                   for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN})


def _http_status(port: int, path: str) -> int | None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None  # not HTTP: a TLS port drops a plain request
    finally:
        connection.close()


@pytest.mark.timeout(180)
def test_the_local_cluster_keeps_its_scratch_space_private_and_serves_no_web_page() -> None:
    # Dask's defaults: scratch space in a fixed /tmp name that Dask adopts,
    # whoever made it, and puts on sys.path (another user's code ran as this
    # one); and an HTTP server on 0.0.0.0 showing tasks, call stacks and logs
    # to anyone, although the dashboard is off.
    with procesos.Executor(1, backend="dask") as ex:
        private = ex._cluster.directory + os.sep
        workers = ex.client.scheduler_info()["workers"].values()
        assert workers and all(w["local_directory"].startswith(private) for w in workers)
        paths = [*ex.client.run_on_scheduler(lambda: list(sys.path)),
                 *(p for ps in ex.client.run(lambda: list(sys.path)).values() for p in ps)]
        assert not [p for p in paths if "dask-scratch-space" in p and not p.startswith(private)]
        ports = _listening_ports([p.pid for p in ex._cluster.processes])
        assert ports and all(address == "127.0.0.1" for address, _ in ports), ports
        for _, port in ports:
            for path in ("/health", "/json/identity.json", "/info/main/workers.html"):
                assert _http_status(port, path) in (None, 404), (port, path)
        assert ex.submit(square, 5).result() == 25


@pytest.mark.timeout(240)
def test_on_the_local_cluster_a_crash_fails_only_its_task_quietly(tmp_path: Path) -> None:
    # Tasks queued on a worker used to die with it (KilledWorker), and
    # distributed printed "Couldn't gather ... rescheduling" for results lost
    # with it; the culprit alone fails now, and nothing is printed.
    done = run_script(textwrap.dedent("""
        import os, time
        import procesos

        def task(x):
            if x == -1:
                time.sleep(0.2)
                os._exit(1)
            return x

        with procesos.Executor(2, backend="dask") as ex:
            for _ in range(4):
                futures = [ex.submit(task, x) for x in [*range(40), -1, *range(40)]]
                failed = [i for i, f in enumerate(futures) if f.exception() is not None]
                print(failed)
    """), tmp_path, timeout=200)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:4] == ["[40]"] * 4, done.stdout
    assert "Couldn't gather" not in done.stderr, done.stderr


def test_unknown_backend_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"'spark'.*'local', 'dask', 'ray'"):
        procesos.Executor(backend="spark")


def test_address_without_a_cluster_backend_is_an_error() -> None:
    with pytest.raises(ValueError, match="backend='dask' or 'ray'"):
        procesos.Executor(1, address="tcp://127.0.0.1:1")


def test_missing_package_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'procesos\[dask\]'"):
        procesos.Executor(backend="dask")


@pytest.mark.parametrize("bad", [0, -1.5])
def test_connect_timeout_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="connect_timeout must be positive"):
        procesos.Executor(backend="dask", address="tcp://127.0.0.1:9", connect_timeout=bad)
