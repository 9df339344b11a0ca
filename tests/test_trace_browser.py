"""The HTML timeline in a real browser: headless Chromium draws it, and the screenshot
shows every row's bars. Run by ``make test-browser`` (it needs ``chromium``, from
the system's packages); skipped by ``make test``."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

import procesos
from procesos._trace._draw import _STYLES

pytestmark = pytest.mark.skipif(
    os.environ.get("PROCESOS_TEST_BROWSER") != "1" or shutil.which("chromium") is None,
    reason="the browser check runs with make test-browser, where chromium is installed",
)


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGBA pixels of an 8-bit, non-interlaced PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, header = 8, b"", b""
    while position < len(data):
        (length,) = struct.unpack("!I", data[position:position + 4])
        kind = data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack("!IIBBBBB", header)
    assert depth == 8 and interlace == 0 and colour in (2, 6)
    channels = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = previous[x]
            corner = previous[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[x] = (line[x] + best) & 0xFF
        previous = line
        if channels == 3:
            line = bytearray(b"".join(bytes(line[i:i + 3]) + b"\xff"
                                      for i in range(0, stride, 3)))
        rows.append(bytes(line))
    return width, height, rows


def _rgb(fill: str) -> tuple[int, int, int]:
    return int(fill[1:3], 16), int(fill[3:5], 16), int(fill[5:7], 16)


def test_the_timeline_renders_a_bar_on_every_row(tmp_path: Path) -> None:
    go = procesos.Event()
    warm = procesos.Process(target=int)  # the zygote's start is not what this draws
    warm.start()
    warm.join()
    with procesos.trace() as recording:
        processes = [procesos.Process(target=go.wait, args=(30,), name=f"p{i}")
                     for i in range(3)]
        for p in processes:
            p.start()
        go.set()
        for p in processes:
            p.join()
    page = tmp_path / "timeline.html"
    recording.save_html(page)
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=1100,400", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    width, _, rows = read_png(shot)
    green = _rgb(_STYLES["process"][2])

    def is_green(row: bytes, x: int) -> bool:
        return all(abs(row[4 * x + i] - green[i]) <= 8 for i in range(3))

    # Lines of the screenshot that cross a process's bar: three bands, one per process.
    # Lines of the screenshot that cross a process's bar, in bands of
    # consecutive lines: one band per process (a bar is 18 px high; the
    # legend's swatch, 10 px, is no row).
    crossing = [y for y, row in enumerate(rows) if any(is_green(row, x) for x in range(width))]
    bands: list[list[int]] = []
    for y in crossing:
        if bands and y == bands[-1][-1] + 1:
            bands[-1].append(y)
        else:
            bands.append([y])
    rows_drawn = [band for band in bands if len(band) >= 15]
    assert len(rows_drawn) == 3, f"{len(rows_drawn)} process rows drawn"
