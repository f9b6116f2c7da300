"""Import direction: ir <- hardware <- schedule <- egraph <- extract <- codegen <- the API
(compile, CLI, ...), and ir <- frontend (the ONNX import); the shipped targets
(`isamap/targets/<name>/`) sit on ir, hardware and schedule, and no core module imports one or
names one.

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


def test_no_core_module_imports_a_shipped_target() -> None:
    # a vendor library's baseline registers itself by name (schedule/registry.py)
    for module, deps in GRAPH.items():
        if _layer(module) is not None:
            bad = [d for d in deps if d.startswith("isamap.targets")]
            assert not bad, f"{module} imports {bad}"


def test_a_shipped_target_sits_on_the_scheduler() -> None:
    allowed = ("isamap.ir", "isamap.hardware", "isamap.schedule", "isamap.targets")
    packages = [m for m in MODULES if m.startswith("isamap.targets.")]
    assert "isamap.targets.gemmini" in packages
    for module in packages:
        bad = [d for d in GRAPH[module] if not d.startswith(allowed)]
        assert not bad, f"{module} imports {bad}"


def _docstrings(tree: ast.Module) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef))]
    return {
        id(n.body[0].value)
        for n in nodes
        if n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)
    }


def test_no_core_module_names_a_shipped_target() -> None:
    # `target.name == "gemmini"` or `baseline_schedule == "gemmini-default"` in the core would
    # tie a mechanism to one vendor; a target declares what it has in its file instead
    from isamap.hardware.target import list_targets
    from isamap.schedule.registry import strategy_names
    from isamap.schedule.strategies import STRATEGIES

    vendor = set(list_targets()) | (set(strategy_names()) - set(STRATEGIES))
    assert {"gemmini", "gemmini-default"} <= vendor
    for module, path in MODULES.items():
        if _layer(module) is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and id(node) not in skip:
                assert node.value not in vendor, f"{module}:{node.lineno} names {node.value!r}"


def test_target_and_rule_files_live_in_their_folders() -> None:
    # a shipped target's files are isamap/targets/<name>/<name>.toml (+ <name>.egg); rules/ holds
    # the hardware-independent rules only (a target's .egg there would never be loaded)
    from isamap.hardware.target import list_targets

    names = set(list_targets())
    for path in PACKAGE.rglob("*.toml"):
        rel = path.relative_to(PACKAGE)
        assert rel.parts[0] == "targets" and rel == Path("targets", path.stem, path.name), rel
    for path in PACKAGE.rglob("*.egg"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "targets":
            assert rel == Path("targets", path.stem, path.name) and path.stem in names, rel
        else:
            assert rel.parts[0] == "rules" and path.stem not in names, rel
