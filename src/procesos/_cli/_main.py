"""The ``procesos`` command line: ``demo``, ``info``, ``trace show`` and ``bench``.

The top layer: it may import everything, nothing imports it. Each command's
module is imported only when that command runs, so ``procesos info`` stays
quick. Ctrl-C ends any command with one line on stderr and exit code 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ._demo_text import LANGUAGES, texts

__all__ = ["build_parser", "main"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``procesos`` command."""
    from .. import __version__
    from .._launch import START_METHODS

    parser = argparse.ArgumentParser(
        prog="procesos",
        description="Process-based parallelism: the multiprocessing model, without its traps.",
    )
    parser.add_argument("--version", action="version", version=f"procesos {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the multiprocessing lesson live, step by step, with a timing table",
        description="Run the multiprocessing lesson live with procesos processes: a first "
        "process, two at once, join() placement, sequential against concurrent timing, "
        "pids as a tree, and sharing results. Ends with a table of the timings.",
    )
    demo.add_argument(
        "--lang", choices=LANGUAGES, default=LANGUAGES[0],
        help="language of the texts: en (default) or es (the lesson's language)",
    )
    demo.add_argument(
        "--fast", action="store_true",
        help="shorten the pauses (0.01 s instead of 0.2 s per number), for tests and CI",
    )
    demo.add_argument(
        "--start-method", choices=START_METHODS, default=None, dest="method",
        help="start method of the demo's processes (default: procesos' default)",
    )
    demo.add_argument(
        "--plain", action="store_true",
        help="plain text even on a terminal (piped output is always plain)",
    )
    demo.add_argument(
        "--html", metavar="OUT.html",
        help="also write the timelines of the timing step as one page for a browser",
    )

    info = commands.add_parser(
        "info",
        help="start methods, Python, cores, shared-memory room, zygote",
        description="Show the start methods and the default one, the Python version, the "
        "cores, the free room in /dev/shm and whether a zygote is running.",
    )
    info.add_argument("--json", action="store_true", help="print the facts as JSON")
    info.add_argument("--plain", action="store_true", help="plain text even on a terminal")

    trace = commands.add_parser(
        "trace",
        help="draw a recorded trace (procesos.trace() or PROCESOS_TRACE=file.json)",
        description="Draw a trace that procesos recorded: 'procesos trace show FILE.json' "
        "prints a timeline, one row per process, bars in time; --html also writes one "
        "self-contained page to open in a browser.",
    )
    trace_commands = trace.add_subparsers(dest="trace_command", metavar="SUBCOMMAND",
                                          required=True)
    trace_show = trace_commands.add_parser(
        "show", help="print the timeline of FILE.json",
        description="Print the timeline of a trace: one row per process or thread.")
    trace_show.add_argument("file", metavar="FILE.json", help="a trace procesos wrote")
    trace_show.add_argument("--html", metavar="OUT.html",
                            help="also write the timeline as one HTML page (no network needed)")
    trace_show.add_argument("--plain", action="store_true",
                            help="plain text even on a terminal")

    commands.add_parser(
        "bench",
        help="benchmarks: procesos beside the standard library and the installed peers",
        add_help=False,
        description="Every argument after 'bench' goes to the benchmark runner.",
    )
    return parser


def _bench(argv: Sequence[str]) -> int:
    try:
        bench = importlib.import_module("procesos._cli._bench")
    except ModuleNotFoundError as exc:
        if exc.name == "procesos._cli._bench":
            print(
                "procesos bench: this installation has no benchmark runner "
                "(the module procesos._cli._bench is missing).",
                file=sys.stderr,
            )
        else:
            print(
                f"procesos bench: the benchmarks need the module {exc.name!r}; "
                "install them with: pip install 'procesos[bench]'",
                file=sys.stderr,
            )
        return EXIT_USAGE
    code = bench.main(list(argv))
    return 0 if code is None else int(code)


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from . import _demo

        return _demo.run(
            lang=args.lang, fast=args.fast, method=args.method,
            plain=True if args.plain else None, html=args.html,
        )
    if args.command == "trace":
        return _trace_show(args.file, args.html, plain=True if args.plain else None)
    from . import _info

    return _info.run(as_json=args.json, plain=True if args.plain else None)


def _trace_show(path: str, html_path: str | None, plain: bool | None) -> int:
    from .._trace._chrome import load
    from .._trace._draw import render_html, show

    try:
        timeline = load(path)
    except (OSError, ValueError) as exc:
        print(f"procesos trace show: {exc}", file=sys.stderr)
        return EXIT_USAGE
    show(timeline, sys.stdout, plain)
    if html_path:
        with open(html_path, "w", encoding="utf-8") as file:
            file.write(render_html([(os.path.basename(path), timeline)],
                                   title=f"procesos trace: {os.path.basename(path)}"))
        print(f"written: {html_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``procesos`` command with *argv* (default: ``sys.argv[1:]``); return its exit code.

    Ctrl-C ends the command with one short line on stderr and exit code 130,
    after the processes it started have ended.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    command, lang = (arguments[:1] or ["procesos"])[0], LANGUAGES[0]
    try:
        # Everything after "bench" belongs to the benchmark runner, --help included.
        if command == "bench":
            return _bench(arguments[1:])
        parser = build_parser()
        try:
            args = parser.parse_args(arguments)
        except SystemExit as exc:  # --help, --version, usage errors
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        lang = getattr(args, "lang", lang)
        return _run(args)
    except KeyboardInterrupt:
        print(texts(lang)["interrupted"].format(command=command), file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (| head): stop quietly, and let no flush at exit complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
