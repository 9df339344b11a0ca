"""Every Python example in the README and in docs/ runs, and prints what the page says.

A ```python block is run as a script of its own, in a fresh interpreter. A
```text block right after it is its expected output, compared like a doctest
with ``...`` matching anything (pids). HTML comments on the line before a block
adjust this, only where unavoidable:

* ``<!-- skip -->`` before a python block: not run;
* ``<!-- requires: procesos.NAME -->`` before a python block: skipped while
  procesos has no ``NAME`` (a feature documented ahead of its implementation);
* ``<!-- not checked: REASON -->`` before a text block: the program runs, its
  output is not compared (a timing).
"""

from __future__ import annotations

import doctest
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import procesos
from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
MARK = re.compile(r"^<!--\s*(skip|requires:\s*([\w.]+)|not checked:.*?)\s*-->\s*$")


@dataclass
class Example:
    """One python block of a page, with what the page says about it."""

    page: Path
    line: int
    code: str
    expected: str | None
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}"


def _blocks(text: str) -> list[tuple[int, str, str, str | None]]:
    """(line number, language, body, mark on the line before) of each fenced block."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, language = i, match.group(1)
        i += 1
        body = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        previous = lines[start - 1].strip() if start > 0 else ""
        mark = previous if MARK.match(previous) else None
        blocks.append((start + 1, language, "\n".join(body) + "\n", mark))
        i += 1
    return blocks


def _requirement_missing(name: str) -> bool:
    target: object = procesos
    for part in name.split(".")[1:]:
        if not hasattr(target, part):
            return True
        target = getattr(target, part)
    return False


def collect(page: Path) -> list[Example]:
    """The python examples of *page*, each with its expected output and skip reason."""
    text = page.read_text(encoding="utf-8")
    blocks = _blocks(text)
    lines = text.splitlines()
    examples = []
    for index, (line, language, body, mark) in enumerate(blocks):
        if language != "python":
            continue
        skip = None
        if mark is not None and MARK.match(mark):
            kind = MARK.match(mark)
            assert kind is not None
            if kind.group(1) == "skip":
                skip = "marked <!-- skip --> in the page"
            elif kind.group(2) and _requirement_missing(kind.group(2)):
                skip = f"{kind.group(2)} is not implemented yet"
        expected = None
        if index + 1 < len(blocks):
            next_line, next_language, next_body, next_mark = blocks[index + 1]
            end_of_code = line + body.count("\n") + 1
            between = lines[end_of_code : next_line - 1]
            if next_mark is not None:
                between = between[:-1]  # the mark itself sits between the blocks
            adjacent = all(not x.strip() for x in between)
            if next_language == "text" and adjacent:
                checked = next_mark is None or not next_mark.startswith("<!-- not checked")
                expected = next_body if checked else None
        examples.append(Example(page, line, body, expected, skip))
    return examples


EXAMPLES = [example for page in PAGES for example in collect(page)]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_runs_and_prints_what_the_page_says(example: Example, tmp_path: Path) -> None:
    if example.skip:
        pytest.skip(example.skip)
    script = tmp_path / "example.py"
    script.write_text(example.code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True, text=True, timeout=50, cwd=tmp_path,
    )
    assert result.returncode == 0, f"{example.id} failed:\n{result.stderr}"
    if example.expected is not None:
        checker = doctest.OutputChecker()
        assert checker.check_output(example.expected, result.stdout, doctest.ELLIPSIS), (
            f"{example.id} printed:\n{result.stdout}\nthe page says:\n{example.expected}"
        )


def test_every_page_of_the_docs_has_examples() -> None:
    pages_with_examples = {e.page.name for e in EXAMPLES}
    for name in ("tutorial.md", "api.md", "differences.md", "README.md"):
        assert name in pages_with_examples


def test_readme_links_point_at_existing_files() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme):
        assert (ROOT / target).exists(), target


def test_readme_make_targets_exist_in_the_makefile() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.MULTILINE))
    mentioned = set(re.findall(r"\bmake ([\w-]+)", readme))
    assert mentioned
    assert mentioned <= targets, mentioned - targets
