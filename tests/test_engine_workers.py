"""The parent's handle on a worker keeps its own state: its life only moves
forward, its result pipe has one reader at a time, and a kill says why."""

from __future__ import annotations

import ast
import select
from collections.abc import Iterator
from multiprocessing.sharedctypes import RawArray
from pathlib import Path

import pytest

import procesos
from procesos._engine import _workers
from procesos._engine._results_log import LOG_BYTES
from procesos._engine._states import (
    DEAD,
    DISPATCHER,
    READING,
    READY,
    RETIRING,
    SERVING,
    SLOT_WIDTH,
    STOPPING,
    WAITING,
)
from procesos._engine._worker import WorkerConfig
from procesos._engine._workers import WorkerHandle

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def worker() -> Iterator[WorkerHandle]:
    handle = WorkerHandle(procesos.get_context("fork"), 0, RawArray("q", SLOT_WIDTH),
                          WorkerConfig(None, (), None, None, None), None,
                          RawArray("b", LOG_BYTES))
    try:
        yield handle
    finally:
        if not handle.dead:
            handle.kill()
            handle.process.join()
            handle.close()


def _wait_ready(worker: WorkerHandle) -> None:
    while True:
        select.select([worker.fd], [], [])
        frames, eof = worker.reader.read_available()
        assert not eof, "the worker ended before it said READY"
        if any(header[0] == READY for header, _ in frames):
            worker.mark_ready()
            return


def _end(worker: WorkerHandle) -> int | None:
    """Wait for the worker's exit and close its handle; its exit code."""
    worker.process.join()
    exitcode: int | None = worker.process.exitcode
    worker.close()
    return exitcode


def test_a_worker_that_retires_and_is_then_asked_to_stop_never_goes_back(
        worker: WorkerHandle) -> None:
    assert (worker.life, worker.ready, worker.accepts_work()) == (SERVING, False, True)
    _wait_ready(worker)
    assert worker.ready and worker.idle()
    worker.retire()
    assert (worker.life, worker.retiring, worker.accepts_work()) == (RETIRING, True, False)
    worker.ask_to_stop()
    assert (worker.life, worker.stopping, worker.retiring) == (STOPPING, True, False)
    worker.retire()  # a RETIRE that was on its way: it stays stopping
    assert worker.life == STOPPING
    assert _end(worker) == 0  # STOP made it exit
    assert (worker.life, worker.dead, worker.accepts_work()) == (DEAD, True, False)


def test_a_worker_lent_to_a_caller_is_read_by_that_caller_alone(worker: WorkerHandle) -> None:
    caller, other = object(), object()
    worker.lend_to(caller)
    assert (worker.reader_role, worker.accepts_work()) == (WAITING, False)
    assert not worker.caller_reads(other)
    assert worker.caller_reads(caller)
    assert worker.reader_role == READING
    assert not worker.take_back()  # the dispatcher waits for the caller to give it back
    assert worker.reader_role == READING
    worker.give_back()
    assert (worker.reader_role, worker.accepts_work()) == (DISPATCHER, True)
    assert not worker.caller_reads(caller)  # given back: the dispatcher reads

    worker.lend_to(caller)
    assert worker.take_back()  # nobody came for it: the dispatcher's again
    assert worker.reader_role == DISPATCHER
    assert not worker.caller_reads(caller)
    assert not worker.take_back()


def test_a_worker_killed_for_a_timeout_keeps_the_first_item_it_was_killed_for(
        worker: WorkerHandle) -> None:
    worker.kill_for_timeout(5)
    worker.kill_for_timeout(6)
    assert (worker.timed_out_seq, worker.stopped_for_interrupt) == (5, False)
    assert _end(worker) == -9


def test_a_worker_killed_for_an_interrupt_says_so(worker: WorkerHandle) -> None:
    worker.kill_for_interrupt()
    assert (worker.stopped_for_interrupt, worker.timed_out_seq) == (True, None)
    assert _end(worker) == -9


def test_time_on_item_counts_from_when_the_item_was_first_seen(worker: WorkerHandle) -> None:
    assert worker.time_on_item(7, 10.0) == 0.0
    assert worker.time_on_item(7, 10.5) == 0.5
    assert worker.time_on_item(8, 11.0) == 0.0  # another item: counted afresh
    worker.forget_item()
    assert worker.time_on_item(8, 12.0) == 0.0


class _Sent:
    """Stands for a batch in flight: its id, and whether it was given up."""

    def __init__(self, batch_id: int) -> None:
        self.id = batch_id
        self.freed = False

    def lost(self) -> None:
        self.freed = True


def test_batches_leave_the_handle_only_through_its_transitions(worker: WorkerHandle) -> None:
    first, second, third = _Sent(1), _Sent(2), _Sent(3)
    for batch in (first, second, third):  # as _post() records a batch sent
        worker.outstanding[batch.id] = batch  # type: ignore[assignment]

    worker.finished(second)  # type: ignore[arg-type]
    assert list(worker.outstanding) == [1, 3] and not second.freed

    assert worker.drop_unreadable(3) is third and third.freed
    assert worker.drop_unreadable(3) is None  # not in flight any more
    assert list(worker.outstanding) == [1]

    worker.outstanding[4] = _Sent(4)  # type: ignore[assignment]
    taken = worker.take_all_lost()
    assert [b.id for b in taken] == [1, 4] and all(b.freed for b in taken)  # type: ignore[attr-defined]
    assert not worker.outstanding


#: Methods that change a dict, list, deque or set in place.
_MUTATORS = {"add", "append", "appendleft", "clear", "discard", "extend", "extendleft",
             "insert", "move_to_end", "pop", "popitem", "popleft", "remove", "setdefault",
             "update"}


def _handle_fields() -> set[str]:
    """The attributes WorkerHandle's methods give it (``self.x = ...``)."""
    tree = ast.parse(Path(_workers.__file__).read_text())
    handle = next(n for n in ast.walk(tree)
                  if isinstance(n, ast.ClassDef) and n.name == "WorkerHandle")
    targets = [t for node in ast.walk(handle) if isinstance(node, ast.Assign)
               for t in node.targets]
    targets += [node.target for node in ast.walk(handle) if isinstance(node, ast.AnnAssign)]
    return {t.attr for t in targets if isinstance(t, ast.Attribute)
            and isinstance(t.value, ast.Name) and t.value.id == "self"}


def _field_writes(path: Path, fields: set[str]) -> list[str]:
    """Where *path* changes one of *fields* on an object that is not ``self``: an
    assignment or deletion of the field or of an item of it, or a mutating call."""
    def field_of_other(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr in fields
                and not (isinstance(node.value, ast.Name) and node.value.id == "self"))

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = list(node.targets)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in _MUTATORS and field_of_other(node.func.value)):
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
        for target in targets:
            if field_of_other(target) or (isinstance(target, ast.Subscript)
                                          and field_of_other(target.value)):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_only_the_worker_handle_writes_its_fields() -> None:
    # Its state, its outbox and its batches in flight change through its methods,
    # so that one module says every way each can change (docs: _workers.py).
    fields = _handle_fields()
    assert {"outstanding", "outbox", "known_fns", "_life", "_reader_role"} <= fields
    engine = Path(_workers.__file__).parent
    # _worker.py runs in the worker process, which has no handle (its own
    # _Worker has a field named slot too).
    writes = [write for path in sorted(engine.glob("*.py"))
              if path.name not in ("_workers.py", "_worker.py")
              for write in _field_writes(path, fields)]
    assert writes == []
