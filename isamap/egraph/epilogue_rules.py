"""The computed rule `ew-through-layout`: a per-channel operand carried through a product's layout.

A kernel adds its bias in its own layout (`Y[n, k, h, w] = O[n, k, h, w] + B[k]`), but its product
is a `Bmm` under transposes and reshapes (`einsum-to-bmm`). Egglog's `fn-through-*` rules bring a
one-operand function next to the product; this rule does the same for `+` or `*` with a broadcast
operand: `Ew(op, view(p), Broadcast(z))` -> `view(Ew(op, p, Broadcast(z')))`, `p` in a product's
layout. It fires only where the operand is there one value per column of the product's result
[b, m, n] (or per batch and column) — a per-channel bias or scale, which the target's bias rules
(`bias-into-...`) match; elsewhere it would only copy epilogues into layouts no rule uses. The
broadcast's varied axes are followed through the views axis by axis (a transpose permutes them, a
reshape maps each group of merged or split axes whole), so the rule costs nothing per element.
Checked for soundness like the other computed rules.
"""

from __future__ import annotations

import math
from typing import Protocol

from isamap.egraph.dump import EGraphDump, ENode, Ref, parse_dims
from isamap.egraph.encode import shape_str
from isamap.egraph.term_builder import Builder, Val


class _Context(Protocol):
    """What the rule reads of `computed_rules.RuleContext` (not imported: that module imports
    this one)."""

    @property
    def dump(self) -> EGraphDump: ...


__all__ = ["ew_through_layout", "ew_through_layout_depends"]

#: Operators whose broadcast operand is carried through (a bias, a scale).
_OPS = ("+", "*")
#: The axes of a product's result [b, m, n] a carried operand may vary along: one value per
#: column (n), or per batch and column (b, n) — what a bias row or a per-channel scale is.
_PER_COLUMN = ((2,), (0, 2))
#: Constructors of a product's result: where a layout chain may end.
_PRODUCTS = ("Bmm", "Instr", "InstrAct", "InstrBias", "InstrTaps", "InstrTapsEpi", "InstrTapsBias")
_VIEWS = ("Reshape", "Transpose")
_DEPTH = 3  # views followed: a product's result layout is at most a reshape and a transpose

_spaces: dict[int, tuple[EGraphDump, set[str]]] = {}


def _product_space(dump: EGraphDump) -> set[str]:
    """E-classes in a product's own layout: a product, or a function of one, or an operator of
    one with a broadcast operand (memoised per dump)."""
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
    """A `Broadcast` e-node of e-class `cid`."""
    for node in dump.classes.get(cid, ()):
        if node.op == "Broadcast":
            return node
    return None


def _chains(dump: EGraphDump, cid: str, space: set[str]) -> list[list[ENode]]:
    """Chains of views from e-class `cid` (outermost first) down to the first product-space
    e-class on the way (not past it: the swapped orientation `bmm-swap-operands` makes below a
    product would only double the epilogue terms; the kernel's layout reaches both orientations
    of a product written as an einsum already, `einsum-commute`)."""
    out: list[list[ENode]] = []
    stack: list[tuple[str, list[ENode]]] = [(cid, [])]
    while stack:
        cur, chain = stack.pop()
        if len(chain) >= _DEPTH:
            continue
        for node in dump.classes.get(cur, ()):
            if node.op not in _VIEWS or cur in space:
                continue
            child = node.refs()[0]
            if child in space:
                out.append([*chain, node])
            else:
                stack.append((child, [*chain, node]))
    return out


def _blocks(a: tuple[int, ...], b: tuple[int, ...]) -> list[tuple[list[int], list[int]]] | None:
    """The axes of shapes `a` and `b` (one a row-major reshape of the other) in the smallest
    groups of equal element count, unit axes left out; None if they do not pair up."""
    ia = [i for i, d in enumerate(a) if d != 1]
    ib = [i for i, d in enumerate(b) if d != 1]
    out: list[tuple[list[int], list[int]]] = []
    x = y = 0
    while x < len(ia) or y < len(ib):
        if x >= len(ia) or y >= len(ib):
            return None
        ga, gb = [ia[x]], [ib[y]]
        pa, pb = a[ia[x]], b[ib[y]]
        x, y = x + 1, y + 1
        while pa != pb:
            if pa < pb and x < len(ia):
                ga.append(ia[x])
                pa *= a[ia[x]]
                x += 1
            elif pb < pa and y < len(ib):
                gb.append(ib[y])
                pb *= b[ib[y]]
                y += 1
            else:
                return None
        out.append((ga, gb))
    return out


def _inner_axes(
    dump: EGraphDump, node: ENode, shape: tuple[int, ...], chain: list[ENode]
) -> tuple[int, ...] | None:
    """The axes of the innermost tensor of `chain` that Broadcast `node` (to `shape`, the outer
    view's) varies along, when it is there a broadcast of the same tensor laid out row-major over
    them; else None. Followed axis by axis through the views: a transpose permutes the axes, a
    reshape maps each group of merged or split axes whole (a group varied in part: None)."""
    where = parse_dims(node.str_arg(2))
    if list(where) != sorted(where):
        return None  # the tensor's axes in another order: a transpose of it, not it
    dep = [i in where and shape[i] != 1 for i in range(len(shape))]
    cur = shape
    for view in chain:
        child = dump.shapes.get(view.refs()[0])
        if child is None:
            return None
        if view.op == "Transpose":
            perm = parse_dims(view.str_arg(1))
            new = [False] * len(child)
            for i, p in enumerate(perm):
                new[p] = dep[i]
            if [p for i, p in enumerate(perm) if dep[i]] != sorted(
                p for i, p in enumerate(perm) if dep[i]
            ):
                return None  # the varied axes change order: the tensor would be transposed
        else:
            groups = _blocks(cur, child)
            if groups is None:
                return None
            new = [False] * len(child)
            for ga, gb in groups:
                varied = {dep[i] for i in ga}
                if len(varied) > 1:
                    return None
                for j in gb:
                    new[j] = dep[ga[0]]
        dep, cur = new, child
    axes = tuple(i for i, d in enumerate(dep) if d)
    return axes or None


def ew_through_layout_depends(node: ENode, dump: EGraphDump) -> object:
    """What a match of `ew_through_layout` on `node` depends on: the view chains below its
    operands and their broadcast operands (the rule runs again when a new chain appears)."""
    if node.str_arg(0) not in _OPS:
        return None
    space = _product_space(dump)
    found: list[object] = []
    for side in (1, 2):
        ref, other = node.args[side], node.args[3 - side]
        assert isinstance(ref, Ref) and isinstance(other, Ref)
        if _constant_operand(dump, other.eclass) is None:
            continue
        found.extend(
            tuple((v.op, v.args) for v in chain) for chain in _chains(dump, ref.eclass, space)
        )
    return tuple(found)


def ew_through_layout(node: ENode, b: Builder, ctx: _Context) -> list[Val]:
    """`Ew(op, view(p), q)` -> `view(Ew(op, p, q'))` for a broadcast `q` (either
    operand order) and `p` in a product's layout; see the module docstring."""
    op = node.str_arg(0)
    if op not in _OPS:
        return []
    dump = ctx.dump
    space = _product_space(dump)
    shape = dump.shapes[node.eclass]
    results: list[Val] = []
    for side in (1, 2):
        ref, other = node.args[side], node.args[3 - side]
        assert isinstance(ref, Ref) and isinstance(other, Ref)
        const = _constant_operand(dump, other.eclass)
        if const is None:
            continue
        for chain in _chains(dump, ref.eclass, space):
            base = chain[-1].refs()[0]
            inner = dump.shapes.get(base)
            if inner is None or math.prod(inner) != math.prod(shape):
                continue
            if const.op != "Broadcast" or len(inner) != 3:
                continue
            z_cid = const.refs()[0]
            src = dump.shapes.get(z_cid)
            axes = _inner_axes(dump, const, shape, chain)
            if src is None or axes not in _PER_COLUMN:
                continue
            z_shape = tuple(inner[a] for a in axes)
            if math.prod(z_shape) != math.prod(src):
                continue
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
