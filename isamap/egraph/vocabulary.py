"""The e-graph's Tensor constructors: one table of signatures, shapes, lowering and cost class.

`rules/sorts.egg` declares the constructors to egglog; this table says, for each, what the rest of
isamap needs: its argument sorts (checked against `sorts.egg` by a test), the names of its literal
arguments, the Mapping operation and unit it lowers to, its cost class, and its shape rule — the
one shape computation the e-graph dump, the rule checker and the term builder share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal as TypeLiteral

from isamap.ir.conv import conv_geometry, split_conv_literal
from isamap.ir.dtypes import KERNEL_DTYPES, dtype
from isamap.ir.einsum import einsum_extents
from isamap.ir.ops import BINARY_NAMES, UNARY_NAMES
from isamap.ir.taps import TapGeometry
from isamap.ir.window import WindowSpec

__all__ = [
    "CONSTRUCTORS",
    "INTEGER_NARROWING",
    "LIST_CONSTRUCTORS",
    "TENSOR_CONSTRUCTORS",
    "Constructor",
    "CostClass",
    "IllShapedError",
    "Literal",
    "Shape",
    "constructor",
    "need",
    "shape_literal",
    "shape_of",
]

Shape = tuple[int, ...]
Literal = int | float | str

#: The integer types a `Narrow` (a statement's cast) can narrow to: the kernels' integer types.
INTEGER_NARROWING: tuple[str, ...] = tuple(t for t in KERNEL_DTYPES if dtype(t).is_integer)

#: How a cost model prices a constructor (see `extract/cost.py`):
#: view — free, the loads that read it gather it; move — a data-layout pass through DRAM;
#: constant — filled where it is used; host — elementwise/contraction work on the host;
#: instruction — a matrix instruction call as the scheduler runs it; vector — an elementwise
#: instruction, its lanes at a time; statement — a kernel statement evaluated on the host.
CostClass = TypeLiteral["view", "move", "constant", "host", "instruction", "vector", "statement"]


class IllShapedError(Exception):
    """A Tensor term whose literals and operand shapes do not fit together."""


ShapeRule = Callable[[Sequence[Literal], Sequence[Shape]], Shape]


@dataclass(frozen=True)
class Constructor:
    """One Tensor constructor of `sorts.egg`.

    `sorts` is its egglog signature; `literals` names its literal (non-Tensor) arguments in order,
    as the Mapping's attributes; `shape` maps (literals, operand shapes) to its shape, or is None
    where the kernel says it (an input, a host statement)."""

    name: str
    sorts: tuple[str, ...]
    literals: tuple[str, ...]
    mapping_op: str
    unit: str  # "view" | "dma" | "host" | "dram" | "" (the instruction's own unit)
    cost: CostClass
    shape: ShapeRule | None
    doc: str


def shape_literal(text: str) -> Shape:
    """`"4,5"` -> (4, 5); IllShapedError if it is not a list of integers."""
    try:
        return tuple(int(x) for x in text.split(",")) if text else ()
    except ValueError:
        raise IllShapedError(f"'{text}' is not a list of integers") from None


def need(ok: bool, message: str) -> None:
    """IllShapedError(`message`) unless `ok`."""
    if not ok:
        raise IllShapedError(message)


def _reshape(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    out = shape_literal(str(lits[0]))
    need(math.prod(out) == math.prod(s[0]), f"reshape of {list(s[0])} to {list(out)}")
    return out


def _transpose(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    perm = shape_literal(str(lits[0]))
    need(sorted(perm) == list(range(len(s[0]))), f"{list(perm)} permutes no {list(s[0])}")
    return tuple(s[0][p] for p in perm)


def _window(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    try:
        spec = WindowSpec.parse(str(lits[0]))
    except (ValueError, IndexError):
        raise IllShapedError(f"bad window spec '{lits[0]}'") from None
    need(len(spec.exprs) == len(s[0]), f"window of rank {len(spec.exprs)} over {list(s[0])}")
    return spec.shape()


def _broadcast(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    out, where = shape_literal(str(lits[0])), shape_literal(str(lits[1]))
    fits = len(set(where)) == len(where) and all(0 <= w < len(out) for w in where)
    need(fits and tuple(out[w] for w in where) == s[0], f"broadcast {list(s[0])} to {list(out)}")
    return out


def _full(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    return shape_literal(str(lits[1]))


def _einsum(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    fitted = einsum_extents(str(lits[0]), s[0], s[1])
    need(fitted is not None, f"einsum {lits[0]} of {[list(x) for x in s]}")
    assert fitted is not None
    return fitted[1]


def _matmul(skip: int) -> ShapeRule:
    def rule(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
        b, m, n, k = (int(v) for v in lits[skip:])
        need(min(b, m, n, k) >= 1, f"extents b={b} m={m} n={n} k={k} must be positive")
        need(s[0] == (b, m, k), f"left operand is {list(s[0])}, expected [{b}, {m}, {k}]")
        need(s[1] == (b, k, n), f"right operand is {list(s[1])}, expected [{b}, {k}, {n}]")
        return (b, m, n)

    return rule


def _instr_act(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    need(str(lits[1]) in UNARY_NAMES, f"no function '{lits[1]}'")
    return _matmul(2)(lits, s)


def _instr_bias(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    fn = str(lits[1])
    need(fn == "" or fn in UNARY_NAMES, f"no function '{fn}'")
    out = _matmul(2)(lits, s[:2])
    b, _, n = out
    need(s[2] in ((n,), (b, n)), f"bias is {list(s[2])}, expected [{n}] or [{b}, {n}]")
    return out


def _instr_taps(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    """`(InstrTaps name geometry t b m n k x y)`: x [b, t, m, k] . y [b, t, k, n] summed over t."""
    try:
        geometry = TapGeometry.parse(str(lits[1]))
    except ValueError as err:
        raise IllShapedError(str(err)) from None
    t, b, m, n, k = (int(v) for v in lits[2:])
    need(min(t, b, m, n, k) >= 1, f"extents t={t} b={b} m={m} n={n} k={k} must be positive")
    rows = m if geometry.operand == "A" else n
    fits = geometry.tap_count == t and geometry.channels == k and geometry.row_count == rows
    need(fits, f"tap geometry of {geometry.tap_count} taps x {geometry.channels} for t={t} k={k}")
    need(s[0] == (b, t, m, k), f"left operand is {list(s[0])}, expected [{b}, {t}, {m}, {k}]")
    need(s[1] == (b, t, k, n), f"right operand is {list(s[1])}, expected [{b}, {t}, {k}, {n}]")
    return (b, m, n)


def _instr_taps_epi(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    """`(InstrTapsEpi name geometry f type scale t b m n k x y [z])`: a tap accumulation read out
    through a store's epilogue, `f(narrow(scale * sum))` (`type` "" for no narrowing, then scale
    1), with a bias z (InstrTapsBias) accumulated onto first."""
    fn, to, scale = str(lits[2]), str(lits[3]), float(lits[4])
    need(fn == "" or fn in UNARY_NAMES, f"no function '{fn}'")
    need(to == "" or to in INTEGER_NARROWING, f"no integer type '{to}' to narrow to")
    need(math.isfinite(scale) and scale > 0, f"scale {scale} is not a positive number")
    need(to != "" or scale == 1.0, f"scale {scale} without a narrowing")
    out = _instr_taps((lits[0], lits[1], *lits[5:]), s[:2])
    if len(s) == 3:
        b, _, n = out
        need(s[2] in ((n,), (b, n)), f"bias is {list(s[2])}, expected [{n}] or [{b}, {n}]")
    return out


def _instr_conv(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    need(str(lits[2]) in ("", *UNARY_NAMES), f"no function '{lits[2]}'")
    spec, window = split_conv_literal(str(lits[1]))
    g = conv_geometry(spec, window, tuple(s[0]), tuple(s[1]))
    need(not isinstance(g, str), f"direct convolution {lits[1]} of {[list(x) for x in s]}: {g}")
    assert not isinstance(g, str)
    return g.out_shape()


def _narrow(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    need(str(lits[0]) in INTEGER_NARROWING, f"no integer type '{lits[0]}' to narrow to")
    return s[0]


def _instr_scale(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    """`(InstrScale name f type scale b m n k x y [z])`: a matrix call read out scaled and
    narrowed (with a bias z: InstrBiasScale)."""
    fn, to, scale = str(lits[1]), str(lits[2]), float(lits[3])
    need(fn == "" or fn in UNARY_NAMES, f"no function '{fn}'")
    need(to in INTEGER_NARROWING, f"no integer type '{to}' to narrow to")
    need(math.isfinite(scale) and scale > 0, f"scale {scale} is not a positive number")
    out = _matmul(4)(lits, s[:2])
    if len(s) == 3:
        b, _, n = out
        need(s[2] in ((n,), (b, n)), f"bias is {list(s[2])}, expected [{n}] or [{b}, {n}]")
    return out


def _instr_conv_bias(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    """`(InstrConvBias name conv f x w z)`: the direct convolution onto a per-output-channel
    bias z, [K] or [B, K] (as `InstrBias`'s per-column bias, the GEMM view's n being K)."""
    out = _instr_conv(lits, s[:2])
    spec, window = split_conv_literal(str(lits[1]))
    g = conv_geometry(spec, window, tuple(s[0]), tuple(s[1]))
    assert not isinstance(g, str)
    need(s[2] in ((g.k,), (g.b, g.k)), f"bias is {list(s[2])}, expected [{g.k}] or [{g.b}, {g.k}]")
    return out


def _ew(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    need(str(lits[0]) in BINARY_NAMES, f"no operator '{lits[0]}'")
    return _same(lits, s)


def _fn(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    need(str(lits[0]) in UNARY_NAMES, f"no function '{lits[0]}'")
    return s[0]


def _same(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    need(all(x == s[0] for x in s), f"elementwise {' with '.join(str(list(x)) for x in s)}")
    return s[0]


def _reduce_sum(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    axes = shape_literal(str(lits[0]))
    fits = len(set(axes)) == len(axes) and all(0 <= a < len(s[0]) for a in axes)
    need(fits, f"reduce axes {list(axes)} of {list(s[0])}")
    return tuple(d for i, d in enumerate(s[0]) if i not in axes)


def _concat(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    axis = int(lits[0])
    x, y = s
    same = len(x) == len(y) and all(
        a == b for i, (a, b) in enumerate(zip(x, y, strict=True)) if i != axis
    )
    need(0 <= axis < len(x) and same, f"concat of {list(x)} and {list(y)} on axis {axis}")
    return tuple(a + y[i] if i == axis else a for i, a in enumerate(x))


def _block_diag(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    axis, g = int(str(lits[0])), int(str(lits[1]))
    ok = 0 <= axis < len(s[0]) and g >= 1 and s[0][axis] % g == 0
    need(ok, f"block-diagonal packing of {list(s[0])} axis {axis} by {g}")
    return (*s[0][:axis], s[0][axis] // g, g, *s[0][axis + 1 :], g)


def _slice(lits: Sequence[Literal], s: Sequence[Shape]) -> Shape:
    axis, start, length = (int(v) for v in lits)
    x = s[0]
    fits = 0 <= axis < len(x) and start >= 0 and length >= 1 and start + length <= x[axis]
    need(fits, f"slice [{start}, {start + length}) on axis {axis} of {list(x)}")
    return tuple(length if i == axis else d for i, d in enumerate(x))


T, S, N, F = "Tensor", "String", "i64", "f64"  # N: an integer literal
_MM = ("b", "m", "n", "k")
_TAPS_EPI = ("instruction", "geometry", "epilogue", "narrow", "scale", "taps", *_MM)

#: Every Tensor constructor, in `sorts.egg` order.
CONSTRUCTORS: tuple[Constructor, ...] = (
    Constructor("Input", (S,), ("name",), "input", "dram", "view", None, "a kernel tensor"),
    Constructor(
        "Reshape", (T, S), ("shape",), "reshape", "view", "view", _reshape, "row-major view"
    ),
    Constructor(
        "Transpose", (T, S), ("perm",), "transpose", "dma", "move", _transpose, "axis permutation"
    ),
    Constructor(
        "Window", (T, S), ("spec",), "window", "view", "view", _window, "affine-access view"
    ),
    Constructor(
        "Broadcast",
        (T, S, S),
        ("shape", "map"),
        "broadcast",
        "dma",
        "move",
        _broadcast,
        "copies along new axes",
    ),
    Constructor(
        "Full", (F, S), ("value", "shape"), "full", "host", "constant", _full, "a constant"
    ),
    Constructor(
        "Einsum",
        (S, T, T),
        ("spec",),
        "einsum",
        "host",
        "host",
        _einsum,
        "a contraction as the kernel writes it",
    ),
    Constructor(
        "Bmm",
        (N, N, N, N, T, T),
        _MM,
        "host_matmul",
        "host",
        "host",
        _matmul(0),
        "batched matrix product",
    ),
    Constructor("Ew", (S, T, T), ("op",), "ew", "host", "host", _ew, "binary operator"),
    Constructor("Fn", (S, T), ("fn",), "fn", "host", "host", _fn, "elementwise function"),
    Constructor(
        "ReduceSum", (T, S), ("axes",), "reduce_sum", "host", "host", _reduce_sum, "sum over axes"
    ),
    Constructor(
        "Concat", (N, T, T), ("axis",), "concat", "view", "view", _concat, "join along an axis"
    ),
    Constructor(
        "BlockDiag",
        (T, N, N),
        ("axis", "groups"),
        "block_diag",
        "dma",
        "move",
        _block_diag,
        "channels packed block-diagonally",
    ),
    Constructor(
        "Slice",
        (N, N, N, T),
        ("axis", "start", "length"),
        "slice",
        "view",
        "view",
        _slice,
        "part along an axis",
    ),
    Constructor(
        "Instr",
        (S, N, N, N, N, T, T),
        ("instruction", *_MM),
        "instr",
        "",
        "instruction",
        _matmul(1),
        "a matrix instruction computing a Bmm",
    ),
    Constructor(
        "InstrAct",
        (S, S, N, N, N, N, T, T),
        ("instruction", "epilogue", *_MM),
        "instr",
        "",
        "instruction",
        _instr_act,
        "the same with a function fused on the way out",
    ),
    Constructor(
        "InstrBias",
        (S, S, N, N, N, N, T, T, T),
        ("instruction", "epilogue", *_MM),
        "instr",
        "",
        "instruction",
        _instr_bias,
        "the same onto a per-column bias, then a function (or none) on the way out",
    ),
    Constructor(
        "InstrTaps",
        (S, S, N, N, N, N, N, T, T),
        ("instruction", "geometry", "taps", *_MM),
        "instr",
        "",
        "instruction",
        _instr_taps,
        "a matrix instruction accumulating one product per filter tap on shifted views",
    ),
    Constructor(
        "VecFn",
        (S, T),
        ("instruction",),
        "vec",
        "",
        "vector",
        _same,
        "an elementwise instruction of one operand",
    ),
    Constructor(
        "VecEw",
        (S, T, T),
        ("instruction",),
        "vec",
        "",
        "vector",
        _same,
        "an elementwise instruction of two operands",
    ),
    Constructor(
        "InstrConv",
        (S, S, S, T, T),
        ("instruction", "conv", "epilogue"),
        "instr_conv",
        "",
        "instruction",
        _instr_conv,
        "a direct-convolution instruction computing Einsum(Window(x), w) in place",
    ),
    Constructor(
        "Narrow",
        (S, T),
        ("dtype",),
        "narrow",
        "view",  # done by the store that writes the value (extract/cost.py: free)
        "host",
        _narrow,
        "rounded to nearest even and saturated to an integer type (a statement's cast)",
    ),
    Constructor(
        "InstrScale",
        (S, S, S, F, N, N, N, N, T, T),
        ("instruction", "epilogue", "narrow", "scale", *_MM),
        "instr",
        "",
        "instruction",
        _instr_scale,
        "a matrix instruction read out scaled, narrowed, then through a function",
    ),
    Constructor(
        "InstrBiasScale",
        (S, S, S, F, N, N, N, N, T, T, T),
        ("instruction", "epilogue", "narrow", "scale", *_MM),
        "instr",
        "",
        "instruction",
        _instr_scale,
        "the same onto a per-column bias",
    ),
    Constructor(
        "InstrConvBias",
        (S, S, S, T, T, T),
        ("instruction", "conv", "epilogue"),
        "instr_conv",
        "",
        "instruction",
        _instr_conv_bias,
        "a direct convolution onto a per-output-channel bias, then a function (or none)",
    ),
    Constructor(
        "InstrTapsEpi",
        (S, S, S, S, F, N, N, N, N, N, T, T),
        _TAPS_EPI,
        "instr",
        "",
        "instruction",
        _instr_taps_epi,
        "a tap accumulation read out scaled, narrowed and through a function (each optional)",
    ),
    Constructor(
        "InstrTapsBias",
        (S, S, S, S, F, N, N, N, N, N, T, T, T),
        _TAPS_EPI,
        "instr",
        "",
        "instruction",
        _instr_taps_epi,
        "the same onto a per-column bias preloaded into the accumulator",
    ),
    Constructor(
        "HostStmt",
        ("i64", "TensorList"),
        ("index",),
        "host_stmt",
        "host",
        "statement",
        None,
        "a kernel statement on the host",
    ),
)

_BY_NAME: dict[str, Constructor] = {c.name: c for c in CONSTRUCTORS}
#: The names of the Tensor constructors, and of the constructors of the TensorList sort.
TENSOR_CONSTRUCTORS: frozenset[str] = frozenset(_BY_NAME)
LIST_CONSTRUCTORS: frozenset[str] = frozenset({"TNil", "TCons"})


def constructor(name: str) -> Constructor:
    """The table row of constructor `name` (KeyError if there is none)."""
    return _BY_NAME[name]


def shape_of(name: str, lits: Sequence[Literal], shapes: Sequence[Shape]) -> Shape | None:
    """The shape of `(name lits... operands...)` given its operands' shapes; None where only the
    kernel knows it (Input, HostStmt); IllShapedError if literals and operands do not fit."""
    rule = _BY_NAME[name].shape
    return None if rule is None else rule(lits, shapes)
