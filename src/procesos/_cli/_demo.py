"""``procesos demo``: the multiprocessing lesson, run live with procesos processes.

Seven steps, each one sentence long: a first process, two processes at once,
``join()`` placed so they run one after the other, the timing of sequential
against concurrent work, pids as a tree, a child's memory being a copy, and
three ways to bring a result back. A table of the timings ends it. The
children's functions live at module level, so they work under every start
method; the parent's own lines go through :class:`PlainOutput` (piped) or
:class:`RichOutput` (a terminal).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

import procesos

from .._proc._context import ProcesosContext
from .._proc._process import Process
from .._trace._api import Trace
from .._trace._chrome import Timeline
from .._trace._draw import render_html, render_lines, show
from ._demo_text import texts

__all__ = ["FAST_SLEEP", "SLEEP", "PlainOutput", "RichOutput", "run"]

#: The lesson's pause per number, in seconds, and the one ``--fast`` uses.
SLEEP = 0.2
FAST_SLEEP = 0.01
#: Seconds an interrupted child gets to end before it is killed.
GRACE_SECONDS = 1.0

NUMS = range(5)
VISIBILITY_NUMS = range(10)


# -- the lesson's functions: what the children run ---------------------------------
# Importable module-level functions travel by reference, so each works under every
# start method. They print with flush=True so that the demo is live also when piped.


def tarea(name: str, words: Mapping[str, str]) -> None:
    """The lesson's first process: greet *name*."""
    print(words["hello"], name, flush=True)


def calc_cuad(numeros: Sequence[int], pausa: float, words: Mapping[str, str]) -> None:
    """Print the square of each number, pausing *pausa* seconds before each."""
    print(words["squares"], flush=True)
    for n in numeros:
        time.sleep(pausa)
        print(words["square"], n * n, flush=True)


def calc_cubos(nums: Sequence[int], pausa: float, words: Mapping[str, str]) -> None:
    """Print the cube of each number, pausing *pausa* seconds before each."""
    print(words["cubes"], flush=True)
    for num in nums:
        time.sleep(pausa)
        print(words["cube"], num**3, flush=True)


def f(nombre: str, words: Mapping[str, str]) -> tuple[int, int, int | None]:
    """Print this process's ids like the lesson's ``info()``; return pid, ppid, parent's pid."""
    from multiprocessing import parent_process

    print(words["child_info_title"], flush=True)
    print(words["child_info_ppid"], os.getppid(), flush=True)
    print(words["child_info_pid"], os.getpid(), flush=True)
    print("hello", nombre, flush=True)
    parent = parent_process()
    return os.getpid(), os.getppid(), None if parent is None else parent.pid


nums_res: list[int] = []


def calc_cuad_global(numeros: Sequence[int], words: Mapping[str, str]) -> None:
    """Append each square to the global ``nums_res``: the child's own copy of it."""
    global nums_res  # the lesson's line; the name is bound at module level already
    for n in numeros:
        print(words["square"], n * n, flush=True)
        nums_res.append(n * n)
        print(words["child_result"], nums_res, flush=True)


def cuadrados_en_array(numeros: Sequence[int], arreglo: Any) -> None:
    """Write the squares into a shared ``Array``."""
    for i, n in enumerate(numeros):
        arreglo[i] = n * n


def cuadrados_a_cola(numeros: Sequence[int], cola: Any) -> None:
    """Put the list of squares on a ``Queue``."""
    cola.put([n * n for n in numeros])


def cuadrados(numeros: Sequence[int]) -> list[int]:
    """Return the list of squares (the parent reads it with ``Process.result()``)."""
    return [n * n for n in numeros]


# -- output: plain text when piped, rich on a terminal ------------------------------

#: A tree: a label and its children.
Node = tuple[str, list["Node"]]


class PlainOutput:
    """The demo's own lines as plain text, flushed at once (children write in between)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def _line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def title(self, title: str, subtitle: str) -> None:
        """The demo's title."""
        self._line(title)
        self._line(subtitle)

    def step(self, heading: str, what: str) -> None:
        """A step's heading and the sentence that says what it shows."""
        self._line()
        self._line(f"== {heading} ==")
        self._line(what)
        self._line()

    def say(self, text: str) -> None:
        """A line the parent prints, as the lesson's programs do."""
        self._line(text)

    def note(self, text: str) -> None:
        """A remark on what just happened."""
        self._line(f"-- {text}")

    def tree(self, root: Node) -> None:
        """Print *root* and its descendants with box-drawing branches."""

        def walk(node: Node, prefix: str, last: bool, top: bool) -> None:
            label, children = node
            self._line(label if top else f"{prefix}{'└── ' if last else '├── '}{label}")
            inner = "" if top else prefix + ("    " if last else "│   ")
            for i, child in enumerate(children):
                walk(child, inner, i == len(children) - 1, False)

        walk(root, "", True, True)

    def table(
        self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], footer: str
    ) -> None:
        """A table with aligned columns (numbers right-aligned) and a line below it."""
        widths = [max(len(str(c)) for c in col) for col in zip(columns, *rows, strict=True)]

        def fmt(cells: Sequence[str]) -> str:
            first, *rest = cells
            right = [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
            parts = [first.ljust(widths[0]), *right]
            return "  ".join(parts).rstrip()

        self._line()
        self._line(title)
        self._line(fmt(columns))
        self._line("  ".join("-" * w for w in widths))
        for row in rows:
            self._line(fmt(row))
        self._line()
        self._line(footer)

    def heading(self, text: str) -> None:
        """A heading within a step."""
        self._line()
        self._line(text)

    def timeline(self, label: str, timeline: Timeline) -> None:
        """One run's timeline: a row per process, bars in time."""
        self._line()
        self._line(label)
        for line in render_lines(timeline, min(100, shutil.get_terminal_size((100, 24)).columns)):
            self._line(line)

    def end(self, text: str) -> None:
        """The demo's last line."""
        self._line()
        self._line(text)


class RichOutput(PlainOutput):
    """The demo's own lines with colour, a rule per step, a tree and a table (rich)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        from rich.console import Console

        self.console = Console(file=stream, highlight=False)

    def title(self, title: str, subtitle: str) -> None:
        from rich.panel import Panel
        from rich.text import Text

        body = Text(title, style="bold") + Text("\n") + Text(subtitle, style="dim")
        self.console.print(Panel.fit(body, border_style="cyan"))

    def step(self, heading: str, what: str) -> None:
        self.console.print()
        self.console.rule(f"[bold cyan]{_escape(heading)}", align="left")
        self.console.print(what, style="italic", markup=False)
        self.console.print()

    def say(self, text: str) -> None:
        self.console.print(text, markup=False)

    def note(self, text: str) -> None:
        self.console.print(f"→ {text}", style="green", markup=False)

    def tree(self, root: Node) -> None:
        from rich.tree import Tree

        def build(node: Node, parent: Tree) -> None:
            for label, children in node[1]:
                build((label, children), parent.add(label))

        top = Tree(root[0], guide_style="cyan")
        build(root, top)
        self.console.print(top)

    def table(
        self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], footer: str
    ) -> None:
        from rich.table import Table

        table = Table(title=title, title_style="bold", header_style="bold cyan")
        for i, column in enumerate(columns):
            table.add_column(column, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        self.console.print()
        self.console.print(table)
        self.console.print(footer, style="bold green", markup=False)

    def heading(self, text: str) -> None:
        self.console.print()
        self.console.print(text, style="bold", markup=False)

    def timeline(self, label: str, timeline: Timeline) -> None:
        self.console.print()
        self.console.print(label, style="cyan", markup=False)
        show(timeline, self.stream, plain=False, columns=min(100, self.console.width))

    def end(self, text: str) -> None:
        self.console.print()
        self.console.print(text, style="dim", markup=False)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _seconds(x: float) -> str:
    """2.0 for the lesson's two seconds, 0.05 for ``--fast``'s twentieth."""
    return f"{x:.1f}" if x >= 0.1 else f"{x:.2f}"


def make_output(stream: TextIO, plain: bool | None = None) -> PlainOutput:
    """Rich output on a terminal, plain text elsewhere (or as *plain* says)."""
    if plain is None:
        plain = not (stream.isatty() and os.environ.get("TERM") != "dumb")
    return PlainOutput(stream) if plain else RichOutput(stream)


# -- the steps ----------------------------------------------------------------------


@contextmanager
def owning(*processes: Process) -> Iterator[None]:
    """The block owns *processes*: however it ends, none of them is left running.

    On an exception (Ctrl-C included) the live ones first get a moment to end
    on their own (Ctrl-C on a terminal reaches them too, and a second SIGINT
    could land in their exit path), then are interrupted, given
    :data:`GRACE_SECONDS` to end, then killed; every one is joined.
    """
    try:
        yield
    finally:
        _wait_for(processes, GRACE_SECONDS / 2)
        alive = [p for p in processes if p.is_alive()]
        for p in alive:
            p.interrupt()
        _wait_for(alive, GRACE_SECONDS)
        for p in alive:
            if p.exitcode is None:
                p.kill()
                p.join()


def _wait_for(processes: Sequence[Process], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for p in processes:
        if p.is_alive():
            p.join(max(0.0, deadline - time.monotonic()))


@dataclass
class Demo:
    """One run of the demo: the context its processes use, its output and its texts."""

    ctx: ProcesosContext
    out: PlainOutput
    text: Mapping[str, str]
    sleep: float
    timings: list[tuple[str, float]] = field(default_factory=list)
    timelines: list[tuple[str, Timeline]] = field(default_factory=list)
    html_path: str | None = None

    @property
    def words(self) -> dict[str, str]:
        """The texts the children print (a plain dict: it travels to them)."""
        return dict(self.text)

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        """The steps in order: the prefix of their texts' keys, and what runs them."""
        return [
            ("first", self.first_process),
            ("together", self.two_at_once),
            ("apart", self.one_after_the_other),
            ("timing", self.timing),
            ("pids", self.pids),
            ("copy", self.memory_is_a_copy),
            ("back", self.results_back),
        ]

    def run(self) -> None:
        """Run every step, then print the table of timings."""
        t = self.text
        self.out.title(
            t["title"],
            t["subtitle"].format(
                version=procesos.__version__,
                python=platform.python_version(),
                method=self.ctx.get_start_method(),
                cores=os.cpu_count() or 1,
            ),
        )
        steps = self.steps()
        for number, (key, step) in enumerate(steps, 1):
            heading = t["step"].format(number=number, total=len(steps), title=t[f"{key}_title"])
            what = t[f"{key}_what"].format(
                sleep=self.sleep,
                sequential=_seconds(10 * self.sleep),
                concurrent=_seconds(5 * self.sleep),
            )
            self.out.step(heading, what)
            step()
        self.summary()
        self.out.end(t["done"])

    def _pair(self, pausa: float) -> tuple[Process, Process]:
        p1 = self.ctx.Process(target=calc_cuad, args=(NUMS, pausa, self.words), name="p1")
        p2 = self.ctx.Process(target=calc_cubos, args=(NUMS, pausa, self.words), name="p2")
        return p1, p2

    def first_process(self) -> None:
        """Step 1: ``Process(target=tarea)``, ``start()``, ``join()``."""
        p = self.ctx.Process(target=tarea, args=("Guillermo G", self.words))
        with owning(p):
            p.start()
            p.join()
        p.result()
        self.out.note(self.text["first_after"].format(name=p.name, pid=p.pid, exitcode=p.exitcode))

    def two_at_once(self) -> None:
        """Step 2: start both, then join both: they run concurrently."""
        p1, p2 = self._pair(self.sleep / 4)
        with owning(p1, p2):
            p1.start()
            p2.start()
            p1.join()
            p2.join()
        p1.result(), p2.result()
        self.out.say(self.text["numeric_done"])

    def one_after_the_other(self) -> None:
        """Step 3: join p1 before p2 starts: they run one after the other."""
        p1, p2 = self._pair(self.sleep / 4)
        with owning(p1, p2):
            p1.start()
            p1.join()
            p2.start()
            p2.join()
        p1.result(), p2.result()
        self.out.say(self.text["numeric_done"])

    def timing(self) -> None:
        """Step 4: the same work in one process, then in two (joined badly, then well)."""
        t = self.text

        def measure(key: str, work: Callable[[Trace], None]) -> None:
            self.out.note(t[key])
            start = time.perf_counter()
            with procesos.trace() as recording:
                work(recording)
            seconds = time.perf_counter() - start
            self.out.say(t["elapsed"].format(seconds=seconds))
            self.timings.append((t[key], seconds))
            self.timelines.append((t[key], recording.timeline()))

        def sequential(recording: Trace) -> None:
            with recording.span("calc_cuad"):
                calc_cuad(NUMS, self.sleep, self.words)
            with recording.span("calc_cubos"):
                calc_cubos(NUMS, self.sleep, self.words)

        def joined(recording: Trace) -> None:
            p1, p2 = self._pair(self.sleep)
            with owning(p1, p2):
                p1.start()
                p1.join()
                p2.start()
                p2.join()
            p1.result(), p2.result()

        def concurrent(recording: Trace) -> None:
            p1, p2 = self._pair(self.sleep)
            with owning(p1, p2):
                p1.start()
                p2.start()
                p1.join()
                p2.join()
            p1.result(), p2.result()

        measure("run_sequential", sequential)
        measure("run_joined", joined)
        measure("run_concurrent", concurrent)

    def pids(self) -> None:
        """Step 5: pid and ppid of this process and of two children, as a tree."""
        t = self.text
        children = [
            self.ctx.Process(target=f, args=(nombre, self.words)) for nombre in ("oscar", "ana")
        ]
        with owning(*children):
            for p in children:
                p.start()
                p.join()  # one at a time: their lines stay in order
        zygote = procesos.zygote_pid()
        nodes: list[Node] = []
        for p in children:
            pid, ppid, parent = p.result()
            key = "pids_child" if ppid == parent else "pids_child_zygote"
            label = t[key].format(pid=pid, name=p.name, ppid=ppid, parent=parent)
            nodes.append((label, []))
        me = (t["pids_parent"].format(pid=os.getpid()), nodes)
        self.out.say("")
        self.out.tree((t["pids_grandparent"].format(pid=os.getppid()), [me]))
        if zygote is not None and any(p.start_method == "zygote" for p in children):
            self.out.note(t["pids_zygote_note"].format(zygote=zygote))

    def memory_is_a_copy(self) -> None:
        """Step 6: the child appends to a global list; the parent's stays empty."""
        p = self.ctx.Process(target=calc_cuad_global, args=(VISIBILITY_NUMS, self.words))
        with owning(p):
            p.start()
            p.join()
        p.result()
        self.out.say(f"{self.text['outside']} {nums_res}")

    def results_back(self) -> None:
        """Step 7: the same squares brought back by an Array, a Queue and result()."""
        t = self.text
        nums = VISIBILITY_NUMS
        arreglo = self.ctx.Array("i", len(nums))
        p = self.ctx.Process(target=cuadrados_en_array, args=(nums, arreglo))
        with owning(p):
            p.start()
            p.join()
        p.result()
        self.out.say(f"{t['back_array'].format(size=len(nums))} {list(arreglo[:])}")

        cola = self.ctx.Queue()
        p = self.ctx.Process(target=cuadrados_a_cola, args=(nums, cola))
        with owning(p):
            p.start()
            # get() before join(): a child waits to exit until what it put is read.
            recibido = cola.get(timeout=60)
            p.join()
        p.result()
        cola.close()
        cola.join_thread()
        self.out.say(f"{t['back_queue']} {recibido}")

        p = self.ctx.Process(target=cuadrados, args=(nums,))
        with owning(p):
            p.start()
            p.join()
        self.out.say(f"{t['back_result']} {p.result()}")

    def summary(self) -> None:
        """The table of timings and the speed-up of two processes over one."""
        t = self.text
        if not self.timings:
            return
        baseline = self.timings[0][1]
        rows = [
            [label, f"{seconds:.2f}", f"{baseline / seconds:.1f}x"]
            for label, seconds in self.timings
        ]
        speedup = baseline / self.timings[-1][1]
        self.out.table(
            t["table_title"].format(sleep=self.sleep),
            [t["col_run"], t["col_seconds"], t["col_speedup"]],
            rows,
            t["speedup_line"].format(speedup=speedup),
        )
        self.show_timelines()

    def show_timelines(self) -> None:
        """The three runs drawn on one time scale: the 2 s against the 1 s, seen."""
        if not self.timelines:
            return
        t = self.text
        longest = max(timeline.duration for _, timeline in self.timelines)
        for _, timeline in self.timelines:
            timeline.duration = longest
            for row in timeline.rows:
                if row.label.startswith("this process"):
                    row.label = t["timeline_parent"].format(pid=os.getpid())
        self.out.heading(t["timeline_title"])
        for label, timeline in self.timelines:
            self.out.timeline(label, timeline)
        if self.html_path:
            with open(self.html_path, "w", encoding="utf-8") as file:
                file.write(render_html(self.timelines, title=t["timeline_title"]))
            self.out.note(t["timeline_html"].format(path=self.html_path))


def run(
    lang: str = "en",
    fast: bool = False,
    method: str | None = None,
    plain: bool | None = None,
    stream: TextIO | None = None,
    html: str | None = None,
) -> int:
    """Run the demo; return the exit code.

    *method* picks the start method (None: the default one); *plain* forces
    plain text (True) or rich (False), None decides from the stream; *fast*
    shortens the pauses to :data:`FAST_SLEEP`; *html*: also write the
    timelines of the timing step to that file, as a page for a browser.
    """
    demo = Demo(
        ctx=procesos.get_context(method),
        out=make_output(stream or sys.stdout, plain),
        text=texts(lang),
        sleep=FAST_SLEEP if fast else SLEEP,
        html_path=html,
    )
    demo.run()
    return 0
