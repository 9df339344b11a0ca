"""Drawing a timeline: in a terminal (one row per track, bars in time), or as one
self-contained HTML file (inline SVG, no script, no network: hover a bar for
its name, times and details)."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import Any, TextIO

from ._chrome import Timeline, TimelineRow, TimelineSlice

__all__ = ["render_html", "render_lines", "show"]

# Per category: the character in a terminal, its colour, the SVG fill, and the
# legend's word for it.
_STYLES: dict[str, tuple[str, str, str, str]] = {
    "process": ("█", "green", "#3a9a5b", "process running"),
    "task": ("█", "cyan", "#3b7dd8", "task running"),
    "task-alt": ("▓", "blue", "#6aa3ef", "task running"),
    "failed": ("█", "red", "#d8453b", "task failed"),
    "wait": ("░", "bright_black", "#c9c9c9", "waiting"),
    "queue": ("·", "bright_black", "#e6e0c0", "queued"),
    "launch": ("▌", "yellow", "#e5b700", "starting a process"),
    "span": ("▒", "magenta", "#a05cc6", "work in this process"),
    "send": ("▒", "yellow", "#f0c36d", "sending tasks (pickling arguments)"),
    "pickle": ("▒", "blue", "#9bb7e0", "pickling results"),
}
_DEFAULT = ("▒", "white", "#999999", "other")
_LABEL_MAX = 30


def _style(piece: TimelineSlice, index: int) -> tuple[str, str, str, str]:
    category = piece.category
    if category == "task" and piece.args.get("outcome") not in (None, "ok"):
        category = "failed"
    elif category == "task" and index % 2:
        category = "task-alt"  # neighbours stay apart
    return _STYLES.get(category, _DEFAULT)


def _seconds(value: float) -> str:
    if value <= 0:
        return "0"
    if value >= 10:
        return f"{value:.0f} s"
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.0f} ms" if value >= 0.01 else f"{value * 1000:.1f} ms"


def _cells(row: TimelineRow, width: int, scale: float) -> list[tuple[str, str]]:
    """One (character, colour) per column: what each column of the row shows."""
    cells = [(" ", "")] * width
    for index, piece in enumerate(row.slices):
        char, colour, _, _ = _style(piece, index)
        first = min(width - 1, int(piece.start / scale))
        last = max(first, min(width - 1, math.ceil(piece.end / scale) - 1))
        for column in range(first, last + 1):
            # A process's or task's bar wins over a wait drawn under it.
            if cells[column][0] == " " or piece.category in ("task", "pickle"):
                cells[column] = (char, colour)
    for when, _ in row.marks:
        cells[min(width - 1, int(when / scale))] = ("✕", "bold red")
    return cells


def _layout(timeline: Timeline, columns: int) -> tuple[int, int, float]:
    label_width = min(_LABEL_MAX, columns // 3,
                      max((len(r.label) for r in timeline.rows), default=4))
    width = max(10, columns - label_width - 3)
    scale = max(timeline.duration, 1e-9) / width
    return label_width, width, scale


def _axis(width: int, duration: float, indent: int) -> str:
    """Time labels under the bars, as many as fit without touching."""
    ticks = [" "] * width
    for fraction in (0, 1, 0.5, 0.25, 0.75):
        text = _seconds(duration * fraction)
        at = int(fraction * (width - 1)) - (len(text) if fraction == 1 else len(text) // 2)
        at = max(0, min(at, width - len(text)))
        around = ticks[max(0, at - 1):at + len(text) + 1]
        if any(c != " " for c in around):
            continue
        ticks[at:at + len(text)] = list(text)
    return " " * indent + "".join(ticks).rstrip()


def _wrap(items: list[str], columns: int) -> list[str]:
    lines = [""]
    for item in items:
        if lines[-1] and len(lines[-1]) + 2 + len(item) > columns:
            lines.append("")
        lines[-1] = f"{lines[-1]}  {item}" if lines[-1] else item
    return lines


def _legend(timeline: Timeline) -> list[tuple[str, str, str]]:
    seen: dict[str, tuple[str, str, str]] = {}
    for row in timeline.rows:
        for index, piece in enumerate(row.slices):
            char, colour, _, word = _style(piece, index)
            seen.setdefault(word, (char, colour, word))
        if row.marks:
            seen.setdefault("crash", ("✕", "bold red", "crash, timeout or retry"))
    return list(seen.values())


def _label(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def render_lines(timeline: Timeline, columns: int = 80) -> list[str]:
    """The drawing as plain text lines, at most *columns* wide."""
    label_width, width, scale = _layout(timeline, columns)
    lines = []
    for row in timeline.rows:
        bar = "".join(char for char, _ in _cells(row, width, scale)).rstrip()
        lines.append(f"{_label(row.label, label_width):<{label_width}} │{bar}")
    lines.append(" " * label_width + " └" + "─" * width)
    lines.append(_axis(width, timeline.duration, label_width + 2))
    lines.extend(_wrap([f"{char} {word}" for char, _, word in _legend(timeline)], columns))
    return lines


def _rich_text(timeline: Timeline, columns: int) -> Any:
    from rich.text import Text

    label_width, width, scale = _layout(timeline, columns)
    text = Text()
    for row in timeline.rows:
        text.append(f"{_label(row.label, label_width):<{label_width}} │", style="bold")
        for char, colour in _cells(row, width, scale):
            text.append(char, style=colour or None)
        text.append("\n")
    text.append(" " * label_width + " └" + "─" * width + "\n", style="bright_black")
    text.append(_axis(width, timeline.duration, label_width + 2) + "\n", style="bright_black")
    for char, colour, word in _legend(timeline):
        text.append(char, style=colour)
        text.append(f" {word}  ")
    return text


def show(timeline: Timeline, stream: TextIO, plain: bool | None = None,
         columns: int | None = None) -> None:
    """Draw *timeline* on *stream*: in colour on a terminal, plain text elsewhere."""
    if plain is None:
        plain = not stream.isatty()
    if columns is None:
        import shutil

        columns = min(120, shutil.get_terminal_size((100, 24)).columns)
    if plain:
        stream.write("\n".join(render_lines(timeline, columns)) + "\n")
        return
    from rich.console import Console

    Console(file=stream, highlight=False, width=columns).print(_rich_text(timeline, columns))


# -- HTML ---------------------------------------------------------------------------------

_ROW, _BAR, _LEFT, _RIGHT, _TOP = 28, 18, 240, 20, 40


def _tooltip(row: TimelineRow, piece: TimelineSlice) -> str:
    details = "".join(f"\n{key}: {value}" for key, value in piece.args.items())
    return (f"{piece.name}\n{row.label}\n{_seconds(piece.start)} → {_seconds(piece.end)} "
            f"({_seconds(piece.end - piece.start)}){details}")


def render_html(timelines: Iterable[tuple[str, Timeline]], title: str = "procesos trace",
                width: int = 1100) -> str:
    """One HTML page with a drawing per (heading, timeline); no script, no network."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:24px;color:#222}"
        "h1{font-size:20px}h2{font-size:16px;margin-top:28px}"
        "svg text{font:12px system-ui,sans-serif;fill:#222}"
        "rect.bar:hover{stroke:#000;stroke-width:2}"
        ".legend span{display:inline-block;margin-right:16px}"
        ".legend i{display:inline-block;width:14px;height:10px;margin-right:4px}</style>",
        f"</head><body><h1>{html.escape(title)}</h1>",
    ]
    for heading, timeline in timelines:
        if heading and heading != title:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(_svg(timeline, width))
        parts.append('<p class="legend">' + "".join(
            f'<span><i style="background:{fill}"></i>{html.escape(word)}</span>'
            for word, fill in _html_legend(timeline)) + "</p>")
    parts.append("<p>Hover a bar for its times and details.</p></body></html>")
    return "\n".join(parts)


def _html_legend(timeline: Timeline) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for row in timeline.rows:
        for index, piece in enumerate(row.slices):
            _, _, fill, word = _style(piece, index)
            seen.setdefault(word, fill)
    return list(seen.items())


def _svg(timeline: Timeline, width: int) -> str:
    plot = width - _LEFT - _RIGHT
    duration = max(timeline.duration, 1e-9)
    height = _TOP + _ROW * len(timeline.rows) + 10

    def x(seconds: float) -> float:
        return round(_LEFT + plot * seconds / duration, 2)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'style="width:100%;max-width:{width}px" role="img">']
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        at = x(duration * fraction)
        out.append(f'<line x1="{at}" y1="{_TOP - 8}" x2="{at}" y2="{height - 10}" '
                   'stroke="#e4e4e4"/>')
        anchor = "end" if fraction == 1 else "middle" if fraction else "start"
        out.append(f'<text x="{at}" y="{_TOP - 14}" text-anchor="{anchor}">'
                   f"{html.escape(_seconds(duration * fraction))}</text>")
    for number, row in enumerate(timeline.rows):
        top = _TOP + number * _ROW
        out.append(f'<g class="row" data-label="{html.escape(row.label, quote=True)}">')
        out.append(f'<text x="{_LEFT - 8}" y="{top + _BAR - 4}" text-anchor="end">'
                   f"{html.escape(_label(row.label, 34))}<title>{html.escape(row.label)}"
                   "</title></text>")
        # A process's bar first: its tasks are drawn over it.
        for index, piece in sorted(enumerate(row.slices),
                                   key=lambda item: item[1].category != "process"):
            _, _, fill, _ = _style(piece, index)
            left = x(piece.start)
            bar = max(1.0, x(piece.end) - left)
            height_of = _BAR if piece.category in ("process", "task") else _BAR // 2
            offset = top + (_BAR - height_of) / 2
            out.append(f'<rect class="bar {html.escape(piece.category)}" x="{left}" '
                       f'y="{offset}" width="{bar:.2f}" height="{height_of}" fill="{fill}">'
                       f"<title>{html.escape(_tooltip(row, piece))}</title></rect>")
        for when, name in row.marks:
            at = x(when)
            out.append(f'<text x="{at}" y="{top + _BAR - 4}" text-anchor="middle" '
                       f'fill="#d8453b">✕<title>{html.escape(name)}</title></text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)
