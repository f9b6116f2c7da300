"""The elementwise form of an instruction: `Y[i] = f(X[i])` or `Z[i] = X[i] op W[i]`.

Such an instruction applies one function (or one binary operation) to `lanes` elements at a time;
rules derived from it let it run any elementwise `Fn`/`Ew` of a kernel, in chunks of its lanes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from isamap.ir.kernel import Access, Binary, Kernel, Unary

__all__ = ["ElementwiseForm", "elementwise_form", "elementwise_problem"]


@dataclass(frozen=True)
class ElementwiseForm:
    """`out = fn(inputs...)` elementwise: `op` is a function name or "+", "-", "*"."""

    op: str
    inputs: tuple[str, ...]
    out: str
    lanes: int

    @property
    def arity(self) -> int:
        return len(self.inputs)


def _plain(e: object, indices: tuple[str, ...]) -> str | None:
    if isinstance(e, Access) and e.is_plain() and e.index_names() == indices:
        return e.tensor
    return None


def elementwise_form(semantics: Kernel) -> ElementwiseForm | None:
    """The elementwise form of a one-statement `=` semantics over one index set, else None."""
    if len(semantics.statements) != 1:
        return None
    s = semantics.statements[0]
    if s.accumulate:
        return None
    lanes = math.prod(semantics.extents[0][i] for i in s.indices)
    e = s.expr
    if isinstance(e, Unary):
        x = _plain(e.arg, s.indices)
        return ElementwiseForm(e.fn, (x,), s.target, lanes) if x else None
    if isinstance(e, Binary):
        x, y = _plain(e.lhs, s.indices), _plain(e.rhs, s.indices)
        if x and y:
            return ElementwiseForm(e.op, (x, y), s.target, lanes)
    return None


def elementwise_problem(semantics: Kernel) -> str | None:
    """Why an `=` semantics can never run part of a kernel, or None if it can."""
    if elementwise_form(semantics) is not None:
        return None
    if len(semantics.statements) != 1:
        return (
            f"its semantics has {len(semantics.statements)} statements; a compute instruction "
            "maps as one contraction or one elementwise statement"
        )
    s = semantics.statements[0]
    return (
        f"`{s}` is not one function or one binary operator (`+`, `max`, ...) of bare accesses "
        "at the result's own indices (`Y[i] = f(X[i])`, `Z[i] = X[i] + W[i]`)"
    )
