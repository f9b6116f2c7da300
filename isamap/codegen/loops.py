"""C for the non-matrix operations of a mapping: layout moves, elementwise and host statements.

Every value is a dense row-major f32 buffer; each operation is a loop nest with constant shapes
(the compiler vectorises the inner loops), elementwise ones written with the family's vectors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from isamap.ir.einsum import parse_einsum
from isamap.ir.errors import IsamapError
from isamap.ir.kernel import Access, Binary, Const, Expr, Kernel, Unary
from isamap.ir.window import WindowSpec

__all__ = [
    "block_diag",
    "broadcast",
    "concat",
    "copy",
    "einsum",
    "elementwise",
    "fill",
    "host_statement",
    "reduce_sum",
    "slice_axis",
    "transpose",
    "window",
]

#: Vector functions of the prelude, by the language's function names.
VECTOR_FNS = {
    "relu": "vrelu",
    "relu6": "vrelu6",
    "sigmoid": "vsigmoid",
    "tanh": "vtanh",
    "exp": "vexp",
    "sqrt": "vsqrt",
    "erf": "verf",
    "neg": "vneg",
}
VECTOR_OPS = {"+": "vadd", "-": "vsub", "*": "vmul", "/": "vdiv", "max": "vmax", "min": "vmin"}


def strides(shape: Sequence[int]) -> list[int]:
    out = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        out[d] = out[d + 1] * shape[d + 1]
    return out


def _nest(
    shape: Sequence[int], names: Sequence[str], body: list[str], pad: str = "  "
) -> list[str]:
    lines, depth = [], pad
    for n, e in zip(names, shape, strict=True):
        lines.append(f"{depth}for (int {n} = 0; {n} < {e}; ++{n})")
        depth += "  "
    lines.append(f"{depth}{{")
    lines += [f"{depth}  {b}" for b in body]
    lines.append(f"{depth}}}")
    return lines


def _flat(names: Sequence[str], shape: Sequence[int]) -> str:
    terms = [
        f"(size_t){n} * {s}" if s != 1 else f"(size_t){n}"
        for n, s in zip(names, strides(shape), strict=True)
    ]
    return " + ".join(terms) or "0"


def _idx(rank: int, prefix: str = "i") -> list[str]:
    return [f"{prefix}{d}" for d in range(rank)]


def copy(out: str, src: str, size: int) -> list[str]:
    return [f"  memcpy({out}, {src}, sizeof(float) * {size});"]


def fill(out: str, size: int, value: float) -> list[str]:
    return [f"  for (size_t i = 0; i < {size}; ++i) {out}[i] = {value!r}f;"]


def transpose(out: str, src: str, in_shape: Sequence[int], perm: Sequence[int]) -> list[str]:
    out_shape = [in_shape[p] for p in perm]
    names = _idx(len(out_shape))
    st = strides(in_shape)
    src_flat = " + ".join(f"(size_t){names[d]} * {st[perm[d]]}" for d in range(len(perm))) or "0"
    return _nest(out_shape, names, [f"{out}[{_flat(names, out_shape)}] = {src}[{src_flat}];"])


def window(out: str, src: str, in_shape: Sequence[int], spec: WindowSpec) -> list[str]:
    names = [f"w_{n}" for n, _ in spec.axes]
    by = {n: f"w_{n}" for n, _ in spec.axes}
    body, checks, terms = [], [], []
    st = strides(in_shape)
    for dim, a in enumerate(spec.exprs):
        expr = " + ".join([f"{c} * {by[n]}" for n, c in a.terms] + [str(a.const)])
        body.append(f"int p{dim} = {expr};")
        lo, hi = a.bounds(dict(spec.axes))
        if lo < 0 or hi >= in_shape[dim]:
            checks.append(f"p{dim} >= 0 && p{dim} < {in_shape[dim]}")
        terms.append(f"(size_t)p{dim} * {st[dim]}")
    value = f"{src}[{' + '.join(terms) or '0'}]"
    if checks:
        value = f"({' && '.join(checks)}) ? {value} : 0.0f"
    body.append(f"{out}[{_flat(names, spec.shape())}] = {value};")
    return _nest(spec.shape(), names, body)


def broadcast(out: str, src: str, shape: Sequence[int], where: Sequence[int]) -> list[str]:
    names = _idx(len(shape))
    kept = sorted(where)
    in_shape = [shape[i] for i in kept]
    src_flat = _flat([names[i] for i in kept], in_shape)
    return _nest(shape, names, [f"{out}[{_flat(names, shape)}] = {src}[{src_flat}];"])


def elementwise(out: str, args: Sequence[str], op: str, size: int) -> list[str]:
    """`out = op(args)` over `size` elements: a function name or "+", "-", "*"."""
    if len(args) == 1 and op in VECTOR_FNS:
        fn = VECTOR_FNS[op]
        full = f"vstore({out} + i, {fn}(vload({args[0]} + i)));"
        tail = f"vstoren({out} + i, {fn}(vloadn({args[0]} + i, r)), r);"
    elif len(args) == 2 and op in VECTOR_OPS:
        fn = VECTOR_OPS[op]
        full = f"vstore({out} + i, {fn}(vload({args[0]} + i), vload({args[1]} + i)));"
        tail = f"vstoren({out} + i, {fn}(vloadn({args[0]} + i, r), vloadn({args[1]} + i, r)), r);"
    else:
        raise IsamapError(f"codegen: no elementwise operation '{op}' of {len(args)} operands")
    return [
        "  { size_t i = 0;",
        f"    for (; i + LANES <= {size}; i += LANES) {full}",
        f"    int r = (int)({size} - i); if (r > 0) {tail} }}",
    ]


def reduce_sum(out: str, src: str, in_shape: Sequence[int], axes: Sequence[int]) -> list[str]:
    names = _idx(len(in_shape))
    kept = [d for d in range(len(in_shape)) if d not in axes]
    out_shape = [in_shape[d] for d in kept]
    size = math.prod(out_shape)
    body = [
        f"{out}[{_flat([names[d] for d in kept], out_shape)}] += {src}[{_flat(names, in_shape)}];"
    ]
    return fill(out, size, 0.0) + _nest(in_shape, names, body)


def block_diag(out: str, src: str, in_shape: Sequence[int], axis: int, groups: int) -> list[str]:
    """out[pre, q, r, post, s] = src[pre, q*g + r, post] if r == s else 0."""
    g = groups
    split = [*in_shape[:axis], in_shape[axis] // g, g, *in_shape[axis + 1 :]]
    out_shape = [*split, g]
    names = _idx(len(out_shape))
    q, r, s = names[axis], names[axis + 1], names[-1]
    src_names = [*names[:axis], f"({q} * {g} + {r})", *names[axis + 2 : -1]]
    src_flat = " + ".join(
        f"(size_t){n} * {st}" for n, st in zip(src_names, strides(in_shape), strict=True)
    )
    body = [f"{out}[{_flat(names, out_shape)}] = ({r} == {s}) ? {src}[{src_flat}] : 0.0f;"]
    return _nest(out_shape, names, body)


def concat(out: str, srcs: Sequence[str], shapes: Sequence[Sequence[int]], axis: int) -> list[str]:
    """Concatenation along `axis`: each source's blocks copied to its offset."""
    outer = math.prod(shapes[0][:axis])
    inner = math.prod(shapes[0][axis + 1 :])
    total = sum(s[axis] for s in shapes) * inner
    lines, offset = [], 0
    for src, shape in zip(srcs, shapes, strict=True):
        width = shape[axis] * inner
        lines.append(
            f"  for (size_t o = 0; o < {outer}; ++o) memcpy({out} + o * {total} + {offset}, "
            f"{src} + o * {width}, sizeof(float) * {width});"
        )
        offset += width
    return lines


def slice_axis(
    out: str, src: str, in_shape: Sequence[int], axis: int, start: int, length: int
) -> list[str]:
    outer = math.prod(in_shape[:axis])
    inner = math.prod(in_shape[axis + 1 :])
    return [
        f"  for (size_t o = 0; o < {outer}; ++o) memcpy({out} + o * {length * inner}, "
        f"{src} + o * {in_shape[axis] * inner} + {start * inner}, "
        f"sizeof(float) * {length * inner});"
    ]


def einsum(out: str, x: str, y: str, spec: str, xs: Sequence[int], ys: Sequence[int]) -> list[str]:
    """A two-operand contraction as loops: output axes outside, summed axes inside. When a
    summed axis is contiguous in both operands it runs innermost as a vector dot product; else
    when the last output axis is contiguous in the second operand (and absent from the first)
    it runs innermost as vector multiply-adds into the output (a row vector times a matrix)."""
    lhs, rhs, res = parse_einsum(spec)
    ext = dict(zip(lhs, xs, strict=True)) | dict(zip(rhs, ys, strict=True))
    names = {a: f"e_{a}" for a in ext}
    out_shape = [ext[a] for a in res]
    reduced = [a for a in dict.fromkeys([*lhs, *rhs]) if a not in res]
    x_st = dict(zip(lhs, strides(xs), strict=True))
    y_st = dict(zip(rhs, strides(ys), strict=True))
    inner = next(
        (a for a in reversed(reduced) if x_st.get(a) == 1 and y_st.get(a) == 1 and ext[a] > 1),
        None,
    )

    def at(axes: Sequence[str], shape: Sequence[int], skip: str | None = None) -> str:
        kept = [(a, st) for a, st in zip(axes, strides(shape), strict=True) if a != skip]
        return " + ".join(f"(size_t){names[a]} * {st}" for a, st in kept) or "0"

    last = res[-1] if res else None
    y_only = (
        inner is None
        and last is not None
        and last not in lhs
        and y_st.get(last) == 1
        and ext[last] >= 8
    )
    if y_only:  # out[..., j] += x[...] * y[..., j]: vectors along j, contiguous in y and out
        assert last is not None
        rest = [a for a in res if a != last]
        o_st = dict(zip(res, strides(out_shape), strict=True))
        n = ext[last]
        o_at = " + ".join(f"(size_t){names[a]} * {o_st[a]}" for a in rest) or "0"
        body = [
            f"const float xv = {x}[{at(lhs, xs)}];",
            f"const float* py = {y} + {at(rhs, ys, last)}; float* po = {out} + {o_at}; int q = 0;",
            f"for (; q + LANES <= {n}; q += LANES) "
            "vstore(po + q, vfma(vset1(xv), vload(py + q), vload(po + q)));",
            f"for (; q < {n}; ++q) po[q] += xv * py[q];",
        ]
        loop_axes = rest + reduced
        return fill(out, math.prod(out_shape), 0.0) + _nest(
            [ext[a] for a in loop_axes], [names[a] for a in loop_axes], body
        )
    outer_red = [a for a in reduced if a != inner]
    if inner is None:
        body = [f"s += {x}[{at(lhs, xs)}] * {y}[{at(rhs, ys)}];"]
        total = "s"
    else:
        xp, yp, n = f"{x} + {at(lhs, xs, inner)}", f"{y} + {at(rhs, ys, inner)}", ext[inner]
        body = [
            f"const float* px = {xp}; const float* py = {yp}; int q = 0;",
            f"for (; q + LANES <= {n}; q += LANES) acc = vfma(vload(px + q), vload(py + q), acc);",
            f"for (; q < {n}; ++q) s += px[q] * py[q];",
        ]
        total = "s + vhsum(acc)"
    red_loops = _nest([ext[a] for a in outer_red], [names[a] for a in outer_red], body, "")
    per_out = [
        "float s = 0.0f;",
        "V acc = vzero();",
        *red_loops,
        f"{out}[{_flat([names[a] for a in res], out_shape)}] = {total};",
    ]
    return _nest(out_shape, [names[a] for a in res], per_out)


_SCALAR_FNS = {
    "relu": "fmaxf({}, 0.0f)",
    "relu6": "fminf(fmaxf({}, 0.0f), 6.0f)",
    "sigmoid": "(1.0f / (1.0f + expf(-({}))))",
    "tanh": "tanhf({})",
    "exp": "expf({})",
    "sqrt": "sqrtf({})",
    "erf": "erff({})",
    "neg": "(-({}))",
}
_SCALAR_OPS = {
    "+": "({} + {})",
    "-": "({} - {})",
    "*": "({} * {})",
    "/": "({} / {})",
    "max": "fmaxf({}, {})",
    "min": "fminf({}, {})",
}


def _scalar(expr: Expr, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> str:
    if isinstance(expr, Const):
        return f"{float(expr.value)!r}f"
    if isinstance(expr, Unary):
        if expr.fn not in _SCALAR_FNS:
            raise IsamapError(f"codegen: no C for the function '{expr.fn}'")
        return _SCALAR_FNS[expr.fn].format(_scalar(expr.arg, tensors))
    if isinstance(expr, Binary):
        if expr.op not in _SCALAR_OPS:
            raise IsamapError(f"codegen: no C for the operator '{expr.op}'")
        return _SCALAR_OPS[expr.op].format(_scalar(expr.lhs, tensors), _scalar(expr.rhs, tensors))
    assert isinstance(expr, Access)
    buf, shape = tensors[expr.tensor]
    terms, checks = [], []
    for pos, (a, st) in enumerate(zip(expr.indices, strides(shape), strict=True)):
        e = " + ".join([f"{c} * x_{n}" for n, c in a.terms] + [str(a.const)])
        terms.append(f"(size_t)({e}) * {st}")
        checks.append(f"(unsigned)({e}) < {shape[pos]}u")
    return f"(({' && '.join(checks) or '1'}) ? {buf}[{' + '.join(terms) or '0'}] : 0.0f)"


def host_statement(
    out: str, kernel: Kernel, index: int, args: Sequence[tuple[str, tuple[int, ...]]]
) -> list[str]:
    """Statement `index` of `kernel` as a loop nest (reads out of bounds are padding: zero);
    a last extra argument is the target's earlier value, added to."""
    s = kernel.statements[index]
    reads = list(dict.fromkeys(a.tensor for a in s.accesses()))
    tensors = {name: args[i] for i, name in enumerate(reads)}
    ext = kernel.extents[index]
    out_shape = [ext[i] for i in s.indices]
    reduced = [i for i in s.reduced_indices() if i not in s.indices]
    flat = _flat([f"x_{i}" for i in s.indices], out_shape)
    start = f"{args[-1][0]}[{flat}]" if len(args) > len(reads) else "0.0f"
    inner = _nest(
        [ext[i] for i in reduced],
        [f"x_{i}" for i in reduced],
        [f"s += {_scalar(s.expr, tensors)};"],
        "",
    )
    body = [f"float s = {start};", *inner, f"{out}[{flat}] = s;"]
    return _nest(out_shape, [f"x_{i}" for i in s.indices], body)
