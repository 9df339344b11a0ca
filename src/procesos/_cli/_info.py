"""``procesos info``: what procesos finds on this machine.

The start methods and the default one, Python, cores, free room in
``/dev/shm`` (where shared memory lives on Linux) and whether a zygote is
running, as a table on a terminal, as ``key: value`` lines when piped, or as
JSON.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import shutil
import sys
from collections.abc import Callable
from typing import Any, TextIO

import procesos

from .._launch._methods import ENV_START_METHOD

__all__ = ["collect", "render", "run"]

SHM_PATH = "/dev/shm"
_ENV_VARIABLES = (ENV_START_METHOD, "PROCESOS_ZYGOTE_PRELOAD", "PROCESOS_OUTPUT")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _usable_cores() -> int | None:
    getaffinity: Callable[[int], set[int]] | None = getattr(os, "sched_getaffinity", None)
    return None if getaffinity is None else len(getaffinity(0))


def _shm() -> dict[str, int] | None:
    try:
        usage = shutil.disk_usage(SHM_PATH)
    except OSError:
        return None
    return {"free": usage.free, "total": usage.total}


def collect() -> dict[str, Any]:
    """Gather the facts ``procesos info`` reports, as plain JSON-ready values."""
    get_output: Callable[[], str] | None = getattr(procesos, "get_output", None)
    return {
        "procesos": procesos.__version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "start_methods": procesos.get_all_start_methods(),
        "default_start_method": procesos.get_start_method(),
        # The first of the list is the default, read without fixing it for this process.
        "stdlib_default_start_method": multiprocessing.get_start_method(allow_none=True)
        or multiprocessing.get_all_start_methods()[0],
        "cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "shm": _shm(),
        "zygote_pid": procesos.zygote_pid(),
        "output": get_output() if get_output is not None else None,
        "environment": {k: os.environ[k] for k in _ENV_VARIABLES if k in os.environ},
    }


def _rows(facts: dict[str, Any]) -> list[tuple[str, str]]:
    methods = ", ".join(
        f"{m} (default)" if m == facts["default_start_method"] else m
        for m in facts["start_methods"]
    )
    default = facts["default_start_method"]
    if ENV_START_METHOD in facts["environment"]:
        default += f" (from {ENV_START_METHOD})"
    cores = str(facts["cores"])
    if facts["usable_cores"] is not None and facts["usable_cores"] != facts["cores"]:
        cores += f" ({facts['usable_cores']} usable by this process)"
    shm = facts["shm"]
    shm_text = (
        f"{_size(shm['free'])} free of {_size(shm['total'])}"
        if shm is not None
        else f"{SHM_PATH} not found (shared memory uses the system's default)"
    )
    zygote = facts["zygote_pid"]
    zygote_text = (
        f"running, pid {zygote}"
        if zygote is not None
        else "not running in this process (each program starts its own at its first start())"
    )
    rows = [
        ("procesos", facts["procesos"]),
        ("Python", f"{facts['python']} ({facts['implementation']}, {facts['executable']})"),
        ("platform", facts["platform"]),
        ("start methods", methods),
        ("default start method", default),
        ("multiprocessing's default", facts["stdlib_default_start_method"]),
        ("cores", cores),
        (f"shared memory ({SHM_PATH})", shm_text),
        ("zygote", zygote_text),
    ]
    if facts["output"] is not None:
        rows.append(("child output", facts["output"]))
    rows += [(name, value) for name, value in facts["environment"].items()]
    return rows


def render(facts: dict[str, Any], stream: TextIO, plain: bool | None = None) -> None:
    """Write *facts* to *stream*: a rich table on a terminal, ``key: value`` lines elsewhere."""
    rows = _rows(facts)
    if plain is None:
        plain = not (stream.isatty() and os.environ.get("TERM") != "dumb")
    if plain:
        width = max(len(key) for key, _ in rows)
        for key, value in rows:
            stream.write(f"{key + ':':<{width + 1}} {value}\n")
        stream.flush()
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="procesos info", show_header=False, title_style="bold")
    table.add_column(style="bold cyan")
    table.add_column()
    for key, value in rows:
        table.add_row(Text(key), Text(value))
    Console(file=stream, highlight=False).print(table)


def run(as_json: bool = False, plain: bool | None = None, stream: TextIO | None = None) -> int:
    """Print what procesos finds on this machine; return the exit code."""
    out = stream or sys.stdout
    facts = collect()
    if as_json:
        out.write(json.dumps(facts, indent=2) + "\n")
        out.flush()
    else:
        render(facts, out, plain)
    return 0
