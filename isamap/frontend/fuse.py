"""Layer fusion: adjacent layers whose intermediate nothing else reads become one kernel.

Two patterns, the ones a mapping can use: a contraction (Conv, Gemm, MatMul, a GRU step) with the
elementwise layers that follow it (bias, activation, residual add: the epilogue the target may
fuse into its store), and a depthwise convolution (with its epilogue) with the pointwise
convolution after it (a depthwise-separable block, which the depthwise packing maps as one).
Everything else stays a layer of its own. The e-graph then decides how each fused kernel maps.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection

from isamap.ir.errors import IsamapError
from isamap.ir.kernel import Access, Binary, Expr, Kernel, Statement, TensorDecl, Unary
from isamap.ir.model import Layer, Model, Step, View
from isamap.ir.shapes import check_kernel

__all__ = ["fuse"]

_ANCHORS = ("contraction", "depthwise", "pointwise", "dw_separable")


def fuse(model: Model) -> Model:
    """`model` with each run of fusable layers merged into one layer (see the module doc)."""
    uses: Counter[str] = Counter(model.outputs)
    for step in model.steps:
        for value in _reads(step):
            uses[value] += 1
    steps: list[Step] = []
    state = ""  # what the open group may still take: "" (nothing), "epilogue", "pointwise"
    for step in model.steps:
        last = steps[-1] if steps else None
        if isinstance(step, Layer) and isinstance(last, Layer) and state and _fits(state, step):
            links = _links(last, step)
            if links and (step.kind == "elementwise" or any(uses[v] == 1 for v in links)):
                for value in step.inputs().values():
                    if value in links:
                        uses[value] -= 1
                internal = {v for v in links if uses[v] == 0}
                steps[-1] = merge(last, step, internal)
                if step.kind == "pointwise":
                    state = "epilogue"
                continue
        steps.append(step)
        state = ""
        if isinstance(step, Layer) and step.kind in _ANCHORS:
            state = "pointwise" if step.kind == "depthwise" else "epilogue"
    return dataclasses.replace(model, steps=tuple(steps))


def _fits(state: str, step: Layer) -> bool:
    if step.kind == "elementwise":
        return True
    return state == "pointwise" and step.kind == "pointwise"


def _reads(step: Step) -> tuple[str, ...]:
    return step.sources if isinstance(step, View) else tuple(step.inputs().values())


def _links(first: Layer, second: Layer) -> set[str]:
    """The values `first` computes that `second` reads."""
    produced = set(first.outputs().values())
    return {v for v in second.inputs().values() if v in produced}


def merge(first: Layer, second: Layer, internal: Collection[str] = ()) -> Layer:
    """One layer computing `first` then `second` (which reads what `first` computes from the
    merged kernel's own tensors); the values in `internal`, read by nothing else, are no longer
    bound: they become intermediates."""
    a, b = first.kernel, second.kernel
    by_value = {v: t for t, v in first.bindings.items()}
    taken = set(a.shapes)
    rename: dict[str, str] = {}
    for tensor in b.shapes:
        value = second.bindings.get(tensor)
        if value is not None and value in by_value and _same_read(a, by_value[value], b, tensor):
            rename[tensor] = by_value[value]
            continue
        name, n = tensor, 1
        while name in taken:
            n += 1
            name = f"{tensor}{n}"
        taken.add(name)
        rename[tensor] = name
    tensors: dict[str, TensorDecl] = dict(a.tensors)
    for name, decl in b.tensors.items():
        new = rename[name]
        if new not in tensors and new not in a.written():
            tensors[new] = dataclasses.replace(decl, name=new)
    statements = [*a.statements, *(_rename_statement(s, rename) for s in b.statements)]
    try:
        kernel: Kernel = check_kernel(f"{a.name}+{b.name}", tensors, statements, a.source)
    except IsamapError as err:  # a bug in the pattern, not the user's: say which layers
        raise IsamapError(f"cannot fuse {first.name} with {second.name}: {err}") from None
    bindings = {t: v for t, v in first.bindings.items() if v not in internal}
    for tensor, value in second.bindings.items():
        if value not in internal:
            bindings.setdefault(rename[tensor], value)
    kind = "dw_separable" if second.kind == "pointwise" else first.kind
    nodes = (*first.nodes, *second.nodes)
    return Layer(first.name, f"{first.op}+{second.op}", kernel, bindings, nodes, kind)


def _same_read(a: Kernel, at: str, b: Kernel, bt: str) -> bool:
    """Tensor `bt` of `b` can be tensor `at` of `a`: `a` computes it, or both read it unpadded."""
    if at not in a.tensors or at in a.written():
        return True
    da, db = a.tensors[at], b.tensors.get(bt)
    return db is not None and da.shape == db.shape and da.padding == db.padding


def _rename_statement(s: Statement, names: dict[str, str]) -> Statement:
    return dataclasses.replace(s, target=names.get(s.target, s.target), expr=_rename(s.expr, names))


def _rename(e: Expr, names: dict[str, str]) -> Expr:
    if isinstance(e, Access):
        return dataclasses.replace(e, tensor=names.get(e.tensor, e.tensor))
    if isinstance(e, Unary):
        return dataclasses.replace(e, arg=_rename(e.arg, names))
    if isinstance(e, Binary):
        return dataclasses.replace(e, lhs=_rename(e.lhs, names), rhs=_rename(e.rhs, names))
    return e
