"""Depthwise convolution as a direct loop nest, vectorised over output pixels.

It is the host `einsum` of a window of X (`X[n, c, sh*h + r + ch, sw*w + s + cw]`) with a filter
`F[c, r, s]`, summed over r and s: the window is never materialised. Each channel's input plane
is copied once into a zero-padded scratch plane (so no load needs a bounds check; with a stride,
split into one plane per column phase), then every output row is computed LANES pixels at a
time, each filter tap one broadcast FMA on LANES consecutive floats.
"""

from __future__ import annotations

from dataclasses import dataclass

from isamap.ir.einsum import parse_einsum
from isamap.ir.window import WindowSpec

__all__ = ["DepthwiseShape", "depthwise_shape", "emit_depthwise", "plane_fill"]


@dataclass(frozen=True)
class DepthwiseShape:
    """N x C planes of H x W in, Ho x Wo out, an R x S filter, strides and offsets."""

    n: int
    c: int
    h: int
    w: int
    ho: int
    wo: int
    r: int
    s: int
    sh: int
    sw: int
    oh: int  # constant of the row expression (minus the padding)
    ow: int


def _split(expr_terms: dict[str, int], out_axis: str, tap: str) -> int | None:
    """The stride of `out_axis` when the expression is `stride*out_axis + tap`, else None."""
    if set(expr_terms) != {out_axis, tap} or expr_terms[tap] != 1 or expr_terms[out_axis] < 1:
        return None
    return expr_terms[out_axis]


def depthwise_shape(
    spec: str, window: WindowSpec, x_shape: tuple[int, ...], f_shape: tuple[int, ...]
) -> DepthwiseShape | None:
    """The depthwise convolution an `einsum(window(X), F)` node is, or None if it is not one."""
    lhs, rhs, out = parse_einsum(spec)
    axes = dict(window.axes)
    if (
        len(x_shape) != 4
        or len(rhs) != 3
        or len(out) != 4
        or tuple(a for a, _ in window.axes) != lhs
    ):
        return None
    exprs = [dict(e.terms) for e in window.exprs]
    plain = [e.plain_index() for e in window.exprs[:2]]
    n_ax, c_ax = plain
    if n_ax is None or c_ax is None or any(e.const for e in window.exprs[:2]):
        return None
    c_f, r_ax, s_ax = rhs
    if c_f != c_ax or tuple(out[:2]) != (n_ax, c_ax):
        return None
    h_ax, w_ax = out[2], out[3]
    sh, sw = _split(exprs[2], h_ax, r_ax), _split(exprs[3], w_ax, s_ax)
    if sh is None or sw is None or set(lhs) != {n_ax, c_ax, h_ax, w_ax, r_ax, s_ax}:
        return None
    if (axes[c_ax], axes[r_ax], axes[s_ax]) != f_shape or axes[n_ax] != x_shape[0]:
        return None
    if axes[c_ax] != x_shape[1]:
        return None
    return DepthwiseShape(
        n=x_shape[0],
        c=x_shape[1],
        h=x_shape[2],
        w=x_shape[3],
        ho=axes[h_ax],
        wo=axes[w_ax],
        r=axes[r_ax],
        s=axes[s_ax],
        sh=sh,
        sw=sw,
        oh=window.exprs[2].const,
        ow=window.exprs[3].const,
    )


def plane_fill(
    d: DepthwiseShape,
    rows: str,
    first: str,
    phase: int,
    wpad: int,
    indent: str,
    zeroed: bool = False,
) -> list[str]:
    """C filling `rows` rows of the zero-padded scratch `plane` from the channel's input `x`,
    padded row y holding input row `first + y + oh` (`first`: a C expression ending in `+`, or
    ""). The plane is `sw` phase planes `phase` floats apart (phase p: columns q*sw + p + ow),
    rows `wpad` floats apart. Each phase's columns inside the input are known here, so a row is
    a zeroed head, a copy and a zeroed tail; rows outside are zeroed. With `zeroed` the caller
    zeroed the whole plane once and nothing but the copies writes its inside rows, so their
    head and tail are still zero: only the copy is emitted, and it stores nothing past its
    columns but zeros where the padding is (a `memset` per row costs more than the copy on
    short rows)."""
    lines = [
        f"for (int y = 0; y < {rows}; ++y) {{",
        f"  int sy = {first}y + {d.oh};",
        f"  float* dst = plane + (size_t)y * {wpad};",
        f"  if (sy < 0 || sy >= {d.h}) {{",
        # vector stores: a memset call (rep stos) costs more than the row on short rows
        *[
            f"    for (int q = 0; q < {wpad}; q += LANES) vstore(dst + {p * phase} + q, vzero());"
            for p in range(d.sw)
        ],
        "    continue;",
        "  }",
        f"  const float* src = x + (size_t)sy * {d.w};",
    ]
    for p in range(d.sw):
        # columns q*sw + p + ow inside [0, W): q in [q0, q1)
        q0 = min(wpad, max(0, -(-(-p - d.ow) // d.sw)))
        q1 = max(q0, min(wpad, (d.w - 1 - p - d.ow) // d.sw + 1))
        at = f"dst + {p * phase}"
        if q0 and not zeroed:
            lines.append(f"  memset({at}, 0, sizeof(float) * {q0});")
        if q1 > q0 and d.sw == 1:
            # whole vectors, then one masked load of the rest (a memcpy call per row costs more
            # than the copy on short rows), stored whole: its lanes past the input are zero, the
            # padding columns' value, and the row's slack (>= LANES past the copied columns)
            # takes them. A masked store instead stalls the loads after it (measured: the
            # copies of a 14x14 plane took half of the depthwise time with one per row)
            rest = f"vloadn(src + q + {p + d.ow}, {q1} - q)"
            tail = f"vstore({at} + q, {rest})"
            lines += [
                f"  {{ int q = {q0};",
                f"    for (; q + LANES <= {q1}; q += LANES)"
                f" vstore({at} + q, vload(src + q + {p + d.ow}));",
                f"    if (q < {q1}) {tail}; }}",
            ]
        elif q1 > q0 and d.sw == 2:
            # phase p of a stride-2 row: the even lanes of 2 * LANES consecutive floats, while
            # they lie inside the row, then one at a time
            lines += [
                f"  {{ int q = {q0};",
                f"    for (; 2 * q + {p + d.ow} + 2 * LANES <= {d.w}; q += LANES)"
                f" vstore({at} + q, vload_even(src + 2 * q + {p + d.ow}));",
                f"    for (; q < {q1}; ++q) ({at})[q] = src[2 * q + {p + d.ow}]; }}",
            ]
        elif q1 > q0:
            lines.append(
                f"  for (int q = {q0}; q < {q1}; ++q) ({at})[q] = src[q * {d.sw} + {p + d.ow}];"
            )
        if q1 < wpad and not zeroed:
            lines.append(f"  memset({at} + {q1}, 0, sizeof(float) * {wpad - q1});")
    lines.append("}")
    return [indent + line for line in lines]


def emit_depthwise(name: str, d: DepthwiseShape, threads: int = 1) -> str:
    """`static int name(const float* X, const float* F, float* D)` for shape `d`.

    The padded plane is stored as `sw` phase planes (phase p holds columns q*sw + p), so with any
    stride every filter tap reads LANES consecutive floats of one phase. With `threads` > 1 the
    channels are spread over OpenMP threads, each with its own plane."""
    omp = (
        f"  #pragma omp parallel for schedule(static) num_threads({threads})\n"
        if threads > 1
        else ""
    )
    hp = (d.ho - 1) * d.sh + d.r
    wq = -(-((d.wo - 1) * d.sw + d.s) // d.sw)  # columns per phase
    wpad = -(-(wq + 16) // 16) * 16  # slack so a full vector past the last pixel stays inside
    phase = hp * wpad
    taps = [
        f"        acc = vfma(vset1(f[{r * d.s + s}]), vload(row{r} + {(s % d.sw) * phase} "
        f"+ w + {s // d.sw}), acc);"
        for r in range(d.r)
        for s in range(d.s)
    ]
    fill = "\n".join(plane_fill(d, str(hp), "", phase, wpad, "      "))
    rows = "\n".join(
        f"        const float* row{r} = plane + (size_t)(h * {d.sh} + {r}) * {wpad};"
        for r in range(d.r)
    )
    return f"""
/* depthwise {d.r}x{d.s}, stride {d.sh}x{d.sw}: {d.n}x{d.c}x{d.h}x{d.w} -> {d.ho}x{d.wo} */
static int {name}(const float* restrict X, const float* restrict F, float* restrict D) {{
  int failed = 0;
{omp}  for (int nc = 0; nc < {d.n * d.c}; ++nc) {{
      int n = nc / {d.c}, c = nc % {d.c};
      float* plane = isa_alloc(sizeof(float) * (size_t){d.sw * phase});
      if (!plane) {{ failed = 1; continue; }}
      const float* x = X + ((size_t)n * {d.c} + c) * {d.h * d.w};
      const float* f = F + (size_t)c * {d.r * d.s};
      float* out = D + ((size_t)n * {d.c} + c) * {d.ho * d.wo};
{fill}
      for (int h = 0; h < {d.ho}; ++h) {{
{rows}
        float* o = out + (size_t)h * {d.wo};
        for (int w = 0; w < {d.wo}; w += LANES) {{
          V acc = vzero();
{chr(10).join(taps)}
          if (w + LANES <= {d.wo}) vstore(o + w, acc); else vstoren(o + w, acc, {d.wo} - w);
        }}
      }}
      isa_free(plane);
    }}
  return failed;
}}
"""
