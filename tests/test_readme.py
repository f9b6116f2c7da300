"""The README's five-minute tour runs as written (so the front page cannot go stale)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_tour_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text()
    tour = text.split("## A five-minute tour", 1)[1]
    code = re.search(r"```python\n(.*?)```", tour, re.S)
    assert code is not None
    monkeypatch.chdir(tmp_path)  # the tour writes egraph.dot
    exec(compile(code.group(1), "README.md", "exec"), {})
    assert (tmp_path / "egraph.dot").read_text().startswith("digraph")


def test_commands_are_the_ci_commands() -> None:
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]"' in text and 'pip install --quiet -e ".[test]"' in ci
    command = "isamap extract examples/kernels/dw_separable.kernel --target gemmini --quantize"
    assert command in text and command in ci
    assert "&& pytest" in text and "\npytest\n" in ci
