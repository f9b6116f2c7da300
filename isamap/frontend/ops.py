"""ONNX operators as kernels in index notation (or views, for reshapes): one converter per op type.

A converter reads its node's inputs' shapes (and constants) from the GraphBuilder and appends the
layer computing its outputs. Semantics follow the ONNX operator specification
(https://onnx.ai/onnx/operators/); an attribute value isamap cannot honour raises NodeError, which
the loader turns into one line naming the node.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from isamap.frontend.graph import GraphBuilder, KernelText, NodeError, fmt_float
from isamap.ir.model import Layer

__all__ = ["CONVERTERS", "Node", "fold_batchnorm_ok"]


@dataclass(frozen=True)
class Node:
    """One graph node, independent of the protobuf ("" for an absent optional input)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, object] = field(default_factory=dict)
    opset: int = 17

    def input(self, i: int) -> str | None:
        return self.inputs[i] if i < len(self.inputs) and self.inputs[i] else None

    def output(self, i: int) -> str | None:
        return self.outputs[i] if i < len(self.outputs) and self.outputs[i] else None

    def attr_int(self, key: str, default: int) -> int:
        v = self.attrs.get(key, default)
        if not isinstance(v, int):
            raise NodeError(f"attribute {key} must be an integer, not {v!r}"[:160])
        return v

    def attr_float(self, key: str, default: float) -> float:
        v = self.attrs.get(key, default)
        if not isinstance(v, int | float):
            raise NodeError(f"attribute {key} must be a number, not {v!r}"[:160])
        return float(v)

    def attr_str(self, key: str, default: str) -> str:
        v = self.attrs.get(key, default)
        if not isinstance(v, str):
            raise NodeError(f"attribute {key} must be a string, not {v!r}"[:160])
        return v

    def attr_ints(self, key: str, default: Sequence[int] | None) -> list[int] | None:
        v = self.attrs.get(key, default)
        if v is None:
            return None
        if not isinstance(v, list | tuple) or not all(isinstance(x, int) for x in v):
            raise NodeError(f"attribute {key} must be a list of integers, not {v!r}"[:160])
        return [int(x) for x in v]


def unsupported(key: str, value: object, why: str = "") -> NodeError:
    text = f"unsupported attribute {key}={value!r}"[:120]
    return NodeError(f"{text}{': ' + why if why else ''}")


# --- helpers ------------------------------------------------------------------------------------


def _axes(rank: int, prefix: str = "i") -> tuple[str, ...]:
    return tuple(f"{prefix}{d}" for d in range(rank))


def _list(names: Sequence[str]) -> str:
    return ", ".join(names)


def _affine(terms: Sequence[tuple[int, str]], const: int = 0) -> str:
    """`2*h + r - 1` from [(2, "h"), (1, "r")] and -1 (zero coefficients dropped)."""
    parts: list[str] = []
    for c, name in terms:
        if c == 0:
            continue
        mag = "" if abs(c) == 1 else f"{abs(c)}*"
        if not parts:
            parts.append(f"{'-' if c < 0 else ''}{mag}{name}")
        else:
            parts.append(f"{'-' if c < 0 else '+'} {mag}{name}")
    if const or not parts:
        parts.append(str(const) if not parts else f"{'-' if const < 0 else '+'} {abs(const)}")
    return " ".join(parts)


def _scalar(g: GraphBuilder, value: str) -> float | None:
    c = g.constant(value)
    if c is not None and c.size == 1 and c.dtype.kind in "biuf":
        return float(np.asarray(c).ravel()[0])
    return None


def _const_ints(g: GraphBuilder, value: str, what: str) -> list[int]:
    c = g.constant(value)
    if c is None:
        raise NodeError(f"{what} ({value}) must be a constant: isamap compiles static shapes")
    return [int(x) for x in np.asarray(c).ravel()]


def _broadcast_shape(node: Node, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        listed = " and ".join(str(list(s)) for s in shapes)
        raise NodeError(f"input shapes {listed} do not broadcast") from None


def _read(
    g: GraphBuilder,
    kt: KernelText,
    node: Node,
    value: str,
    out_shape: tuple[int, ...],
    axes: tuple[str, ...],
    local: str,
) -> str:
    """An access to `value` broadcast (numpy rules) over `axes` of `out_shape`: a literal for a
    constant scalar, else the tensor with its broadcast size-1 dims viewed away."""
    scalar = _scalar(g, value)
    if scalar is not None:
        return fmt_float(scalar)
    shape = g.shape(value)
    if len(shape) > len(out_shape):
        raise NodeError(f"{value} has rank {len(shape)}, more than the result's {len(out_shape)}")
    aligned = axes[len(axes) - len(shape) :]
    lead = len(out_shape) - len(shape)
    keep = [d for d, s in enumerate(shape) if not (s == 1 and out_shape[lead + d] != 1)]
    for d in keep:
        if shape[d] != out_shape[lead + d]:
            raise NodeError(
                f"{value} of shape {list(shape)} does not broadcast to {list(out_shape)}"
            )
    if len(keep) != len(shape):
        kept_shape = tuple(shape[d] for d in keep) or (1,)
        value = g.view(g.fresh(f"{value}/squeezed"), (value,), kept_shape, node.name)
        shape = kept_shape
    name = kt.tensor(value, shape, local)
    idx = [aligned[d] for d in keep] or ["0"]
    return f"{name}[{_list(idx)}]"


def _as_layer_shape(out_shape: tuple[int, ...]) -> tuple[tuple[int, ...], bool]:
    """Scalars are computed as one-element vectors (then viewed back)."""
    return (out_shape or (1,)), not out_shape


def _finish(g: GraphBuilder, node: Node, local_value: str, out: str, scalar: bool) -> None:
    if scalar:
        g.view(out, (local_value,), (), node.name)


# --- elementwise ----------------------------------------------------------------------------------


def _elementwise(
    g: GraphBuilder, node: Node, inputs: Sequence[str], body: Callable[[list[str]], str]
) -> None:
    """`Y[i...] = body(operands)` over the broadcast shape of `inputs`."""
    out = node.outputs[0]
    shape, scalar = _as_layer_shape(_broadcast_shape(node, [g.shape(v) for v in inputs]))
    axes = _axes(len(shape))
    kt = KernelText(node.op.lower())
    names = "XABCDEFG"
    operands = [_read(g, kt, node, v, shape, axes, names[i]) for i, v in enumerate(inputs)]
    y = kt.local("Y")
    kt.stmt(f"{y}[{_list(axes)}] = {body(operands)}")
    target = g.fresh(f"{out}/vector") if scalar else out
    kt.output(y, target)
    g.layer(kt, node.name, node.op, "elementwise", (node.name,))
    _finish(g, node, target, out, scalar)


def _binary(op: str) -> Callable[[GraphBuilder, Node], None]:
    def convert(g: GraphBuilder, node: Node) -> None:
        a, b = node.inputs[0], node.inputs[1]
        if op == "/":
            divisor = _scalar(g, b)
            if divisor == 0.0:
                raise NodeError(f"divides by the constant {b} = 0")
            if divisor is not None:  # by a constant: multiply by its reciprocal (<= 1 ulp apart)
                factor = fmt_float(1.0 / divisor)
                _elementwise(g, node, [a], lambda x: f"{x[0]} * {factor}")
                return
        _elementwise(g, node, [a, b], lambda x: f"{x[0]} {op} {x[1]}")

    return convert


def _unary(fn: str) -> Callable[[GraphBuilder, Node], None]:
    def convert(g: GraphBuilder, node: Node) -> None:
        _elementwise(g, node, [node.inputs[0]], lambda x: f"{fn}({x[0]})")

    return convert


def clip_expr(x: str, lo: float | None, hi: float | None) -> str:
    """`min(max(x, lo), hi)`; either bound may be absent. A lower bound of 0 is `relu(x)`
    (ReLU6 is `min(relu(x), 6)`), which a target's relu epilogue can take."""
    expr = x
    if lo == 0.0:
        expr = f"relu({expr})"
    elif lo is not None:
        expr = f"max({expr}, {fmt_float(lo)})"
    if hi is not None:
        expr = f"min({expr}, {fmt_float(hi)})"
    return expr


def clip(g: GraphBuilder, node: Node) -> None:
    lo: float | None
    hi: float | None
    if node.opset < 11:
        lo = node.attr_float("min", -math.inf) if "min" in node.attrs else None
        hi = node.attr_float("max", math.inf) if "max" in node.attrs else None
    else:
        if "min" in node.attrs or "max" in node.attrs:
            key = "min" if "min" in node.attrs else "max"
            raise unsupported(key, node.attrs[key], f"opset {node.opset} takes it as an input")
        lo = hi = None
        for i, which in ((1, "min"), (2, "max")):
            v = node.input(i)
            if v is None:
                continue
            bound = _scalar(g, v)
            if bound is None:
                raise NodeError(f"{which} ({v}) must be a constant scalar")
            if which == "min":
                lo = bound
            else:
                hi = bound
    if lo is not None and hi is not None and lo > hi:
        raise NodeError(f"min {lo} is larger than max {hi}")
    _elementwise(g, node, [node.inputs[0]], lambda x: clip_expr(x[0], lo, hi))


_SQRT1_2 = fmt_float(1.0 / math.sqrt(2.0))
_SQRT2_PI = fmt_float(math.sqrt(2.0 / math.pi))


def gelu(g: GraphBuilder, node: Node) -> None:
    approx = node.attr_str("approximate", "none")
    if approx == "none":

        def body(x: list[str]) -> str:
            return f"0.5 * {x[0]} * (1 + erf({x[0]} * {_SQRT1_2}))"
    elif approx == "tanh":

        def body(x: list[str]) -> str:
            v = x[0]
            return f"0.5 * {v} * (1 + tanh({_SQRT2_PI} * ({v} + 0.044715 * {v} * {v} * {v})))"
    else:
        raise unsupported("approximate", approx, "expected none or tanh")
    _elementwise(g, node, [node.inputs[0]], body)


# --- contractions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvParams:
    group: int
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right


def _conv_params(g: GraphBuilder, node: Node) -> ConvParams:
    xs, ws = g.shape(node.inputs[0]), g.shape(node.inputs[1])
    if len(xs) != 4 or len(ws) != 4:
        raise NodeError(
            f"input {node.inputs[0]} has shape {list(xs)}: only 2-D convolutions "
            "(rank-4 NCHW input and weight) are supported"
        )
    _, c, h, w = xs
    k, cg, r, s = ws
    group = node.attr_int("group", 1)
    if group < 1 or c % group or k % group or cg * group != c:
        raise NodeError(f"group={group} does not fit input channels {c}, weight {list(ws)}")
    strides = node.attr_ints("strides", [1, 1]) or [1, 1]
    dil = node.attr_ints("dilations", [1, 1]) or [1, 1]
    for key, v in (("strides", strides), ("dilations", dil)):
        if len(v) != 2 or min(v) < 1:
            raise unsupported(key, v, "expected two positive integers")
    shape = node.attr_ints("kernel_shape", None)
    if shape is not None and list(shape) != [r, s]:
        raise unsupported("kernel_shape", shape, f"the weight is {r}x{s}")
    auto_pad = node.attr_str("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        pads = node.attr_ints("pads", [0, 0, 0, 0]) or [0, 0, 0, 0]
        if len(pads) != 4 or min(pads) < 0:
            raise unsupported("pads", pads, "expected 4 non-negative integers")
    elif auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0, 0, 0, 0]
        for d, (size, win) in enumerate(((h, r), (w, s))):
            out = -(-size // strides[d])
            total = max((out - 1) * strides[d] + (win - 1) * dil[d] + 1 - size, 0)
            small, big = total // 2, total - total // 2
            lo, hi = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
            pads[d], pads[d + 2] = lo, hi
    else:
        raise unsupported("auto_pad", auto_pad)
    for d, (size, win) in enumerate(((h, r), (w, s))):
        span = size + pads[d] + pads[d + 2] - dil[d] * (win - 1) - 1
        if span < 0:
            raise NodeError(f"the {win}-wide window does not fit the padded input of {size}")
    return ConvParams(group, (strides[0], strides[1]), (dil[0], dil[1]), tuple(pads))  # type: ignore[arg-type]


def emit_conv(
    g: GraphBuilder,
    node: Node,
    x: str,
    w: str,
    b: str | None,
    p: ConvParams,
    out: str,
    nodes: tuple[str, ...],
    op: str = "Conv",
) -> Layer:
    """The convolution layer `out = conv(x, w) + b`, in the form the mapper knows best: pointwise
    (1x1) as a channel GEMM, depthwise as one filter per channel, else a window contraction."""
    n_, c, h, wd = g.shape(x)
    k, cg, r, s = g.shape(w)
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = p.strides, p.dilations, p.pads
    win_h = _affine([(sh, "h"), (dh, "r")], -pt)
    win_w = _affine([(sw, "w"), (dw, "s")], -pl)
    kt = KernelText(op.lower())
    name = node.name
    if p.group == 1 and r == s == 1 and p.strides == (1, 1) and p.pads == (0, 0, 0, 0):
        kind = "pointwise"
        xt = kt.tensor(x, (n_, c, h, wd), "X")
        wv = g.view(g.fresh(f"{w}/matrix"), (w,), (k, c), name)
        wt = kt.tensor(wv, (k, c), "W")
        o = kt.local("O")
        kt.stmt(f"{o}[n, k, h, w] += {xt}[n, c, h, w] * {wt}[k, c]")
        out_axes, bias_idx = "n, k, h, w", "k"
    elif p.group == c == k and cg == 1:
        kind = "depthwise"
        xt = kt.tensor(x, (n_, c, h, wd), "X", ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        wv = g.view(g.fresh(f"{w}/filters"), (w,), (c, r, s), name)
        wt = kt.tensor(wv, (c, r, s), "F")
        o = kt.local("O")
        kt.stmt(f"{o}[n, c, h, w] += {xt}[n, c, {win_h}, {win_w}] * {wt}[c, r, s]")
        out_axes, bias_idx = "n, c, h, w", "c"
    elif p.group == 1:
        kind = "contraction"
        xt = kt.tensor(x, (n_, c, h, wd), "X", ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        wt = kt.tensor(w, (k, c, r, s), "W")
        o = kt.local("O")
        kt.stmt(f"{o}[n, k, h, w] += {xt}[n, c, {win_h}, {win_w}] * {wt}[k, c, r, s]")
        out_axes, bias_idx = "n, k, h, w", "k"
    else:
        kind = "contraction"
        gr, kg = p.group, k // p.group
        xv = g.view(g.fresh(f"{x}/groups"), (x,), (n_, gr, cg, h, wd), name)
        wv = g.view(g.fresh(f"{w}/groups"), (w,), (gr, kg, cg, r, s), name)
        pad5 = ((0, 0), (0, 0), (0, 0), (pt, pb), (pl, pr))
        xt = kt.tensor(xv, (n_, gr, cg, h, wd), "X", pad5)
        wt = kt.tensor(wv, (gr, kg, cg, r, s), "W")
        o = kt.local("O")
        kt.stmt(f"{o}[n, g, k, h, w] += {xt}[n, g, c, {win_h}, {win_w}] * {wt}[g, k, c, r, s]")
        out_axes, bias_idx = "n, g, k, h, w", "g, k"
        if b is not None:
            b = g.view(g.fresh(f"{b}/groups"), (b,), (gr, kg), name)
    result = o
    if b is not None:
        bt = kt.tensor(b, g.shape(b), "B")
        y = kt.local("Y")
        kt.stmt(f"{y}[{out_axes}] = {o}[{out_axes}] + {bt}[{bias_idx}]")
        result = y
    grouped = p.group > 1 and kind == "contraction"
    target = g.fresh(f"{out}/groups") if grouped else out
    kt.output(result, target)
    layer = g.layer(kt, name, op, kind, nodes)
    if grouped:
        shape = g.shape(target)
        g.view(out, (target,), (shape[0], k, shape[3], shape[4]), name)
    return layer


@dataclass
class ConvRecord:
    """A Conv layer as built, so a BatchNormalization after it can be folded into its weights."""

    layer: Layer
    node: Node
    x: str
    w: str
    b: str | None
    params: ConvParams


def conv(g: GraphBuilder, node: Node) -> None:
    p = _conv_params(g, node)
    if node.input(2) is not None:
        bs = g.shape(node.inputs[2])
        if bs != (g.shape(node.inputs[1])[0],):
            raise NodeError(
                f"bias {node.inputs[2]} has shape {list(bs)}, "
                f"expected [{g.shape(node.inputs[1])[0]}]"
            )
    out = node.outputs[0]
    layer = emit_conv(g, node, node.inputs[0], node.inputs[1], node.input(2), p, out, (node.name,))
    g.convs[out] = ConvRecord(layer, node, node.inputs[0], node.inputs[1], node.input(2), p)


def fold_batchnorm_ok(g: GraphBuilder, x: str, params: Sequence[str]) -> ConvRecord | None:
    """The Conv computing `x`, when a BatchNormalization of `x` can be folded into it."""
    rec: ConvRecord | None = g.convs.get(x)
    if rec is None or g.consumers.get(x, 0) != 1 or x in g.graph_outputs:
        return None
    needed = [rec.w, *(() if rec.b is None else (rec.b,)), *params]
    if any(g.constant(v) is None for v in needed) or rec.layer not in g.steps:
        return None
    return rec


def batchnorm(g: GraphBuilder, node: Node) -> None:
    if node.attr_int("training_mode", 0) != 0:
        raise unsupported("training_mode", node.attrs["training_mode"], "inference only")
    if "spatial" in node.attrs and node.attr_int("spatial", 1) != 1:
        raise unsupported("spatial", node.attrs["spatial"])
    if any(node.output(i) for i in range(1, len(node.outputs))):
        raise NodeError("running mean/variance outputs (training mode) are not supported")
    x = node.inputs[0]
    scale, bias, mean, var = (node.inputs[i] for i in range(1, 5))
    eps = node.attr_float("epsilon", 1e-5)
    channels = g.shape(x)[1] if len(g.shape(x)) > 1 else 0
    for v in (scale, bias, mean, var):
        if g.shape(v) != (channels,):
            raise NodeError(f"{v} has shape {list(g.shape(v))}, expected [{channels}]")
    consts = [g.constant(v) for v in (scale, bias, mean, var)]
    if any(c is None for c in consts):
        raise NodeError("scale, bias, mean and variance must be constants (inference)")
    gamma, beta, mu, sigma2 = (np.asarray(c, dtype=np.float64) for c in consts)
    if not np.isfinite(eps) or not np.all(sigma2 + eps > 0):
        raise NodeError(f"variance ({var}) + epsilon must be positive")
    factor = gamma / np.sqrt(sigma2 + eps)
    shift = beta - mu * factor
    out = node.outputs[0]
    rec = fold_batchnorm_ok(g, x, (scale, bias, mean, var))
    if rec is not None:
        w = np.asarray(g.constant(rec.w), dtype=np.float64)
        b0 = (
            np.zeros(w.shape[0])
            if rec.b is None
            else np.asarray(g.constant(rec.b), dtype=np.float64)
        )
        wf = g.fresh(f"{rec.w}/folded")
        bf = g.fresh(f"{rec.b or rec.w + '/bias'}/folded")
        g.add_constant(wf, w * factor.reshape(-1, 1, 1, 1))
        g.add_constant(bf, b0 * factor + shift)
        g.steps.remove(rec.layer)
        del g.convs[x]
        nodes = (*rec.layer.nodes, node.name)
        layer = emit_conv(
            g, rec.node, rec.x, wf, bf, rec.params, out, nodes, "Conv+BatchNormalization"
        )
        g.convs[out] = ConvRecord(layer, rec.node, rec.x, wf, bf, rec.params)
        return
    fv, sv = g.fresh(f"{node.name}/scale"), g.fresh(f"{node.name}/shift")
    rank = len(g.shape(x))
    g.add_constant(fv, factor.reshape((-1,) + (1,) * (rank - 2)))
    g.add_constant(sv, shift.reshape((-1,) + (1,) * (rank - 2)))
    _elementwise(g, node, [x, fv, sv], lambda o: f"{o[0]} * {o[1]} + {o[2]}")


def gemm(g: GraphBuilder, node: Node) -> None:
    if "broadcast" in node.attrs:
        raise unsupported("broadcast", node.attrs["broadcast"], "opset 6 and older")
    a, b, c = node.inputs[0], node.inputs[1], node.input(2)
    alpha, beta = node.attr_float("alpha", 1.0), node.attr_float("beta", 1.0)
    ta, tb = node.attr_int("transA", 0), node.attr_int("transB", 0)
    sa, sb = g.shape(a), g.shape(b)
    if len(sa) != 2 or len(sb) != 2:
        raise NodeError(f"inputs must be matrices, not {list(sa)} and {list(sb)}")
    m, k = (sa[1], sa[0]) if ta else sa
    k2, n = (sb[1], sb[0]) if tb else sb
    if k != k2:
        raise NodeError(
            f"inner dimensions differ: {list(sa)} (transA={ta}) by {list(sb)} (transB={tb})"
        )
    kt = KernelText("gemm")
    at = kt.tensor(a, sa, "A")
    bt = kt.tensor(b, sb, "B")
    p = kt.local("P")
    kt.stmt(f"{p}[i, j] += {at}[{'k, i' if ta else 'i, k'}] * {bt}[{'j, k' if tb else 'k, j'}]")
    result = p
    if alpha != 1.0 or (c is not None and beta != 0.0):
        expr = f"{p}[i, j]" if alpha == 1.0 else f"{fmt_float(alpha)} * {p}[i, j]"
        if c is not None and beta != 0.0:
            cterm = _read(g, kt, node, c, (m, n), ("i", "j"), "C")
            expr += f" + {cterm}" if beta == 1.0 else f" + {fmt_float(beta)} * {cterm}"
        result = kt.local("Y")
        kt.stmt(f"{result}[i, j] = {expr}")
    kt.output(result, node.outputs[0])
    g.layer(kt, node.name, node.op, "contraction", (node.name,))


def matmul(g: GraphBuilder, node: Node) -> None:
    a, b = node.inputs[0], node.inputs[1]
    sa, sb = g.shape(a), g.shape(b)
    if not sa or not sb:
        raise NodeError("MatMul of a scalar")
    va = (1, *sa) if len(sa) == 1 else sa
    vb = (*sb, 1) if len(sb) == 1 else sb
    if va[-1] != vb[-2]:
        raise NodeError(f"inner dimensions differ: {list(sa)} by {list(sb)}")
    batch = _broadcast_shape(node, [va[:-2], vb[:-2]])
    m, k, n = va[-2], va[-1], vb[-1]
    if len(sa) == 1:
        a = g.view(g.fresh(f"{a}/row"), (a,), va, node.name)
    if len(sb) == 1:
        b = g.view(g.fresh(f"{b}/column"), (b,), vb, node.name)
    bx = _axes(len(batch), "b")
    kt = KernelText("matmul")
    at = _read(g, kt, node, a, (*batch, m, k), (*bx, "i", "k"), "A")
    bt = _read(g, kt, node, b, (*batch, k, n), (*bx, "k", "j"), "B")
    y = kt.local("Y")
    kt.stmt(f"{y}[{_list((*bx, 'i', 'j'))}] += {at} * {bt}")
    out = node.outputs[0]
    final = batch + ((m,) if len(sa) > 1 else ()) + ((n,) if len(sb) > 1 else ())
    full = (*batch, m, n)
    target = out if final == full else g.fresh(f"{out}/full")
    kt.output(y, target)
    g.layer(kt, node.name, node.op, "contraction", (node.name,))
    if target != out:
        g.view(out, (target,), final, node.name)


# --- reductions and normalisations ----------------------------------------------------------------


def _norm_axes(node: Node, axes: Sequence[int], rank: int) -> list[int]:
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise NodeError(f"axis {a} is out of range for rank {rank}")
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise NodeError(f"axes {list(axes)} repeat an axis")
    return sorted(out)


def _mean(
    g: GraphBuilder, node: Node, x: str, axes: list[int], out: str, out_shape: tuple[int, ...]
) -> None:
    """`out` = mean of `x` over `axes`, viewed as `out_shape`."""
    shape = g.shape(x)
    if len(axes) == len(shape):  # a reduction to one value: reduce a [1, ...] view
        x = g.view(g.fresh(f"{x}/all"), (x,), (1, *shape), node.name)
        shape, axes = (1, *shape), [a + 1 for a in axes]
    names = _axes(len(shape))
    kept = [names[d] for d in range(len(shape)) if d not in axes]
    count = math.prod(shape[d] for d in axes)
    kt = KernelText("mean")
    xt = kt.tensor(x, shape, "X")
    s, y = kt.local("S"), kt.local("Y")
    kt.stmt(f"{s}[{_list(kept)}] += {xt}[{_list(names)}]")
    kt.stmt(f"{y}[{_list(kept)}] = {s}[{_list(kept)}] * {fmt_float(1.0 / count)}")
    reduced = tuple(shape[d] for d in range(len(shape)) if d not in axes)
    target = out if reduced == out_shape else g.fresh(f"{out}/reduced")
    kt.output(y, target)
    g.layer(kt, node.name, node.op, "reduction", (node.name,))
    if target != out:
        g.view(out, (target,), out_shape, node.name)


def global_average_pool(g: GraphBuilder, node: Node) -> None:
    x = node.inputs[0]
    shape = g.shape(x)
    if len(shape) < 3:
        raise NodeError(f"input {x} has shape {list(shape)}; expected [N, C, spatial...]")
    out_shape = (*shape[:2], *(1,) * (len(shape) - 2))
    _mean(g, node, x, list(range(2, len(shape))), node.outputs[0], out_shape)


def reduce_mean(g: GraphBuilder, node: Node) -> None:
    x = node.inputs[0]
    rank = len(g.shape(x))
    keepdims = node.attr_int("keepdims", 1)
    axes: list[int] | None
    if node.opset >= 18:
        if "axes" in node.attrs:
            raise unsupported(
                "axes", node.attrs["axes"], f"opset {node.opset} takes it as an input"
            )
        axes = _const_ints(g, node.inputs[1], "axes") if node.input(1) else None
    else:
        axes = node.attr_ints("axes", None)
    if not axes:
        if node.attr_int("noop_with_empty_axes", 0):
            g.view(node.outputs[0], (x,), g.shape(x), node.name)
            return
        axes = list(range(rank))
    red = _norm_axes(node, axes, rank)
    shape = g.shape(x)
    out_shape = tuple(1 if d in red else s for d, s in enumerate(shape) if keepdims or d not in red)
    _mean(g, node, x, red, node.outputs[0], out_shape)


def softmax(g: GraphBuilder, node: Node) -> None:
    x = node.inputs[0]
    shape = g.shape(x)
    rank = len(shape)
    axis = node.attr_int("axis", -1 if node.opset >= 13 else 1)
    if not -rank <= axis < rank:
        raise unsupported("axis", axis, f"out of range for rank {rank}")
    axis %= rank
    red = [axis] if node.opset >= 13 else list(range(axis, rank))
    names = _axes(rank)
    kept = _list([names[d] for d in range(rank) if d not in red])
    all_ = _list(names)
    kt = KernelText("softmax")
    xt = kt.tensor(x, shape, "X")
    m, e, s, y = kt.local("M"), kt.local("E"), kt.local("S"), kt.local("Y")
    if len(red) == rank:
        raise NodeError("softmax over every axis of the input is not supported")
    kt.stmt(f"{m}[{kept}] max= {xt}[{all_}]")
    kt.stmt(f"{e}[{all_}] = exp({xt}[{all_}] - {m}[{kept}])")
    kt.stmt(f"{s}[{kept}] += {e}[{all_}]")
    kt.stmt(f"{y}[{all_}] = {e}[{all_}] / {s}[{kept}]")
    kt.output(y, node.outputs[0])
    g.layer(kt, node.name, node.op, "reduction", (node.name,))


def layer_normalization(g: GraphBuilder, node: Node) -> None:
    if any(node.output(i) for i in (1, 2)):
        raise NodeError("the Mean and InvStdDev outputs are not supported")
    x, scale, bias = node.inputs[0], node.inputs[1], node.input(2)
    shape = g.shape(x)
    rank = len(shape)
    axis = node.attr_int("axis", -1)
    if not -rank <= axis < rank:
        raise unsupported("axis", axis, f"out of range for rank {rank}")
    axis %= rank
    if node.attr_int("stash_type", 1) != 1:
        raise unsupported("stash_type", node.attrs["stash_type"], "only float32 statistics")
    eps = node.attr_float("epsilon", 1e-5)
    names = _axes(rank)
    lead = _list(names[:axis]) if axis else ""
    count = math.prod(shape[axis:])
    if axis == 0:  # normalise everything: a [1, ...] view gives the statistics an axis
        x = g.view(g.fresh(f"{x}/all"), (x,), (1, *shape), node.name)
        shape, names, axis, rank = (1, *shape), _axes(rank + 1), 1, rank + 1
        lead = names[0]
    all_ = _list(names)
    kt = KernelText("layer_norm")
    xt = kt.tensor(x, shape, "X")
    norm_shape = shape[axis:]
    norm_axes = names[axis:]
    gt = _read(g, kt, node, scale, norm_shape, norm_axes, "G")
    bt = _read(g, kt, node, bias, norm_shape, norm_axes, "B") if bias else None
    s, mu, d, v, r, y = (kt.local(n) for n in ("S", "Mu", "D", "V", "R", "Y"))
    kt.stmt(f"{s}[{lead}] += {xt}[{all_}]")
    kt.stmt(f"{mu}[{lead}] = {s}[{lead}] * {fmt_float(1.0 / count)}")
    kt.stmt(f"{d}[{all_}] = {xt}[{all_}] - {mu}[{lead}]")
    kt.stmt(f"{v}[{lead}] += {d}[{all_}] * {d}[{all_}]")
    kt.stmt(f"{r}[{lead}] = 1 / sqrt({v}[{lead}] * {fmt_float(1.0 / count)} + {fmt_float(eps)})")
    tail = f" + {bt}" if bt else ""
    kt.stmt(f"{y}[{all_}] = {d}[{all_}] * {r}[{lead}] * {gt}{tail}")
    out = node.outputs[0]
    target = out if g.shape(node.inputs[0]) == shape else g.fresh(f"{out}/all")
    kt.output(y, target)
    g.layer(kt, node.name, node.op, "reduction", (node.name,))
    if target != out:
        g.view(out, (target,), g.shape(node.inputs[0]), node.name)


# --- layout -------------------------------------------------------------------------------------


def _view_op(g: GraphBuilder, node: Node, shape: Sequence[int]) -> None:
    x = node.inputs[0]
    if math.prod(shape) != math.prod(g.shape(x)):
        raise NodeError(f"cannot view {list(g.shape(x))} as {list(shape)}")
    g.view(node.outputs[0], (x,), tuple(shape), node.name, op=node.op)


def identity(g: GraphBuilder, node: Node) -> None:
    _view_op(g, node, g.shape(node.inputs[0]))


def flatten(g: GraphBuilder, node: Node) -> None:
    shape = g.shape(node.inputs[0])
    axis = node.attr_int("axis", 1)
    if not -len(shape) <= axis <= len(shape):
        raise unsupported("axis", axis, f"out of range for rank {len(shape)}")
    if axis < 0:
        axis += len(shape)
    _view_op(g, node, (math.prod(shape[:axis]), math.prod(shape[axis:])))


def reshape(g: GraphBuilder, node: Node) -> None:
    if "shape" in node.attrs:
        raise unsupported("shape", node.attrs["shape"], "opset 4 and older")
    if node.attr_int("allowzero", 0):
        raise unsupported("allowzero", 1, "zero-sized dimensions")
    src = g.shape(node.inputs[0])
    want = _const_ints(g, node.inputs[1], "the shape")
    dims = [src[i] if d == 0 and i < len(src) else d for i, d in enumerate(want)]
    if dims.count(-1) > 1 or any(d < -1 or d == 0 for d in dims):
        raise NodeError(f"cannot reshape {list(src)} to {want}")
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        if known == 0 or math.prod(src) % known:
            raise NodeError(f"cannot reshape {list(src)} to {want}")
        dims[dims.index(-1)] = math.prod(src) // known
    _view_op(g, node, dims)


def _axes_arg(g: GraphBuilder, node: Node) -> list[int] | None:
    if node.opset >= 13:
        if "axes" in node.attrs:
            raise unsupported(
                "axes", node.attrs["axes"], f"opset {node.opset} takes it as an input"
            )
        return _const_ints(g, node.inputs[1], "axes") if node.input(1) else None
    return node.attr_ints("axes", None)


def squeeze(g: GraphBuilder, node: Node) -> None:
    shape = g.shape(node.inputs[0])
    axes = _axes_arg(g, node)
    drop = (
        _norm_axes(node, axes, len(shape)) if axes else [d for d, s in enumerate(shape) if s == 1]
    )
    if any(shape[d] != 1 for d in drop):
        raise NodeError(f"cannot squeeze axes {axes} of {list(shape)}")
    _view_op(g, node, [s for d, s in enumerate(shape) if d not in drop])


def unsqueeze(g: GraphBuilder, node: Node) -> None:
    shape = list(g.shape(node.inputs[0]))
    axes = _axes_arg(g, node)
    if not axes:
        raise NodeError("no axes to insert")
    rank = len(shape) + len(axes)
    for a in _norm_axes(node, axes, rank):
        shape.insert(a, 1)
    _view_op(g, node, shape)


def transpose(g: GraphBuilder, node: Node) -> None:
    x = node.inputs[0]
    shape = g.shape(x)
    perm = node.attr_ints("perm", None) or list(reversed(range(len(shape))))
    if sorted(perm) != list(range(len(shape))):
        raise unsupported("perm", perm, f"not a permutation of {len(shape)} axes")
    out_shape = tuple(shape[p] for p in perm)
    moved = [p for p in perm if shape[p] != 1]
    if moved == sorted(moved):  # only size-1 axes move: the data stays in place
        g.view(node.outputs[0], (x,), out_shape, node.name, op=node.op)
        return
    names = _axes(len(shape))
    src = [""] * len(shape)
    for j, p in enumerate(perm):
        src[p] = names[j]
    kt = KernelText("transpose")
    xt = kt.tensor(x, shape, "X")
    y = kt.local("Y")
    kt.stmt(f"{y}[{_list(names)}] = {xt}[{_list(src)}]")
    kt.output(y, node.outputs[0])
    g.layer(kt, node.name, node.op, "layout", (node.name,))


def concat(g: GraphBuilder, node: Node) -> None:
    inputs = [v for v in node.inputs if v]
    shapes = [g.shape(v) for v in inputs]
    rank = len(shapes[0])
    if "axis" not in node.attrs:
        raise NodeError("attribute axis is required")
    axis = node.attr_int("axis", 0)
    if not -rank <= axis < rank:
        raise unsupported("axis", axis, f"out of range for rank {rank}")
    axis %= rank
    for s in shapes:
        if len(s) != rank or any(s[d] != shapes[0][d] for d in range(rank) if d != axis):
            raise NodeError(
                f"inputs of shapes {[list(x) for x in shapes]} do not concatenate on axis {axis}"
            )
    total = sum(s[axis] for s in shapes)
    out_shape = tuple(total if d == axis else shapes[0][d] for d in range(rank))
    if math.prod(shapes[0][:axis]) == 1:  # blocks follow each other in memory: a view
        g.view(node.outputs[0], tuple(inputs), out_shape, node.name, op=node.op)
        return
    names = _axes(rank)
    kt = KernelText("concat")
    terms, offset = [], 0
    for i, (v, s) in enumerate(zip(inputs, shapes, strict=True)):
        pad = tuple(
            (offset, total - offset - s[axis]) if d == axis else (0, 0) for d in range(rank)
        )
        t = kt.tensor(v, s, f"X{i}", pad)
        idx = [names[d] if d != axis else _affine([(1, names[d])], -offset) for d in range(rank)]
        terms.append(f"{t}[{_list(idx)}]")
        offset += s[axis]
    y = kt.local("Y")
    kt.stmt(f"{y}[{_list(names)}] = {' + '.join(terms)}")
    kt.output(y, node.outputs[0])
    g.layer(kt, node.name, node.op, "layout", (node.name,))


def constant(g: GraphBuilder, node: Node) -> None:
    keys = [k for k in node.attrs]
    if len(keys) != 1:
        raise NodeError(f"expected exactly one value attribute, got {keys}")
    key = keys[0]
    v = node.attrs[key]
    if key == "value" and isinstance(v, np.ndarray):
        arr: NDArray[np.generic] = v
    elif key in ("value_float", "value_int") and isinstance(v, int | float):
        arr = np.asarray(v, dtype=np.float32 if key == "value_float" else np.int64)
    elif key in ("value_floats", "value_ints") and isinstance(v, list):
        arr = np.asarray(v, dtype=np.float32 if key == "value_floats" else np.int64)
    else:
        raise unsupported(key, "..." if not isinstance(v, int | float | str) else v)
    g.add_constant(node.outputs[0], arr)


# --- recurrent ----------------------------------------------------------------------------------


def gru(g: GraphBuilder, node: Node) -> None:
    """A forward GRU (ONNX gate order z, r, h), unrolled: one input projection for every step,
    then one recurrent-step layer per time step (the same kernel each step)."""
    for key in ("clip", "activation_alpha", "activation_beta"):
        if key in node.attrs:
            raise unsupported(key, node.attrs[key])
    direction = node.attr_str("direction", "forward")
    if direction != "forward":
        raise unsupported("direction", direction, "only forward")
    if node.attr_int("layout", 0) != 0:
        raise unsupported("layout", node.attrs["layout"], "only layout 0 ([seq, batch, ...])")
    acts = node.attrs.get("activations")
    if acts is not None and [str(a).lower() for a in acts] != ["sigmoid", "tanh"]:  # type: ignore[attr-defined]
        raise unsupported("activations", acts, "only the default Sigmoid, Tanh")
    lbr = node.attr_int("linear_before_reset", 0)
    if lbr not in (0, 1):
        raise unsupported("linear_before_reset", lbr)
    x, w, r = node.inputs[0], node.inputs[1], node.inputs[2]
    b, seq_lens, h0 = node.input(3), node.input(4), node.input(5)
    xs, ws, rs = g.shape(x), g.shape(w), g.shape(r)
    if len(xs) != 3:
        raise NodeError(f"X has shape {list(xs)}, expected [seq_length, batch, input_size]")
    t_, bt, i_ = xs
    if len(rs) != 3 or rs[0] != 1 or rs[1] != 3 * rs[2]:
        raise NodeError(f"R has shape {list(rs)}, expected [1, 3*hidden, hidden]")
    h = rs[2]
    if "hidden_size" in node.attrs and node.attr_int("hidden_size", h) != h:
        raise unsupported("hidden_size", node.attrs["hidden_size"], f"R says {h}")
    if ws != (1, 3 * h, i_):
        raise NodeError(f"W has shape {list(ws)}, expected [1, {3 * h}, {i_}]")
    if b is not None and g.shape(b) != (1, 6 * h):
        raise NodeError(f"B has shape {list(g.shape(b))}, expected [1, {6 * h}]")
    if seq_lens is not None:
        lens = g.constant(seq_lens)
        if lens is None or np.shape(lens) != (bt,) or not np.all(np.asarray(lens) == t_):
            raise NodeError(
                "sequence_lens must be a constant equal to seq_length for every batch entry"
            )
    if h0 is not None and g.shape(h0) != (1, bt, h):
        raise NodeError(f"initial_h has shape {list(g.shape(h0))}, expected [1, {bt}, {h}]")
    name = node.name

    def part(src: str, index: int, shape: tuple[int, ...], label: str) -> str:
        return g.view(g.fresh(f"{src}/{label}"), (src,), shape, name, index * math.prod(shape))

    def gate_weights(src: str, cols: int) -> tuple[list[str], str]:
        """Each gate's [hidden, cols] block of W or R; a constant one transposed to [cols,
        hidden] (read W[k, j]: the layout in which the gate GEMMs fuse into one)."""
        const = g.constant(src)
        if const is None:
            return [part(src, i, (h, cols), gate) for i, gate in enumerate(gates)], "j, k"
        out = []
        for i, gate in enumerate(gates):
            block = np.asarray(const).reshape(3, h, cols)[i].T
            out.append(g.fresh(f"{src}/{gate}_transposed"))
            g.add_constant(out[-1], np.ascontiguousarray(block))
        return out, "k, j"

    gates = "zrh"
    wv, w_idx = gate_weights(w, i_)
    uv, u_idx = gate_weights(r, h)
    w_shape = (i_, h) if w_idx == "k, j" else (h, i_)
    u_shape = (h, h)
    bv = [part(b, i, (h,), f"B{i}") for i in range(6)] if b is not None else []
    # input projection of every step at once: the three gate GEMMs share X
    kt = KernelText("gru_projection")
    xt = kt.tensor(g.view(g.fresh(f"{x}/rows"), (x,), (t_ * bt, i_), name), (t_ * bt, i_), "X")
    proj: list[str] = []
    for i, gate in enumerate(gates):
        wt = kt.tensor(wv[i], w_shape, f"W{gate}")
        p = kt.local(f"P{gate}")
        kt.stmt(f"{p}[t, j] += {xt}[t, k] * {wt}[{w_idx}]")
        if bv:
            biases = [bv[i]] + ([bv[3 + i]] if gate != "h" or lbr == 0 else [])
            terms = " + ".join(f"{kt.tensor(v, (h,), f'B{gate}')}[j]" for v in biases)
            q = kt.local(f"Q{gate}")
            kt.stmt(f"{q}[t, j] = {p}[t, j] + {terms}")
            p = q
        value = g.fresh(f"{name}/projection_{gate}")
        kt.output(p, value)
        proj.append(value)
    g.layer(kt, name, "GRU input projection", "contraction", (name,))
    if h0 is not None:
        state = g.view(g.fresh(f"{h0}/state"), (h0,), (bt, h), name)
    else:
        state = g.fresh(f"{name}/initial_h")
        g.add_constant(state, np.zeros((bt, h), dtype=np.float32))
    states = []
    for step in range(t_):
        kt = KernelText("gru_step")
        ht = kt.tensor(state, (bt, h), "H")
        ut = [kt.tensor(uv[i], u_shape, f"U{gate}") for i, gate in enumerate(gates)]
        qt = [
            kt.tensor(part(proj[i], step, (bt, h), f"t{step}"), (bt, h), f"P{gate}")
            for i, gate in enumerate(gates)
        ]
        gz, gr, gh, z, rr, n_, hn = (kt.local(v) for v in ("Gz", "Gr", "Gh", "Z", "R", "N", "Hn"))
        kt.stmt(f"{gz}[b, j] += {ht}[b, k] * {ut[0]}[{u_idx}]")
        kt.stmt(f"{gr}[b, j] += {ht}[b, k] * {ut[1]}[{u_idx}]")
        if lbr:
            kt.stmt(f"{gh}[b, j] += {ht}[b, k] * {ut[2]}[{u_idx}]")
        kt.stmt(f"{z}[b, j] = sigmoid({qt[0]}[b, j] + {gz}[b, j])")
        kt.stmt(f"{rr}[b, j] = sigmoid({qt[1]}[b, j] + {gr}[b, j])")
        if lbr:
            rec = f"{gh}[b, j]"
            if bv:
                rec = f"({gh}[b, j] + {kt.tensor(bv[5], (h,), 'Bh')}[j])"
            kt.stmt(f"{n_}[b, j] = tanh({qt[2]}[b, j] + {rr}[b, j] * {rec})")
        else:
            rh = kt.local("RH")
            kt.stmt(f"{rh}[b, j] = {rr}[b, j] * {ht}[b, j]")
            kt.stmt(f"{gh}[b, j] += {rh}[b, k] * {ut[2]}[{u_idx}]")
            kt.stmt(f"{n_}[b, j] = tanh({qt[2]}[b, j] + {gh}[b, j])")
        kt.stmt(f"{hn}[b, j] = (1 - {z}[b, j]) * {n_}[b, j] + {z}[b, j] * {ht}[b, j]")
        state = g.fresh(f"{name}/h{step + 1}")
        kt.output(hn, state)
        g.layer(kt, f"{name}/step{step}", "GRU step", "contraction", (name,))
        states.append(state)
    if node.output(0):
        g.view(node.outputs[0], tuple(states), (t_, 1, bt, h), name, op="GRU output")
    if node.output(1):
        g.view(node.outputs[1], (state,), (1, bt, h), name, op="GRU output")


# --- the table ----------------------------------------------------------------------------------


def _noattrs(*keys: str) -> frozenset[str]:
    return frozenset(keys)


#: op type -> (converter, the attributes it understands).
CONVERTERS: dict[str, tuple[Callable[[GraphBuilder, Node], None], frozenset[str]]] = {
    "Conv": (conv, _noattrs("group", "strides", "pads", "dilations", "auto_pad", "kernel_shape")),
    "Gemm": (gemm, _noattrs("alpha", "beta", "transA", "transB", "broadcast")),
    "MatMul": (matmul, _noattrs()),
    "Add": (_binary("+"), _noattrs()),
    "Sub": (_binary("-"), _noattrs()),
    "Mul": (_binary("*"), _noattrs()),
    "Div": (_binary("/"), _noattrs()),
    "Relu": (_unary("relu"), _noattrs()),
    "Sigmoid": (_unary("sigmoid"), _noattrs()),
    "Tanh": (_unary("tanh"), _noattrs()),
    "Erf": (_unary("erf"), _noattrs()),
    "Sqrt": (_unary("sqrt"), _noattrs()),
    "Exp": (_unary("exp"), _noattrs()),
    "Clip": (clip, _noattrs("min", "max")),
    "Gelu": (gelu, _noattrs("approximate")),
    "Softmax": (softmax, _noattrs("axis")),
    "LayerNormalization": (layer_normalization, _noattrs("axis", "epsilon", "stash_type")),
    "BatchNormalization": (
        batchnorm,
        _noattrs("epsilon", "momentum", "training_mode", "spatial"),
    ),
    "GlobalAveragePool": (global_average_pool, _noattrs()),
    "ReduceMean": (reduce_mean, _noattrs("axes", "keepdims", "noop_with_empty_axes")),
    "Flatten": (flatten, _noattrs("axis")),
    "Reshape": (reshape, _noattrs("allowzero", "shape")),
    "Squeeze": (squeeze, _noattrs("axes")),
    "Unsqueeze": (unsqueeze, _noattrs("axes")),
    "Transpose": (transpose, _noattrs("perm")),
    "Concat": (concat, _noattrs("axis")),
    "Identity": (identity, _noattrs()),
    "Constant": (
        constant,
        _noattrs(
            "value",
            "value_float",
            "value_floats",
            "value_int",
            "value_ints",
            "sparse_value",
            "value_string",
            "value_strings",
        ),
    ),
    "GRU": (
        gru,
        _noattrs(
            "activations",
            "activation_alpha",
            "activation_beta",
            "clip",
            "direction",
            "hidden_size",
            "layout",
            "linear_before_reset",
        ),
    ),
}
