"""Typing of the Tensor constructors of `rules/sorts.egg`: the shape a term has, or why it has none.

One table for the rule checker and the term generator: a term whose literals and operand shapes do
not fit (a `Bmm` whose operand is not `[b, m, k]`, a slice past the end, a reshape that changes the
element count) is ill-shaped, even where numpy would broadcast it into some value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

from isamap.egraph.rule_file import SList, parse_sexprs
from isamap.egraph.saturate import RULES_DIR
from isamap.egraph.target_rules import matrix_instructions
from isamap.hardware.elementwise_form import elementwise_form
from isamap.hardware.target import Target
from isamap.ir.einsum import einsum_extents
from isamap.ir.ops import BINARY_NAMES, UNARY_NAMES
from isamap.ir.window import WindowSpec

__all__ = [
    "BINARY_OPS",
    "IllShapedError",
    "Literal",
    "Shape",
    "constructor_signatures",
    "shape_literal",
    "tensor_shape",
]

Shape = tuple[int, ...]
Literal = int | float | str

#: Elementwise binary operators of `Ew` (the language's, from `ir/ops.py`).
BINARY_OPS = BINARY_NAMES


class IllShapedError(Exception):
    """A Tensor term whose literals and operand shapes do not fit together."""


@cache
def constructor_signatures() -> dict[str, tuple[str, ...]]:
    """Argument sorts of every constructor of `rules/sorts.egg`, by name."""
    sigs: dict[str, tuple[str, ...]] = {}
    sorts = RULES_DIR / "sorts.egg"
    for form, _ in parse_sexprs(sorts.read_text(), str(sorts)):
        if form.head == "datatype":
            for ctor in form.items[2:]:
                if isinstance(ctor, SList):
                    sigs[ctor.head] = tuple(str(a) for a in ctor.items[1:])
        elif form.head == "constructor" and isinstance(form.items[2], SList):
            sigs[str(form.items[1])] = tuple(str(a) for a in form.items[2].items)
    return sigs


def shape_literal(text: str) -> Shape:
    try:
        return tuple(int(x) for x in text.split(",")) if text else ()
    except ValueError:
        raise IllShapedError(f"'{text}' is not a list of integers") from None


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise IllShapedError(message)


def _matmul_shape(b: int, m: int, n: int, k: int, x: Shape, y: Shape) -> Shape:
    _need(min(b, m, n, k) >= 1, f"extents b={b} m={m} n={n} k={k} must be positive")
    _need(x == (b, m, k), f"left operand is {list(x)}, expected [{b}, {m}, {k}]")
    _need(y == (b, k, n), f"right operand is {list(y)}, expected [{b}, {k}, {n}]")
    return (b, m, n)


def _elementwise_instruction(target: Target, name: str, arity: int) -> None:
    ins = target.instructions.get(name)
    form = elementwise_form(ins.semantics) if ins is not None else None
    _need(form is not None and form.arity == arity, f"'{name}' is no {arity}-operand instruction")


def tensor_shape(
    op: str, lits: Sequence[Literal], shapes: Sequence[Shape], target: Target
) -> Shape | None:
    """The shape of Tensor constructor `op` with literal arguments `lits` and operand shapes
    `shapes` (both in argument order); IllShapedError if they do not fit; None for HostStmt."""
    s = shapes
    if op == "Input":
        return None
    if op == "Reshape":
        out = shape_literal(str(lits[0]))
        _need(math.prod(out) == math.prod(s[0]), f"reshape of {list(s[0])} to {list(out)}")
        return out
    if op == "Transpose":
        perm = shape_literal(str(lits[0]))
        _need(sorted(perm) == list(range(len(s[0]))), f"{list(perm)} permutes no {list(s[0])}")
        return tuple(s[0][p] for p in perm)
    if op == "Window":
        try:
            spec = WindowSpec.parse(str(lits[0]))
        except (ValueError, IndexError):
            raise IllShapedError(f"bad window spec '{lits[0]}'") from None
        _need(len(spec.exprs) == len(s[0]), f"window of rank {len(spec.exprs)} over {list(s[0])}")
        return spec.shape()
    if op == "Einsum":
        fitted = einsum_extents(str(lits[0]), s[0], s[1])
        _need(fitted is not None, f"einsum {lits[0]} of {[list(x) for x in s]}")
        assert fitted is not None
        return fitted[1]
    if op == "BlockDiag":
        axis, g = int(str(lits[0])), int(str(lits[1]))
        ok = 0 <= axis < len(s[0]) and g >= 1 and s[0][axis] % g == 0
        _need(ok, f"block-diagonal packing of {list(s[0])} axis {axis} by {g}")
        return (*s[0][:axis], s[0][axis] // g, g, *s[0][axis + 1 :], g)
    if op == "Broadcast":
        out, where = shape_literal(str(lits[0])), shape_literal(str(lits[1]))
        fits = len(set(where)) == len(where) and all(0 <= w < len(out) for w in where)
        _need(fits and tuple(out[w] for w in where) == s[0], f"broadcast {list(s[0])} to {out}")
        return out
    if op == "Full":
        return shape_literal(str(lits[1]))
    if op in ("Bmm", "Instr", "InstrAct"):
        skip = {"Bmm": 0, "Instr": 1, "InstrAct": 2}[op]
        if op != "Bmm":
            _need(str(lits[0]) in matrix_instructions(target), f"no matrix instruction {lits[0]}")
        if op == "InstrAct":
            _need(str(lits[1]) in UNARY_NAMES, f"no function '{lits[1]}'")
        b, m, n, k = (int(v) for v in lits[skip:])
        return _matmul_shape(b, m, n, k, s[0], s[1])
    if op in ("Ew", "VecEw"):
        if op == "Ew":
            _need(str(lits[0]) in BINARY_OPS, f"no operator '{lits[0]}'")
        else:
            _elementwise_instruction(target, str(lits[0]), 2)
        _need(s[0] == s[1], f"elementwise {list(s[0])} with {list(s[1])}")
        return s[0]
    if op in ("Fn", "VecFn"):
        if op == "Fn":
            _need(str(lits[0]) in UNARY_NAMES, f"no function '{lits[0]}'")
        else:
            _elementwise_instruction(target, str(lits[0]), 1)
        return s[0]
    if op == "ReduceSum":
        axes = shape_literal(str(lits[0]))
        fits = len(set(axes)) == len(axes) and all(0 <= a < len(s[0]) for a in axes)
        _need(fits, f"reduce axes {list(axes)} of {list(s[0])}")
        return tuple(d for i, d in enumerate(s[0]) if i not in axes)
    if op == "Concat":
        axis = int(lits[0])
        x, y = s
        same = len(x) == len(y) and all(
            a == b for i, (a, b) in enumerate(zip(x, y, strict=True)) if i != axis
        )
        _need(0 <= axis < len(x) and same, f"concat of {list(x)} and {list(y)} on axis {axis}")
        return tuple(a + y[i] if i == axis else a for i, a in enumerate(x))
    if op == "Slice":
        axis, start, length = (int(v) for v in lits)
        x = s[0]
        fits = 0 <= axis < len(x) and start >= 0 and length >= 1 and start + length <= x[axis]
        _need(fits, f"slice [{start}, {start + length}) on axis {axis} of {list(x)}")
        return tuple(length if i == axis else d for i, d in enumerate(x))
    return None
