"""A zygote child reports its exit code as its last act: ``join()`` does not wait
for the kernel to tear the process down, and sees what it would have seen."""

from __future__ import annotations

import os
import socket
import sys
import time

import pytest

import procesos
from procesos._launch._wire import exit_report, read_exit_report


def test_an_exit_report_is_never_taken_for_an_outcome() -> None:
    assert read_exit_report(exit_report(3)) == 3
    assert read_exit_report(exit_report(-9)) == -9
    assert read_exit_report(b"\x80\x05X\x00\x00\x00\x00") is None  # a pickle


def _exit_with(code: object) -> None:
    sys.exit(code)


@pytest.mark.parametrize("code", [0, 3, 255, 256, -1, "message"])
def test_the_exit_code_is_the_one_the_kernel_keeps(code: object) -> None:
    # What the standard library's fork reports after waitpid().
    expected = {0: 0, 3: 3, 255: 255, 256: 0, -1: 255, "message": 1}[code]  # type: ignore[index]
    p = procesos.get_context("zygote").Process(target=_exit_with, args=(code,), output="inherit")
    p.start()
    p.join(timeout=60)
    assert p.exitcode == expected


def _listen(ready: object) -> int:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    _listen.keep = server  # type: ignore[attr-defined]  # open until the process exits
    return int(server.getsockname()[1])


def test_what_the_child_held_open_is_closed_when_join_returns() -> None:
    p = procesos.get_context("zygote").Process(target=_listen, args=(None,))
    p.start()
    port = p.result(timeout=60)
    p.join(timeout=60)
    assert p.exitcode == 0
    again = socket.socket()
    try:
        again.bind(("127.0.0.1", port))  # EADDRINUSE while the child's socket is open
    finally:
        again.close()


def _fork_then_exit(path: str) -> None:
    if os.fork() == 0:
        return  # the grandchild ends through the child's own way out, at once
    # The child itself ends later, with its own code, once the grandchild has gone.
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    sys.exit(5)


def test_a_fork_that_the_target_made_does_not_report_for_the_process(tmp_path: object) -> None:
    p = procesos.get_context("zygote").Process(
        target=_fork_then_exit, args=(os.path.join(str(tmp_path), "never"),), output="inherit")
    p.start()
    p.join(timeout=60)
    assert p.exitcode == 5
