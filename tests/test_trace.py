"""procesos.trace(): what it records, the Trace Event Format it writes, and the drawings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import procesos
from conftest import run_script
from procesos._trace import _state
from procesos._trace._chrome import Timeline, TimelineRow, TimelineSlice, load
from procesos._trace._draw import render_html, render_lines


def check_trace_event_format(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Fail unless *document* is a valid Trace Event Format document; its events."""
    assert set(document) >= {"traceEvents"}
    events = document["traceEvents"]
    assert isinstance(events, list)
    flows: dict[int, set[str]] = {}
    for event in events:
        assert isinstance(event, dict)
        assert event["ph"] in {"M", "X", "i", "s", "f"}, event
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int), event
        assert isinstance(event["name"], str)
        if event["ph"] == "M":
            assert event["name"] in {"process_name", "thread_name", "process_sort_index"}
            assert isinstance(event["args"], dict)
            continue
        assert isinstance(event["ts"], int | float) and event["ts"] >= 0, event
        if event["ph"] == "X":
            assert isinstance(event["dur"], int | float) and event["dur"] >= 0, event
            assert isinstance(event.get("args", {}), dict)
        elif event["ph"] == "i":
            assert event["s"] in {"g", "p", "t"}
        else:
            assert isinstance(event["id"], int)
            if event["ph"] == "f":
                assert event["bp"] == "e"
            flows.setdefault(event["id"], set()).add(event["ph"])
    assert all(phases == {"s", "f"} for phases in flows.values()), flows
    json.dumps(document)  # plain JSON through and through
    return events


def _slices(events: list[dict[str, Any]], pid: int) -> list[dict[str, Any]]:
    return [e for e in events if e["ph"] == "X" and e["pid"] == pid]


def _wait_on(go: Any) -> None:
    go.wait(60)


def test_processes_started_together_overlap_and_joined_ones_do_not(
        ctx: procesos.ProcesosContext, tmp_path: Path) -> None:
    go = ctx.Event()
    path = tmp_path / "trace.json"
    with procesos.trace(path) as recording:
        together = [ctx.Process(target=_wait_on, args=(go,), name=f"t{i}") for i in range(2)]
        for p in together:
            p.start()
        go.set()  # both are running by now: set after both started
        for p in together:
            p.join()
        apart = [ctx.Process(target=int, name=f"a{i}") for i in range(2)]
        for p in apart:
            p.start()
            p.join()
    events = check_trace_event_format(json.loads(path.read_text()))
    assert recording.events["traceEvents"] == events
    first, second = (_slices(events, p.pid)[0] for p in together)
    assert first["ts"] < second["ts"] + second["dur"] and second["ts"] < first["ts"] + first["dur"]
    one, two = (_slices(events, p.pid)[0] for p in apart)
    assert one["ts"] + one["dur"] <= two["ts"]
    for p in (*together, *apart):
        (piece,) = _slices(events, p.pid)
        assert piece["cat"] == "process" and piece["args"]["exitcode"] == 0
        assert piece["args"]["method"] == ctx.get_start_method()
    mine = _slices(events, os.getpid())
    assert sorted(e["name"] for e in mine if e["cat"] == "wait") == \
        sorted(f"join() {p.name}" for p in (*together, *apart))
    assert sum(e["cat"] == "launch" for e in mine) == 4
    names = {e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert {f"{p.name} (pid {p.pid})" for p in (*together, *apart)} <= names


def test_a_killed_process_and_one_still_running(tmp_path: Path) -> None:
    go = procesos.Event()
    with procesos.trace() as recording:
        # (not waiting on the Event: a process killed inside Condition.wait()
        # leaves the Condition waiting for it to wake, and set() hangs)
        killed = procesos.Process(target=signal.pause)
        running = procesos.Process(target=_wait_on, args=(go,))
        killed.start()
        running.start()
        killed.kill()
        killed.join()
    go.set()
    running.join()
    events = check_trace_event_format(recording.events)
    assert _slices(events, killed.pid)[0]["args"]["exitcode"] == -signal.SIGKILL
    assert _slices(events, running.pid)[0]["args"]["still running"] is True


def test_spans_mark_work_in_this_process() -> None:
    with procesos.trace() as recording:
        with recording.span("setup", step=1):
            pass
    (piece,) = [e for e in recording.events["traceEvents"] if e["ph"] == "X"]
    assert piece["name"] == "setup" and piece["cat"] == "span" and piece["args"] == {"step": 1}


def test_one_recording_at_a_time_and_nothing_when_off() -> None:
    assert _state.recorder is None
    p = procesos.Process(target=int)
    p.start()
    p.join()
    assert not [t for t in threading.enumerate() if t.name == "procesos-trace-exits"]
    with procesos.trace() as first:
        with pytest.raises(RuntimeError, match="already being recorded"):
            procesos.trace().start()
    with pytest.raises(RuntimeError, match="recorded already"):
        first.start()
    assert _state.recorder is None
    with pytest.raises(RuntimeError, match="has not started"):
        procesos.trace().events


def test_the_environment_variable_records_a_whole_program(tmp_path: Path) -> None:
    done = run_script(textwrap.dedent("""
        import procesos
        procs = [procesos.Process(target=print, args=(i,)) for i in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        with procesos.Executor(1) as ex:  # its workers are processes too
            ex.submit(abs, -1).result()
        print("pids", *[p.pid for p in procs])
    """), tmp_path, env={"PROCESOS_TRACE": "run.json"})
    assert done.returncode == 0, done.stderr
    pids = [int(x) for x in done.stdout.split("pids")[1].split()]
    events = check_trace_event_format(json.loads((tmp_path / "run.json").read_text()))
    for pid in pids:
        assert [e["cat"] for e in _slices(events, pid)] == ["process"]
    # One file, written once, by the program alone (its children did not record).
    assert not list(tmp_path.glob("*.tmp"))


def test_the_command_line_draws_a_trace(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    with procesos.trace(path):
        p = procesos.Process(target=int, name="worker-ish")
        p.start()
        p.join()
    html = tmp_path / "t.html"
    done = subprocess.run([sys.executable, "-m", "procesos", "trace", "show", str(path),
                           "--html", str(html), "--plain"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"worker-ish (pid {p.pid})" in done.stdout
    assert "█ process running" in done.stdout
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "http" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert page.count('<rect class="bar') == 3  # start(), the process, join()
    assert "<title>worker-ish" in page


@pytest.mark.parametrize("content", ["not json", "[]", '{"traceEvents": 3}',
                                     '{"traceEvents": [{"ph": "X", "ts": "soon"}]}'])
def test_a_file_that_is_no_trace_is_refused_clearly(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    done = subprocess.run([sys.executable, "-m", "procesos", "trace", "show", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("procesos trace show: "), done.stderr
    assert "Traceback" not in done.stderr


def test_drawings_stay_within_their_width() -> None:
    rows = [TimelineRow("a very long label for a process that goes on and on", [
        TimelineSlice("run", "process", 0.0, 1.0), TimelineSlice("t", "task", 0.2, 0.3),
    ], marks=[(0.5, "crash")]), TimelineRow("short", [TimelineSlice("w", "wait", 0.9, 1.2)])]
    timeline = Timeline(rows, 1.2)
    for columns in (40, 80, 133):
        lines = render_lines(timeline, columns)
        assert all(len(line) <= columns for line in lines), lines
    assert "✕" in lines[0]
    page = render_html([("one", timeline)])
    assert page.count("<g class=\"row\"") == 2


def test_load_reads_what_to_events_writes() -> None:
    with procesos.trace() as recording:
        with recording.span("x"):
            pass
    timeline = load(recording.events)
    assert [r.label for r in timeline.rows] == [f"this process (pid {os.getpid()})"]
    assert timeline.rows[0].slices[0].name == "x"


def test_saving_never_writes_through_a_file_that_was_there_before(tmp_path: Path) -> None:
    # save() wrote to "<path>.<pid>.tmp" and renamed it: in a directory others
    # may write to, a link planted at that name made it overwrite the link's
    # target (any file of the user's), a file planted there received the trace.
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    path = tmp_path / "run.json"
    planted = tmp_path / f"run.json.{os.getpid()}.tmp"
    planted.symlink_to(precious)
    with procesos.trace() as recording:
        with recording.span("x"):
            pass
    recording.save(path)
    assert precious.read_text() == "keep me"
    assert planted.is_symlink()
    check_trace_event_format(json.loads(path.read_text()))
    assert {p.name for p in tmp_path.iterdir()} == {planted.name, "precious.txt", "run.json"}
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() makes a file


# -- engine tasks -------------------------------------------------------------------------

def _engine_events(recording: Any) -> list[dict[str, Any]]:
    return check_trace_event_format(recording.events)


def test_executor_tasks_show_on_their_workers_with_details(tmp_path: Path) -> None:
    from engine_tasks import fail_on, square

    # Both workers up first: each of two tasks waits for the other at a barrier
    # (a map of quick tasks could all run on the first while the second starts).
    with procesos.Executor(2, initializer=_keep_barrier, initargs=(procesos.Barrier(2),)) as ex:
        pids = set(ex.map(pid_after_barrier, range(2), chunksize=1))
        assert len(pids) == 2
        with procesos.trace() as recording:
            assert ex.submit(square, 3).result() == 9
            assert list(ex.map(square, range(50), chunksize=10)) == [i * i for i in range(50)]
            with pytest.raises(ValueError):
                ex.submit(fail_on, 2).result()
    events = _engine_events(recording)
    tasks = [e for e in events if e["ph"] == "X" and e["cat"] == "task"]
    assert {e["pid"] for e in tasks} <= pids
    names = sorted(e["name"] for e in tasks)
    assert "square(3)" in names and "fail_on(2)" in names
    chunks = [e for e in tasks if e["name"].startswith("square x10")]
    assert sum(e["args"]["items"] for e in chunks) == 50
    (failed,) = [e for e in tasks if e["name"] == "fail_on(2)"]
    assert failed["args"]["outcome"] == "1 raised"
    for e in tasks:
        assert e["args"]["result_pipe_bytes"] > 0 and "waited_in_parent_ms" in e["args"]
        assert e["args"]["result_shared_memory_bytes"] == 0
    sends = [e for e in events if e["ph"] == "X" and e["cat"] == "send"]
    assert sends and all(e["pid"] == os.getpid() for e in sends)
    assert any(e["ph"] == "s" and e["name"] == "run" for e in events)
    names_of = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert all(names_of[pid].startswith("worker ") for pid in {e["pid"] for e in tasks})


def test_bytes_through_shared_memory_are_counted() -> None:
    np = pytest.importorskip("numpy")
    with procesos.Executor(1) as ex:
        ex.submit(abs, 1).result()
        with procesos.trace() as recording:
            doubled = ex.submit(np.multiply, np.ones(500_000), 2).result()  # 4 MB each way
    assert doubled.sum() == 1_000_000
    events = _engine_events(recording)
    (task,) = [e for e in events if e["ph"] == "X" and e["cat"] == "task"]
    (send,) = [e for e in events if e["ph"] == "X" and e["cat"] == "send"]
    assert send["args"]["shared_memory_bytes"] >= 4_000_000 > send["args"]["pipe_bytes"]
    assert task["args"]["argument_shared_memory_bytes"] >= 4_000_000
    assert task["args"]["result_shared_memory_bytes"] >= 4_000_000 > task["args"][
        "result_pipe_bytes"]


_barrier: Any = None


def _keep_barrier(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def pid_after_barrier(_: object) -> int:
    _barrier.wait(timeout=60)
    return os.getpid()


def test_a_crash_and_a_retry_are_marked(tmp_path: Path) -> None:
    from engine_tasks import die_on

    with procesos.Executor(1, retries=1) as ex, procesos.trace() as recording:
        with pytest.raises(procesos.WorkerCrashedError):
            ex.submit(die_on, 1, 1, "exit").result()
    instants = [e for e in _engine_events(recording) if e["ph"] == "i"]
    assert [e["name"] for e in instants] == ["crash, retried", "crash"]
    assert all("die_on(1, 1, 'exit')" in e["args"]["task"] for e in instants)


def test_a_timed_out_task_is_marked(tmp_path: Path) -> None:
    from engine_tasks import hang_on

    fifo = tmp_path / "never"
    os.mkfifo(fifo)
    with procesos.Executor(1, timeout=0.5) as ex, procesos.trace() as recording:
        with pytest.raises(procesos.TaskTimeoutError):
            ex.submit(hang_on, 1, 1, str(fifo)).result()
    assert [e["name"] for e in _engine_events(recording) if e["ph"] == "i"] == ["timeout"]


def test_pool_tasks_are_recorded_too() -> None:
    from engine_tasks import square

    with procesos.Pool(2) as pool, procesos.trace() as recording:
        assert pool.map(square, range(20), chunksize=5) == [i * i for i in range(20)]
    tasks = [e for e in _engine_events(recording) if e["ph"] == "X" and e["cat"] == "task"]
    assert sum(e["args"]["items"] for e in tasks) == 20


def test_a_fault_in_the_trace_does_not_break_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine_tasks import square
    from procesos._trace import _recorder

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(_recorder.Recorder, "add_slice", broken)
    with procesos.Executor(1) as ex, procesos.trace():
        with pytest.warns(RuntimeWarning, match="could not record an event"):
            assert list(ex.map(square, range(10))) == [i * i for i in range(10)]
