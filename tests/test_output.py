"""Child output: relayed line by line, never torn, prefixed, captured or inherited."""

from __future__ import annotations

import contextlib
import io
import multiprocessing.connection
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import procesos
from conftest import ROOT, START_METHODS, run_script

JOIN_TIMEOUT = 60


def join_bounded(p: Any, timeout: float = JOIN_TIMEOUT) -> None:
    p.join(timeout)
    assert p.exitcode is not None, f"{p.name} did not end within {timeout} s"


def run_in(ctx: procesos.ProcesosContext, target: Any, *args: Any, **options: Any) -> Any:
    p = ctx.Process(target=target, args=args, **options)
    p.start()
    join_bounded(p)
    return p


class LineCollector:
    """A parent stream that is no file descriptor (like Jupyter's): it records every write."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.line_arrived = threading.Event()

    def write(self, text: str) -> int:
        self.writes.append(text)
        if "\n" in text:
            self.line_arrived.set()
        return len(text)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return "".join(self.writes)


# -- children's targets --------------------------------------------------------

def write_lines_in_pieces(tag: str, count: int) -> None:
    """Thousands of lines, each in three unbuffered writes: a torn line is likely if relayed raw."""
    for n in range(count):
        os.write(1, f"{tag} {n:06d} ".encode())
        os.write(1, b"x" * 40)
        os.write(1, f" end-{tag}\n".encode())


def write_both_streams() -> None:
    print("to stdout 1")
    print("to stderr 1", file=sys.stderr)
    print("to stdout 2")
    print("to stderr 2", file=sys.stderr)


def write_bytes(data: bytes) -> None:
    os.write(1, data)


def write_megabytes(megabytes: int) -> None:
    block = (b"y" * 99 + b"\n") * 10_486  # about 1 MiB of 100-byte lines
    for _ in range(megabytes):
        os.write(1, block)


def write_half_a_line_then_die() -> None:
    os.write(1, b"first line\nhalf a li")
    os.kill(os.getpid(), signal.SIGKILL)


def print_then_wait(go: Any) -> None:
    print("ready")
    if not go.wait(JOIN_TIMEOUT):
        raise TimeoutError("the parent never saw the line")
    print("done")


def leave_a_grandchild_holding_the_pipes() -> int:
    grandchild = subprocess.Popen(["sleep", "60"])  # inherits descriptors 1 and 2
    print("child done")
    return grandchild.pid


def print_lines(*lines: str) -> None:
    for line in lines:
        print(line)


# -- the tests -----------------------------------------------------------------

def test_two_children_writing_lines_in_pieces_never_tear_a_line(
    ctx: procesos.ProcesosContext,
) -> None:
    count = 3000
    sink = LineCollector()
    with contextlib.redirect_stdout(sink):  # type: ignore[type-var]
        children = [ctx.Process(target=write_lines_in_pieces, args=(tag, count))
                    for tag in ("A", "B")]
        for p in children:
            p.start()
        for p in children:
            join_bounded(p)
    lines = sink.text().splitlines()
    whole = re.compile(r"^([AB]) (\d{6}) x{40} end-\1$")
    torn = [line for line in lines if not whole.match(line)]
    assert not torn, f"{len(torn)} torn lines, e.g. {torn[:3]}"
    for tag in ("A", "B"):
        numbers = [int(line[2:8]) for line in lines if line.startswith(tag)]
        assert numbers == list(range(count))  # all of them, in order


def test_the_lesson_prints_whole_lines_even_unbuffered(tmp_path: Path) -> None:
    expected = (
        {"Calcula el cuadrado de los números", "Calcula el cubo de los números"}
        | {f"cuadrado: {n * n}" for n in range(5)}
        | {f"cubo: {n ** 3}" for n in range(5)}
        | {"Termina la ejecución númerica"}
    )
    for method in START_METHODS:
        # Unbuffered, print() writes "cuadrado:", " ", "4" and "\n" separately:
        # raw descriptors would let the two children tear each other's lines.
        env = dict(os.environ, PROCESOS_START_METHOD=method, PYTHONUNBUFFERED="1")
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "seed" / "ej3_concurrente.py")],
            capture_output=True, text=True, env=env, timeout=JOIN_TIMEOUT,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert set(lines) == expected, (method, lines)
        assert len(lines) == len(expected)


class YieldingCollector(LineCollector):
    """Like Jupyter's stream, Python code that lets other threads run inside
    ``write``: between two pieces of one ``print()`` too."""

    def __init__(self) -> None:
        super().__init__()
        self.done: set[str] = set()

    def write(self, text: str) -> int:
        time.sleep(0)  # gives up the GIL: the relay thread may run now
        self.done.update(tag for tag in ("A", "B") if f"{tag} done" in text)
        return super().write(text)


def print_numbered_lines(tag: str, count: int) -> None:
    for n in range(count):
        print(tag, "line", n)
    print(tag, "done")


def test_a_childs_line_never_lands_inside_a_print_of_the_parent(
    ctx: procesos.ProcesosContext,
) -> None:
    sink = YieldingCollector()
    with contextlib.redirect_stdout(sink):  # type: ignore[type-var]
        children = [ctx.Process(target=print_numbered_lines, args=(tag, 300))
                    for tag in ("A", "B")]
        for p in children:
            p.start()
        n = 0
        # The parent prints in pieces ("parent", " ", "line", " ", n, "\n") for
        # as long as the children's lines are still coming in.
        while len(sink.done) < 2 or n < 300:
            print("parent", "line", n)
            n += 1
        for p in children:
            join_bounded(p)
    lines = sink.text().splitlines()
    whole = re.compile(r"(parent|A|B) line \d+|[AB] done")
    torn = [line for line in lines if not whole.fullmatch(line)]
    assert not torn, f"{len(torn)} torn lines, e.g. {torn[:4]}"
    assert [line for line in lines if line.startswith("parent")] == [
        f"parent line {i}" for i in range(n)]
    for tag in ("A", "B"):
        assert [line for line in lines if line.startswith(tag)] == [
            *(f"{tag} line {i}" for i in range(300)), f"{tag} done"]


class GatedStream(LineCollector):
    """A parent stream whose ``write`` of ``"BLOCK\\n"`` blocks until released
    (a write to a full pipe)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        if text == "BLOCK\n":
            self.blocked.set()
            if not self.release.wait(JOIN_TIMEOUT):
                raise TimeoutError("never released")
        return super().write(text)


def test_a_write_of_the_parents_that_blocks_never_holds_up_the_children(
    ctx: procesos.ProcesosContext,
) -> None:
    sink = GatedStream()
    go = ctx.Event()
    with contextlib.redirect_stdout(sink):  # type: ignore[type-var]
        # While this child runs, the relay takes turns on sink with the parent.
        waiting = ctx.Process(target=print_then_wait, args=(go,))
        waiting.start()
        assert sink.line_arrived.wait(JOIN_TIMEOUT)
        writer = threading.Thread(target=sys.stdout.write, args=("BLOCK\n",))
        writer.start()
        try:
            assert sink.blocked.wait(JOIN_TIMEOUT)
            # That write holds the parent's turn; the relay's wait for it is bounded.
            run_in(ctx, print_lines, "from the child")
            assert "from the child\n" in sink.text()  # join() means delivered
        finally:
            sink.release.set()
            writer.join(JOIN_TIMEOUT)
            go.set()
            join_bounded(waiting)
    assert not writer.is_alive()
    assert sink.text() == "ready\nfrom the child\nBLOCK\ndone\n"
    assert "write" not in vars(sink)  # no child relays to it: its own write() again


def test_a_line_the_parent_leaves_open_is_followed_by_the_childs(
    ctx: procesos.ProcesosContext,
) -> None:
    sink = LineCollector()
    with contextlib.redirect_stdout(sink):  # type: ignore[type-var]
        print("working... ", end="")  # a prompt, a progress bar: open on purpose
        run_in(ctx, print_lines, "child line 1", "child line 2")
        print("done")
    assert sink.text() == "working... child line 1\nchild line 2\ndone\n"


def test_a_forked_child_prints_though_a_parent_thread_was_inside_a_write(
    tmp_path: Path,
) -> None:
    done = run_script(textwrap.dedent("""
        import os, sys, threading, time
        import procesos

        class Gate:
            def __init__(self):
                self.blocked, self.release = threading.Event(), threading.Event()
            def write(self, text):
                if text == "BLOCK\\n":
                    self.blocked.set()
                    self.release.wait(60)
                return os.write(1, text.encode())
            def flush(self):
                pass

        def wait_for(go):
            print("relayed")
            go.wait(60)

        gate = sys.stdout = Gate()
        go = procesos.Event()
        p = procesos.Process(target=wait_for, args=(go,))
        p.start()
        assert "write" in vars(gate)  # the relay takes turns on it while p runs
        writer = threading.Thread(target=gate.write, args=("BLOCK\\n",))
        writer.start()
        assert gate.blocked.wait(60)
        # Forked while another thread is inside a write, holding its turn:
        # the child's own print() must not wait for a thread that did not come along.
        pid = os.fork()
        if pid == 0:
            print("from the fork child", "write" in vars(gate))
            os._exit(0)
        deadline = time.monotonic() + 30
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, 9); os.waitpid(pid, 0)
                raise SystemExit("the fork child hung in print()")
            time.sleep(0.01)
        gate.release.set(); writer.join(60)
        go.set(); p.join(60)
        print("after join", "write" in vars(gate))
    """), tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == sorted(
        ["relayed", "from the fork child False", "BLOCK", "after join False"])


def test_a_stringio_parent_receives_the_lines(ctx: procesos.ProcesosContext) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        p = ctx.Process(target=write_both_streams)
        p.start()
    join_bounded(p)  # outside the with block: the streams at start() count
    assert out.getvalue() == "to stdout 1\nto stdout 2\n"
    assert err.getvalue() == "to stderr 1\nto stderr 2\n"


def test_a_parent_without_stdout_drops_the_output(ctx: procesos.ProcesosContext) -> None:
    with contextlib.redirect_stdout(None):
        p = run_in(ctx, write_megabytes, 1)  # more than a pipe holds: it must be read
    assert p.exitcode == 0


def test_capture_keeps_stdout_and_stderr_apart(ctx: procesos.ProcesosContext) -> None:
    p = run_in(ctx, write_both_streams, output="capture")
    assert p.stdout == "to stdout 1\nto stdout 2\n"
    assert p.stderr == "to stderr 1\nto stderr 2\n"
    p.close()
    assert p.stdout == "to stdout 1\nto stdout 2\n"  # kept after close()


def test_capture_prints_nothing(ctx: procesos.ProcesosContext) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        p = run_in(ctx, print, "quiet", output="capture")
    assert out.getvalue() == ""
    assert p.stdout == "quiet\n"


def test_only_capture_fills_stdout_and_stderr(ctx: procesos.ProcesosContext) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        p = run_in(ctx, print, "x", output="relay")
    assert p.stdout is None and p.stderr is None


def test_prefix_puts_the_process_name_before_every_line(ctx: procesos.ProcesosContext) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_in(ctx, write_bytes, b"one\ntwo\n\nlast without newline", name="p1",
               output="prefix")
    assert out.getvalue() == "[p1] one\n[p1] two\n[p1] \n[p1] last without newline"


def redraw_twice(shown: Any) -> None:
    """A progress bar's way: a carriage return and the line, then the next state."""
    sys.stdout.write("\rstep 1")
    sys.stdout.flush()
    assert shown.wait(JOIN_TIMEOUT), "the parent never saw the first redraw"
    sys.stdout.write("\rstep 2\n")


class RedrawCollector(LineCollector):
    def __init__(self) -> None:
        super().__init__()
        self.first_redraw = threading.Event()

    def write(self, text: str) -> int:
        if "step 1" in text:
            self.first_redraw.set()
        return super().write(text)


def test_a_redrawn_line_reaches_the_parent_before_its_newline(
        ctx: procesos.ProcesosContext) -> None:
    # tqdm in a child: each update is "\r" and the bar, the newline comes at the
    # end. Held back until then, the bar would stand still; the child waits
    # until the parent has seen its first state.
    shown = ctx.Event()
    collector = RedrawCollector()
    with contextlib.redirect_stdout(collector):  # type: ignore[type-var]
        p = ctx.Process(target=redraw_twice, args=(shown,))
        p.start()
    assert collector.first_redraw.wait(JOIN_TIMEOUT)
    shown.set()
    join_bounded(p)
    assert p.exitcode == 0
    assert collector.text() == "\rstep 1\rstep 2\n"


def test_prefix_begins_every_redraw_but_not_the_newline_after_a_carriage_return(
        ctx: procesos.ProcesosContext) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_in(ctx, write_bytes, b"\rbar 1\rbar 2\nwindows\r\n10%\r20%\r\n", name="p1",
               output="prefix")
    assert out.getvalue() == "\r[p1] bar 1\r[p1] bar 2\n[p1] windows\r\n[p1] 10%\r[p1] 20%\r\n"


def test_a_partial_last_line_is_delivered_at_exit(ctx: procesos.ProcesosContext) -> None:
    p = run_in(ctx, write_bytes, b"complete\nno newline at the end", output="capture")
    assert p.stdout == "complete\nno newline at the end"


def print_to_both_then_write_a_pipeful(size: int) -> None:
    print("printed, left in the stream's buffer")
    print("to stderr, no newline", end="", file=sys.stderr)
    os.write(1, b"z" * size)  # the last act: the relay has no time to read it before the end


def test_what_a_child_writes_as_it_ends_is_all_there_after_join(
        ctx: procesos.ProcesosContext) -> None:
    # A zygote child keeps its descriptors 1 and 2 open until it has exited,
    # after its exit report: join() must take what the pipes hold at the report,
    # without waiting for their end of file.
    size = 60_000  # under a pipe's 64 KiB: nothing blocks the child
    for _ in range(5):
        p = run_in(ctx, print_to_both_then_write_a_pipeful, size, output="capture")
        assert p.exitcode == 0
        assert p.stdout == "printed, left in the stream's buffer\n" + "z" * size
        assert p.stderr == "to stderr, no newline"


def test_invalid_utf8_and_binary_output_do_not_crash(ctx: procesos.ProcesosContext) -> None:
    data = b"caf\xc3\xa9 ok\nbad \xff\xfe bytes\n\x00\x01\x80binary"
    p = run_in(ctx, write_bytes, data, output="capture")
    assert p.exitcode == 0
    assert p.stdout == "café ok\nbad \\xff\\xfe bytes\n\x00\x01\\x80binary"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_in(ctx, write_bytes, data)
    assert out.getvalue() == p.stdout


def test_a_child_killed_mid_line_delivers_the_half_line(ctx: procesos.ProcesosContext) -> None:
    p = run_in(ctx, write_half_a_line_then_die, output="capture")
    assert p.exitcode == -signal.SIGKILL
    assert p.stdout == "first line\nhalf a li"


def test_print_in_a_child_arrives_as_soon_as_the_line_ends(
    ctx: procesos.ProcesosContext,
) -> None:
    sink = LineCollector()
    go = ctx.Event()
    with contextlib.redirect_stdout(sink):  # type: ignore[type-var]
        p = ctx.Process(target=print_then_wait, args=(go,))
        p.start()
    try:
        assert sink.line_arrived.wait(JOIN_TIMEOUT), "the child's line did not arrive"
        assert sink.text() == "ready\n"
    finally:
        go.set()
        join_bounded(p)
    assert p.exitcode == 0
    assert sink.text() == "ready\ndone\n"


@pytest.mark.parametrize("method", START_METHODS)
def test_a_buffered_child_print_arrives_as_soon_as_the_line_ends(
    method: str, tmp_path: Path,
) -> None:
    script = """
import contextlib, sys, threading
import procesos as mp

class Lines:
    def __init__(self):
        self.text, self.arrived = "", threading.Event()
    def write(self, text):
        self.text += text
        self.arrived.set()
    def flush(self):
        pass

def child(go):
    print("ready")      # no flush: line buffering must send it now
    go.wait(60)
    print("done")

lines, go = Lines(), mp.Event()
with contextlib.redirect_stdout(lines):
    p = mp.Process(target=child, args=(go,))
    p.start()
arrived = lines.arrived.wait(60)
go.set()
p.join()
print(arrived, repr(lines.text), sys.stdout.line_buffering)
"""
    # Not a terminal and not unbuffered: Python would block-buffer the child's stdout.
    result = run_script(script, tmp_path, method=method, env={"PYTHONUNBUFFERED": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True 'ready\\ndone\\n' False\n"


@pytest.mark.parametrize("method", ["zygote", "spawn"])  # fork takes this lock itself
def test_a_child_started_and_joined_while_the_relay_is_busy_loses_nothing(method: str) -> None:
    # start() and join() add and finish a child's pipes themselves when the
    # relay thread is idle; while it is in a round (writing), they ask it.
    from procesos._output._relay import output_quiet, relay

    p = procesos.get_context(method).Process(target=print_lines, args=("one", "two"),
                                             output="capture")
    joiner = threading.Thread(target=p.join, args=(JOIN_TIMEOUT,))
    with output_quiet():  # held as the relay thread holds it in a round
        p.start()
        multiprocessing.connection.wait([p.sentinel], JOIN_TIMEOUT)
        joiner.start()
        deadline = time.monotonic() + JOIN_TIMEOUT
        while not any(kind == "finish" for kind, _ in list(relay()._requests)):
            assert time.monotonic() < deadline, "join() did not ask the relay"
            time.sleep(0.001)
    joiner.join(JOIN_TIMEOUT)
    assert p.exitcode == 0
    assert p.stdout == "one\ntwo\n"


def test_checking_a_childs_output_from_many_threads_at_once() -> None:
    # deliver_before() is asked by every thread that reads a pool worker's
    # answer; its poll object refused a second thread's poll() under way.
    from procesos._output._pipes import open_child_output

    output = open_child_output("capture", "p")
    assert output is not None
    errors: list[BaseException] = []

    def check() -> None:
        try:
            for _ in range(20_000):
                output.deliver_before(JOIN_TIMEOUT)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    output.abandon()
    assert errors == []


def test_a_round_skips_a_pipe_that_a_join_finished_since_its_select() -> None:
    import selectors

    from procesos._output._lines import LineSink
    from procesos._output._relay import output_quiet, relay

    run_in(procesos.get_context("zygote"), print_lines, "x")  # the relay thread runs
    loop = relay()._loop
    assert loop is not None
    closed = LineSink(None, -1, io.StringIO())
    with output_quiet():
        assert loop._round([(selectors.SelectorKey(-1, -1, selectors.EVENT_READ, closed),
                             selectors.EVENT_READ)]) is False
    assert relay().running()


def test_a_fork_child_does_not_keep_the_relays_epoll_or_wake_up_pipe(tmp_path: Path) -> None:
    done = run_script(textwrap.dedent("""
        import os
        import procesos
        from procesos._output._relay import relay

        def links():
            return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                    if os.path.exists(f"/proc/self/fd/{fd}")}

        p = procesos.Process(target=print, args=("relayed",))
        p.start(); p.join()
        loop = relay()._loop
        ours = {os.readlink(f"/proc/self/fd/{fd}")
                for fd in (loop.selector.fileno(), loop.wake_r, loop.wake_w)}
        child = procesos.get_context("fork").Process(target=links)
        child.start(); child.join()
        print(sorted(ours & child.result()), "eventpoll" in str(ours))
    """), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["relayed", "[] True"]


def test_a_grandchild_holding_the_pipes_does_not_hold_up_join(
    ctx: procesos.ProcesosContext,
) -> None:
    p = ctx.Process(target=leave_a_grandchild_holding_the_pipes, output="capture")
    p.start()
    try:
        join_bounded(p)
        assert p.stdout == "child done\n"
    finally:
        grandchild = p.result()
        os.kill(grandchild, signal.SIGKILL)


def test_100_mb_from_one_child_neither_deadlocks_nor_grows_the_parent() -> None:
    me = psutil.Process()

    class CountingStream:
        def __init__(self) -> None:
            self.lines = 0
            self.peak_rss = 0
            self.writes = 0

        def write(self, text: str) -> int:
            self.lines += text.count("\n")
            self.writes += 1
            if self.writes % 64 == 0:
                self.peak_rss = max(self.peak_rss, me.memory_info().rss)
            return len(text)

        def flush(self) -> None:
            pass

    sink = CountingStream()
    before = me.memory_info().rss
    with contextlib.redirect_stdout(sink):  # type: ignore[type-var]
        p = procesos.Process(target=write_megabytes, args=(100,))
        p.start()
        join_bounded(p, 120)
    assert p.exitcode == 0
    assert sink.lines == 100 * 10_486
    growth = max(sink.peak_rss, me.memory_info().rss) - before
    assert growth < 200 * 2**20, f"the parent grew by {growth / 2**20:.0f} MiB"


def test_a_line_longer_than_the_limit_arrives_in_full() -> None:
    from procesos._output._lines import MAX_PENDING

    line = b"z" * (3 * MAX_PENDING + 5) + b"\nnext\n"
    p = run_in(procesos.get_context(), write_bytes, line, output="capture")
    assert p.stdout == line.decode()


def test_unknown_modes_are_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"'loud'.*'relay', 'prefix', 'capture', 'inherit'"):
        procesos.Process(target=print, output="loud")
    with pytest.raises(ValueError, match=r"'loud'.*'relay'"):
        procesos.set_output("loud")


def test_set_output_changes_the_default() -> None:
    assert procesos.get_output() == "relay"
    procesos.set_output("capture")
    try:
        assert procesos.get_output() == "capture"
        p = run_in(procesos.get_context(), print, "kept")
        assert p.stdout == "kept\n"
    finally:
        procesos.set_output("relay")


def test_the_environment_variable_sets_the_default(tmp_path: Path) -> None:
    script = """
import procesos as mp
p = mp.Process(target=print, args=("hi",), name="env")
p.start()
p.join()
print(mp.get_output())
"""
    result = run_script(script, tmp_path, env={"PROCESOS_OUTPUT": "prefix"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[env] hi\nprefix\n"
    result = run_script(script, tmp_path, env={"PROCESOS_OUTPUT": "shout"})
    assert result.returncode != 0
    assert "'shout'" in result.stderr and "PROCESOS_OUTPUT" in result.stderr


@pytest.mark.parametrize("method", START_METHODS)
def test_inherit_writes_straight_to_the_parents_descriptors(method: str, tmp_path: Path) -> None:
    script = """
import contextlib, io, os
import procesos as mp
buffer = io.StringIO()
with contextlib.redirect_stdout(buffer):
    p = mp.Process(target=os.write, args=(1, b"raw to fd 1\\n"), output="inherit")
    p.start()
    p.join()
    q = mp.Process(target=os.write, args=(1, b"relayed\\n"))
    q.start()
    q.join()
print(repr(buffer.getvalue()))
"""
    result = run_script(script, tmp_path, method=method)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "raw to fd 1\n'relayed\\n'\n"


@pytest.mark.parametrize("method", START_METHODS)
def test_a_parent_with_descriptor_1_closed_still_captures(method: str, tmp_path: Path) -> None:
    script = """
import os, sys
os.close(1)     # descriptors made from now on may get number 1
import procesos as mp
p = mp.Process(target=print, args=("captured",), output="capture")
p.start()
p.join()
sys.stderr.write(repr((p.exitcode, p.stdout)))
"""
    result = run_script(script, tmp_path, method=method)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "(0, 'captured\\n')"


@pytest.mark.parametrize("method", START_METHODS)
def test_what_a_pools_initializer_prints_survives_a_kill_during_a_task(
        method: str, tmp_path: Path) -> None:
    # terminate() kills the workers that run tasks; stdout to a pipe is
    # block-buffered, so the initializer's line was still in the worker's buffer
    # unless the worker delivered it when the initializer returned.
    script = textwrap.dedent("""
        import threading
        import procesos as mp

        def init():
            print("init ran")

        def block(started):
            started.put(None)
            threading.Event().wait()  # until terminate() kills the worker

        started = mp.Manager().Queue()
        with mp.Pool(2, initializer=init) as pool:
            for _ in range(2):
                pool.apply_async(block, (started,))
            for _ in range(2):
                started.get(timeout=60)
        print("pool ended")
    """)
    result = run_script(script, tmp_path, method=method, env={"PYTHONUNBUFFERED": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("init ran\n") == 2, result.stdout
    assert result.stdout.endswith("pool ended\n"), result.stdout


def test_engine_workers_output_is_relayed(tmp_path: Path) -> None:
    script = """
import procesos as mp
with mp.Executor(max_workers=2) as ex:
    list(ex.map(print, ["from worker"] * 4))
with mp.Pool(2) as pool:
    pool.map(print, ["from pool"] * 3)
print("parent done")
"""
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(lines) == ["from pool"] * 3 + ["from worker"] * 4 + ["parent done"]
    assert lines[-1] == "parent done"


_PRINT_THEN_RESULT = """
import sys
import procesos as mp

def work(x):
    print(f"task {x}", flush=True)
    return x

def say(text):
    # One write: print() makes two, between which the relay's write of another
    # worker's line may land when a full buffer is flushed (as the standard
    # library's workers' writes may land between two flushes of the parent's).
    sys.stdout.write(text + "\\n")

max_tasks = int(sys.argv[1]) or None
with mp.Executor(2, max_tasks_per_worker=max_tasks) as ex:
    for x in range(30):
        say(f"result {ex.submit(work, x).result()}")
    for x in ex.map(work, range(30, 60), chunksize=1):
        say(f"result {x}")
with mp.Pool(2, maxtasksperchild=max_tasks) as pool:
    for x in pool.imap(work, range(60, 90)):
        say(f"result {x}")
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("max_tasks", [0, 1])  # 1: each task in a fork of its worker
def test_what_a_task_prints_comes_before_what_the_caller_prints_of_its_result(
        max_tasks: int, tmp_path: Path) -> None:
    # The worker prints, then sends its result; the lines and the result travel
    # different pipes, yet the caller's print of the result must come after
    # the task's line, as when the worker writes to the terminal itself.
    script = tmp_path / "script.py"
    script.write_text(_PRINT_THEN_RESULT)
    result = subprocess.run([sys.executable, str(script), str(max_tasks)], capture_output=True,
                            text=True, timeout=100, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(lines) == sorted([f"task {x}" for x in range(90)]
                                   + [f"result {x}" for x in range(90)])
    late = [x for x in range(90) if lines.index(f"task {x}") > lines.index(f"result {x}")]
    assert not late, f"these tasks' lines came after their results: {late}"


def test_a_child_of_a_child_is_relayed_through_both(ctx: procesos.ProcesosContext) -> None:
    def outer() -> None:
        inner = procesos.Process(target=print_lines, args=("from the grandchild",))
        inner.start()
        inner.join()
        print("from the child")

    p = run_in(ctx, outer, output="capture")
    assert p.stdout == "from the grandchild\nfrom the child\n"


def test_an_interrupted_child_still_delivers_its_lines(ctx: procesos.ProcesosContext) -> None:
    go = ctx.Event()
    sink = LineCollector()
    with contextlib.redirect_stdout(sink):  # type: ignore[type-var]
        p = ctx.Process(target=print_then_wait, args=(go,))
        p.start()
        assert sink.line_arrived.wait(JOIN_TIMEOUT)
        # A SIGINT that lands just before the child blocks in go.wait() is acted
        # on only when that wait returns (CPython's race, see test_process.py's
        # test_interrupt_while_the_target_runs): sent again until the child ends.
        deadline = time.monotonic() + JOIN_TIMEOUT
        while p.exitcode is None and time.monotonic() < deadline:
            p.interrupt()
            p.join(1)
        join_bounded(p)
    assert p.exitcode == -signal.SIGINT
    assert sink.text() == "ready\n"


def test_a_parent_that_dies_leaves_no_child_writing(tmp_path: Path) -> None:
    script = """
import os, sys, time
import procesos as mp

def chatter():
    while True:
        print("still here")

p = mp.Process(target=chatter)
p.start()
with open("pid", "w") as f:  # not stdout: the child's lines may come first (cwd: tmp_path)
    f.write(str(p.pid))
os._exit(0)  # no clean-up at all
"""
    pid_file = tmp_path / "pid"
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    pid = int(pid_file.read_text())
    try:
        child = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    _, alive = psutil.wait_procs([child], timeout=10)
    assert not alive, f"child {pid} outlived its parent"


def test_a_failing_relay_never_holds_up_join_and_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from procesos._output._lines import LineSink

    errors: list[BaseException | None] = []
    reported = threading.Event()

    def excepthook(args: Any) -> None:
        errors.append(args.exc_value)
        reported.set()

    monkeypatch.setattr(threading, "excepthook", excepthook)

    def broken_feed(self: LineSink, data: bytes) -> None:
        raise RuntimeError("relay bug")

    with monkeypatch.context() as patch:
        patch.setattr(LineSink, "feed", broken_feed)
        p = run_in(procesos.get_context(), print, "lost", output="capture")
    assert p.exitcode is not None  # joined; its writes may have failed (EPIPE)
    # The thread's error is reported after it has let join() go: wait for it.
    assert reported.wait(30)
    assert [str(e) for e in errors] == ["relay bug"]
    p = run_in(procesos.get_context(), print, "relayed again", output="capture")
    assert p.stdout == "relayed again\n"


def test_relayed_stdout_buffers_like_the_parents_stream(tmp_path: Path) -> None:
    # To a file or a pipe: block-buffered, as the child would be writing there
    # itself (the relay still delivers whole lines). To a StringIO, Jupyter or
    # a terminal: line-buffered, so that lines show as they are printed.
    script = """
import contextlib, io, sys
import procesos as mp

def buffering():
    return sys.stdout.line_buffering

for method in ("zygote", "fork", "spawn"):
    ctx = mp.get_context(method)
    p = ctx.Process(target=buffering)
    p.start()
    to_pipe = p.result(30)
    with contextlib.redirect_stdout(io.StringIO()):
        q = ctx.Process(target=buffering)
        q.start()
        to_stringio = q.result(30)
    print(method, to_pipe, to_stringio)
"""
    result = run_script(script, tmp_path, env={"PYTHONUNBUFFERED": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "zygote False True", "fork False True", "spawn False True"]


_BYTES_SCRIPT = """
import os, sys
import procesos as mp

def child():
    print("ñandú, text")
    sys.stdout.flush()
    os.write(1, b"binary \\xff\\xfe\\x80 end\\n")
    sys.stdout.buffer.write(b"\\x89PNG\\r\\n\\x1a\\n")
    sys.stdout.flush()
    print("error ñ", file=sys.stderr)

print("parent", flush=True)
for output in ("relay", "prefix"):
    p = mp.Process(target=child, name="c", output=output)
    p.start()
    p.join()
"""


@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_a_file_or_pipe_gets_the_childs_bytes_unchanged(
        method: str, encoding: str, tmp_path: Path) -> None:
    # As if the child wrote to the parent's stdout itself: text in the
    # streams' encoding and binary data arrive as they were written.
    script = tmp_path / "script.py"
    script.write_text(_BYTES_SCRIPT, encoding="utf-8")
    env = dict(os.environ, PROCESOS_START_METHOD=method, PYTHONIOENCODING=encoding)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, env=env,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    text = "ñandú, text\n".encode(encoding)
    binary = b"binary \xff\xfe\x80 end\n\x89PNG\r\n\x1a\n"
    prefixed = b"[c] " + text + b"[c] binary \xff\xfe\x80 end\n[c] \x89PNG\r\n[c] \x1a\n"
    assert result.stdout == b"parent\n" + text + binary + prefixed
    error = "error ñ\n".encode(encoding)
    assert result.stderr == error + b"[c] " + error
