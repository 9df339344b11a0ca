"""``Executor(backend="ray")`` against a real local Ray instance (``ray.init(num_cpus=2)``).

Ray is heavy for every CI run (a local instance is a dozen processes and a
minute and more of tests on a small machine): it is not in the ``dev``
extra, and this module runs only under ``make test-ray``, which installs Ray
and sets ``PROCESOS_TEST_RAY=1``; it is skipped where Ray is not installed.
The module starts one Ray instance; executors created while this process is
connected to Ray use that connection and leave it open.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import procesos
from cluster_behaviour import ClusterExecutorBehaviour
from cluster_tasks import hold_until_released, square
from conftest import FIXTURE_CHILDREN, ROOT, run_script

if os.environ.get("PROCESOS_TEST_RAY") != "1":
    pytest.skip("the Ray backend's tests run with make test-ray (PROCESOS_TEST_RAY=1)",
                allow_module_level=True)
ray = pytest.importorskip("ray")

pytestmark = pytest.mark.timeout(180)

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    me = psutil.Process()
    before = {p.pid for p in me.children()}
    path = os.pathsep.join([str(TESTS), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    started = [p for p in me.children() if p.pid not in before]
    descendants = [d for p in started for d in p.children(recursive=True)]
    FIXTURE_CHILDREN.update(p.pid for p in started)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        _, alive = psutil.wait_procs(started + descendants, timeout=30)
        FIXTURE_CHILDREN.difference_update(p.pid for p in started)
        for process in alive:
            process.kill()
        assert not alive, f"Ray left processes behind: {alive}"


@pytest.fixture
def make_executor(ray_address: str) -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(**options: Any) -> Any:
        ex = procesos.Executor(backend="ray", **options)
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.shutdown(wait=True)
    assert ray.is_initialized()  # the module's connection stays


class TestRayExecutor(ClusterExecutorBehaviour):
    """The shared specification, on the module's Ray instance."""

    @pytest.fixture(autouse=True)
    def _prelude(self, ray_address: str) -> None:
        self.script_prelude = f"OPTIONS = dict(backend='ray', address={ray_address!r})\n"


def _wait_for_file(path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} did not appear within {timeout} s"
        time.sleep(0.02)
    return path.read_text()


def _kill_worker_mid_map(tmp_path: Path, retries: int) -> list[Any]:
    with procesos.Executor(backend="ray", retries=retries) as ex:
        results = ex.map(hold_until_released, range(6), [str(tmp_path)] * 6, [3] * 6,
                         return_exceptions=True)
        pid = int(_wait_for_file(tmp_path / "started", 60))
        assert pid != os.getpid() and "ray" in " ".join(psutil.Process(pid).cmdline()).lower()
        (tmp_path / "killed").touch()
        os.kill(pid, signal.SIGKILL)
        return [pid, *results]


def test_worker_killed_mid_map_its_task_runs_again_with_retries(
        ray_address: str, tmp_path: Path) -> None:
    killed, *results = _kill_worker_mid_map(tmp_path, retries=1)
    assert [item for item, _ in results] == list(range(6))
    assert results[3][1] != killed


def test_worker_killed_mid_map_fails_only_its_task_with_worker_crashed_error(
        ray_address: str, tmp_path: Path) -> None:
    _, *results = _kill_worker_mid_map(tmp_path, retries=0)
    error = results[3]
    assert isinstance(error, procesos.WorkerCrashedError)
    assert "ray worker" in str(error) and "hold_until_released" in str(error)
    assert [item for item, _ in results[:3] + results[4:]] == [0, 1, 2, 4, 5]


def test_unreachable_cluster_raises_a_connection_error_in_bounded_time(
        tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_script(
        "import time, procesos\n"
        "started = time.monotonic()\n"
        "try:\n"
        f"    procesos.Executor(backend='ray', address='127.0.0.1:{port}', connect_timeout=3)\n"
        "except procesos.ClusterConnectionError as exc:\n"
        "    print(type(exc).__name__, isinstance(exc, ConnectionError),"
        " time.monotonic() - started < 20)\n",
        tmp_path, timeout=120)
    assert result.stdout.splitlines()[:1] == ["ClusterConnectionError True True"], result.stderr


def test_a_second_executor_shares_the_connection(ray_address: str) -> None:
    with procesos.Executor(backend="ray") as ex:
        assert ex.submit(square, 3).result(timeout=60) == 9
    assert ray.is_initialized()
