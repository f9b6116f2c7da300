"""C for one matrix call `C[b] = epilogue(A[b] . B[b] (+ bias))`: packing, loop nest, micro-kernel.

BLIS-style: for each NC-wide block of B and each KC-deep slice, the slice of B is packed into
NR-wide panels (zero-padded), then for each MC-tall block of A (packed into MR-tall panels, or
read in place) every MR x NR tile of C is computed by the micro-kernel: MR*NR/LANES vector
accumulators, one rank-1 update per k (NR/LANES vector loads of B, MR broadcasts of A). The first
K slice stores into C, later ones add to it; the last applies the bias and the epilogue before
storing. Edge tiles go through a small buffer. Shapes are compile-time constants.
"""

from __future__ import annotations

from isamap.codegen.blocking import Blocking
from isamap.ir.errors import IsamapError

__all__ = ["EPILOGUES", "emit_matmul"]

#: Fused epilogues: the vector function of the prelude each one calls.
EPILOGUES = {
    None: "",
    "relu": "vrelu",
    "relu6": "vrelu6",
    "sigmoid": "vsigmoid",
    "tanh": "vtanh",
}


def _microkernel(
    fn: str, blk: Blocking, lanes: int, packed: bool, lda: int, ldb: int, epi: str
) -> str:
    """The micro-kernel reading A packed (`a[p*MR + r]`) or in place (`a[r*lda + p]`), and B
    packed (`ldb` = NR) or in place (`ldb` = n)."""
    mr, nv = blk.mr, blk.nr // lanes
    acc = [[f"c{r}_{v}" for v in range(nv)] for r in range(mr)]
    lines = [
        f"static inline void {fn}(int kc, const float* restrict a, const float* restrict b,",
        "    float* restrict c, int ldc, int mr, int nr, int first, int last,",
        "    const float* restrict bias) {",
    ]
    lines += [f"  V {', '.join(f'{x} = vzero()' for x in row)};" for row in acc]
    lines += ["  for (int p = 0; p < kc; ++p) {"]
    lines += [f"    V b{v} = vload(b + p * {ldb} + {v * lanes});" for v in range(nv)]
    for r in range(mr):
        where = f"a[p * {mr} + {r}]" if packed else f"a[{r * lda} + p]"
        lines.append(f"    {{ V a_ = vset1({where});")
        lines += [f"      {acc[r][v]} = vfma(a_, b{v}, {acc[r][v]});" for v in range(nv)]
        lines.append("    }")
    lines.append("  }")
    apply = f"x = {epi}(x); " if epi else ""
    bias = "if (bias) x = vadd(x, vload(bb + {o})); "
    # full tile: straight to C; edge tile: through a buffer with C's valid part in it
    lines += [
        f"  if (mr == {mr} && nr == {blk.nr}) {{",
        "    const float* bb = bias;",
    ]
    for r in range(mr):
        for v in range(nv):
            o = v * lanes
            lines.append(
                f"    {{ V x = {acc[r][v]}; if (!first) x = vadd(x, vload(c + {r} * ldc + {o})); "
                f"if (last) {{ {bias.format(o=o)}{apply}}} vstore(c + {r} * ldc + {o}, x); }}"
            )
    lines += [
        "    return;",
        "  }",
        f"  float t[{mr * blk.nr}] = {{0}};",
        f"  float bt[{blk.nr}] = {{0}};",
        "  const float* bb = bt;",
        "  if (bias) for (int j = 0; j < nr; ++j) bt[j] = bias[j];",
        "  if (!first) for (int i = 0; i < mr; ++i) for (int j = 0; j < nr; ++j)",
        f"    t[i * {blk.nr} + j] = c[i * ldc + j];",
    ]
    for r in range(mr):
        for v in range(nv):
            o = v * lanes
            lines.append(
                f"  {{ V x = vadd({acc[r][v]}, vload(t + {r * blk.nr + o})); "
                f"if (last) {{ {bias.format(o=o)}{apply}}} vstore(t + {r * blk.nr + o}, x); }}"
            )
    lines += [
        "  for (int i = 0; i < mr; ++i) for (int j = 0; j < nr; ++j)",
        f"    c[i * ldc + j] = t[i * {blk.nr} + j];",
        "}",
    ]
    return "\n".join(lines)


def emit_matmul(
    name: str,
    blk: Blocking,
    lanes: int,
    dims: tuple[int, int, int, int],
    epilogue: str | None = None,
    threads: int = 1,
    ldb: int | None = None,
    ldc: int | None = None,
) -> str:
    """A C function `void name(const float* A, const float* B, float* C, const float* bias)`
    computing `C[b] = epilogue(A[b] . B[b] + bias)` for row-major A[b][m][k], B[b][k][n],
    C[b][m][n] and bias[n] (NULL: none). `ldb`, `ldc`: the row strides of B and C when they are
    column blocks of wider matrices (a concatenation read or written in place; default n)."""
    if epilogue not in EPILOGUES:
        raise IsamapError(
            f"codegen: no fused epilogue '{epilogue}' (known: relu, relu6, sigmoid, tanh)"
        )
    if blk.nr % lanes:
        raise IsamapError(
            f"codegen: register tile width {blk.nr} is not a multiple of {lanes} lanes"
        )
    b, m, n, k = dims
    ldb = n if ldb is None else ldb
    ldc = n if ldc is None else ldc
    mr, nr, mc, nc, kc = blk.mr, blk.nr, blk.mc, blk.nc, blk.kc
    epi = EPILOGUES[epilogue]
    # variants by (A packed, B packed); an edge tile of an operand read in place is packed
    variants = {
        (blk.pack_a or edge_a, blk.pack_b or edge_b)
        for edge_a in (False, True)
        for edge_b in (False, True)
    }
    parts = [
        _microkernel(f"{name}_mk{int(pa)}{int(pb)}", blk, lanes, pa, k, nr if pb else ldb, epi)
        for pa, pb in sorted(variants)
    ]
    panels_b = -(-nc // nr)
    panels_a = -(-mc // mr)
    omp = (
        f"  #pragma omp parallel for schedule(static) num_threads({threads})\n"
        if threads > 1
        else ""
    )
    a_buf = panels_a * mr * kc if blk.pack_a else 0
    body = f"""
/* B[k0:k0+kc, j0:j0+nc] into NR-wide panels, each kc x NR, zero-padded on the right */
static void {name}_pack_b(const float* restrict B, int kc, int nc, float* restrict bp) {{
  for (int jr = 0; jr < nc; jr += {nr}) {{
    int w = nc - jr < {nr} ? nc - jr : {nr};
    float* dst = bp + (size_t)jr * kc;
    for (int p = 0; p < kc; ++p) {{
      const float* src = B + (size_t)p * {ldb} + jr;
      int j = 0;
      for (; j < w; ++j) dst[p * {nr} + j] = src[j];
      for (; j < {nr}; ++j) dst[p * {nr} + j] = 0.0f;
    }}
  }}
}}

/* A[i0:i0+mc, k0:k0+kc] into MR-tall panels, each kc x MR, zero-padded below */
static void {name}_pack_a(const float* restrict A, int kc, int mc, float* restrict ap) {{
  for (int ir = 0; ir < mc; ir += {mr}) {{
    int h = mc - ir < {mr} ? mc - ir : {mr};
    float* dst = ap + (size_t)ir * kc;
    for (int p = 0; p < kc; ++p) {{
      int i = 0;
      for (; i < h; ++i) dst[p * {mr} + i] = A[(size_t)(ir + i) * {k} + p];
      for (; i < {mr}; ++i) dst[p * {mr} + i] = 0.0f;
    }}
  }}
}}

/* {blk.describe()} */
static int {name}(const float* restrict A, const float* restrict B, float* restrict C,
    const float* restrict bias) {{
  float* bp = isa_alloc(sizeof(float) * (size_t){(panels_b if blk.pack_b else 1) * nr * kc});
  float* ap = {f"isa_alloc(sizeof(float) * (size_t){a_buf})" if a_buf else "NULL"};
  if (!bp || ({"!ap" if a_buf else "0"})) {{ isa_free(bp); isa_free(ap); return 1; }}
  for (int bi = 0; bi < {b}; ++bi) {{
    const float* Ab = A + (size_t)bi * {m * k};
    const float* Bb = B + (size_t)bi * {k * ldb};
    float* Cb = C + (size_t)bi * {m * ldc};
    for (int jc = 0; jc < {n}; jc += {nc}) {{
      int ncur = {n} - jc < {nc} ? {n} - jc : {nc};
      for (int pc = 0; pc < {k}; pc += {kc}) {{
        int kcur = {k} - pc < {kc} ? {k} - pc : {kc};
        int first = pc == 0, last = pc + kcur >= {k};
        {f"{name}_pack_b(Bb + (size_t)pc * {ldb} + jc, kcur, ncur, bp);" if blk.pack_b else ""}
        for (int ic = 0; ic < {m}; ic += {mc}) {{
          int mcur = {m} - ic < {mc} ? {m} - ic : {mc};
          {f"{name}_pack_a(Ab + (size_t)ic * {k} + pc, kcur, mcur, ap);" if blk.pack_a else ""}
{omp}          for (int jr = 0; jr < ncur; jr += {nr}) {{
            int nrc = ncur - jr < {nr} ? ncur - jr : {nr};
            const float* bj = bias ? bias + jc + jr : NULL;
            {_b_panel(name, blk, ldb)}
            for (int ir = 0; ir < mcur; ir += {mr}) {{
              int mrc = mcur - ir < {mr} ? mcur - ir : {mr};
              float* c = Cb + (size_t)(ic + ir) * {ldc} + jc + jr;
              {_inner(name, blk, k).replace("ldc_", str(ldc))}
            }}
          }}
        }}
      }}
    }}
  }}
  isa_free(bp);
  isa_free(ap);
  return 0;
}}
"""
    return "\n\n".join(parts) + "\n" + body


def _b_panel(name: str, blk: Blocking, n: int) -> str:
    """The B panel of one NR-wide column block: packed, in place, or an edge packed on the spot."""
    if blk.pack_b:
        return "const float* bpan = bp + (size_t)jr * kcur; const int bpk = 1;"
    return (
        f"const float* bpan = Bb + (size_t)pc * {n} + jc + jr; const int bpk = nrc != {blk.nr};\n"
        f"            if (bpk) {{ {name}_pack_b(bpan, kcur, nrc, bp); bpan = bp; }}"
    )


def _inner(name: str, blk: Blocking, k: int) -> str:
    """The micro-kernel call of one C tile: A from its packed panel, in place, or an edge
    packed on the spot; B as `_b_panel` left it (`bpk`: packed)."""
    mr = blk.mr
    args = "c, ldc_, mrc, nrc, first, last, bj"
    if blk.pack_a:
        a = "ap + (size_t)ir * kcur"
        if blk.pack_b:
            return f"{name}_mk11(kcur, {a}, bpan, {args});"
        return (
            f"if (bpk) {name}_mk11(kcur, {a}, bpan, {args}); "
            f"else {name}_mk10(kcur, {a}, bpan, {args});"
        )
    inplace = f"Ab + (size_t)(ic + ir) * {k} + pc"
    edge = (
        f"{{ float ae[{mr} * {blk.kc}]; {name}_pack_a({inplace}, kcur, mrc, ae);\n"
        f"                if (bpk) {name}_mk11(kcur, ae, bpan, {args}); "
        f"else {name}_mk10(kcur, ae, bpan, {args}); }}"
    )
    if blk.pack_b:
        full = f"{name}_mk01(kcur, {inplace}, bpan, {args});"
    else:
        full = (
            f"if (bpk) {name}_mk01(kcur, {inplace}, bpan, {args}); "
            f"else {name}_mk00(kcur, {inplace}, bpan, {args});"
        )
    return f"if (mrc == {mr}) {{ {full} }}\n              else {edge}"
