"""Kernel -> egglog terms: each statement written literally, with a host fallback beside it.

The encoder makes no mapping decision. A two-factor `+=` product becomes one `Einsum` naming the
axes of its operands and its result, exactly as the kernel writes it; an affine access is a
`Window` view over its indices; any other sum is its elementwise body over the iteration space,
reduced; `=` statements are `Ew`/`Fn`/`Full`/`Broadcast` terms over the output's axes. How a
product meets an instruction (index roles, grouping, orientation, layouts) is left to the rules
(`isamap/egraph/computed_rules.py`, `isamap/rules/*.egg`, the target's derived rules). Every
statement is also unioned with `HostStmt` (the statement run on the host), so every kernel has a
mapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from isamap.ir.dtypes import dtype, is_integer
from isamap.ir.einsum import einsum_spec
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
    """The egglog commands for a kernel, the let-names of its results, and how many tensor terms
    it numbered (rules that add terms continue the creation order from there)."""

    commands: list[str] = field(default_factory=list)
    results: dict[str, str] = field(default_factory=dict)  # tensor name -> let name
    terms: int = 0

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

    def term(self, expr: str, shape: Sequence[int]) -> str:
        """Let-bind `expr` once (hash-consing on the text), record its creation order and its
        shape (the e-graph's shape analysis)."""
        if expr in self.memo:
            return self.memo[expr]
        n = len(self.memo)
        var = f"$v{n}"
        self.memo[expr] = var
        self.enc.commands.append(f"(let {var} {expr})")
        self.enc.commands.append(f"(set (lo {var}) {n})")
        self.enc.commands.append(f"(set (hi {var}) {n})")
        self.enc.commands.append(f'(set (shape {var}) "{shape_str(shape)}")')
        return var

    def arrange(self, v: _Value, order: Sequence[str]) -> _Value:
        """`v` with its axes in `order` (a permutation of its axes), as the statement reads it."""
        perm = [v.axes.index(a) for a in order]
        if perm == list(range(len(perm))):
            return v
        shape = tuple(v.shape[p] for p in perm)
        var = self.term(f'(Transpose {v.var} "{shape_str(perm)}")', shape)
        return _Value(var, tuple(order), shape)

    def reduce(self, v: _Value, axes: Sequence[str]) -> _Value:
        if not axes:
            return v
        pos = [v.axes.index(a) for a in axes]
        keep = [i for i in range(len(v.axes)) if i not in pos]
        shape = tuple(v.shape[i] for i in keep)
        var = self.term(f'(ReduceSum {v.var} "{shape_str(pos)}")', shape)
        return _Value(var, tuple(v.axes[i] for i in keep), shape)

    def broadcast(self, v: _Value, axes: tuple[str, ...], extents: dict[str, int]) -> _Value:
        """Bring `v` to exactly `axes` (a superset of its axes), broadcasting the missing ones."""
        v = self.arrange(v, [a for a in axes if a in v.axes])
        if v.axes == axes:
            return v
        shape = tuple(extents[a] for a in axes)
        mapping = [axes.index(a) for a in v.axes]
        var = self.term(f'(Broadcast {v.var} "{shape_str(shape)}" "{shape_str(mapping)}")', shape)
        return _Value(var, axes, shape)

    def access(self, acc: Access, extents: dict[str, int]) -> _Value:
        """A read: the tensor itself when its indices are bare and distinct, else a window."""
        src = self.env[acc.tensor]
        if acc.is_plain():
            axes = tuple(a.plain_index() or "" for a in acc.indices)
            return _Value(src, axes, tuple(extents[a] for a in axes))
        spec = WindowSpec(tuple((n, extents[n]) for n in acc.index_names()), acc.indices)
        var = self.term(f'(Window {src} "{spec.to_string()}")', spec.shape())
        return _Value(var, tuple(n for n, _ in spec.axes), spec.shape())

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
            a, b = (self.access(f, extents) for f in factors)
            spec = einsum_spec(a.axes, b.axes, out)
            shape = tuple(extents[i] for i in out)
            var = self.term(f'(Einsum "{spec}" {a.var} {b.var})', shape)
            result = _Value(var, out, shape)
        elif len(factors) == 1 and all(i in factors[0].index_names() for i in out):
            a = self.access(factors[0], extents)
            result = self.arrange(self.reduce(a, [x for x in a.axes if x not in out]), out)
        if result is None:
            # any other sum: its body elementwise over the whole iteration space, then reduced
            space = out + s.reduced_indices()
            body = self.elementwise(s.expr, space, extents)
            return self.reduce(body, s.reduced_indices())
        if scale != 1.0:
            full_text = f'(Full {f64_literal(scale)} "{shape_str(result.shape)}")'
            full = self.term(full_text, result.shape)
            product = self.term(f'(Ew "*" {full} {result.var})', result.shape)
            result = _Value(product, result.axes, result.shape)
        return result

    def elementwise(self, expr: Expr, axes: tuple[str, ...], extents: dict[str, int]) -> _Value:
        shape = tuple(extents[a] for a in axes)
        if isinstance(expr, Access):
            return self.broadcast(self.access(expr, extents), axes, extents)
        if isinstance(expr, Const):
            return _Value(
                self.term(f'(Full {f64_literal(expr.value)} "{shape_str(shape)}")', shape),
                axes,
                shape,
            )
        if isinstance(expr, Unary):
            arg = self.elementwise(expr.arg, axes, extents)
            return _Value(self.term(f'(Fn "{expr.fn}" {arg.var})', shape), axes, shape)
        lhs = self.elementwise(expr.lhs, axes, extents)
        rhs = self.elementwise(expr.rhs, axes, extents)
        return _Value(self.term(f'(Ew "{expr.op}" {lhs.var} {rhs.var})', shape), axes, shape)

    def host_stmt(self, index: int, s: Statement, prev: str | None) -> str:
        reads = list(dict.fromkeys(a.tensor for a in s.accesses()))
        args = [self.env[t] for t in reads] + ([prev] if prev else [])
        lst = "(TNil)"
        for var in reversed(args):
            lst = f"(TCons {var} {lst})"
        return self.term(f"(HostStmt {index} {lst})", self.kernel.shapes[s.target])

    def statement(self, index: int, s: Statement) -> None:
        extents = dict(self.kernel.extents[index])
        prev = self.env.get(s.target)
        host = self.host_stmt(index, s, prev)
        if s.reduce != "+":  # a max-reduction has no literal term: it runs on the host
            self.env[s.target] = host
            return
        if s.accumulate:
            value = self.contraction(s, extents)
        else:
            value = self.elementwise(s.expr, s.indices, extents)
        var = value.var
        if prev is not None:
            var = self.term(f'(Ew "+" {prev} {var})', self.kernel.shapes[s.target])
        narrow = _narrowing(self.kernel, s)
        if narrow is not None:  # the cast its store makes, in the term (requant_rules.py)
            var = self.term(f'(Narrow "{narrow}" {var})', self.kernel.shapes[s.target])
        self.enc.commands.append(f"(union {var} {host})")
        self.env[s.target] = var

    def run(self) -> Encoding:
        for name in self.kernel.inputs():
            self.env[name] = self.term(f'(Input "{name}")', self.kernel.shapes[name])
        for i, s in enumerate(self.kernel.statements):
            self.statement(i, s)
        for name in self.kernel.written():
            self.enc.results[name] = self.env[name]
            self.enc.commands.append(f'(Result "{name}" {self.env[name]})')
        self.enc.terms = len(self.memo)
        return self.enc


def _narrowing(kernel: Kernel, s: Statement) -> str | None:
    """The integer type an `=` statement's result is cast to: its tensor's declared type, when
    that is an integer type (`T_q = 0.05 * T` into an i8 tensor rounds and saturates)."""
    decl = kernel.tensors.get(s.target)
    if s.accumulate or decl is None or not is_integer(decl.dtype):
        return None
    return dtype(decl.dtype).name


def _product_factors(expr: Expr) -> list[Expr]:
    if isinstance(expr, Binary) and expr.op == "*":
        return _product_factors(expr.lhs) + _product_factors(expr.rhs)
    return [expr]


def encode_kernel(kernel: Kernel) -> Encoding:
    """Egglog commands that build `kernel`'s terms and mark each written tensor as a `Result`."""
    return _Encoder(kernel).run()
