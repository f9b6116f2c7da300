"""Kernel -> egglog terms: each statement in canonical tensor form, with a host fallback beside it.

Canonical form (the TTGT classification): for `O[o] += A[a] * B[b]` every index gets a role —
batch (in A, B and O), M (A and O), N (B and O), K (A and B, reduced) — each role's indices are
grouped into one axis by a transpose and a reshape, and the product becomes one `Bmm`. Affine
accesses become `Window` (im2col) terms first. Rules then add the alternatives. Every statement is
also unioned with `HostStmt` (the statement run on the host), so every kernel has a mapping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from isamap.ir.kernel import Access, Binary, Const, Expr, Kernel, Statement, Unary
from isamap.ir.window import WindowSpec

__all__ = ["Encoding", "encode_kernel", "f64_literal", "shape_str"]


def shape_str(shape: Sequence[int]) -> str:
    return ",".join(str(d) for d in shape)


def f64_literal(value: float) -> str:
    text = repr(float(value))
    return text if any(ch in text for ch in ".en") else text + ".0"


@dataclass
class Encoding:
    """The egglog commands for a kernel and the let-names of its results."""

    commands: list[str] = field(default_factory=list)
    results: dict[str, str] = field(default_factory=dict)  # tensor name -> let name

    def program(self) -> str:
        return "\n".join(self.commands) + "\n"


@dataclass
class _Value:
    """A term (let name) with its axes (index names) and their extents."""

    var: str
    axes: tuple[str, ...]
    shape: tuple[int, ...]


class _Encoder:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.enc = Encoding()
        self.memo: dict[str, str] = {}
        self.env: dict[str, str] = {}  # tensor name -> let name of its current value
        self.transposed: dict[str, tuple[_Value, list[int]]] = {}  # var -> (source, perm)
        self.windows: dict[str, tuple[str, WindowSpec]] = {}  # var -> (source var, spec)

    def term(self, expr: str) -> str:
        """Let-bind `expr` once (hash-consing on the text) and record its creation order."""
        if expr in self.memo:
            return self.memo[expr]
        n = len(self.memo)
        var = f"$v{n}"
        self.memo[expr] = var
        self.enc.commands.append(f"(let {var} {expr})")
        self.enc.commands.append(f"(set (lo {var}) {n})")
        self.enc.commands.append(f"(set (hi {var}) {n})")
        return var

    # -- layout helpers -------------------------------------------------------------------------
    def arrange(self, v: _Value, order: Sequence[str]) -> _Value:
        """Transpose `v` so its axes follow `order` (a permutation of its axes)."""
        perm = [v.axes.index(a) for a in order]
        if perm == list(range(len(perm))):
            return v
        if v.var in self.windows:  # a window gathers in any axis order: no data movement
            source, spec = self.windows[v.var]
            extents = dict(spec.axes)
            axes = tuple((a, extents[a]) for a in order)
            return self.window(source, WindowSpec(axes, spec.exprs))
        if v.var in self.transposed:  # transpose of a transpose: one data movement, not two
            src, first = self.transposed[v.var]
            perm = [first[p] for p in perm]
            if perm == list(range(len(perm))):
                return _Value(src.var, tuple(order), src.shape)
            v = _Value(src.var, tuple(order), src.shape)
        var = self.term(f'(Transpose {v.var} "{shape_str(perm)}")')
        result = _Value(var, tuple(order), tuple(v.shape[p] for p in perm))
        self.transposed[var] = (_Value(v.var, (), v.shape), perm)
        return result

    def reshape(self, v: _Value, shape: Sequence[int], axes: tuple[str, ...]) -> _Value:
        if tuple(shape) == v.shape:
            return _Value(v.var, axes, v.shape)
        var = self.term(f'(Reshape {v.var} "{shape_str(shape)}")')
        return _Value(var, axes, tuple(shape))

    def reduce(self, v: _Value, axes: Sequence[str]) -> _Value:
        if not axes:
            return v
        pos = [v.axes.index(a) for a in axes]
        var = self.term(f'(ReduceSum {v.var} "{shape_str(pos)}")')
        keep = [i for i in range(len(v.axes)) if i not in pos]
        return _Value(var, tuple(v.axes[i] for i in keep), tuple(v.shape[i] for i in keep))

    def broadcast(self, v: _Value, axes: tuple[str, ...], extents: dict[str, int]) -> _Value:
        """Bring `v` to exactly `axes` (a superset of its axes), broadcasting the missing ones."""
        v = self.arrange(v, [a for a in axes if a in v.axes])
        if v.axes == axes:
            return v
        shape = tuple(extents[a] for a in axes)
        mapping = [axes.index(a) for a in v.axes]
        var = self.term(f'(Broadcast {v.var} "{shape_str(shape)}" "{shape_str(mapping)}")')
        return _Value(var, axes, shape)

    # -- accesses -------------------------------------------------------------------------------
    def access(self, acc: Access, extents: dict[str, int]) -> _Value:
        src = self.env[acc.tensor]
        if acc.is_plain():
            axes = tuple(a.plain_index() or "" for a in acc.indices)
            return _Value(src, axes, tuple(extents[a] for a in axes))
        names = acc.index_names()
        return self.window(src, WindowSpec(tuple((n, extents[n]) for n in names), acc.indices))

    def window(self, src: str, spec: WindowSpec) -> _Value:
        var = self.term(f'(Window {src} "{spec.to_string()}")')
        self.windows[var] = (src, spec)
        return _Value(var, tuple(n for n, _ in spec.axes), spec.shape())

    # -- statements -----------------------------------------------------------------------------
    def contraction(self, s: Statement, extents: dict[str, int]) -> _Value:
        factors: list[Access] = []
        scale = 1.0
        for f in _product_factors(s.expr):
            if isinstance(f, Access):
                factors.append(f)
            elif isinstance(f, Const):
                scale *= f.value
            else:
                factors = []
                break
        out = s.indices
        result: _Value | None = None
        if len(factors) == 2 and all(
            i in factors[0].index_names() + factors[1].index_names() for i in out
        ):
            result = self.bmm(
                self.access(factors[0], extents), self.access(factors[1], extents), out
            )
        elif len(factors) == 1 and all(i in factors[0].index_names() for i in out):
            a = self.access(factors[0], extents)
            result = self.arrange(self.reduce(a, [x for x in a.axes if x not in out]), out)
        if result is None:
            # any other sum: evaluate elementwise over the whole iteration space, then reduce
            space = out + s.reduced_indices()
            body = self.elementwise(s.expr, space, extents)
            return self.reduce(body, s.reduced_indices())
        if scale != 1.0:
            full = self.term(f'(Full {f64_literal(scale)} "{shape_str(result.shape)}")')
            result = _Value(self.term(f'(Ew "*" {full} {result.var})'), result.axes, result.shape)
        return result

    def bmm(self, a: _Value, b: _Value, out: tuple[str, ...]) -> _Value:
        """TTGT: group indices by role, one Bmm, then back to the output's axis order."""
        batch = [i for i in out if i in a.axes and i in b.axes]
        m = [i for i in out if i in a.axes and i not in b.axes]
        n = [i for i in out if i in b.axes and i not in a.axes]
        k = [i for i in a.axes if i in b.axes and i not in out]
        a = self.reduce(a, [i for i in a.axes if i not in out and i not in b.axes])
        b = self.reduce(b, [i for i in b.axes if i not in out and i not in a.axes])
        ext = dict(zip(a.axes, a.shape, strict=True)) | dict(zip(b.axes, b.shape, strict=True))

        def size(group: list[str]) -> int:
            return math.prod(ext[i] for i in group)

        sb, sm, sn, sk = size(batch), size(m), size(n), size(k)
        a3 = self.to_3d(a, (batch, m, k), (sb, sm, sk))
        b3 = self.to_3d(b, (batch, k, n), (sb, sk, sn))
        var = self.term(f"(Bmm {sb} {sm} {sn} {sk} {a3.var} {b3.var})")
        # the other orientation, (B^T A^T)^T, with its operands laid out here (windows gather
        # straight into it); the swap rule finds it too, but only with a transpose of each operand
        at = self.to_3d(a, (batch, k, m), (sb, sk, sm))
        bt = self.to_3d(b, (batch, n, k), (sb, sn, sk))
        swapped = self.term(f"(Bmm {sb} {sn} {sm} {sk} {bt.var} {at.var})")
        back = self.term(f'(Transpose {swapped} "0,2,1")')
        self.enc.commands.append(f"(union {var} {back})")
        flat = _Value(var, ("#b", "#m", "#n"), (sb, sm, sn))
        if tuple(out) == tuple(batch + n + m) and m and n:  # the output wants [b, n, m]
            swapped = self.term(f'(Transpose {var} "0,2,1")')
            flat = _Value(swapped, ("#b", "#n", "#m"), (sb, sn, sm))
            return self.reshape(flat, tuple(ext[i] for i in out), tuple(out))
        grouped_axes = tuple(batch + m + n)
        grouped = self.reshape(flat, tuple(ext[i] for i in grouped_axes), grouped_axes)
        return self.arrange(grouped, out)

    def to_3d(
        self, v: _Value, groups: tuple[list[str], list[str], list[str]], sizes: tuple[int, ...]
    ) -> _Value:
        """`v` as a [g0, g1, g2] batch of matrices. When its axes already run g0, g2, g1 this is
        a reshape and the batch-matrix transpose "0,2,1" (which the operand swap cancels), not a
        general transpose."""
        g0, g1, g2 = groups
        names = ("#0", "#1", "#2")
        if v.axes == tuple(g0 + g2 + g1) and g1 and g2:
            flat = self.reshape(v, (sizes[0], sizes[2], sizes[1]), names)
            var = self.term(f'(Transpose {flat.var} "0,2,1")')
            return _Value(var, names, sizes)
        return self.reshape(self.arrange(v, g0 + g1 + g2), sizes, names)

    def elementwise(self, expr: Expr, axes: tuple[str, ...], extents: dict[str, int]) -> _Value:
        shape = tuple(extents[a] for a in axes)
        if isinstance(expr, Access):
            return self.broadcast(self.access(expr, extents), axes, extents)
        if isinstance(expr, Const):
            return _Value(
                self.term(f'(Full {f64_literal(expr.value)} "{shape_str(shape)}")'), axes, shape
            )
        if isinstance(expr, Unary):
            arg = self.elementwise(expr.arg, axes, extents)
            return _Value(self.term(f'(Fn "{expr.fn}" {arg.var})'), axes, shape)
        lhs = self.elementwise(expr.lhs, axes, extents)
        rhs = self.elementwise(expr.rhs, axes, extents)
        return _Value(self.term(f'(Ew "{expr.op}" {lhs.var} {rhs.var})'), axes, shape)

    def host_stmt(self, index: int, s: Statement, prev: str | None) -> str:
        reads = list(dict.fromkeys(a.tensor for a in s.accesses()))
        args = [self.env[t] for t in reads] + ([prev] if prev else [])
        lst = "(TNil)"
        for var in reversed(args):
            lst = f"(TCons {var} {lst})"
        return self.term(f"(HostStmt {index} {lst})")

    def statement(self, index: int, s: Statement) -> None:
        extents = dict(self.kernel.extents[index])
        prev = self.env.get(s.target)
        host = self.host_stmt(index, s, prev)
        if s.accumulate:
            value = self.contraction(s, extents)
        else:
            value = self.elementwise(s.expr, s.indices, extents)
        var = value.var
        if var in self.transposed:  # name the value before its last layout change, for people
            self.enc.commands.append(f'(Part "{s.target}" {self.transposed[var][0].var})')
        if prev is not None:
            var = self.term(f'(Ew "+" {prev} {var})')
        self.enc.commands.append(f"(union {var} {host})")
        self.env[s.target] = var

    def run(self) -> Encoding:
        for name in self.kernel.inputs():
            self.env[name] = self.term(f'(Input "{name}")')
        for i, s in enumerate(self.kernel.statements):
            self.statement(i, s)
        for name in self.kernel.written():
            self.enc.results[name] = self.env[name]
            self.enc.commands.append(f'(Result "{name}" {self.env[name]})')
        return self.enc


def _product_factors(expr: Expr) -> list[Expr]:
    if isinstance(expr, Binary) and expr.op == "*":
        return _product_factors(expr.lhs) + _product_factors(expr.rhs)
    return [expr]


def encode_kernel(kernel: Kernel) -> Encoding:
    """Egglog commands that build `kernel`'s terms and mark each written tensor as a `Result`."""
    return _Encoder(kernel).run()
