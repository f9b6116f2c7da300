"""Depthwise convolution as a direct loop nest, vectorised over output pixels.

It is the host `einsum` of a window of X (`X[n, c, sh*h + r + ch, sw*w + s + cw]`) with a filter
`F[c, r, s]`, summed over r and s: the window is never materialised. Each channel's input plane
is copied once into a zero-padded scratch plane (so no load needs a bounds check), then every
output row is computed LANES pixels at a time, each filter tap one broadcast FMA (stride 1; other
strides gather scalar pixels into the vector).
"""

from __future__ import annotations

from dataclasses import dataclass

from isamap.ir.einsum import parse_einsum
from isamap.ir.window import WindowSpec

__all__ = ["DepthwiseShape", "depthwise_shape", "emit_depthwise"]


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


def emit_depthwise(name: str, d: DepthwiseShape) -> str:
    """`static int name(const float* X, const float* F, float* D)` for shape `d`."""
    hp = (d.ho - 1) * d.sh + d.r
    wp = (d.wo - 1) * d.sw + d.s
    wpad = -(-(wp + 16) // 16) * 16  # slack so a full vector load past the last pixel stays inside
    taps = []
    for r in range(d.r):
        for s in range(d.s):
            if d.sw == 1:
                load = f"vload(row{r} + w + {s})"
            else:
                load = f"vgather{d.sw}(row{r} + w * {d.sw} + {s})"
            taps.append(f"        acc = vfma(vset1(f[{r * d.s + s}]), {load}, acc);")
    rows = "\n".join(
        f"      const float* row{r} = plane + (size_t)(h * {d.sh} + {r}) * {wpad};"
        for r in range(d.r)
    )
    gather = ""
    if d.sw != 1:
        gather = f"""
static inline V vgather{d.sw}(const float* p) {{
  float t[LANES];
  for (int i = 0; i < LANES; ++i) t[i] = p[i * {d.sw}];
  return vload(t);
}}
"""
    return f"""{gather}
/* depthwise {d.r}x{d.s}, stride {d.sh}x{d.sw}: {d.n}x{d.c}x{d.h}x{d.w} -> {d.ho}x{d.wo} */
static int {name}(const float* restrict X, const float* restrict F, float* restrict D) {{
  float* plane = isa_alloc(sizeof(float) * (size_t){hp * wpad});
  if (!plane) return 1;
  for (int n = 0; n < {d.n}; ++n)
    for (int c = 0; c < {d.c}; ++c) {{
      const float* x = X + ((size_t)n * {d.c} + c) * {d.h * d.w};
      const float* f = F + (size_t)c * {d.r * d.s};
      float* out = D + ((size_t)n * {d.c} + c) * {d.ho * d.wo};
      for (int y = 0; y < {hp}; ++y) {{
        int sy = y + {d.oh};
        float* dst = plane + (size_t)y * {wpad};
        for (int xx = 0; xx < {wpad}; ++xx) {{
          int sx = xx + {d.ow};
          int inside = sy >= 0 && sy < {d.h} && sx >= 0 && sx < {d.w};
          dst[xx] = inside ? x[(size_t)sy * {d.w} + sx] : 0.0f;
        }}
      }}
      for (int h = 0; h < {d.ho}; ++h) {{
{rows}
        float* o = out + (size_t)h * {d.wo};
        int w = 0;
        for (; w < {d.wo}; w += LANES) {{
          V acc = vzero();
{chr(10).join("  " + t for t in taps)}
          if (w + LANES <= {d.wo}) vstore(o + w, acc); else vstoren(o + w, acc, {d.wo} - w);
        }}
      }}
    }}
  free(plane);
  return 0;
}}
"""
