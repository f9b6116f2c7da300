"""The matrix form of a compute instruction: which of its indices play batch, M, N and K.

Derived from the instruction's semantics in index notation, exactly as the encoder classifies a
kernel's contraction, so a kernel's Bmm and an instruction meet on the same four roles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from isamap.ir.kernel import Access, Binary, Kernel

__all__ = ["MatrixForm", "matrix_form"]


@dataclass(frozen=True)
class MatrixForm:
    """`out[...] += lhs[...] * rhs[...]` with its indices grouped by role and its tile per role."""

    lhs: str
    rhs: str
    out: str
    lhs_indices: tuple[str, ...]
    rhs_indices: tuple[str, ...]
    out_indices: tuple[str, ...]
    roles: dict[str, str]  # index -> "b" | "m" | "n" | "k"
    extents: dict[str, int]

    def tile(self, role: str) -> int:
        """Extent the instruction covers in `role` (1 where it has no such index)."""
        return math.prod(e for i, e in self.extents.items() if self.roles[i] == role)

    def einsum(self) -> str:
        """The semantics as an einsum spec over the instruction's own operand layouts."""
        letters = {i: chr(ord("a") + n) for n, i in enumerate(self.roles)}

        def word(indices: tuple[str, ...]) -> str:
            return "".join(letters[i] for i in indices)

        return f"{word(self.lhs_indices)},{word(self.rhs_indices)}->{word(self.out_indices)}"

    def layout(self, operand: str) -> str:
        """Role letters in the order the instruction stores `operand` ("lhs", "rhs" or "out")."""
        indices = {"lhs": self.lhs_indices, "rhs": self.rhs_indices, "out": self.out_indices}
        return "".join(self.roles[i] for i in indices[operand])


def matrix_form(semantics: Kernel) -> MatrixForm | None:
    """The matrix form of a one-statement `+=` product of two plain accesses, else None.

    At most one index per role; the instruction covers `tile(role)` of each role per issue.
    """
    if len(semantics.statements) != 1:
        return None
    s = semantics.statements[0]
    if not s.accumulate or not isinstance(s.expr, Binary) or s.expr.op != "*":
        return None
    a, b = s.expr.lhs, s.expr.rhs
    if not (isinstance(a, Access) and isinstance(b, Access) and a.is_plain() and b.is_plain()):
        return None
    ia, ib, out = a.index_names(), b.index_names(), s.indices
    roles: dict[str, str] = {}
    for i in dict.fromkeys(ia + ib + out):
        in_a, in_b, in_o = i in ia, i in ib, i in out
        if in_a and in_b and in_o:
            roles[i] = "b"
        elif in_a and in_o:
            roles[i] = "m"
        elif in_b and in_o:
            roles[i] = "n"
        elif in_a and in_b:
            roles[i] = "k"
        else:
            return None
    if any(list(roles.values()).count(r) > 1 for r in "bmnk"):
        return None  # one index per role: the tile loops and the executor rely on it
    return MatrixForm(
        lhs=a.tensor,
        rhs=b.tensor,
        out=s.target,
        lhs_indices=ia,
        rhs_indices=ib,
        out_indices=out,
        roles=roles,
        extents={i: semantics.extents[0][i] for i in roles},
    )
