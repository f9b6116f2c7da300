"""Import direction (DESIGN.md): ir <- hardware <- schedule <- egraph <- extract <- API.

Only module-level imports count; `egraph` reaches `extract` only inside a method, on use.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "isamap"
ORDER = ["ir", "hardware", "schedule", "egraph", "extract"]


def _module_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_imports_go_one_way() -> None:
    for level, package in enumerate(ORDER):
        allowed = {f"isamap.{p}" for p in ORDER[: level + 1]}
        for path in (PACKAGE / package).glob("*.py"):
            for name in _module_imports(path):
                if name == "isamap" or name.startswith("isamap."):
                    top = ".".join(name.split(".")[:2])
                    assert top in allowed, f"{path.name} in {package} imports {name}"


def test_only_egraph_imports_egglog() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if "egglog" in {n.split(".")[0] for n in _module_imports(path)}:
            assert path.parent.name == "egraph", path
        assert "import egglog" not in text or path.parent.name == "egraph", path
