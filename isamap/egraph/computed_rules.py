"""Rewrite rules whose right-hand side is computed in Python (ruleset `computed`).

Egglog's patterns match constructors and literals; they cannot classify a contraction's indices
or compose permutations written as strings. These rules do: each matches one e-node kind in the
serialised e-graph, computes the terms it is equal to, and unions them in (between egglog
iterations, `isamap.egraph.saturate`). Every one is documented in docs/rules.md and checked for
soundness like the egglog rules (`tests/egraph/test_computed_rules.py`).

- `einsum-commute`: `Einsum(x, y)` -> `Einsum(y, x)`; a product is the same with its operands
  swapped, which gives every later rule both orientations (C = A.B and C^T = B^T.A^T).
- `einsum-to-bmm`: `Einsum(x, y)` -> `layout(Bmm(layout(x), layout(y)))`: the TTGT form. Indices
  summed in one operand only are reduced first; the rest are batch (both operands and the
  result), M (first operand and result), N (second operand and result), K (both operands,
  summed); each role's indices are grouped into one axis by a transpose and a reshape, in the
  order of the result, of the first operand, or of the second (each a different layout move).
- `transpose-of-window`: `Transpose(Window(x, s))` -> `Window(x, s')`: a window is a view that
  gathers in any axis order, so its transpose moves no data.
- `transpose-of-unit-axes`: `Transpose(x, p)` -> `Reshape(x)` when `p` only moves axes of extent 1:
  the elements stay where they are.
- `transpose-of-transpose`: `Transpose(Transpose(x, p), q)` -> `Transpose(x, p.q)` (or `x`): one
  data movement, not two.
- `einsum-pack-channels`: see `_pack_channels`; the packing widths come from the target's
  instruction extents.
- `einsum-to-taps`: see `_einsum_to_taps`; a convolution as a sum over its filter taps of products
  on shifted views of its input, for each of the target's matrix instructions.
- `batch-independent-products`: `isamap.egraph.batching`; small products with no input in common
  in one call, block-diagonally, where they fit the target's instruction tiles together.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from isamap.egraph.batching import batch_independent_products
from isamap.egraph.dump import EGraphDump, ENode, Ref, parse_dims
from isamap.egraph.encode import shape_str
from isamap.egraph.epilogue_rules import ew_through_layout, ew_through_layout_depends
from isamap.egraph.term_builder import Builder, Val
from isamap.hardware.conv_form import has_window_access
from isamap.hardware.matrix_form import matrix_form
from isamap.hardware.target import Target
from isamap.ir.einsum import einsum_spec, parse_einsum
from isamap.ir.kernel import Affine
from isamap.ir.taps import TapGeometry
from isamap.ir.window import WindowSpec

__all__ = [
    "COMPUTED_RULES",
    "ComputedRule",
    "ComputedRunner",
    "RuleContext",
    "packing_widths",
    "tap_capable",
]


@dataclass(frozen=True)
class RuleContext:
    """What a computed rule may read: the e-graph, and the target facts that bound its choices
    (`widths`: the packing widths the target's instruction extents allow; `instructions`: its
    matrix instructions that may compute the kernel's products; `tiles`: the (m, n, k) extents
    of the matrix instructions that may, on an accelerator, for the batching guard)."""

    dump: EGraphDump
    widths: tuple[int, ...] = ()
    instructions: tuple[str, ...] = ()
    tiles: tuple[tuple[int, int, int], ...] = ()


@dataclass(frozen=True)
class _Axes:
    """A term with a name for each of its axes."""

    val: Val
    axes: tuple[str, ...]

    def extent(self, axis: str) -> int:
        return self.val.shape[self.axes.index(axis)]


def _child(node: ENode, index: int) -> str:
    ref = node.args[index]
    assert isinstance(ref, Ref)
    return ref.eclass


def _transpose(b: Builder, v: _Axes, order: Sequence[str]) -> _Axes:
    perm = [v.axes.index(a) for a in order]
    if perm == list(range(len(perm))):
        return v
    shape = tuple(v.val.shape[p] for p in perm)
    return _Axes(b.make("Transpose", (v.val, shape_str(perm)), shape), tuple(order))


def _reshape(b: Builder, v: Val, shape: tuple[int, ...]) -> Val:
    return v if v.shape == shape else b.make("Reshape", (v, shape_str(shape)), shape)


def _reduce(b: Builder, v: _Axes, axes: Sequence[str]) -> _Axes:
    if not axes:
        return v
    pos = [v.axes.index(a) for a in axes]
    keep = [i for i in range(len(v.axes)) if i not in pos]
    shape = tuple(v.val.shape[i] for i in keep)
    val = b.make("ReduceSum", (v.val, shape_str(pos)), shape)
    return _Axes(val, tuple(v.axes[i] for i in keep))


def _to_3d(b: Builder, v: _Axes, groups: tuple[list[str], ...]) -> Val:
    """`v` as a [g0, g1, g2] batch of matrices. When its axes already run g0, g2, g1 this is a
    reshape and the batch-matrix transpose "0,2,1" (which the operand swap cancels)."""
    g0, g1, g2 = groups
    sizes = tuple(math.prod(v.extent(a) for a in g) for g in groups)
    if v.axes == tuple(g0 + g2 + g1) and g1 and g2:
        flat = _reshape(b, v.val, (sizes[0], sizes[2], sizes[1]))
        return b.make("Transpose", (flat, "0,2,1"), sizes)
    return _reshape(b, _transpose(b, v, g0 + g1 + g2).val, sizes)


def _group_orders(
    groups: dict[str, list[str]], sources: Iterable[Sequence[str]]
) -> list[dict[str, list[str]]]:
    """The role groups ordered as each source orders them (deduplicated)."""
    out: list[dict[str, list[str]]] = []
    for source in sources:
        rank = {a: i for i, a in enumerate(source)}
        order = {
            role: sorted(idx, key=lambda a: rank.get(a, len(rank))) for role, idx in groups.items()
        }
        if order not in out:
            out.append(order)
    return out


def _einsum_to_bmm(node: ENode, b: Builder, ctx: RuleContext) -> list[Val]:
    dump = ctx.dump
    lhs, rhs, out = parse_einsum(node.str_arg(0))
    x = _Axes(b.of(_child(node, 1)), lhs)
    y = _Axes(b.of(_child(node, 2)), rhs)
    x = _reduce(b, x, [i for i in lhs if i not in out and i not in rhs])
    y = _reduce(b, y, [i for i in rhs if i not in out and i not in lhs])
    ext = dict(zip(x.axes, x.val.shape, strict=True)) | dict(zip(y.axes, y.val.shape, strict=True))
    groups = {
        "b": [i for i in out if i in x.axes and i in y.axes],
        "m": [i for i in out if i in x.axes and i not in y.axes],
        "n": [i for i in out if i in y.axes and i not in x.axes],
        "k": [i for i in x.axes if i in y.axes and i not in out],
    }
    sb, sm, sn, sk = (math.prod(ext[i] for i in groups[r]) for r in "bmnk")
    names = {name for name, cid in dump.results.items() if cid == node.eclass}
    results: list[Val] = []
    for order in _group_orders(groups, (out + x.axes, x.axes + y.axes, y.axes + x.axes)):
        gb, gm, gn, gk = (order[r] for r in "bmnk")
        x3 = b.operand(_to_3d(b, x, (gb, gm, gk)))
        y3 = b.operand(_to_3d(b, y, (gb, gk, gn)))
        flat = b.make("Bmm", (sb, sm, sn, sk, x3, y3), (sb, sm, sn))
        if tuple(out) == tuple(gb + gn + gm) and gm and gn:  # the result wants [b, n, m]
            swapped = b.make("Transpose", (flat, "0,2,1"), (sb, sn, sm))
            results.append(_reshape(b, swapped, tuple(ext[i] for i in out)))
            continue
        axes = tuple(gb + gm + gn)
        grouped = _Axes(_reshape(b, flat, tuple(ext[i] for i in axes)), axes)
        final = _transpose(b, grouped, out)
        if final is not grouped:
            for name in sorted(names):  # the value before its last layout change, for people
                b.label(name, grouped.val)
        results.append(final.val)
    return results


def _einsum_commute(node: ENode, b: Builder, ctx: RuleContext) -> list[Val]:
    dump = ctx.dump
    lhs, rhs, out = parse_einsum(node.str_arg(0))
    x, y = b.of(_child(node, 1)), b.of(_child(node, 2))
    shape = dump.shapes.get(node.eclass, ())
    return [b.make("Einsum", (einsum_spec(rhs, lhs, out), y, x), shape)]


def _transpose_of_window(node: ENode, b: Builder, ctx: RuleContext) -> list[Val]:
    dump = ctx.dump
    perm = parse_dims(node.str_arg(1))
    inner = _child(node, 0)
    out: list[Val] = []
    for window in dump.classes.get(inner, []):
        if window.op != "Window":
            continue
        spec = WindowSpec.parse(window.str_arg(1))
        moved = WindowSpec(tuple(spec.axes[p] for p in perm), spec.exprs)
        src = b.of(_child(window, 0))
        out.append(b.make("Window", (src, moved.to_string()), moved.shape()))
    return out


def _transpose_of_transpose(node: ENode, b: Builder, ctx: RuleContext) -> list[Val]:
    dump = ctx.dump
    outer = parse_dims(node.str_arg(1))
    out: list[Val] = []
    for first in dump.classes.get(_child(node, 0), []):
        if first.op != "Transpose":
            continue
        inner = parse_dims(first.str_arg(1))
        perm = tuple(inner[q] for q in outer)
        src = b.of(_child(first, 0))
        if perm == tuple(range(len(perm))):
            out.append(src)
        else:
            shape = tuple(src.shape[p] for p in perm) if src.shape else ()
            out.append(b.make("Transpose", (src, shape_str(perm)), shape))
    return out


def _split_access(
    b: Builder,
    ctx: RuleContext,
    cid: str,
    axes: tuple[str, ...],
    c: str,
    g: int,
    names: tuple[str, str],
) -> tuple[Val, tuple[str, ...]] | None:
    """The e-class `cid` (axes `axes`) as a window with axis `c` split into (c / g, g): a view.
    Built from a window in the e-class, or over the tensor itself when it is one."""
    outer, inner = names
    for node in ctx.dump.classes.get(cid, []):
        if node.op == "Window":
            spec = WindowSpec.parse(node.str_arg(1))
            if tuple(n for n, _ in spec.axes) == axes:
                src = b.of(_child(node, 0))
                break
    else:
        shape = ctx.dump.shapes.get(cid)
        if shape is None:
            return None
        src = b.of(cid)
        spec = WindowSpec(
            tuple(zip(axes, shape, strict=True)), tuple(Affine.index(a) for a in axes)
        )
    extent = dict(spec.axes)[c]
    new_axes: list[tuple[str, int]] = []
    for name, e in spec.axes:
        new_axes.extend([(outer, extent // g), (inner, g)] if name == c else [(name, e)])
    exprs = tuple(
        Affine(
            tuple(t for t in a.terms if t[0] != c)
            + (((outer, a.coef(c) * g), (inner, a.coef(c))) if a.coef(c) else ()),
            a.const,
        )
        for a in spec.exprs
    )
    split = WindowSpec(tuple(new_axes), exprs)
    return b.make("Window", (src, split.to_string()), split.shape()), tuple(n for n, _ in new_axes)


def _pack_channels(node: ENode, b: Builder, ctx: RuleContext) -> list[Val]:
    """Einsum over a batch index whose second operand has no index of its own (a depthwise
    convolution: every channel its own tiny product) -> groups of g channels as one product
    with the second operand block-diagonal: g times the MACs, in far fewer instruction calls."""
    lhs, rhs, out = parse_einsum(node.str_arg(0))
    if not set(rhs) <= set(lhs) or not ctx.widths:
        return []
    shapes = ctx.dump.shapes
    x_cid, y_cid = _child(node, 1), _child(node, 2)
    y_shape = shapes[y_cid]
    ext = dict(zip(rhs, y_shape, strict=True))
    results: list[Val] = []
    for c in (i for i in rhs if i in out):
        own = math.prod(e for i, e in ext.items() if i not in out)  # K of one channel
        for g in _group_sizes(ext[c], own, ctx.widths):
            names = (f"{c}#G{g}", f"{c}#i{g}")
            col = f"{c}#j{g}"
            x = _split_access(b, ctx, x_cid, lhs, c, g, names)
            if x is None:
                continue
            x_val, x_axes = x
            axis = rhs.index(c)
            y_val = b.make(
                "BlockDiag",
                (b.of(y_cid), axis, g),
                (*y_shape[:axis], y_shape[axis] // g, g, *y_shape[axis + 1 :], g),
            )
            y_axes = (*rhs[:axis], *names, *rhs[axis + 1 :], col)
            out_axes = tuple(a for i in out for a in ((names[0], col) if i == c else (i,)))
            all_ext = dict(zip(x_axes, x_val.shape, strict=True)) | {col: g}
            packed_shape = tuple(all_ext[a] for a in out_axes)
            packed = b.make(
                "Einsum", (einsum_spec(x_axes, y_axes, out_axes), x_val, y_val), packed_shape
            )
            results.append(_reshape(b, packed, shapes[node.eclass]))
    return results


def _group_sizes(channels: int, own: int, widths: tuple[int, ...]) -> list[int]:
    """Channels per group: for each width the instructions allow (an N extent, or a K extent
    over one channel's K), the largest divisor of `channels` not above it, if at least 2."""
    sizes: list[int] = []
    for w in widths:
        for width in (w, w // max(own, 1)):
            g = max((d for d in range(2, min(width, channels) + 1) if channels % d == 0), default=0)
            if g and g not in sizes:
                sizes.append(g)
    return sizes


def packing_widths(tiles: Sequence[tuple[int, int, int]]) -> tuple[int, ...]:
    """Packing widths from instruction tiles (m, n, k): the N and K extents, where above 1."""
    widths: list[int] = []
    for _, n, k in tiles:
        for w in (n, k):
            if w > 1 and w not in widths:
                widths.append(w)
    return tuple(widths)


def _window_of(ctx: RuleContext, cid: str, axes: tuple[str, ...]) -> ENode | None:
    """A Window e-node of e-class `cid` whose axes are `axes`, in that order."""
    for node in ctx.dump.classes.get(cid, []):
        if node.op == "Window":
            spec = WindowSpec.parse(node.str_arg(1))
            if tuple(n for n, _ in spec.axes) == axes:
                return node
    return None


def _shifts(expr: Affine, index: str, rows: Sequence[str]) -> bool:
    """Whether `index` shifts an output index in `expr` (a tap: `h + r - 1`)."""
    return index in expr.indices() and bool(set(rows) & set(expr.indices()))


def tap_roles(
    spec: WindowSpec, views: tuple[str, ...], other: tuple[str, ...], out: tuple[str, ...]
) -> dict[str, list[str]] | str:
    """The roles of a product of a window `spec` (axes `views`) with a tensor (axes `other`) into
    `out` as a tap accumulation — b (batch), rows (output pixels: the window's own output
    indices), cols (the other operand's), taps (summed indices that shift the window: they meet
    a row index in one of its expressions), channels (the other summed indices) — or why it is
    not one."""
    if any(i not in out and i not in other for i in views) or any(
        i not in out and i not in views for i in other
    ):
        return "an index is summed in one operand only"
    summed = [i for i in views if i in other and i not in out]
    rows = [i for i in out if i in views and i not in other]
    roles = {
        "b": [i for i in out if i in views and i in other],
        "rows": rows,
        "cols": [i for i in out if i in other and i not in views],
        "taps": [i for i in summed if any(_shifts(e, i, rows) for e in spec.exprs)],
    }
    roles["channels"] = [i for i in summed if i not in roles["taps"]]
    if not roles["taps"] or not rows:
        return "the window has no tap (no summed index shifts an output index)"
    if not roles["channels"]:
        return "no channel is contracted at each tap (a depthwise product)"
    pixel, other_dims = set(rows) | set(roles["taps"]), set(roles["channels"]) | set(roles["b"])
    for e in spec.exprs:
        ids = set(e.indices())
        if _pixel_dim(e, roles) and not ids <= pixel:
            return "an input dimension's pixels move with a batch index"
        if not _pixel_dim(e, roles) and not ids <= other_dims:
            return "an input dimension mixes channels with pixels"
    return roles


def _pixel_dim(expr: Affine, roles: dict[str, list[str]]) -> bool:
    """Whether an input dimension holds pixels: it reads no channel and is not a batch
    dimension (read by batch indices alone, such as a convolution's group)."""
    ids = set(expr.indices())
    return not ids & set(roles["channels"]) and not (ids and ids <= set(roles["b"]))


def _einsum_to_taps(node: ENode, b: Builder, ctx: RuleContext) -> list[Val]:
    """Einsum of a window (an affine access: a convolution's input) with a tensor -> the
    convolution as the sum over its filter taps of one product per tap on shifted views of the
    input (a strided slice each, no im2col copy), accumulated into one result: an `InstrTaps`
    per matrix instruction of the target. The views are the first operand (rows: output
    pixels) when the window is, else the second."""
    if not ctx.instructions:
        return []
    lhs, rhs, out = parse_einsum(node.str_arg(0))
    results: list[Val] = []
    for side, (views, other) in enumerate(((lhs, rhs), (rhs, lhs))):
        window = _window_of(ctx, _child(node, 1 + side), views)
        if window is None:
            continue
        spec = WindowSpec.parse(window.str_arg(1))
        roles = tap_roles(spec, views, other, out)
        if isinstance(roles, str):
            continue
        results.extend(_taps_product(node, b, ctx, side, window, spec, roles))
    return results


def _taps_product(
    node: ENode,
    b: Builder,
    ctx: RuleContext,
    side: int,
    window: ENode,
    spec: WindowSpec,
    roles: dict[str, list[str]],
) -> list[Val]:
    """The tap accumulation of `node` in the roles `tap_roles` found, the views on `side`: the
    views, the weights per tap, one InstrTaps per instruction laid out as the result."""
    lhs, rhs, out = parse_einsum(node.str_arg(0))
    ext = dict(spec.axes)
    src = b.of(_child(window, 0))
    other_cid = _child(node, 2 - side)
    other = _Axes(b.of(other_cid), rhs if side == 0 else lhs)
    ext |= dict(zip(other.axes, other.val.shape, strict=True))
    gb, rows, cols, taps, chans = (roles[r] for r in ("b", "rows", "cols", "taps", "channels"))
    size = {r: math.prod(ext[i] for i in roles[r]) for r in roles}
    # the views: [b, t, rows, k] as the left operand, [b, t, k, rows] as the right one
    order = gb + taps + (rows + chans if side == 0 else chans + rows)
    moved = WindowSpec(tuple((a, ext[a]) for a in order), spec.exprs)
    view_dims = (size["rows"], size["channels"])[:: 1 if side == 0 else -1]
    views = _reshape(
        b,
        b.make("Window", (src, moved.to_string()), moved.shape()),
        (size["b"], size["taps"], *view_dims),
    )
    # the other operand: the taps' weights, [b, t, k, cols] on the right or [b, t, cols, k]
    w_order = gb + taps + (chans + cols if side == 0 else cols + chans)
    w_dims = (size["channels"], size["cols"])[:: 1 if side == 0 else -1]
    weights = _reshape(b, _transpose(b, other, w_order).val, (size["b"], size["taps"], *w_dims))
    pixel = [d for d, e in enumerate(spec.exprs) if _pixel_dim(e, roles)]
    geometry = TapGeometry(
        "A" if side == 0 else "B",
        size["channels"],
        tuple((a, ext[a]) for a in rows),
        tuple((a, ext[a]) for a in taps),
        tuple(spec.exprs[d] for d in pixel),
        tuple(src.shape[d] for d in pixel),
    ).to_string()
    m, n = (size["rows"], size["cols"]) if side == 0 else (size["cols"], size["rows"])
    x, y = (views, weights) if side == 0 else (weights, views)
    axes = tuple(gb + (rows + cols if side == 0 else cols + rows))
    results: list[Val] = []
    for name in ctx.instructions:
        product = b.make(
            "InstrTaps",
            (name, geometry, size["taps"], size["b"], m, n, size["channels"], x, y),
            (size["b"], m, n),
        )
        grouped = _Axes(_reshape(b, product, tuple(ext[i] for i in axes)), axes)
        results.append(_transpose(b, grouped, out).val)
    return results


def _transpose_of_unit_axes(node: ENode, b: Builder, ctx: RuleContext) -> list[Val]:
    perm = parse_dims(node.str_arg(1))
    src = b.of(_child(node, 0))
    moved = [p for p in perm if src.shape[p] != 1]
    if moved != sorted(moved):
        return []
    shape = tuple(src.shape[p] for p in perm)
    return [_reshape(b, src, shape)]


def tap_capable(target: Target, name: str) -> bool:
    """Whether `einsum-to-taps` may write a convolution onto matrix instruction `name`: a plain
    product (not one with a chained function) that does not window its own input (a
    direct-convolution instruction accumulates its taps itself), on an accelerator (a CPU
    target's C emitter writes im2col products and direct depthwise loops, not tap sums)."""
    ins = target.instructions[name]
    return target.codegen is None and ins.chain is None and not has_window_access(ins.semantics)


def _batching_applies(target: Target) -> bool:
    """Whether `batch-independent-products` can fire on `target`: an accelerator (its programs
    are instruction calls the models run, not C code a CPU target's emitter writes) with a
    matrix instruction deeper than one K and wider than one M or N (a batch always grows K, so
    on a K-extent-1 instruction it never fits in one product's tiles)."""
    if target.codegen is not None:
        return False
    for ins in target.compute_instructions():
        form = matrix_form(ins.semantics)
        if form is not None and form.tile("k") > 1 and max(form.tile("m"), form.tile("n")) > 1:
            return True
    return False


def _taps_apply(target: Target) -> bool:
    return any(
        tap_capable(target, ins.name)
        for ins in target.compute_instructions()
        if matrix_form(ins.semantics) is not None
    )


@dataclass(frozen=True)
class ComputedRule:
    """A rule matching every e-node of kind `op`; `apply` returns terms equal to its e-class;
    it runs in saturation phase `phase` (`egraph/phases.py`)."""

    name: str
    op: str
    doc: str
    apply: Callable[[ENode, Builder, RuleContext], list[Val]]
    phase: str = "layout"
    #: What, beyond the e-node itself, the rule's match depends on (e.g. the views below an
    #: operand): the rule runs again on the e-node when this changes. None: the e-node only.
    depends: Callable[[ENode, EGraphDump], object] | None = None
    #: whether the rule can fire on a target at all (the soundness check skips it elsewhere)
    applies: Callable[[Target], bool] = lambda target: True


#: The computed rules, in the order they run.
COMPUTED_RULES: tuple[ComputedRule, ...] = (
    ComputedRule("einsum-commute", "Einsum", "Einsum(x, y) -> Einsum(y, x)", _einsum_commute),
    ComputedRule(
        "einsum-to-bmm",
        "Einsum",
        "Einsum(x, y) -> layout(Bmm(layout(x), layout(y))) (TTGT, three group orders)",
        _einsum_to_bmm,
    ),
    ComputedRule(
        "einsum-pack-channels",
        "Einsum",
        "Einsum over channel c, second operand without own index -> reshape(Einsum(window split "
        "c -> (c/g, g), BlockDiag(y, c, g))): g channels per product (g from instruction extents)",
        _pack_channels,
        "packing",
    ),
    ComputedRule(
        "einsum-to-taps",
        "Einsum",
        "Einsum(Window(x), w) -> layout(InstrTaps(shifted views of x, w per tap)): a convolution "
        "as one product per filter tap accumulated into one result (no im2col copy)",
        _einsum_to_taps,
        applies=_taps_apply,
    ),
    ComputedRule(
        "transpose-of-window",
        "Transpose",
        "Transpose(Window(x, s), p) -> Window(x, s permuted by p)",
        _transpose_of_window,
    ),
    ComputedRule(
        "transpose-of-unit-axes",
        "Transpose",
        "Transpose(x, p) -> Reshape(x) when p keeps the order of every axis longer than 1",
        _transpose_of_unit_axes,
    ),
    ComputedRule(
        "transpose-of-transpose",
        "Transpose",
        "Transpose(Transpose(x, p), q) -> Transpose(x, p.q), or x when p.q is the identity",
        _transpose_of_transpose,
    ),
    ComputedRule(
        "ew-through-layout",
        "Ew",
        "Ew(op, view(p), q) -> view(Ew(op, p, q')) for op + or *, p in a product's layout and q a "
        "broadcast that is one value per column of p (a per-channel bias or scale)",
        ew_through_layout,
        depends=ew_through_layout_depends,
    ),
    ComputedRule(
        "batch-independent-products",
        "Bmm",
        "Bmm(x1, y1) and an independent Bmm(x2, y2) (no input in common) -> slices of "
        "[x1 | x2].blockdiag(y1, y2) (same M) or blockdiag(x1, x2).[y1 ; y2] (same N), the zero "
        "blocks Full 0: one call, where it takes no more instruction tiles than the larger alone",
        batch_independent_products,
        "fusion",
        applies=_batching_applies,
    ),
)


class ComputedRunner:
    """Applies the computed rules to each new e-node once, one round at a time."""

    def __init__(
        self,
        first_number: int,
        rules: Sequence[ComputedRule] = COMPUTED_RULES,
        widths: Sequence[int] = (),
        instructions: Sequence[str] = (),
        tiles: Sequence[tuple[int, int, int]] = (),
    ) -> None:
        self.rules = tuple(rules)
        self.by_op: dict[tuple[str, str], list[ComputedRule]] = {}  # (phase, op) -> rules
        for rule in self.rules:
            self.by_op.setdefault((rule.phase, rule.op), []).append(rule)
        self.widths = tuple(widths)
        self.instructions = tuple(instructions)
        self.tiles = tuple(tiles)
        self.number = first_number
        self.rounds = 0
        self.applied: set[tuple[object, ...]] = set()

    def phases(self) -> set[str]:
        """The phases that have a computed rule."""
        return {rule.phase for rule in self.rules}

    def round(self, dump: EGraphDump, phase: str) -> tuple[str, Counter[str]]:
        """The egglog program of this round of `phase`'s rules: new terms and unions, and
        matches per rule."""
        builder = Builder(dump, self.number, str(self.rounds))
        ctx = RuleContext(dump, self.widths, self.instructions, self.tiles)
        self.rounds += 1
        matches: Counter[str] = Counter()
        for cid, nodes in dump.classes.items():
            for node in nodes:
                for rule in self.by_op.get((phase, node.op), ()):
                    key: tuple[object, ...] = (rule.name, cid, node.op, node.args)
                    if rule.depends is not None:
                        key = (*key, rule.depends(node, dump))
                    if key in self.applied:
                        continue
                    if cid not in dump.shapes or any(r not in dump.shapes for r in node.refs()):
                        continue  # shapes not known yet: try again next round
                    self.applied.add(key)
                    values = rule.apply(node, builder, ctx)
                    if values:  # a match is a node the rule rewrote, not one it looked at
                        matches[rule.name] += 1
                    for value in values:
                        builder.union(cid, value)
        self.number = builder.number
        return builder.program() if builder.commands else "", matches
