"""The computed rule `ew-through-layout`: an epilogue operand carried through a product's layout.

A kernel adds its bias (`Y[n, k, h, w] = O[n, k, h, w] + B[k]`) and clips (`min(.., 6)`) in the
kernel's own layout, but its product is a `Bmm` under transposes and reshapes
(`einsum-to-bmm`). Egglog's `fn-through-*` rules bring a one-operand function next to the product;
this rule does the same for a binary operator whose other operand is a constant (`Full`) or a
broadcast tensor (`Broadcast`): `Ew(op, view(p), q)` -> `view(Ew(op, p, q'))`, with `q'` the
operand read in `p`'s layout. It fires only where that operand is again a broadcast of the same
tensor (a per-channel bias over a product's N axis: `Broadcast(B, [b, m, n], "2")`), found by
following each element's position through the views, so the target's bias rules
(`bias-into-...`) can match it. Checked for soundness like the other computed rules.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from isamap.egraph.dump import EGraphDump, ENode, Ref, parse_dims
from isamap.egraph.encode import shape_str
from isamap.egraph.term_builder import Builder, Val

if TYPE_CHECKING:
    from isamap.egraph.computed_rules import RuleContext

__all__ = ["ew_through_layout", "ew_through_layout_depends"]

#: Operators whose constant or broadcast operand is carried through (a bias, a scale, a clip).
_OPS = ("+", "*", "max", "min")
#: Constructors of a product's result: where a layout chain may end.
_PRODUCTS = ("Bmm", "Instr", "InstrAct", "InstrBias")
_VIEWS = ("Reshape", "Transpose")
_DEPTH = 3  # views followed: a product's result layout is at most a reshape and a transpose
_MAX_ELEMS = 1 << 22  # position arrays larger than this are not followed (memory, time)

_spaces: dict[int, tuple[EGraphDump, set[str]]] = {}


def _product_space(dump: EGraphDump) -> set[str]:
    """E-classes in a product's own layout: a product, or a function of one, or an operator of
    one with a constant or broadcast operand (memoised per dump)."""
    hit = _spaces.get(id(dump))
    if hit is not None and hit[0] is dump:
        return hit[1]
    space: set[str] = set()
    changed = True
    while changed:
        changed = False
        for cid, nodes in dump.classes.items():
            if cid in space:
                continue
            for node in nodes:
                refs = node.refs()
                if (
                    node.op in _PRODUCTS
                    or (node.op == "Fn" and refs[0] in space)
                    or (node.op == "Ew" and any(r in space for r in refs))
                ):
                    space.add(cid)
                    changed = True
                    break
    _spaces.clear()
    _spaces[id(dump)] = (dump, space)
    return space


def _constant_operand(dump: EGraphDump, cid: str) -> ENode | None:
    """A `Full` or `Broadcast` e-node of e-class `cid`."""
    for node in dump.classes.get(cid, ()):
        if node.op in ("Full", "Broadcast"):
            return node
    return None


def _chains(dump: EGraphDump, cid: str, space: set[str]) -> list[list[ENode]]:
    """Chains of views from e-class `cid` (outermost first) down to a product-space e-class."""
    out: list[list[ENode]] = []
    stack: list[tuple[str, list[ENode]]] = [(cid, [])]
    while stack:
        cur, chain = stack.pop()
        if len(chain) >= _DEPTH:
            continue
        for node in dump.classes.get(cur, ()):
            if node.op not in _VIEWS:
                continue
            child = node.refs()[0]
            if child in space:
                out.append([*chain, node])
            else:
                stack.append((child, [*chain, node]))
    return out


def _positions(shape: tuple[int, ...], chain: list[ENode]) -> np.ndarray:
    """For each element of the outermost view, its flat position in the innermost tensor."""
    idx = np.arange(math.prod(shape)).reshape(shape)
    for node in reversed(chain):
        if node.op == "Reshape":
            idx = idx.reshape(parse_dims(node.str_arg(1)))
        else:
            idx = idx.transpose(parse_dims(node.str_arg(1)))
    return idx


def _inner_broadcast(
    node: ENode,
    shape: tuple[int, ...],
    inner: tuple[int, ...],
    pos: np.ndarray,
    src: tuple[int, ...],
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Broadcast `node` (of tensor shape `src` to `shape`) read at inner positions `pos`, as a
    broadcast of the same tensor's elements in row-major order to `inner`: (the tensor's shape
    there, the inner axes it covers), or None when the elements do not line up so."""
    where = parse_dims(node.str_arg(2))
    z = np.arange(math.prod(src)).reshape(src)
    order = sorted(range(len(where)), key=lambda i: where[i])
    z = z.transpose(order)  # the tensor's axes in result-axis order
    expand = [1] * len(shape)
    for i, w in enumerate(sorted(where)):
        expand[w] = z.shape[i]
    outer = np.broadcast_to(z.reshape(expand), shape)
    flat = np.empty(math.prod(inner), dtype=np.int64)
    flat[pos.ravel()] = outer.ravel()
    got = flat.reshape(inner)
    axes = tuple(a for a in range(len(inner)) if not (got == got.take([0], axis=a)).all())
    if not axes:  # one element everywhere: a scalar, not a per-channel operand
        return None
    kept = got[tuple(slice(None) if a in axes else 0 for a in range(len(inner)))]
    if not np.array_equal(kept.ravel(), np.arange(math.prod(src))):
        return None
    return tuple(inner[a] for a in axes), axes


def ew_through_layout_depends(node: ENode, dump: EGraphDump) -> object:
    """What a match of `ew_through_layout` on `node` depends on: the view chains below its
    operands and their constant operands (the rule runs again when a new chain appears)."""
    if node.str_arg(0) not in _OPS:
        return None
    space = _product_space(dump)
    found: list[object] = []
    for side in (1, 2):
        ref, other = node.args[side], node.args[3 - side]
        assert isinstance(ref, Ref) and isinstance(other, Ref)
        if _constant_operand(dump, other.eclass) is None or ref.eclass in space:
            continue
        found.extend(
            tuple((v.op, v.args) for v in chain) for chain in _chains(dump, ref.eclass, space)
        )
    return tuple(found)


def ew_through_layout(node: ENode, b: Builder, ctx: RuleContext) -> list[Val]:
    """`Ew(op, view(p), q)` -> `view(Ew(op, p, q'))` for a constant or broadcast `q` (either
    operand order) and `p` in a product's layout; see the module docstring."""
    op = node.str_arg(0)
    if op not in _OPS:
        return []
    dump = ctx.dump
    space = _product_space(dump)
    shape = dump.shapes[node.eclass]
    if math.prod(shape) > _MAX_ELEMS:
        return []
    results: list[Val] = []
    for side in (1, 2):
        ref, other = node.args[side], node.args[3 - side]
        assert isinstance(ref, Ref) and isinstance(other, Ref)
        const = _constant_operand(dump, other.eclass)
        if const is None or ref.eclass in space:
            continue
        for chain in _chains(dump, ref.eclass, space):
            base = chain[-1].refs()[0]
            inner = dump.shapes.get(base)
            if inner is None or math.prod(inner) != math.prod(shape):
                continue
            if const.op == "Full":
                value_lit = const.args[0]
                assert not isinstance(value_lit, Ref)
                q = b.make("Full", (value_lit, shape_str(inner)), inner)
            else:
                z_cid = const.refs()[0]
                src = dump.shapes.get(z_cid)
                if src is None:
                    continue
                found = _inner_broadcast(const, shape, inner, _positions(inner, chain), src)
                if found is None:
                    continue
                z_shape, axes = found
                z = b.of(z_cid)
                if z_shape != src:
                    z = b.make("Reshape", (z, shape_str(z_shape)), z_shape)
                q = b.make("Broadcast", (z, shape_str(inner), shape_str(axes)), inner)
            p = b.of(base)
            args = (op, p, q) if side == 1 else (op, q, p)
            value = b.make("Ew", args, inner)
            for view in reversed(chain):
                lit = view.str_arg(1)
                if view.op == "Reshape":
                    value = b.make("Reshape", (value, lit), parse_dims(lit))
                else:
                    perm = parse_dims(lit)
                    value = b.make("Transpose", (value, lit), tuple(value.shape[i] for i in perm))
            results.append(value)
    return results
