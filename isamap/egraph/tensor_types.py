"""Typing of the Tensor constructors of `rules/sorts.egg`: the shape a term has, or why it has none.

The shape rules are the constructor table's (`egraph/vocabulary.py`); this adds what needs the
target (an instruction it has) and the signatures egglog was given. A term whose literals and
operand shapes do not fit (a `Bmm` whose operand is not `[b, m, k]`, a slice past the end, a
reshape that changes the element count) is ill-shaped, even where numpy would broadcast it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from isamap.egraph.rule_file import SList, parse_sexprs
from isamap.egraph.saturate import RULES_DIR
from isamap.egraph.target_rules import conv_instructions, matrix_instructions
from isamap.egraph.vocabulary import (
    IllShapedError,
    Literal,
    Shape,
    need,
    shape_literal,
    shape_of,
)
from isamap.hardware.elementwise_form import elementwise_form
from isamap.hardware.target import Target
from isamap.ir.ops import BINARY_NAMES

__all__ = [
    "BINARY_OPS",
    "IllShapedError",
    "Literal",
    "Shape",
    "constructor_signatures",
    "shape_literal",
    "tensor_shape",
]

#: The constructors of a matrix instruction's call (literal 0: the instruction).
_MATRIX_CALLS = (
    "Instr",
    "InstrAct",
    "InstrBias",
    "InstrTaps",
    "InstrScale",
    "InstrBiasScale",
    "InstrTapsEpi",
    "InstrTapsBias",
)

#: Elementwise binary operators of `Ew` (the language's, from `ir/ops.py`).
BINARY_OPS = BINARY_NAMES


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


def _elementwise_instruction(target: Target, name: str, arity: int) -> None:
    ins = target.instructions.get(name)
    form = elementwise_form(ins.semantics) if ins is not None else None
    need(form is not None and form.arity == arity, f"'{name}' is no {arity}-operand instruction")


def tensor_shape(
    op: str, lits: Sequence[Literal], shapes: Sequence[Shape], target: Target
) -> Shape | None:
    """The shape of Tensor constructor `op` with literal arguments `lits` and operand shapes
    `shapes` (both in argument order) on `target`: the table's shape rule, and an instruction
    that `target` has; IllShapedError if they do not fit; None for Input and HostStmt."""
    if op in _MATRIX_CALLS:
        need(str(lits[0]) in matrix_instructions(target), f"no matrix instruction {lits[0]}")
    elif op in ("InstrConv", "InstrConvBias"):
        need(str(lits[0]) in conv_instructions(target), f"no direct-convolution {lits[0]}")
    elif op in ("VecEw", "VecFn"):
        _elementwise_instruction(target, str(lits[0]), 2 if op == "VecEw" else 1)
    return shape_of(op, lits, shapes)
