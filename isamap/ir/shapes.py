"""Shape checking for kernels: tensor roles, index extents (inferred from accesses) and bounds.

`check_kernel` builds every checked Kernel (the parser and the builders call it); every problem is
an `IsamapError` at the statement or access that caused it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from isamap.ir.dtypes import KERNEL_DTYPES
from isamap.ir.errors import IsamapError, SourceLoc
from isamap.ir.kernel import (
    Access,
    Affine,
    Binary,
    Const,
    Kernel,
    Statement,
    TensorDecl,
    Unary,
    walk,
)
from isamap.ir.ops import BINARY, UNARY

__all__ = ["DTYPES", "MAX_ELEMENTS", "MAX_ITERATIONS", "check_kernel"]

#: Element types a tensor may be declared with.
#: The element types a tensor may declare (isamap/ir/dtypes.py defines them).
DTYPES: tuple[str, ...] = KERNEL_DTYPES

#: The most elements a tensor (padding included) may have, and the most iterations a statement
#: may run. Sizes, byte counts (8 bytes an element at most) and MAC counts stay below 2**53, so
#: numpy's int64 and every float64 the timing and energy models compute with hold them exactly;
#: an extent of 10**26 would overflow them into a program of 0 cycles.
MAX_ELEMENTS = 2**48
MAX_ITERATIONS = 2**50


@dataclass(frozen=True)
class _Tensor:
    """What a statement may assume about a tensor it reads or writes."""

    name: str
    shape: tuple[int, ...]
    decl: TensorDecl | None  # None for an undeclared intermediate

    def readable_range(self, dim: int) -> tuple[int, int]:
        if self.decl is not None:
            return self.decl.readable_range(dim)
        return 0, self.shape[dim] - 1

    def padded(self, dim: int) -> bool:
        return self.decl is not None and self.decl.pad(dim) != (0, 0)

    def describe(self) -> str:
        return f"{self.name}[{', '.join(map(str, self.shape))}]"


def check_kernel(
    name: str,
    tensors: Mapping[str, TensorDecl],
    statements: Sequence[Statement],
    source: str = "<string>",
) -> Kernel:
    """Check a kernel and infer every statement's extents and every tensor's shape.

    Raises IsamapError (with the statement's or access's location) on an unknown tensor, a read
    before a write, a rank mismatch, a bad output index list, an extent that cannot be inferred, a
    shape mismatch between accesses, or an access out of bounds.
    """
    tensors, statements = dict(tensors), tuple(statements)
    if not statements:
        raise IsamapError("the kernel has no statements: nothing to compute", SourceLoc(source))
    for decl in tensors.values():
        _check_decl(decl)
    written_names = {s.target for s in statements}
    known = {n: _Tensor(n, d.shape, d) for n, d in tensors.items() if n not in written_names}
    written: dict[str, Statement] = {}
    all_extents: list[dict[str, int]] = []
    for stmt in statements:
        target = _check_target(stmt, tensors, known, written)
        _check_expr(stmt, known, set(tensors) | written_names)
        extents = _statement_extents(stmt, target, known)
        _check_size(stmt, extents)
        all_extents.append(extents)
        if target is None:
            shape = tuple(extents[i] for i in stmt.indices)
            target = _Tensor(stmt.target, shape, None)
        known[stmt.target] = target
        written.setdefault(stmt.target, stmt)
    shapes: dict[str, tuple[int, ...]] = {n: d.shape for n, d in tensors.items()}
    for n, t in known.items():
        shapes.setdefault(n, t.shape)
    return Kernel(name, tensors, statements, tuple(all_extents), shapes, source)


def _check_size(stmt: Statement, extents: Mapping[str, int]) -> None:
    """A statement's iteration space and its output stay within what the models count exactly."""
    iterations = math.prod(extents.values())
    if iterations > MAX_ITERATIONS:
        raise IsamapError(
            f"{stmt.target}[...] runs {iterations:.3g} iterations; isamap handles at most "
            f"2**50 ({MAX_ITERATIONS:.3g}) per statement",
            stmt.loc,
        )
    elements = math.prod(extents[i] for i in stmt.indices)
    if elements > MAX_ELEMENTS:
        raise IsamapError(
            f"{stmt.target} has {elements:.3g} elements; isamap handles at most "
            f"2**48 ({MAX_ELEMENTS:.3g}) per tensor",
            stmt.loc,
        )


def _check_decl(decl: TensorDecl) -> None:
    if decl.dtype not in DTYPES:
        raise IsamapError(
            f"tensor {decl.name}: unknown dtype '{decl.dtype}' (expected {', '.join(DTYPES)})",
            decl.loc,
        )
    if any(d < 1 for d in decl.shape):
        raise IsamapError(f"tensor {decl.name}: every dimension must be positive", decl.loc)
    if decl.padding:
        if len(decl.padding) != len(decl.shape):
            raise IsamapError(
                f"tensor {decl.name}: padding has {len(decl.padding)} entries "
                f"but the tensor has rank {len(decl.shape)}",
                decl.loc,
            )
        if any(lo < 0 or hi < 0 for lo, hi in decl.padding):
            raise IsamapError(f"tensor {decl.name}: padding must not be negative", decl.loc)
    padded = math.prod(d + sum(decl.pad(i)) for i, d in enumerate(decl.shape))
    if padded > MAX_ELEMENTS:
        note = " (padding included)" if padded != math.prod(decl.shape) else ""
        raise IsamapError(
            f"tensor {decl.name} has {padded:.3g} elements{note}; isamap handles "
            f"at most 2**48 ({MAX_ELEMENTS:.3g}) per tensor",
            decl.loc,
        )


def _check_target(
    stmt: Statement,
    tensors: Mapping[str, TensorDecl],
    known: Mapping[str, _Tensor],
    written: Mapping[str, Statement],
) -> _Tensor | None:
    """Check the left-hand side; return the target's known shape (None: to be inferred)."""
    if len(set(stmt.indices)) != len(stmt.indices):
        dup = next(i for i in stmt.indices if stmt.indices.count(i) > 1)
        raise IsamapError(f"output index '{dup}' appears twice in {stmt.target}[...]", stmt.loc)
    if stmt.reduce not in ("+", "max") or (stmt.reduce == "max" and not stmt.accumulate):
        raise IsamapError(f"unknown reduction '{stmt.reduce}='", stmt.loc)
    if stmt.target in written and stmt.reduce == "max":
        raise IsamapError(
            f"{stmt.target} is already written at {_where(written[stmt.target].loc)}; "
            "max= must be its first write",
            stmt.loc,
        )
    if stmt.target in written and not stmt.accumulate:
        raise IsamapError(
            f"{stmt.target} is already written at {_where(written[stmt.target].loc)}; "
            "use += to accumulate onto it",
            stmt.loc,
        )
    target = known.get(stmt.target)
    if target is None and stmt.target in tensors:
        decl = tensors[stmt.target]
        target = _Tensor(stmt.target, decl.shape, decl)
    if target is not None and len(target.shape) != len(stmt.indices):
        raise IsamapError(
            f"{stmt.target} has rank {len(target.shape)} but is written with "
            f"{len(stmt.indices)} indices",
            stmt.loc,
        )
    on_right = {n for a in stmt.accesses() for n in a.index_names()}
    if not stmt.accumulate:
        only_right = stmt.reduced_indices()
        if only_right:
            acc = next(a for a in stmt.accesses() if only_right[0] in a.index_names())
            raise IsamapError(
                f"index '{only_right[0]}' appears only on the right of '='; use += to sum over it",
                acc.loc or stmt.loc,
            )
    if target is None:
        missing = [i for i in stmt.indices if i not in on_right]
        if missing:
            raise IsamapError(
                f"output index '{missing[0]}' does not appear on the right; "
                f"declare {stmt.target} to broadcast over it",
                stmt.loc,
            )
    return target


def _where(loc: SourceLoc | None) -> str:
    return str(loc) if loc is not None else "an earlier statement"


def _check_expr(stmt: Statement, known: Mapping[str, _Tensor], names: set[str]) -> None:
    """Every access names a known tensor at its rank; every operator is one of the language's.

    `names` holds every declared or written tensor, to tell a read before a write from a typo.
    """
    for e in walk(stmt.expr):
        if isinstance(e, Access):
            t = known.get(e.tensor)
            if t is None:
                msg = (
                    f"{e.tensor} is read before any statement writes it"
                    if e.tensor in names
                    else f"unknown tensor {e.tensor} (declare it with `tensor {e.tensor}[...]`)"
                )
                raise IsamapError(msg, e.loc or stmt.loc)
            if len(e.indices) != len(t.shape):
                raise IsamapError(
                    f"{e.tensor} has rank {len(t.shape)} but is accessed with "
                    f"{len(e.indices)} indices",
                    e.loc or stmt.loc,
                )
        elif isinstance(e, Const) and not math.isfinite(e.value):
            raise IsamapError(f"constant {e.value} is not a finite number", stmt.loc)
        elif isinstance(e, Unary) and e.fn not in UNARY:
            raise IsamapError(f"unknown function '{e.fn}'", stmt.loc)
        elif isinstance(e, Binary) and e.op not in BINARY:
            raise IsamapError(f"unknown operator '{e.op}'", stmt.loc)


def _statement_extents(
    stmt: Statement, target: _Tensor | None, known: Mapping[str, _Tensor]
) -> dict[str, int]:
    """Extents of every index of one statement, checked against every access."""
    accesses = [(a, known[a.tensor]) for a in stmt.accesses()]
    # Exact constraints: the output's known dims, and bare indices in unpadded dims.
    exact: dict[str, tuple[int, str, int, SourceLoc | None]] = {}
    if target is not None:
        for dim, out_idx in enumerate(stmt.indices):
            exact[out_idx] = (target.shape[dim], target.describe(), dim, stmt.loc)
    for acc, t in accesses:
        for dim, aff in enumerate(acc.indices):
            idx = aff.plain_index()
            if idx is None or t.padded(dim):
                continue
            size = t.shape[dim]
            if idx in exact and exact[idx][0] != size:
                first_size, first_desc, first_dim, _ = exact[idx]
                raise IsamapError(
                    f"shape mismatch on index '{idx}': {first_desc} has {first_size} in dim "
                    f"{first_dim} but {t.describe()} has {size} in dim {dim}",
                    acc.loc or stmt.loc,
                )
            exact.setdefault(idx, (size, t.describe(), dim, acc.loc))
    extents = {idx: c[0] for idx, c in exact.items()}
    all_indices = list(stmt.indices) + [i for i in stmt.reduced_indices() if i not in stmt.indices]
    _infer_windows(stmt, accesses, extents, all_indices)
    for acc, t in accesses:
        _check_bounds(acc, t, extents, stmt)
    return {i: extents[i] for i in all_indices}


def _infer_windows(
    stmt: Statement,
    accesses: list[tuple[Access, _Tensor]],
    extents: dict[str, int],
    all_indices: list[str],
) -> None:
    """Fixed point: give each unknown index the largest extent that keeps every access in bounds."""
    while True:
        unknown = [i for i in all_indices if i not in extents]
        if not unknown:
            return
        found: dict[str, int] = {}
        for idx in unknown:
            best: int | None = None
            for acc, t in accesses:
                for dim, aff in enumerate(acc.indices):
                    c = aff.coef(idx)
                    others = [n for n in aff.indices() if n != idx]
                    if c == 0 or any(n not in extents for n in others):
                        continue
                    e = _largest_extent(acc, t, dim, aff, idx, extents, stmt)
                    best = e if best is None else min(best, e)
            if best is not None:
                found[idx] = best
        if not found:
            raise IsamapError(
                f"cannot infer the extent of index '{unknown[0]}': every access that uses it "
                "also uses another index of unknown extent",
                stmt.loc,
            )
        extents.update(found)


def _largest_extent(
    acc: Access,
    t: _Tensor,
    dim: int,
    aff: Affine,
    idx: str,
    extents: Mapping[str, int],
    stmt: Statement,
) -> int:
    """Largest E such that `aff` stays in `t`'s readable range of `dim` for `0 <= idx < E`."""
    c = aff.coef(idx)
    rest = Affine(tuple((n, k) for n, k in aff.terms if n != idx), aff.const)
    lo, hi = rest.bounds(extents)
    rlo, rhi = t.readable_range(dim)
    if lo < rlo or hi > rhi:
        raise IsamapError(
            f"{acc} reads {t.describe()} out of bounds in dim {dim} even with '{idx}' "
            f"of extent 1: index {aff} reaches {lo if lo < rlo else hi}, "
            f"allowed {rlo}..{rhi}",
            acc.loc or stmt.loc,
        )
    room = rhi - hi if c > 0 else lo - rlo
    e = room // abs(c) + 1
    return e


def _check_bounds(acc: Access, t: _Tensor, extents: Mapping[str, int], stmt: Statement) -> None:
    for dim, aff in enumerate(acc.indices):
        lo, hi = aff.bounds(extents)
        rlo, rhi = t.readable_range(dim)
        if lo < rlo or hi > rhi:
            ranges = ", ".join(f"{n} < {extents[n]}" for n in aff.indices())
            raise IsamapError(
                f"{acc} reads {t.describe()} out of bounds in dim {dim}: index {aff} "
                f"takes {lo}..{hi} ({ranges}) but only {rlo}..{rhi} is readable",
                acc.loc or stmt.loc,
            )
