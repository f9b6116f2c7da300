"""The computed rule `batch-independent-products`: small independent products as one call.

Two products with no tensor in common, each smaller than the instruction's tile, waste most of
two calls. Put side by side they fill one, the second operand block-diagonal:

- same batch and M: `[x1 | x2] . blockdiag(y1, y2) = [x1.y1 | x2.y2]` (K and N grow);
- same batch and N: `blockdiag(x1, x2) . [y1 ; y2] = [x1.y1 ; x2.y2]` (M and K grow).

The operand sides are `Concat`s (views: each block is loaded from its own tensor); the zero blocks
are `Full 0.0` tensors, real zeros the instruction loads and multiplies, each priced as the host
fill it is (cost class `constant`), so the batched call wins only where one padded call beats two.
Each product is a `Slice` of the batched one (a view). The same block-diagonal idea as
`einsum-pack-channels` (`BlockDiag`: g channels of one tensor on a diagonal), for products of
different tensors, so its blocks are concatenations rather than one strided copy.

Guards, from the target's instruction tiles (never from a list of kernels): the batched product
must take no more tiles of some instruction than the larger product alone — the two fit the
instruction's extents together (a product that already fills the instruction's N and K gains
nothing and gets no term). Independence: the kernel inputs
the two read are disjoint (no shared operand — that is the GEMM fusions' case — and neither reads
the other's result, nor is one the other's swapped orientation). To stay linear in the number of
products, a product batches only with the nearest compatible one after it (by the first input it
reads), and a batched product only with a product that is not batched itself: left-deep chains of
consecutive products, as many as fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from isamap.egraph.dump import EGraphDump, ENode
from isamap.egraph.term_builder import Builder, Val

__all__ = ["batch_fits", "batch_independent_products"]

Tile = tuple[int, int, int]  # an instruction's (m, n, k) extents


class _Context(Protocol):
    """What the rule reads of `computed_rules.RuleContext` (not imported: that module imports
    this one)."""

    @property
    def dump(self) -> EGraphDump: ...

    @property
    def tiles(self) -> tuple[Tile, ...]: ...


_memo: dict[int, tuple[EGraphDump, dict[str, frozenset[str]], list[ENode]]] = {}


def _index(dump: EGraphDump) -> tuple[dict[str, frozenset[str]], list[ENode]]:
    """Per e-class, the kernel inputs it reads (through any of its e-nodes); and every Bmm
    e-node (memoised per dump)."""
    hit = _memo.get(id(dump))
    if hit is not None and hit[0] is dump:
        return hit[1], hit[2]
    leaves: dict[str, frozenset[str]] = {}
    changed = True
    while changed:  # a fixpoint: e-classes may be cyclic
        changed = False
        for cid, nodes in dump.classes.items():
            found: set[str] = set(leaves.get(cid, frozenset()))
            for node in nodes:
                if node.op == "Input":
                    found.add(node.str_arg(0))
                for ref in node.refs():
                    found |= leaves.get(ref, frozenset())
            if len(found) != len(leaves.get(cid, frozenset())):
                leaves[cid] = frozenset(found)
                changed = True
    products = [n for nodes in dump.classes.values() for n in nodes if n.op == "Bmm"]
    _memo.clear()
    _memo[id(dump)] = (dump, leaves, products)
    return leaves, products


def _zero_padded(dump: EGraphDump, cid: str) -> bool:
    """Whether e-class `cid` holds a block-diagonal operand this rule built: a Concat of
    Concats with a zero block."""
    for node in dump.classes.get(cid, ()):
        if node.op != "Concat":
            continue
        for part in node.refs():
            for inner in dump.classes.get(part, ()):
                if inner.op == "Concat" and any(
                    z.op == "Full" and z.args[0] == 0.0
                    for r in inner.refs()
                    for z in dump.classes.get(r, ())
                ):
                    return True
    return False


def _tiles(shape: Tile, tile: Tile) -> int:
    return math.prod(-(-d // t) for d, t in zip(shape, tile, strict=True))


def batch_fits(first: Tile, second: Tile, batched: Tile, tiles: Sequence[Tile]) -> bool:
    """Whether the batched product (m, n, k) takes no more tiles of some instruction than the
    larger of the two alone (the smaller rides along in the larger's calls: the two fit the
    instruction's extents together): the guard that keeps the rule where it can help. A looser
    guard (fewer tiles than the two apart) admits batches that only trade two products' overlap
    for one longer call and host-filled zeros, which a sum-of-costs model cannot see."""
    return any(_tiles(batched, t) <= max(_tiles(first, t), _tiles(second, t)) for t in tiles)


def _dims(node: ENode) -> tuple[int, int, int, int]:
    b, m, n, k = (node.int_arg(i) for i in range(4))
    return b, m, n, k


def _block_diag(b: Builder, batch: int, first: Val, second: Val, axes: tuple[int, int]) -> Val:
    """`blockdiag(first, second)` over `axes` (rows, columns) of two [batch, r, c] operands:
    the off-diagonal blocks zeros."""
    rows, cols = axes
    r1, c1 = first.shape[rows], first.shape[cols]
    r2, c2 = second.shape[rows], second.shape[cols]

    def zeros(r: int, c: int) -> Val:
        shape = (batch, r, c)
        return b.make("Full", (0.0, ",".join(map(str, shape))), shape)

    top = b.make("Concat", (cols, first, zeros(r1, c2)), (batch, r1, c1 + c2))
    bottom = b.make("Concat", (cols, zeros(r2, c1), second), (batch, r2, c1 + c2))
    return b.make("Concat", (rows, top, bottom), (batch, r1 + r2, c1 + c2))


def _batched(b: Builder, p: ENode, q: ENode, same_m: bool) -> tuple[Val, Val]:
    """The slices of the batched product of `p` and `q` that equal them."""
    bb, m1, n1, k1 = _dims(p)
    _, m2, n2, k2 = _dims(q)
    x1, y1 = (b.of(r) for r in p.refs())
    x2, y2 = (b.of(r) for r in q.refs())
    k = k1 + k2
    if same_m:  # [x1 | x2] . blockdiag(y1, y2)
        x = b.make("Concat", (2, x1, x2), (bb, m1, k))
        y = _block_diag(b, bb, y1, y2, (1, 2))
        out = b.make("Bmm", (bb, m1, n1 + n2, k, x, y), (bb, m1, n1 + n2))
        return (
            b.make("Slice", (2, 0, n1, out), (bb, m1, n1)),
            b.make("Slice", (2, n1, n2, out), (bb, m1, n2)),
        )
    x = _block_diag(b, bb, x1, x2, (1, 2))  # blockdiag(x1, x2) . [y1 ; y2]
    y = b.make("Concat", (1, y1, y2), (bb, k, n1))
    out = b.make("Bmm", (bb, m1 + m2, n1, k, x, y), (bb, m1 + m2, n1))
    return (
        b.make("Slice", (1, 0, m1, out), (bb, m1, n1)),
        b.make("Slice", (1, m1, m2, out), (bb, m2, n1)),
    )


def batch_independent_products(node: ENode, b: Builder, ctx: _Context) -> list[Val]:
    """`Bmm(x1, y1)` with the nearest independent product after it -> a slice of their batched
    product, each form whose tiles the guard accepts; see the module docstring."""
    if not ctx.tiles:
        return []
    dump = ctx.dump
    leaves, products = _index(dump)
    mine = leaves.get(node.refs()[0], frozenset()) | leaves.get(node.refs()[1], frozenset())
    if not mine:
        return []
    first = min(mine)
    bb, m, n, k = _dims(node)
    best: dict[bool, tuple[str, str, ENode]] = {}  # same_m -> (rank, e-class, partner)
    for q in products:
        qb, qm, qn, qk = _dims(q)
        theirs = leaves.get(q.refs()[0], frozenset()) | leaves.get(q.refs()[1], frozenset())
        if qb != bb or q.eclass == node.eclass or not theirs or min(theirs) <= first:
            continue
        if theirs & mine or any(_zero_padded(dump, r) for r in q.refs()):
            continue
        side_by_side = (m, n + qn, k + qk)  # [x1 | x2] . blockdiag(y1, y2)
        stacked = (m + qm, n, k + qk)  # blockdiag(x1, x2) . [y1 ; y2]
        for same_m, fits in (
            (True, qm == m and batch_fits((m, n, k), (qm, qn, qk), side_by_side, ctx.tiles)),
            (False, qn == n and batch_fits((m, n, k), (qm, qn, qk), stacked, ctx.tiles)),
        ):
            key = (min(theirs), q.eclass)
            if fits and (same_m not in best or key < best[same_m][:2]):
                best[same_m] = (*key, q)
    out: list[Val] = []
    for same_m, (_, _, q) in sorted(best.items()):
        mine_slice, their_slice = _batched(b, node, q, same_m)
        b.union(q.eclass, their_slice)
        out.append(mine_slice)
    return out
