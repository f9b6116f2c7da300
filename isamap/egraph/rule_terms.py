"""Terms that match a rule's left-hand side, built from the pattern itself, and tensor typing.

A rule that never fires on a corpus of kernels is not verified. So the soundness checker reads
each rule's left-hand side (a `rewrite`'s pattern, a `rule`'s facts, both sides of a
`birewrite`) as data and instantiates it: every tensor variable becomes a fresh input of a shape
that makes the whole pattern well-typed, every literal variable a value that fits its place
(a permutation for a `Transpose`, an in-range start for a `Slice`, a function name for an `Fn`).
Shapes flow both ways — from a constructor's literals to its operands and from already-bound
operands to the literals — so `(Bmm b m n1 k x y1)` beside `(Bmm b m n2 k x y2)` shares `x`.

What it builds is checked with `tensor_types.tensor_shape`, the typing the checker also applies
to every e-node a rule adds.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from isamap.egraph.computed_rules import tap_capable
from isamap.egraph.encode import f64_literal
from isamap.egraph.rule_file import SExpr, SList
from isamap.egraph.target_rules import matrix_instructions
from isamap.egraph.tensor_types import (
    BINARY_OPS,
    IllShapedError,
    Literal,
    Shape,
    constructor_signatures,
    shape_literal,
    tensor_shape,
)
from isamap.egraph.vocabulary import INTEGER_NARROWING
from isamap.hardware.elementwise_form import elementwise_form
from isamap.hardware.target import Target
from isamap.ir.errors import IsamapError
from isamap.ir.kernel import Affine
from isamap.ir.ops import UNARY_NAMES
from isamap.ir.taps import TapGeometry
from isamap.ir.window import WindowSpec

__all__ = ["Instance", "instantiate", "lhs_alternatives"]

_PRIMITIVES = frozenset({"i64", "f64", "String"})


# -- left-hand sides ---------------------------------------------------------------------------

#: One way to match a rule: patterns to build, each optionally bound to a variable.
Alternative = list[tuple[str | None, SExpr]]


def lhs_alternatives(form: SList) -> list[Alternative]:
    """The patterns a rule's left-hand side needs, per way it can fire (a birewrite has two)."""
    items = form.items
    if form.head in ("rewrite", "birewrite") and len(items) >= 3:
        alts: list[Alternative] = [[(None, items[1])]]
        if form.head == "birewrite":
            alts.append([(None, items[2])])
        return alts
    if form.head == "rule" and len(items) >= 2 and isinstance(items[1], SList):
        alt: Alternative = []
        for fact in items[1].items:
            if not isinstance(fact, SList):
                continue
            if fact.head == "=" and len(fact.items) == 3:
                lhs, rhs = fact.items[1], fact.items[2]
                if isinstance(lhs, str) and isinstance(rhs, SList) and _is_tensor(rhs):
                    alt.append((lhs, rhs))
                elif isinstance(rhs, str) and isinstance(lhs, SList) and _is_tensor(lhs):
                    alt.append((rhs, lhs))
            elif _is_tensor(fact):
                alt.append((None, fact))
        return [alt]
    return []


def _is_tensor(pattern: SList) -> bool:
    sig = constructor_signatures()
    return pattern.head in sig and pattern.head not in ("TNil", "TCons")


# -- instantiation -----------------------------------------------------------------------------


class _NoFitError(Exception):
    """This random choice does not make the pattern well-typed; try another."""


@dataclass(frozen=True)
class _Tensor:
    var: str
    shape: Shape
    text: str


@dataclass
class Instance:
    """Egglog commands building terms that match a left-hand side, their inputs and a text."""

    commands: list[str] = field(default_factory=list)
    tensors: dict[str, Shape] = field(default_factory=dict)
    terms: list[str] = field(default_factory=list)

    def describe(self) -> str:
        inputs = ", ".join(f"{n}: {list(s)}" for n, s in self.tensors.items())
        return "; ".join(self.terms) + f" (inputs {inputs})"


def _is_var(atom: str) -> bool:
    if atom.startswith('"'):
        return False
    try:
        float(atom)
    except ValueError:
        return True
    return False


class _Builder:
    def __init__(
        self,
        target: Target,
        rng: random.Random,
        dims: tuple[int, int],
        tag: str,
        counter: list[int],
    ) -> None:
        self.target, self.rng, self.dims, self.tag = target, rng, dims, tag
        self.counter = counter  # creation order, shared by every instance of one e-graph
        self.env: dict[str, _Tensor | Literal] = {}
        self.out = Instance()

    # random choices
    def dim(self) -> int:
        return self.rng.randint(*self.dims)

    def shape(self, rank: int | None = None) -> Shape:
        return tuple(self.dim() for _ in range(self.rng.randint(1, 3) if rank is None else rank))

    def factor_shape(self, total: int) -> Shape:
        """A random shape with `total` elements."""
        primes: list[int] = []
        rest, p = total, 2
        while rest > 1:
            while rest % p == 0:
                primes.append(p)
                rest //= p
            p += 1
        dims = [1] * self.rng.randint(1, 3)
        for q in primes:
            dims[self.rng.randrange(len(dims))] *= q
        return tuple(dims)

    # building
    def emit(self, expr: str, shape: Shape, text: str) -> _Tensor:
        n = self.counter[0]
        self.counter[0] += 1
        var = f"$t{n}"
        self.out.commands += [
            f"(let {var} {expr})",
            f"(set (lo {var}) {n})",
            f"(set (hi {var}) {n})",
        ]
        return _Tensor(var, shape, text)

    def input(self, name: str, shape: Shape) -> _Tensor:
        if name in self.out.tensors and self.out.tensors[name] != shape:
            raise _NoFitError
        self.out.tensors[name] = shape
        return self.emit(f"(Input {json.dumps(name)})", shape, name)

    def literal(self, arg: SExpr, sort: str) -> Literal | None:
        if isinstance(arg, SList):  # i64 arithmetic on bound values
            ops: dict[str, Callable[[int, int], int]] = {
                "+": lambda a, b: a + b,
                "-": lambda a, b: a - b,
                "*": lambda a, b: a * b,
            }
            vals = [self.literal(a, "i64") for a in arg.items[1:]]
            if arg.head not in ops or len(vals) != 2 or not all(isinstance(v, int) for v in vals):
                raise _NoFitError
            return ops[arg.head](int(vals[0] or 0), int(vals[1] or 0))
        if arg.startswith('"'):
            value = json.loads(arg)
            return str(value)
        if not _is_var(arg):
            return float(arg) if sort == "f64" else int(arg)
        bound = self.env.get(arg)
        if isinstance(bound, _Tensor):
            raise _NoFitError
        return bound

    def tensor(self, pat: SExpr, want: Shape | None) -> _Tensor:
        if isinstance(pat, str):
            if not _is_var(pat):
                raise _NoFitError
            bound = self.env.get(pat)
            if bound is not None and pat != "_":
                if not isinstance(bound, _Tensor) or (want is not None and bound.shape != want):
                    raise _NoFitError
                return bound
            t = self.input(f"{pat.strip('_') or 'x'}{self.tag}", want or self.shape())
            if pat != "_":
                self.env[pat] = t
            return t
        return self.node(pat, want)

    def node(self, pat: SList, want: Shape | None) -> _Tensor:
        op = pat.head
        sig = constructor_signatures().get(op)
        args = pat.items[1:]
        if sig is None or op in ("HostStmt", "TNil", "TCons") or len(args) != len(sig):
            raise _NoFitError
        lits: list[Literal | None] = []
        known: list[Shape | None] = []
        for arg, sort in zip(args, sig, strict=True):
            if sort in _PRIMITIVES:
                lits.append(self.literal(arg, sort))
            else:
                bound = self.env.get(arg) if isinstance(arg, str) else None
                known.append(bound.shape if isinstance(bound, _Tensor) else None)
        if op == "Input":
            name = lits[0] if lits[0] is not None else f"in{self.tag}"
            t = self.input(str(name), want or self.shape())
            self._bind(args, sig, [name])
            return t
        values, wants = _PLANNERS[op](self, lits, known, want)
        self._bind(args, sig, values)
        children = [
            self.tensor(a, w)
            for a, w in zip(
                [a for a, s in zip(args, sig, strict=True) if s == "Tensor"], wants, strict=True
            )
        ]
        try:
            shape = tensor_shape(op, values, [c.shape for c in children], self.target)
        except IllShapedError:
            raise _NoFitError from None
        if shape is None or (want is not None and shape != want):
            raise _NoFitError
        parts, texts, it_v, it_c = [], [], iter(values), iter(children)
        for sort in sig:
            if sort == "Tensor":
                child = next(it_c)
                parts.append(child.var)
                texts.append(child.text)
            else:
                value = next(it_v)
                parts.append(_egg_literal(value, sort))
                texts.append(_egg_literal(value, sort))
        return self.emit(f"({op} {' '.join(parts)})", shape, f"({op} {' '.join(texts)})")

    def _bind(self, args: Sequence[SExpr], sig: Sequence[str], values: Sequence[Literal]) -> None:
        it = iter(values)
        for arg, sort in zip(args, sig, strict=True):
            if sort not in _PRIMITIVES:
                continue
            value = next(it)
            bound = isinstance(arg, str) and _is_var(arg) and arg != "_"
            if bound and self.env.setdefault(str(arg), value) != value:
                raise _NoFitError


def _egg_literal(value: Literal, sort: str) -> str:
    if sort == "String":
        return json.dumps(str(value))
    if sort == "f64":
        return f64_literal(float(value))
    return str(int(value))


def _text(shape: Sequence[int]) -> str:
    return ",".join(str(d) for d in shape)


Planned = tuple[list[Literal], list[Shape | None]]


def _pick(b: _Builder, value: Literal | None, choices: Sequence[str]) -> str:
    if value is not None:
        return str(value)
    if not choices:
        raise _NoFitError
    return b.rng.choice(list(choices))


def _merge(slots: dict[str, int | None], key: str, value: int) -> None:
    if slots[key] is None:
        slots[key] = value
    elif slots[key] != value:
        raise _NoFitError


def _extents(
    b: _Builder,
    keys: str,
    given: Sequence[Literal | None],
    shapes: Sequence[tuple[Shape | None, str]],
) -> list[int]:
    """The extents named by `keys`: each from its literal where given, else from the operand
    and result shapes that name it (each shape with its keys; any disagreement is no fit), else
    drawn (a batch of 1 or 2, a small dimension)."""
    slots: dict[str, int | None] = {
        key: (int(v) if v is not None else None) for key, v in zip(keys, given, strict=True)
    }
    for shape, named in shapes:
        if shape is not None:
            if len(shape) != len(named):
                raise _NoFitError
            for key, d in zip(named, shape, strict=True):
                _merge(slots, key, d)
    for key in keys:
        if slots[key] is None:
            slots[key] = b.rng.randint(1, 2) if key == "b" else b.dim()
    return [int(slots[key] or 0) for key in keys]


def _bias_shape(z: Shape | None, bb: int, n: int) -> Shape:
    """A call's bias operand: [n], or [b, n] where the known shape has a batch; no fit for any
    other shape."""
    if z is not None and (len(z) not in (1, 2) or z[-1] != n):
        raise _NoFitError
    return (bb, n) if z is not None and len(z) == 2 else (n,)


def _plan_matmul(
    b: _Builder, lits: list[Literal | None], known: list[Shape | None], want: Shape | None
) -> Planned:
    skip = len(lits) - 4
    head: list[Literal] = []
    if skip >= 1:
        head.append(_pick(b, lits[0], matrix_instructions(b.target)))
    if skip == 2:
        head.append(_pick(b, lits[1], sorted(UNARY_NAMES)))
    x, y = known
    bb, m, n, k = _extents(b, "bmnk", lits[skip:], ((want, "bmn"), (x, "bmk"), (y, "bkn")))
    return [*head, bb, m, n, k], [(bb, m, k), (bb, k, n)]


def _plan_instr_bias(
    b: _Builder, lits: list[Literal | None], known: list[Shape | None], want: Shape | None
) -> Planned:
    """`InstrBias`: a matrix call's literals and operands, and its bias [n] (or [b, n])."""
    z = known[2]
    if z is not None and len(z) not in (1, 2):
        raise _NoFitError  # before the product's extents are drawn
    head, shapes = _plan_matmul(b, lits, known[:2], want)
    bb, _, n, _ = (int(v) for v in head[2:])
    return head, [*shapes, _bias_shape(z, bb, n)]


def _tap_geometry(b: _Builder, value: Literal | None, t: int, m: int, n: int, k: int) -> str:
    """A tap geometry for `t` taps of depth `k` whose views are operand A (rows: the `m`
    output pixels) or B (the `n`): a one-dimensional convolution padded by one; or the
    literal as given."""
    if value is not None:
        return str(value)
    operand = b.rng.choice("AB")
    rows = m if operand == "A" else n
    read = Affine((("p", 1), ("r", 1)), -1)
    return TapGeometry(operand, k, (("p", rows),), (("r", t),), (read,), (rows,)).to_string()


def _plan_taps(
    b: _Builder, lits: list[Literal | None], known: list[Shape | None], want: Shape | None
) -> Planned:
    """`InstrTaps` (name geometry t b m n k x y), `InstrTapsEpi` (name geometry f type scale t
    b m n k x y) and `InstrTapsBias` (the same and z): the instruction, a geometry, the
    epilogue's literals, the extents, views [b, t, m, k], weights [b, t, k, n] and a bias [n]
    or [b, n]."""
    epi = len(lits) == 10
    head: list[Literal] = [_pick(b, lits[0], _tap_instructions(b.target))]
    x, y = known[0], known[1]
    given = lits[5 if epi else 2 :]
    t, bb, m, n, k = _extents(b, "tbmnk", given, ((want, "bmn"), (x, "btmk"), (y, "btkn")))
    head.append(_tap_geometry(b, lits[1], t, m, n, k))
    if epi:
        fn = lits[2] if lits[2] is not None else b.rng.choice(["", "relu"])
        to = lits[3] if lits[3] is not None else ""
        scale = lits[4] if lits[4] is not None else 1.0
        head += [fn, to, scale]
    shapes: list[Shape | None] = [(bb, t, m, k), (bb, t, k, n)]
    if len(known) == 3:
        shapes.append(_bias_shape(known[2], bb, n))
    return [*head, t, bb, m, n, k], shapes


def _tap_instructions(target: Target) -> list[str]:
    return [n for n in matrix_instructions(target) if tap_capable(target, n)]


def _plan_same(
    b: _Builder,
    lits: list[Literal | None],
    known: list[Shape | None],
    want: Shape | None,
    choices: Sequence[str],
) -> Planned:
    shape = want or next((s for s in known if s is not None), None) or b.shape()
    return [_pick(b, lits[0], choices)], [shape] * len(known)


def _elementwise_names(target: Target, arity: int) -> list[str]:
    names = []
    for ins in target.compute_instructions():
        form = elementwise_form(ins.semantics)
        if form is not None and form.arity == arity:
            names.append(ins.name)
    return names


def _plan_reshape(
    b: _Builder, lits: list[Literal | None], known: list[Shape | None], want: Shape | None
) -> Planned:
    (x,) = known
    out = _dims_or_nofit(lits[0]) if lits[0] is not None else want
    if out is None:
        out = b.factor_shape(math.prod(x)) if x is not None else b.shape()
    return [_text(out)], [x if x is not None else b.factor_shape(math.prod(out))]


def _dims_or_nofit(value: Literal) -> Shape:
    try:
        return shape_literal(str(value))
    except IllShapedError:
        raise _NoFitError from None


def _plan_transpose(
    b: _Builder, lits: list[Literal | None], known: list[Shape | None], want: Shape | None
) -> Planned:
    (x,) = known
    if lits[0] is not None:
        perm = list(_dims_or_nofit(lits[0]))
    else:
        rank = len(want) if want else len(x) if x else b.rng.randint(2, 3)
        perm = list(range(rank))
        while rank > 1 and perm == sorted(perm):
            b.rng.shuffle(perm)
    if want is not None:
        if sorted(perm) != list(range(len(want))):
            raise _NoFitError
        src = [0] * len(perm)
        for i, p in enumerate(perm):
            src[p] = want[i]
        x = tuple(src)
    return [_text(perm)], [x or b.shape(len(perm))]


def _plan_window(
    b: _Builder, lits: list[Literal | None], known: list[Shape | None], want: Shape | None
) -> Planned:
    (x,) = known
    if lits[0] is not None:
        try:
            spec = WindowSpec.parse(str(lits[0]))
        except (ValueError, IndexError):
            raise _NoFitError from None
        extents = dict(spec.axes)
        reach = [
            a.const + sum(c * (extents.get(n, 1) - 1) for n, c in a.terms if c > 0) + 1
            for a in spec.exprs
        ]
        return [str(lits[0])], [x or tuple(max(1, r) for r in reach)]
    out = want or b.shape(len(x) if x else None)
    if x is not None and len(x) != len(out):
        raise _NoFitError
    names = [f"w{i}" for i in range(len(out))]
    offsets = [b.rng.randint(0, 2) for _ in out]
    src = x or tuple(o + d for o, d in zip(out, offsets, strict=True))
    exprs = tuple(
        Affine(((n, 1),), min(off, s - o) if s >= o else off)
        for n, off, o, s in zip(names, offsets, out, src, strict=True)
    )
    spec = WindowSpec(tuple(zip(names, out, strict=True)), exprs)
    return [spec.to_string()], [src]


def _plan_broadcast(
    b: _Builder, lits: list[Literal | None], known: list[Shape | None], want: Shape | None
) -> Planned:
    (x,) = known
    out = _dims_or_nofit(lits[0]) if lits[0] is not None else want or b.shape(b.rng.randint(2, 3))
    if lits[1] is not None:
        where = list(_dims_or_nofit(lits[1]))
    else:
        size = len(x) if x is not None else b.rng.randint(1, max(1, len(out) - 1))
        if size > len(out):
            raise _NoFitError
        where = sorted(b.rng.sample(range(len(out)), size))
    if any(not 0 <= w < len(out) for w in where):
        raise _NoFitError
    return [_text(out), _text(where)], [tuple(out[w] for w in where)]


def _plan_full(
    b: _Builder, lits: list[Literal | None], known: list[Shape | None], want: Shape | None
) -> Planned:
    value = lits[0] if lits[0] is not None else round(b.rng.uniform(-2, 2), 2)
    out = _dims_or_nofit(lits[1]) if lits[1] is not None else want or b.shape()
    return [value, _text(out)], []


def _plan_reduce(
    b: _Builder, lits: list[Literal | None], known: list[Shape | None], want: Shape | None
) -> Planned:
    (x,) = known
    if x is not None:
        axes = (
            list(_dims_or_nofit(lits[0]))
            if lits[0] is not None
            else sorted(b.rng.sample(range(len(x)), b.rng.randint(1, len(x))))
        )
        return [_text(axes)], [x]
    out = list(want if want is not None else b.shape(b.rng.randint(1, 2)))
    if lits[0] is not None:
        axes = list(_dims_or_nofit(lits[0]))
    else:
        count = b.rng.randint(1, 2)
        axes = sorted(b.rng.sample(range(len(out) + count), count))
    src: list[int] = []
    rest = iter(out)
    for i in range(len(out) + len(axes)):
        src.append(b.dim() if i in axes else next(rest, 0))
    if 0 in src:
        raise _NoFitError
    return [_text(axes)], [tuple(src)]


def _plan_concat(
    b: _Builder, lits: list[Literal | None], known: list[Shape | None], want: Shape | None
) -> Planned:
    x, y = known
    base = want or x or y or b.shape()
    axis = int(lits[0]) if lits[0] is not None else b.rng.randrange(len(base))
    if not 0 <= axis < len(base):
        raise _NoFitError
    if want is None:
        xs = x or tuple(b.dim() if i == axis else d for i, d in enumerate(base))
        ys = y or tuple(b.dim() if i == axis else d for i, d in enumerate(xs))
        return [axis], [xs, ys]
    if x is not None:
        first = x[axis]
    elif y is not None:
        first = want[axis] - y[axis]
    else:
        first = b.rng.randint(1, max(1, want[axis] - 1))
    second = want[axis] - first
    if first < 1 or second < 1:
        raise _NoFitError
    part: list[Shape | None] = [
        tuple(first if i == axis else d for i, d in enumerate(want)),
        tuple(second if i == axis else d for i, d in enumerate(want)),
    ]
    return [axis], part


def _plan_slice(
    b: _Builder, lits: list[Literal | None], known: list[Shape | None], want: Shape | None
) -> Planned:
    (x,) = known
    base = want or x or b.shape()
    axis = int(lits[0]) if lits[0] is not None else b.rng.randrange(len(base))
    if not 0 <= axis < len(base):
        raise _NoFitError
    if lits[2] is not None:
        length = int(lits[2])
    elif want is not None:
        length = want[axis]
    elif x is not None:
        length = b.rng.randint(1, x[axis])
    else:
        length = b.dim()
    if x is not None:
        start = int(lits[1]) if lits[1] is not None else b.rng.randint(0, max(0, x[axis] - length))
        return [axis, start, length], [x]
    start = int(lits[1]) if lits[1] is not None else b.rng.randint(0, 3)
    if length < 1 or start < 0:
        raise _NoFitError
    src = list(want or base)
    src[axis] = start + length + b.rng.randint(0, 2)
    return [axis, start, length], [tuple(src)]


_Planner = Callable[[_Builder, list[Literal | None], list[Shape | None], Shape | None], Planned]

_PLANNERS: dict[str, _Planner] = {
    "Reshape": _plan_reshape,
    "Transpose": _plan_transpose,
    "Window": _plan_window,
    "Broadcast": _plan_broadcast,
    "Full": _plan_full,
    "Bmm": _plan_matmul,
    "Instr": _plan_matmul,
    "InstrAct": _plan_matmul,
    "InstrBias": _plan_instr_bias,
    "InstrTaps": _plan_taps,
    "InstrTapsEpi": _plan_taps,
    "InstrTapsBias": _plan_taps,
    "Ew": lambda b, lits, known, want: _plan_same(b, lits, known, want, BINARY_OPS),
    "Fn": lambda b, lits, known, want: _plan_same(b, lits, known, want, sorted(UNARY_NAMES)),
    "Narrow": lambda b, lits, known, want: _plan_same(b, lits, known, want, INTEGER_NARROWING),
    "VecFn": lambda b, lits, known, want: _plan_same(
        b, lits, known, want, _elementwise_names(b.target, 1)
    ),
    "VecEw": lambda b, lits, known, want: _plan_same(
        b, lits, known, want, _elementwise_names(b.target, 2)
    ),
    "ReduceSum": _plan_reduce,
    "Concat": _plan_concat,
    "Slice": _plan_slice,
}


def instantiate(
    alternative: Alternative,
    target: Target,
    rng: random.Random,
    dims: tuple[int, int],
    tag: str,
    counter: list[int],
    tries: int = 60,
) -> Instance | None:
    """Terms matching every pattern of `alternative` (inputs named with suffix `tag`, extents
    drawn from `dims`), or None if no random choice in `tries` made them well-typed."""
    if not alternative:
        return None
    for _ in range(tries):
        builder = _Builder(target, rng, dims, tag, counter)
        try:
            for var, pattern in alternative:
                built = builder.tensor(pattern, None)
                builder.out.terms.append(built.text)
                if var is not None and builder.env.setdefault(var, built) is not built:
                    raise _NoFitError
        except (_NoFitError, IsamapError, ValueError, ZeroDivisionError):
            continue
        return builder.out
    return None
