"""Fused output loops: a matrix call or a depthwise convolution that evaluates its element-wise
region (`region.py`) on the vectors it holds, and a depthwise-separable block whose depthwise
rows feed the pointwise micro-kernel from a cache-resident buffer.

Fused matrix call `C = A . [B0 | B1 | ...]` read as P equal column pieces: A is packed once into
MR-tall panels (K deep: one K slice, so no partial sums leave the registers); each micro-kernel
call holds MR x NR accumulators per piece (the instruction's register tile split between the
pieces), then evaluates the region for each vector -- the GRU's gates need z, r and h of the
same columns, so the pieces are computed together -- and stores only the region's exits. The
loop order (column panels outside, or row panels outside) is chosen by the bytes each order
re-reads, charged at the bandwidth of the smallest memory of the target that holds them.

Depthwise-separable block: for each block of output rows (the most rows whose depthwise result
and pointwise output fit in half of the memory the instruction keeps A in, L2), each channel's
input rows are copied into a zero-padded scratch (one plane per column phase when strided),
the depthwise rows are computed LANES pixels at a time -- two output rows per pass, so each
input row loaded serves both -- with the depthwise region (bias, ReLU6) applied, into a
`C x pixels` buffer; the pointwise product then reads that buffer in place as its B.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from isamap.codegen.depthwise import DepthwiseShape
from isamap.codegen.region import Region
from isamap.hardware.target import Target

__all__ = ["MatrixPlan", "emit_fused_depthwise", "emit_fused_matmul", "matrix_plan", "rows_per_block"]


@dataclass(frozen=True)
class MatrixPlan:
    """The fused product's register tile per piece and its loop order."""

    mr: int
    nr: int  # columns per piece
    rows_outer: bool  # row panels outside the column panels


def _level_bandwidth(target: Target, working_set: int) -> float:
    """Bytes per cycle of the smallest memory that holds `working_set` bytes."""
    fits = [
        m
        for m in target.memories.values()
        if m.capacity_bytes >= working_set and m.name != "vregs"
    ]
    best = min(fits, key=lambda m: m.capacity_bytes, default=None)
    if best is None:
        best = min(target.memories.values(), key=lambda m: m.bandwidth_bytes_per_cycle)
    return best.bandwidth_bytes_per_cycle


def matrix_plan(
    target: Target, lanes: int, tile: tuple[int, int], pieces: int, m: int, w: int, k: int
) -> MatrixPlan:
    """Split the instruction's register tile (MR x NR accumulators) between `pieces` and choose
    the loop order of an `m x (pieces * w)` product of depth `k` by re-read cost."""
    mr0, nr0 = tile
    budget = max(1, mr0 * nr0 // lanes)  # vector accumulators the instruction holds
    nv = max(1, nr0 // lanes // pieces)
    mr = max(1, min(budget // (pieces * nv), m))
    nr = nv * lanes
    a_bytes = 4 * (-(-m // mr) * mr) * k
    b_bytes = 4 * pieces * k * w
    # columns outside: A is re-read per column panel; rows outside: B per row panel
    cols_outer = (-(-w // nr) - 1) * a_bytes / _level_bandwidth(target, a_bytes)
    rows_outer = (-(-m // mr) - 1) * b_bytes / _level_bandwidth(target, b_bytes)
    return MatrixPlan(mr, nr, rows_outer < cols_outer)


def rows_per_block(target: Target, memory: str, d: DepthwiseShape, out_channels: int) -> int:
    """The depthwise output rows per block: the fewest blocks whose depthwise buffer and
    pointwise output (C and K channels of the block's pixels) fit in half of `memory`."""
    half = target.memories[memory].capacity_bytes // 2
    per_row = 4 * d.wo * (d.c + out_channels)
    for blocks in range(1, d.ho + 1):
        rows = -(-d.ho // blocks)
        if rows * per_row <= half:
            return rows
    return 1


def _pack_a(name: str, mr: int, m: int, k: int) -> str:
    return f"""
/* A[m x k] into {mr}-tall panels, each k x {mr}, zero-padded below */
static void {name}(const float* restrict A, float* restrict ap) {{
  for (int ir = 0; ir < {m}; ir += {mr})
    for (int p = 0; p < {k}; ++p)
      for (int i = 0; i < {mr}; ++i)
        ap[(size_t)ir * {k} + p * {mr} + i] = ir + i < {m} ? A[(size_t)(ir + i) * {k} + p] : 0.0f;
}}
"""


def _operand_ptr(region: Region) -> dict[int, str]:
    return {node: f"E[{i}]" for i, node in enumerate(region.operands)}


def _microkernel(
    fn: str,
    plan: MatrixPlan,
    lanes: int,
    k: int,
    ldbs: Sequence[int],
    region: Region,
    epilogue: str | None,
) -> str:
    """Accumulate an MR x NR tile per piece over all of K, then the region per vector."""
    mr, nv, pieces = plan.mr, plan.nr // lanes, len(ldbs)
    ops = _operand_ptr(region)
    exits = {e: f"O[{i}]" for i, e in enumerate(region.exits)}
    acc = {(p, r, v): f"c{p}_{r}_{v}" for p in range(pieces) for r in range(mr) for v in range(nv)}
    bargs = ", ".join(f"const float* restrict b{p}" for p in range(pieces))
    lines = [
        f"static inline void {fn}(const float* restrict a, {bargs}, int row, int col, int mr,",
        "    int nr, const float* const* E, float* const* O) {",
        f"  V {', '.join(f'{x} = vzero()' for x in acc.values())};",
        f"  for (int q = 0; q < {k}; ++q) {{",
    ]
    for p in range(pieces):
        lines += [f"    V b{p}_{v} = vload(b{p} + q * {ldbs[p]} + {v * lanes});" for v in range(nv)]
    for r in range(mr):
        lines.append(f"    {{ V a_ = vset1(a[q * {mr} + {r}]);")
        lines += [
            f"      {acc[p, r, v]} = vfma(a_, b{p}_{v}, {acc[p, r, v]});"
            for p in range(pieces)
            for v in range(nv)
        ]
        lines.append("    }")
    lines.append("  }")
    from isamap.codegen.loops import VECTOR_FNS

    wrap = VECTOR_FNS[epilogue] if epilogue else ""

    def body(r: int, v: int, count: str | None) -> list[str]:
        pv = [f"{wrap}({acc[p, r, v]})" for p in range(pieces)]
        rowx, colx = f"row + {r}", f"col + {v * lanes}"

        def store(e: int, val: str) -> str:
            ptr = f"{exits[e]} + (size_t)({rowx}) * {region.width} + {colx}"
            return f"vstore({ptr}, {val});" if count is None else f"vstoren({ptr}, {val}, {count});"

        code, _ = region.code(rowx, colx, count, pv, ops.__getitem__, store)
        return code

    lines.append(f"  if (mr == {mr} && nr == {plan.nr}) {{")
    for r in range(mr):
        for v in range(nv):
            lines += ["    { " + " ".join(body(r, v, None)) + " }"]
    lines += ["    return;", "  }"]
    for r in range(mr):
        for v in range(nv):
            cnt = f"(nr - {v * lanes} < LANES ? nr - {v * lanes} : LANES)"
            lines.append(
                f"  if ({r} < mr && {v * lanes} < nr) {{ int cnt = {cnt}; "
                + " ".join(body(r, v, "cnt"))
                + " }"
            )
    lines.append("}")
    return "\n".join(lines)


def emit_fused_matmul(
    name: str,
    plan: MatrixPlan,
    lanes: int,
    m: int,
    w: int,
    k: int,
    ldbs: Sequence[int],
    region: Region,
    epilogue: str | None = None,
    b_slack: bool = False,
) -> str:
    """`static void name(const float* ap, const float* const* B, const float* const* E,
    float* const* O, int col0, int wcur)`: the fused product of packed A (`name_pack_a`) and the pieces
    `B[p]` (`k x wcur` blocks, wcur <= w, row strides `ldbs`), columns `col0 ..` of the region's
    layout.
    Without `b_slack` (B may not be read past its last column) a partial column panel is
    copied to a scratch first."""
    mr, nr, pieces = plan.mr, plan.nr, len(ldbs)
    parts = [
        _pack_a(f"{name}_pack_a", mr, m, k),
        _microkernel(f"{name}_mk", plan, lanes, k, ldbs, region, epilogue),
    ]
    edge = not b_slack and w % nr != 0  # without slack the width is always w
    bp = ", ".join(f"bq{p}" for p in range(pieces))
    panel = [
        f"    const float* bq{p} = B[{p}] + jr;" for p in range(pieces)
    ]
    if edge:
        panel += [
            f"    if (nrc != {nr}) {{",
            *[
                f"      for (int q = 0; q < {k}; ++q) for (int j = 0; j < {nr}; ++j) "
                f"scratch[{p * k * nr} + q * {nr} + j] = j < nrc ? B[{p}][(size_t)q * {ldbs[p]} + jr + j] : 0.0f;"
                for p in range(pieces)
            ],
            *[f"      bq{p} = scratch + {p * k * nr};" for p in range(pieces)],
            "    }",
        ]
        # the scratch panel has row stride NR, not ldb: a second micro-kernel reads it
        parts.append(
            _microkernel(f"{name}_mke", plan, lanes, k, [nr] * pieces, region, epilogue)
        )
    call = (
        f"{name}_mk(ap + (size_t)ir * {k}, {bp}, ir, col0 + jr, mrc, nrc, E, O);"
        if not edge
        else f"if (nrc != {nr}) {name}_mke(ap + (size_t)ir * {k}, {bp}, ir, col0 + jr, mrc, nrc, E, O);"
        f" else {name}_mk(ap + (size_t)ir * {k}, {bp}, ir, col0 + jr, mrc, nrc, E, O);"
    )
    jr_loop = f"for (int jr = 0; jr < wcur; jr += {nr}) {{ int nrc = wcur - jr < {nr} ? wcur - jr : {nr};"
    ir_loop = f"for (int ir = 0; ir < {m}; ir += {mr}) {{ int mrc = {m} - ir < {mr} ? {m} - ir : {mr};"
    inner = [*panel, f"    {call}"]
    if plan.rows_outer:
        loops = [f"  {ir_loop}", f"   {jr_loop}", *inner, "  }}"]
    else:
        loops = [f"  {jr_loop}", *panel, f"   {ir_loop}", f"    {call}", "  }}"]
    scratch = f"  float scratch[{pieces * k * nr if edge else 1}];"
    parts.append(
        "\n".join(
            [
                f"/* fused product {m} x {pieces}*{w} x {k}: tile {mr}x{nr} per piece, "
                f"{'rows' if plan.rows_outer else 'columns'} outside */",
                f"static void {name}(const float* restrict ap, const float* const* B, "
                "const float* const* E, float* const* O, int col0, int wcur) {",
                scratch if edge else "",
                *loops,
                "}",
            ]
        )
    )
    return "\n".join(parts) + "\n"


def emit_fused_depthwise(
    name: str,
    d: DepthwiseShape,
    region: Region,
    rows: int,
    pointwise: tuple[str, int, int] | None,
) -> str:
    """`static int name(const float* X, const float* F, const float* A, const float* const* E,
    float* const* O, const float* const* E2, float* const* O2)`.

    The depthwise convolution in blocks of `rows` output rows, its region applied; with
    `pointwise` = (fused product function, M, its A-panel floats) each block's result (the
    region's single exit) goes to a `C x pixels` buffer the product reads as B, and `E2`/`O2`
    are the product's region operands and exits; without it the region's exits are stored."""
    hp_blk = (rows - 1) * d.sh + d.r  # padded input rows a block reads
    wq = -(-((d.wo - 1) * d.sw + d.s) // d.sw)  # columns per phase
    wpad = -(-(wq + 16) // 16) * 16
    phase = hp_blk * wpad
    pix = d.ho * d.wo
    npix = rows * d.wo
    ops = _operand_ptr(region)
    exits = {e: f"O[{i}]" for i, e in enumerate(region.exits)}
    feed = pointwise is not None

    def tap(r: int, s: int, hrow: int) -> str:
        return (
            f"vload(plane + (size_t)(hl * {d.sh} + {hrow * d.sh + r}) * {wpad} + "
            f"{(s % d.sw) * phase} + w + {s // d.sw})"
        )

    def out_vec(acc: str, hrow: int, count: str | None) -> list[str]:
        rowx = "plane_id"
        colx = f"(h + {hrow}) * {d.wo} + w"
        if feed:
            (exit_,) = region.exits
            code, vals = region.code(rowx, colx, count, [acc], ops.__getitem__, None)
            dst = f"dbuf + (size_t)c * {npix} + (size_t)(hl + {hrow}) * {d.wo} + w"
            put = f"vstore({dst}, {vals[exit_]});" if count is None else (
                f"vstoren({dst}, {vals[exit_]}, {count});"
            )
            return [*code, put]

        def store(e: int, val: str) -> str:
            ptr = f"{exits[e]} + (size_t)({rowx}) * {pix} + {colx}"
            return f"vstore({ptr}, {val});" if count is None else f"vstoren({ptr}, {val}, {count});"

        code, _ = region.code(rowx, colx, count, [acc], ops.__getitem__, store)
        return code

    def rows_code(nrows: int) -> list[str]:
        lines = [f"V acc{j} = vzero();" for j in range(nrows)]
        for r in range(d.r + (nrows - 1) * d.sh):
            for s in range(d.s):
                for j in range(nrows):
                    rr = r - j * d.sh
                    if 0 <= rr < d.r:
                        lines.append(
                            f"acc{j} = vfma(f{rr * d.s + s}, "
                            f"{tap(r - j * d.sh, s, j)}, acc{j});"
                        )
        for j in range(nrows):
            full = out_vec(f"acc{j}", j, None)
            part = out_vec(f"acc{j}", j, f"{d.wo} - w")
            lines.append(f"if (w + LANES <= {d.wo}) {{ {' '.join(full)} }}")
            lines.append(f"else {{ {' '.join(part)} }}")
        return lines

    two = "\n          ".join(rows_code(2))
    one = "\n          ".join(rows_code(1))
    filt = " ".join(f"V f{t} = vset1(f[{t}]);" for t in range(d.r * d.s))
    if feed:
        fn, m, a_floats = pointwise  # type: ignore[misc]
        pre = [
            f"  float* dbuf = isa_alloc(sizeof(float) * (size_t){d.c * npix + 128});",
            f"  float* ap = isa_alloc(sizeof(float) * (size_t){a_floats});",
            "  if (!dbuf || !ap) { free(plane); free(dbuf); free(ap); return 1; }",
            f"  {fn}_pack_a(A, ap);",
        ]
        post_block = [
            f"      const float* Bp[1] = {{dbuf}};",
            f"      {fn}(ap, Bp, E2, O2, h0 * {d.wo}, hcur * {d.wo});",
        ]
        free = "  free(dbuf); free(ap);"
    else:
        pre, post_block, free = [], [], ""
    hmax = "hcur"
    text = f"""
/* depthwise {d.r}x{d.s}, stride {d.sh}x{d.sw}: {d.n}x{d.c}x{d.h}x{d.w} -> {d.ho}x{d.wo},
   blocks of {rows} rows{', feeding the pointwise product' if feed else ''} */
static int {name}(const float* restrict X, const float* restrict F, const float* restrict A,
    const float* const* E, float* const* O, const float* const* E2, float* const* O2) {{
  (void)A; (void)E2; (void)O2;
  float* plane = isa_alloc(sizeof(float) * (size_t){d.sw * phase});
  if (!plane) return 1;
{chr(10).join(pre)}
  for (int n = 0; n < {d.n}; ++n)
    for (int h0 = 0; h0 < {d.ho}; h0 += {rows}) {{
      int hcur = {d.ho} - h0 < {rows} ? {d.ho} - h0 : {rows};
      for (int c = 0; c < {d.c}; ++c) {{
        int plane_id = n * {d.c} + c;
        const float* x = X + (size_t)plane_id * {d.h * d.w};
        const float* f = F + (size_t)c * {d.r * d.s};
        int ycount = (hcur - 1) * {d.sh} + {d.r};
        for (int p = 0; p < {d.sw}; ++p)
          for (int y = 0; y < ycount; ++y) {{
            int sy = h0 * {d.sh} + y + {d.oh};
            float* dst = plane + (size_t)p * {phase} + (size_t)y * {wpad};
            if (sy < 0 || sy >= {d.h}) {{ memset(dst, 0, sizeof(float) * {wpad}); continue; }}
            int q0 = 0, q1 = {wpad};
            while (q0 < q1 && q0 * {d.sw} + p + {d.ow} < 0) ++q0;
            while (q1 > q0 && (q1 - 1) * {d.sw} + p + {d.ow} >= {d.w}) --q1;
            const float* src = x + (size_t)sy * {d.w} + p + {d.ow};
            for (int q = 0; q < q0; ++q) dst[q] = 0.0f;
            for (int q = q0; q < q1; ++q) dst[q] = src[q * {d.sw}];
            for (int q = q1; q < {wpad}; ++q) dst[q] = 0.0f;
          }}
        {filt}
        int hl = 0;
        for (; hl + 2 <= {hmax}; hl += 2) {{
          int h = h0 + hl;
          for (int w = 0; w < {d.wo}; w += LANES) {{
          {two}
          }}
        }}
        for (; hl < {hmax}; ++hl) {{
          int h = h0 + hl;
          for (int w = 0; w < {d.wo}; w += LANES) {{
          {one}
          }}
        }}
      }}
{chr(10).join(post_block)}
    }}
  free(plane);
{free}
  return 0;
}}
"""
    return text
