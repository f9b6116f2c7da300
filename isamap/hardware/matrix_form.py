"""The matrix form of a compute instruction: which of its indices play batch, M, N and K.

Derived from the instruction's semantics in index notation, by the roles the rules give a
kernel's contraction (`einsum-to-bmm`), so a kernel's Bmm and an instruction meet on the same four
roles. A role may hold several of the instruction's indices: Intel AMX's `tdpbusd`
(`C[m, n] += A[m, k, q] * B[k, n, q]`) covers K with (k, q), 16 x 4 = 64 elements per call, and a
kernel's K axis is split over them row-major (`K = k * 4 + q`, as VNNI packs four consecutive
K elements together); an `mma`-style fragment with two M indices covers M with both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from isamap.hardware.conv_form import conv_form_problem
from isamap.ir.dtypes import dtype, fits
from isamap.ir.kernel import Access, Binary, Kernel, Unary

__all__ = [
    "MatrixForm",
    "chain_function",
    "chain_problem",
    "contraction_dtypes",
    "contraction_problem",
    "integer_only",
    "matrix_form",
    "types_fit",
]


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

    def role_indices(self, role: str) -> tuple[str, ...]:
        """The instruction's indices of `role`, outermost first: a kernel axis of that role is
        split over them row-major. Their order is the first operand's (the second's for N)."""
        source = self.rhs_indices if role == "n" else self.lhs_indices
        return tuple(i for i in source if self.roles[i] == role)

    def tile(self, role: str) -> int:
        """Extent the instruction covers in `role` (1 where it has no such index)."""
        return math.prod(self.extents[i] for i in self.role_indices(role))

    @property
    def squares(self) -> bool:
        """True when one tensor is both operands: the instruction multiplies a tile by itself."""
        return self.lhs == self.rhs

    def einsum(self) -> str:
        """The semantics as an einsum spec over the instruction's own operand layouts."""
        letters = {i: chr(ord("a") + n) for n, i in enumerate(self.roles)}

        def word(indices: tuple[str, ...]) -> str:
            return "".join(letters[i] for i in indices)

        return f"{word(self.lhs_indices)},{word(self.rhs_indices)}->{word(self.out_indices)}"

    def indices(self, operand: str) -> tuple[str, ...]:
        """The instruction's indices of `operand` ("lhs", "rhs" or "out") in its storage order."""
        return {"lhs": self.lhs_indices, "rhs": self.rhs_indices, "out": self.out_indices}[operand]


def chain_problem(semantics: Kernel) -> str | None:
    """Why the statements after a `+=` product are not one function chained onto its result
    (`C[i, j] += A[i, k] * B[k, j]` then `D[i, j] = relu(C[i, j])`), or None."""
    first, rest = semantics.statements[0], semantics.statements[1:]
    if len(rest) > 1:
        return (
            f"its semantics chains {len(rest)} statements onto the product; one function "
            "(`D[i, j] = relu(C[i, j])`) is mapped, as the call's epilogue"
        )
    for s in rest:
        e = s.expr
        arg = e.arg if isinstance(e, Unary) else None
        chained = (
            not s.accumulate
            and s.indices == first.indices
            and isinstance(arg, Access)
            and arg.tensor == first.target
            and arg.is_plain()
            and arg.index_names() == first.indices
        )
        if not chained:
            return (
                f"statement `{s}` is not one function of the product's result at its own "
                f"indices (`{s.target}[{', '.join(first.indices)}] = relu({first.target}"
                f"[{', '.join(first.indices)}])`); a bias or scale in the chain is not mapped"
            )
    return None


def chain_function(semantics: Kernel) -> str | None:
    """The function a contraction instruction's semantics applies to every result (its chained
    second statement), or None."""
    if len(semantics.statements) != 2 or chain_problem(semantics) is not None:
        return None
    e = semantics.statements[1].expr
    return e.fn if isinstance(e, Unary) else None


def _product(semantics: Kernel) -> tuple[Access, Access] | str:
    """The two accesses of a `+=` product (with at most one function chained onto its result),
    or why the semantics is not one."""
    if len(semantics.statements) > 1 and semantics.statements[0].accumulate:
        problem = chain_problem(semantics)
        if problem is not None:
            return problem
    elif len(semantics.statements) != 1:
        return (
            f"its semantics has {len(semantics.statements)} statements; a compute instruction "
            "maps as one contraction or one elementwise statement"
        )
    s = semantics.statements[0]
    if not s.accumulate or s.reduce != "+":
        return "its semantics is not a `+=` contraction"
    if not isinstance(s.expr, Binary) or s.expr.op != "*":
        return "its semantics is not a product of two tensors (`C[...] += A[...] * B[...]`)"
    a, b = s.expr.lhs, s.expr.rhs
    for factor in (a, b):
        if not isinstance(factor, Access):
            return f"factor `{factor}` of its product is not a tensor access"
    assert isinstance(a, Access) and isinstance(b, Access)
    if not (a.is_plain() and b.is_plain()):
        problem = conv_form_problem(semantics)
        if problem is not None:
            return problem
    return a, b


def _indices(semantics: Kernel, a: Access, b: Access) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The factors' indices as a matrix instruction reads them. A direct-convolution instruction
    (window accesses, `X[c, h + r, w + s] * W[k, c, r, s]`) computes a GEMM as its 1x1 reading:
    filter taps at one, `X[c, h, w] * W[k, c]`."""
    if a.is_plain() and b.is_plain():
        return a.index_names(), b.index_names()
    out = semantics.statements[0].indices
    taps = {
        i
        for acc in (a, b)
        for e in acc.indices
        if e.plain_index() is None
        for i in e.indices()
        if i not in out
    }

    def read(acc: Access) -> tuple[str, ...]:
        names: list[str] = []
        for e in acc.indices:
            kept = [i for i in e.indices() if i not in taps]
            names.extend(kept[:1])
        return tuple(names)

    return read(a), read(b)


def contraction_problem(semantics: Kernel) -> str | None:
    """Why a `+=` semantics can never compute part of a kernel's product, or None if it can."""
    found = _product(semantics)
    if isinstance(found, str):
        return found
    a, b = found
    (ia, ib), out = _indices(semantics, a, b), semantics.statements[0].indices
    for i in out:
        if i not in ia and i not in ib:
            return f"index '{i}' appears only in the result (a broadcast output)"
    for acc, own, other in ((a, ia, ib), (b, ib, ia)):
        for i in own:
            if i not in other and i not in out:
                return f"index '{i}' is summed within operand {acc.tensor} alone"
    form = matrix_form(semantics)
    assert form is not None
    if form.squares:
        lhs_roles = "".join(form.roles[i] for i in ia)
        rhs_roles = "".join(form.roles[i] for i in ib)
        same_order = [i for i in ia if form.roles[i] in "bk"] == [
            i for i in ib if form.roles[i] in "bk"
        ]
        square = len({form.tile("m"), form.tile("n"), form.tile("k")}) == 1
        if not (
            lhs_roles == "".join(sorted(lhs_roles, key="bmk".index))
            and rhs_roles == "".join(sorted(rhs_roles, key="bkn".index))
            and same_order
            and square
        ):
            return (
                f"operand {a.tensor} is both factors but not as one square [m, k] . [k, n] "
                "tile read twice"
            )
    return None


def matrix_form(semantics: Kernel) -> MatrixForm | None:
    """The matrix form of a `+=` product of two plain accesses (its first statement, when a
    function is chained onto it), else None."""
    found = _product(semantics)
    if isinstance(found, str):
        return None
    a, b = found
    s = semantics.statements[0]
    (ia, ib), out = _indices(semantics, a, b), s.indices
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


def _plain_product(e: object) -> tuple[Access, Access] | None:
    """The two accesses of `A[...] * B[...]`, or None."""
    if not (isinstance(e, Binary) and e.op == "*"):
        return None
    a, b = e.lhs, e.rhs
    return (a, b) if isinstance(a, Access) and isinstance(b, Access) else None


def contraction_dtypes(kernel: Kernel) -> list[tuple[str, str]]:
    """The element types of the factors of every `+=` statement of `kernel`: the two
    factors of a plain product, and for any other expression every tensor it reads paired with
    itself (`0.5 * A * B` needs A and B each to fit an operand)."""
    out = []
    for s in kernel.statements:
        if not s.accumulate:
            continue
        factors = _plain_product(s.expr)
        if factors is not None:
            out.append((kernel.dtype(factors[0].tensor), kernel.dtype(factors[1].tensor)))
        else:
            out.extend((kernel.dtype(a.tensor),) * 2 for a in s.accesses())
    if not out:  # no `+=`: whatever an instruction computes, it computes from these
        out = [(kernel.dtype(n),) * 2 for n in kernel.shapes]
    return out


def types_fit(semantics: Kernel, kernel: Kernel) -> bool:
    """True when matrix instruction `semantics` holds every product of `kernel` exactly: each
    factor's type fits the instruction's operand type it meets (in either order, as the rules
    may swap the operands), so the instruction computes the kernel's numbers, not rounded ones.
    An f32 kernel does not fit int8 (or bf16) operands; an i8 kernel fits i8, i16 or bf16 ones."""
    form = matrix_form(semantics)
    if form is None:
        return False
    a, b = semantics.dtype(form.lhs), semantics.dtype(form.rhs)
    for x, y in contraction_dtypes(kernel):
        if not ((fits(x, a) and fits(y, b)) or (fits(y, a) and fits(x, b))):
            return False
    return True


def integer_only(semantics: Kernel) -> bool:
    """True when the instruction multiplies integer operands only."""
    form = matrix_form(semantics)
    return form is not None and all(
        dtype(semantics.dtype(t)).is_integer for t in (form.lhs, form.rhs)
    )
