"""A recording in the Trace Event Format, and back.

The format is the JSON that ``chrome://tracing`` and Perfetto (ui.perfetto.dev)
open: ``{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}``,
times in microseconds from the start of the recording. procesos writes:

* ``"M"`` metadata events naming each process (``process_name``) and thread
  (``thread_name``);
* ``"X"`` complete events, one per slice (``ts``, ``dur``);
* ``"i"`` instant events (``"s": "t"``: on their thread);
* ``"s"``/``"f"`` flow events (``"bp": "e"``: the arrow ends at the slice that
  encloses it), from a task's submit to its run, from ``start()`` to the process.

A process's own track is its main thread: ``tid`` equals ``pid``.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from ._recorder import Recorder, Track

__all__ = ["Timeline", "TimelineRow", "TimelineSlice", "load", "to_events", "write"]


def _tid(track: Track) -> int:
    return track.pid if track.tid is None else track.tid


def to_events(recorder: Recorder) -> dict[str, Any]:
    """The recording as a Trace Event Format document."""
    origin = recorder.started

    def us(ns: int) -> float:
        return round((ns - origin) / 1000, 3)

    events: list[dict[str, Any]] = []
    pids = {recorder.pid, *(t.pid for t in recorder.names),
            *(s.track.pid for s in recorder.slices)}
    for pid in sorted(pids):
        name = recorder.names.get(Track(pid)) or (
            f"this process (pid {pid})" if pid == recorder.pid else f"pid {pid}")
        events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": pid,
                       "args": {"name": name}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": pid,
                       "args": {"sort_index": 0 if pid == recorder.pid else pid}})
    for track, name in recorder.names.items():
        if track.tid is not None:
            events.append({"ph": "M", "name": "thread_name", "pid": track.pid,
                           "tid": track.tid, "args": {"name": name}})
    end = recorder.stopped or max((s.end for s in recorder.slices), default=origin)
    for piece in sorted(recorder.slices, key=lambda s: s.start):
        stop = piece.end if piece.end >= 0 else end
        events.append({"ph": "X", "name": piece.name, "cat": piece.category,
                       "ts": us(piece.start), "dur": round(max(0, stop - piece.start) / 1000, 3),
                       "pid": piece.track.pid, "tid": _tid(piece.track),
                       "args": _plain(piece.args)})
    for instant in recorder.instants:
        events.append({"ph": "i", "s": "t", "name": instant.name, "cat": instant.category,
                       "ts": us(instant.time), "pid": instant.track.pid,
                       "tid": _tid(instant.track), "args": _plain(instant.args)})
    for flow in recorder.flows:
        (source, at), (target, to) = flow.source, flow.target
        events.append({"ph": "s", "id": flow.ident, "name": flow.name, "cat": "flow",
                       "ts": us(at), "pid": source.pid, "tid": _tid(source)})
        events.append({"ph": "f", "bp": "e", "id": flow.ident, "name": flow.name,
                       "cat": "flow", "ts": us(to), "pid": target.pid, "tid": _tid(target)})
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"producer": "procesos", "clock": "monotonic", "pid": recorder.pid,
                      "duration_us": round((end - origin) / 1000, 3)},
    }


def _plain(args: dict[str, Any]) -> dict[str, Any]:
    return {key: value if isinstance(value, str | int | float | bool | None) else repr(value)
            for key, value in args.items()}


def write(document: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write *document* to *path* (replacing it whole: never a half-written file)."""
    path = os.fspath(path)
    descriptor, temporary = _new_file_beside(path)
    try:
        with open(descriptor, "w", encoding="utf-8") as file:
            json.dump(document, file, separators=(",", ":"))
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _new_file_beside(path: str) -> tuple[int, str]:
    """A file made now next to *path*, under a name no one can guess: its descriptor
    and name. In a directory others may write to (``/tmp``), a name known in
    advance could already be theirs: a link to a file of ours, which writing
    would overwrite, or a file of theirs, which would receive our data.
    ``O_EXCL`` never opens what exists; the umask sets the mode, as ``open()``'s."""
    directory, name = os.path.split(path)
    while True:
        temporary = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:
            continue


@dataclass(slots=True)
class TimelineSlice:
    """One bar: *start* and *end* in seconds from the start of the recording."""

    name: str
    category: str
    start: float
    end: float
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TimelineRow:
    """One track: its label and its bars, in time order."""

    label: str
    slices: list[TimelineSlice]
    marks: list[tuple[float, str]] = field(default_factory=list)  # instants


@dataclass(slots=True)
class Timeline:
    """What the drawings show: rows in order, and the recording's length in seconds."""

    rows: list[TimelineRow]
    duration: float


def load(document: dict[str, Any] | str | os.PathLike[str]) -> Timeline:
    """A Trace Event Format document (or the path of one) as rows to draw.

    Raises ValueError naming what is wrong with a document that is not one.
    """
    if not isinstance(document, dict):
        path = os.fspath(document)
        with open(path, encoding="utf-8") as file:
            try:
                document = json.load(file)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("traceEvents"), list):
        raise ValueError("a trace is a JSON object with a 'traceEvents' list")
    events: list[Any] = document["traceEvents"]
    other = document.get("otherData")
    process_names: dict[int, str] = {}
    thread_names: dict[tuple[int, int], str] = {}
    order: dict[int, int] = {}
    rows: dict[tuple[int, int], TimelineRow] = {}
    end = 0.0
    for event in events:
        if not isinstance(event, dict):
            continue
        try:
            phase, pid, tid = event.get("ph"), int(event.get("pid") or 0), int(
                event.get("tid") or 0)
        except (TypeError, ValueError):
            raise ValueError(f"a trace event's pid and tid are numbers: {event!r}") from None
        given = event.get("args")
        args: dict[str, Any] = given if isinstance(given, dict) else {}
        if phase == "M":
            if event.get("name") == "process_name":
                process_names[pid] = str(args.get("name", pid))
            elif event.get("name") == "thread_name":
                thread_names[(pid, tid)] = str(args.get("name", tid))
            elif event.get("name") == "process_sort_index":
                order[pid] = int(args.get("sort_index") or pid)
        elif phase == "X":
            start = _seconds(event, "ts")
            stop = start + _seconds(event, "dur")
            end = max(end, stop)
            row = rows.setdefault((pid, tid), TimelineRow("", []))
            row.slices.append(TimelineSlice(str(event.get("name", "")),
                                            str(event.get("cat", "")), start, stop, args))
        elif phase == "i":
            when = _seconds(event, "ts")
            end = max(end, when)
            rows.setdefault((pid, tid), TimelineRow("", [])).marks.append(
                (when, str(event.get("name", ""))))
    duration = float(other.get("duration_us", 0)) / 1e6 if isinstance(other, dict) else 0.0
    for (pid, tid), row in rows.items():
        label = process_names.get(pid, f"pid {pid}")
        if tid != pid:  # a thread of its own: named as such, under its process
            label = f"· thread {thread_names.get((pid, tid), tid)}"
        row.label = label
        row.slices.sort(key=lambda s: s.start)
    ordered = sorted(rows.items(), key=lambda item: (order.get(item[0][0], item[0][0]),
                                                     item[0][1] != item[0][0], item[0]))
    return Timeline([row for _, row in ordered], max(duration, end))


def _seconds(event: dict[str, Any], key: str) -> float:
    try:
        return float(event.get(key) or 0) / 1e6
    except (TypeError, ValueError):
        raise ValueError(f"a trace event's {key!r} is a number of microseconds: "
                         f"{event!r}") from None
