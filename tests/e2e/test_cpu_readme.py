"""The README's host-CPU example runs as written: a GEMM and a depthwise-separable block,
compiled for `host`, run natively and checked against numpy."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_cpu_example_runs() -> None:
    section = README.read_text().split("## The host CPU: native code", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    scope: dict[str, object] = {}
    exec(compile(code.group(1), "README.md", "exec"), scope)
    result = scope["result"]
    assert result.target.codegen is not None  # type: ignore[attr-defined]
    assert result.mapping.instruction_calls()  # type: ignore[attr-defined]
    assert getattr(scope["got"], "dtype", None) == "float32"  # computed natively, not in numpy
