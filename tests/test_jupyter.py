"""procesos inside a real Jupyter (IPython) kernel: what a notebook user sees.

The kernel runs in its own process, started by ``jupyter_client`` as a
notebook server does; each test sends a cell and reads what the kernel
publishes for it (stream messages, errors) until the kernel is idle again.
"""

from __future__ import annotations

import os
import queue
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import FIXTURE_CHILDREN

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

pytestmark = pytest.mark.timeout(120)


@dataclass
class Cell:
    """What the kernel published while it ran one cell."""

    stdout: str = ""
    stderr: str = ""
    errors: list[str] = field(default_factory=list)
    stdout_messages: list[str] = field(default_factory=list)


class Kernel:
    """A running kernel and its client."""

    def __init__(self) -> None:
        self.manager, self.client = jupyter_client.manager.start_new_kernel(
            kernel_name="python3", startup_timeout=60)
        self.pid: int = self.manager.provisioner.process.pid

    def run(self, code: str, *, interrupt_when: Any = None, timeout: float = 60) -> Cell:
        """Run *code* as a cell; with *interrupt_when* (a callable), interrupt the
        kernel (the notebook's stop button) once it returns."""
        msg_id = self.client.execute(code)
        if interrupt_when is not None:
            interrupt_when()
            self.manager.interrupt_kernel()
        cell = Cell()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the cell did not finish: {code!r}, so far {cell}"
            try:
                message = self.client.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                continue
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream" and content["name"] == "stdout":
                cell.stdout += content["text"]
                cell.stdout_messages.append(content["text"])
            elif kind == "stream":
                cell.stderr += content["text"]
            elif kind == "error":
                cell.errors.append(f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                return cell

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=False)


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    k = Kernel()
    FIXTURE_CHILDREN.add(k.pid)
    descendants: list[psutil.Process] = []
    try:
        yield k
        descendants = psutil.Process(k.pid).children(recursive=True)
    finally:
        k.close()
        FIXTURE_CHILDREN.discard(k.pid)
    # The kernel's end ends what procesos started in it.
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert not alive, alive


def test_lines_of_several_children_arrive_whole_in_the_cell(kernel: Kernel) -> None:
    cell = kernel.run(
        "import procesos as mp\n"
        "def talk(n):\n"
        "    for i in range(200):\n"
        "        print(f'child {n} line {i:03d} ' + 'x' * 80)\n"
        "ps = [mp.Process(target=talk, args=(n,)) for n in range(4)]\n"
        "for p in ps: p.start()\n"
        "for p in ps: p.join()\n"
        "print('exit codes', [p.exitcode for p in ps])\n")
    assert not cell.errors
    lines = cell.stdout.splitlines()
    assert lines[-1] == "exit codes [0, 0, 0, 0]"
    pattern = re.compile(r"child [0-3] line \d{3} x{80}")
    assert all(pattern.fullmatch(line) for line in lines[:-1]), lines
    assert sorted(lines[:-1]) == sorted(f"child {n} line {i:03d} " + "x" * 80
                                        for n in range(4) for i in range(200))
    # Every message the notebook got holds whole lines.
    assert all(text.endswith("\n") for text in cell.stdout_messages)


def test_the_parents_lines_stay_whole_while_children_print(kernel: Kernel) -> None:
    # The kernel's stream is Python code: without taking turns with print(),
    # a child's line landed between the pieces of the parent's (2 or 3 lines
    # in 3,000, every run).
    cell = kernel.run(
        "import procesos as mp\n"
        "def talk(n):\n"
        "    for i in range(400):\n"
        "        print(f'child {n} line {i:03d}')\n"
        "ps = [mp.Process(target=talk, args=(n,)) for n in range(3)]\n"
        "for p in ps: p.start()\n"
        "i = 0\n"
        "while i < 3000 or any(p.is_alive() for p in ps):\n"
        "    print('parent', 'line', i)\n"
        "    i += 1\n"
        "for p in ps: p.join()\n")
    assert not cell.errors
    lines = cell.stdout.splitlines()
    whole = re.compile(r"child [0-2] line \d{3}|parent line \d+")
    torn = [line for line in lines if not whole.fullmatch(line)]
    assert not torn, torn[:4]
    assert sum(line.startswith("child") for line in lines) == 1200


def test_a_child_error_shows_its_traceback_in_the_cell(kernel: Kernel) -> None:
    cell = kernel.run(
        "import procesos as mp\n"
        "def fails():\n"
        "    raise ValueError('from the child')\n"
        "p = mp.Process(target=fails); p.start(); p.join()\n"
        "print(p.exitcode)\n"
        "try:\n"
        "    p.result()\n"
        "except ValueError as e:\n"
        "    print('caught', e)\n")
    assert not cell.errors
    assert cell.stdout.splitlines() == ["1", "caught from the child"]
    assert "ValueError: from the child" in cell.stderr
    assert "in fails" in cell.stderr


def test_functions_and_lambdas_of_the_notebook_run_in_workers(kernel: Kernel) -> None:
    cell = kernel.run(
        "import procesos as mp\n"
        "k = 3\n"
        "def times_k(x):\n"
        "    return x * k\n"
        "with mp.Executor(2) as ex:\n"
        "    print(list(ex.map(times_k, range(5))), ex.submit(lambda: k + 1).result())\n"
        "with mp.Pool(2) as pool:\n"
        "    print(pool.map(lambda x: -x, range(3)))\n")
    assert not cell.errors
    assert cell.stdout.splitlines() == ["[0, 3, 6, 9, 12] 4", "[0, -1, -2]"]


def test_interrupting_a_cell_stops_its_map_and_the_executor_goes_on(
        kernel: Kernel, tmp_path: Path) -> None:
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDWR)  # never blocks, and never sees end-of-file
    try:
        cell = kernel.run(
            "import os, threading, procesos as mp\n"
            "ex = mp.Executor(2)\n"
            "def block(x):\n"
            f"    fd = os.open({str(fifo)!r}, os.O_WRONLY)\n"
            "    os.write(fd, f'{os.getpid()}\\n'.encode()); os.close(fd)\n"
            "    threading.Event().wait()\n"
            "list(ex.map(block, range(6)))\n",
            interrupt_when=lambda: _read_lines(reader, 2))
    finally:
        os.close(reader)
    assert cell.errors == ["KeyboardInterrupt: "]
    # The next cell gets the same executor's answer at once: the blocked tasks
    # were stopped (the standard library's executor would still be running them).
    # (The kernel's interrupt goes to its whole process group: a worker may die of
    # that SIGINT before the kernel stops it, and count as a crash; either way
    # the blocked tasks are gone.)
    cell = kernel.run("print(ex.submit(lambda: 'still here').result(timeout=30))\n"
                      "ex.shutdown()\n")
    assert not cell.errors
    assert cell.stdout.splitlines() == ["still here"]


def _read_lines(fd: int, count: int) -> list[str]:
    received = b""
    while received.count(b"\n") < count:
        received += os.read(fd, 64)
    return received.decode().split()
