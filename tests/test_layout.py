"""Import direction: ir <- hardware <- schedule <- egraph <- extract <- codegen <- the API
(compile, CLI, ...), and ir <- frontend (the ONNX import).

Every import counts — at module level, inside a function, or under `if TYPE_CHECKING:` — because a
lazy import is still a dependency. Packages import only packages below them, modules import no
module that imports them back (no cycles, within a package either), `ir` imports nothing of
isamap's above it, and only `egraph` imports egglog.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "isamap"
ORDER = ["ir", "hardware", "schedule", "egraph", "extract", "codegen"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every isamap module `path` imports, anywhere in the file (`from a import b` counts as `a`,
    and as `a.b` when that is a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.split(".")[0] == "isamap" and n in MODULES}


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return ORDER.index(parts[1]) if len(parts) > 1 and parts[1] in ORDER else None


def test_the_graph_sees_lazy_imports() -> None:
    # A function-local import in a module of the fixture is found (the old test missed these).
    tree = "def f():\n    from isamap.extract import extract\n"
    found = {
        n.module for n in ast.walk(ast.parse(tree)) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert found == {"isamap.extract"}
    assert "isamap.ir.kernel" in GRAPH["isamap.ir.shapes"]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) is not None))
def test_imports_go_one_way(module: str) -> None:
    level = _layer(module)
    assert level is not None
    for name in GRAPH[module]:
        if name == "isamap":
            pytest.fail(f"{module} imports the public API package isamap")
        other = _layer(name)
        assert other is not None and other <= level, f"{module} imports {name}"


def test_no_import_cycles() -> None:
    state: dict[str, str] = {}  # grey while on the stack, black when done

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "grey"
        for dep in sorted(GRAPH[module]):
            if dep == module:
                continue
            if state.get(dep) == "grey":
                cycle = [*stack[stack.index(dep) :], dep] if dep in stack else [module, dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*stack, dep])
        state[module] = "black"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_ir_imports_nothing_above_it() -> None:
    for module in MODULES:
        if _layer(module) == 0:
            assert all(_layer(n) == 0 for n in GRAPH[module]), module


def test_only_egraph_imports_egglog() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] == "egglog" for n in names):
                assert path.parent.name == "egraph", path


def test_frontend_sits_on_ir_alone() -> None:
    # ir <- frontend: the ONNX import builds Kernels and Models and knows nothing of mapping
    for module, deps in GRAPH.items():
        if module.startswith("isamap.frontend"):
            bad = [d for d in deps if not d.startswith(("isamap.ir", "isamap.frontend"))]
            assert not bad, f"{module} imports {bad}"
        elif _layer(module) is not None:
            assert not any(d.startswith("isamap.frontend") for d in deps), module
