"""Kernel data types: tensor declarations, affine index expressions, statements, the Kernel."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from isamap.ir.dtypes import DTYPES
from isamap.ir.errors import SourceLoc
from isamap.ir.ops import BINARY, UNARY

__all__ = [
    "ELEMENTWISE_FUNCTIONS",
    "Access",
    "Affine",
    "Binary",
    "Const",
    "Expr",
    "Kernel",
    "Statement",
    "TensorDecl",
    "Unary",
]

#: Unary functions of the language written as calls (`relu(x)`), by name (from `ir/ops.py`).
ELEMENTWISE_FUNCTIONS: tuple[str, ...] = tuple(
    name for name, op in UNARY.items() if op.spelling == "call"
)


@dataclass(frozen=True)
class Affine:
    """An affine index expression: sum of `coef * index` plus a constant (`2*h + r - 1`)."""

    terms: tuple[tuple[str, int], ...]
    const: int = 0

    @staticmethod
    def index(name: str) -> Affine:
        return Affine(((name, 1),), 0)

    def indices(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.terms)

    def plain_index(self) -> str | None:
        """The index name if this is exactly one index with coefficient 1 and no constant."""
        if self.const == 0 and len(self.terms) == 1 and self.terms[0][1] == 1:
            return self.terms[0][0]
        return None

    def coef(self, name: str) -> int:
        return dict(self.terms).get(name, 0)

    def evaluate(self, env: Mapping[str, int]) -> int:
        return self.const + sum(c * env[n] for n, c in self.terms)

    def bounds(self, extents: Mapping[str, int]) -> tuple[int, int]:
        """Smallest and largest value over `0 <= index < extent` for every index."""
        lo = hi = self.const
        for name, c in self.terms:
            top = c * (extents[name] - 1)
            lo += min(0, top)
            hi += max(0, top)
        return lo, hi

    def __str__(self) -> str:
        parts: list[str] = []
        for name, c in self.terms:
            mag = abs(c)
            term = name if mag == 1 else f"{mag}*{name}"
            if not parts:
                parts.append(term if c > 0 else f"-{term}")
            else:
                parts.append(f"+ {term}" if c > 0 else f"- {term}")
        if self.const or not parts:
            if not parts:
                parts.append(str(self.const))
            else:
                parts.append(f"+ {self.const}" if self.const > 0 else f"- {-self.const}")
        return " ".join(parts)


@dataclass(frozen=True)
class Access:
    """A read of a tensor at affine indices: `X[n, c, 2*h + r, w]`."""

    tensor: str
    indices: tuple[Affine, ...]
    loc: SourceLoc | None = field(default=None, compare=False)

    def index_names(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for a in self.indices:
            for n in a.indices():
                seen.setdefault(n, None)
        return tuple(seen)

    def is_plain(self) -> bool:
        """True when every position is a distinct bare index (no window, no constant, no repeat)."""
        names = [a.plain_index() for a in self.indices]
        return all(n is not None for n in names) and len(set(names)) == len(names)

    def __str__(self) -> str:
        return f"{self.tensor}[{', '.join(str(a) for a in self.indices)}]"


@dataclass(frozen=True)
class Const:
    """A numeric literal."""

    value: float

    def __str__(self) -> str:
        v = self.value
        return str(int(v)) if math.isfinite(v) and v == int(v) else repr(v)


@dataclass(frozen=True)
class Unary:
    """An elementwise function application `relu(x)`; `fn` names a unary operator of `ir/ops.py`."""

    fn: str
    arg: Expr

    def __str__(self) -> str:
        if self.fn == "neg":
            return f"-({self.arg})"
        return f"{self.fn}({self.arg})"


@dataclass(frozen=True)
class Binary:
    """`lhs op rhs` (`+ - * /`) or `max(lhs, rhs)`: `op` names a binary operator of `ir/ops.py`."""

    op: str
    lhs: Expr
    rhs: Expr

    def __str__(self) -> str:
        if BINARY[self.op].spelling == "call":
            return f"{self.op}({self.lhs}, {self.rhs})"
        return f"({self.lhs} {self.op} {self.rhs})"


Expr = Access | Const | Unary | Binary


def walk(expr: Expr) -> Iterator[Expr]:
    """Every sub-expression, parents before children."""
    yield expr
    if isinstance(expr, Unary):
        yield from walk(expr.arg)
    elif isinstance(expr, Binary):
        yield from walk(expr.lhs)
        yield from walk(expr.rhs)


def _integral(e: Expr, kernel: Kernel, inferred: Mapping[str, str]) -> bool:
    """True when node `e` keeps integer values integer."""
    if isinstance(e, Access):
        decl = kernel.tensors.get(e.tensor)
        name = decl.dtype if decl else inferred.get(e.tensor, "f32")
        return name in DTYPES and DTYPES[name].is_integer
    if isinstance(e, Const):
        return math.isfinite(e.value) and e.value == int(e.value)
    if isinstance(e, Unary):
        return e.fn in ("relu", "neg")
    return isinstance(e, Binary) and e.op in ("+", "-", "*", "max", "min")


@dataclass(frozen=True)
class TensorDecl:
    """A declared tensor: shape, element type and optional zero padding `(lo, hi)` per dimension."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "f32"
    padding: tuple[tuple[int, int], ...] = ()
    loc: SourceLoc | None = field(default=None, compare=False)

    def pad(self, dim: int) -> tuple[int, int]:
        return self.padding[dim] if self.padding else (0, 0)

    def readable_range(self, dim: int) -> tuple[int, int]:
        """Inclusive index range that may be read in `dim` (padding reads as zero)."""
        lo, hi = self.pad(dim)
        return -lo, self.shape[dim] - 1 + hi


@dataclass(frozen=True)
class Statement:
    """`target[indices] += expr` (sums indices only on the right), `target[indices] max= expr`
    (their maximum: `accumulate` with `reduce == "max"`) or `target[indices] = expr`."""

    target: str
    indices: tuple[str, ...]
    accumulate: bool
    expr: Expr
    loc: SourceLoc | None = field(default=None, compare=False)
    reduce: str = "+"  # how `accumulate` combines: "+" (sum) or "max"

    def accesses(self) -> tuple[Access, ...]:
        return tuple(e for e in walk(self.expr) if isinstance(e, Access))

    def reduced_indices(self) -> tuple[str, ...]:
        """Indices on the right but not on the left, in order of first appearance."""
        seen: dict[str, None] = {}
        for acc in self.accesses():
            for n in acc.index_names():
                if n not in self.indices:
                    seen.setdefault(n, None)
        return tuple(seen)

    def __str__(self) -> str:
        op = ("max=" if self.reduce == "max" else "+=") if self.accumulate else "="
        return f"{self.target}[{', '.join(self.indices)}] {op} {self.expr}"


@dataclass(frozen=True)
class Kernel:
    """A checked kernel: declared tensors, statements, and the inferred extents and shapes.

    Build one with `isamap.ir.parse_kernel`, the builders, or `isamap.ir.check_kernel` (which
    checks declarations and statements and infers the rest); the constructor itself checks nothing.
    `extents[i]` maps every index of statement `i` to its extent; `shapes` holds every tensor's
    shape (declared or inferred).
    """

    name: str
    tensors: Mapping[str, TensorDecl]
    statements: tuple[Statement, ...]
    extents: tuple[Mapping[str, int], ...]
    shapes: Mapping[str, tuple[int, ...]]
    source: str = "<string>"

    def written(self) -> tuple[str, ...]:
        """Tensors assigned by some statement, in order of first assignment."""
        seen: dict[str, None] = {}
        for s in self.statements:
            seen.setdefault(s.target, None)
        return tuple(seen)

    def inputs(self) -> tuple[str, ...]:
        """Declared tensors that no statement writes, in declaration order."""
        written = set(self.written())
        return tuple(n for n in self.tensors if n not in written)

    def outputs(self) -> tuple[str, ...]:
        """Written tensors that were declared, or that no statement reads after their last write."""
        last_write: dict[str, int] = {}
        last_read: dict[str, int] = {}
        for i, s in enumerate(self.statements):  # one pass: a kernel may have 1,000s of them
            last_write[s.target] = i
            for a in s.accesses():
                last_read[a.tensor] = i
        return tuple(
            name
            for name in self.written()
            if last_read.get(name, -1) <= last_write[name] or name in self.tensors
        )

    def dtype(self, name: str) -> str:
        """The element type of tensor `name`: as declared, else inferred (`inferred_dtypes`)."""
        decl = self.tensors.get(name)
        if decl is not None:
            return decl.dtype
        return self.inferred_dtypes.get(name, "f32")

    @cached_property
    def inferred_dtypes(self) -> dict[str, str]:
        """The element type of every undeclared written tensor: `i32` when each statement writing
        it reads only integer tensors and integer constants through `+ - *`, `relu` and `neg`
        (an integer accumulation, as integer hardware does it); else `f32`."""
        out: dict[str, str] = {}
        for s in self.statements:
            if s.target in self.tensors:
                continue
            integral = all(_integral(e, self, out) for e in walk(s.expr))
            out[s.target] = "i32" if integral and out.get(s.target, "i32") == "i32" else "f32"
        return out

    def __str__(self) -> str:
        lines = []
        for d in self.tensors.values():
            pad = ""
            if d.padding and any(p != (0, 0) for p in d.padding):
                pad = " pad(" + ", ".join(f"{lo}:{hi}" for lo, hi in d.padding) + ")"
            lines.append(f"tensor {d.name}[{', '.join(map(str, d.shape))}] {d.dtype}{pad}")
        lines.extend(str(s) for s in self.statements)
        return "\n".join(lines)
