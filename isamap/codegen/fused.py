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
input rows are read in place at a column stride of 2 (`reads_rows_in_place`: each tap the even
or odd lanes of a pair of vectors loaded from the row), otherwise copied into a zero-padded
scratch (one plane per column phase at other strides); the depthwise rows are computed LANES
pixels at a time -- up to four output rows per pass (`pass_rows`), so each input row loaded
serves every one it is a tap row of -- with the depthwise region (bias, ReLU6) applied, into a
`C x pixels` buffer; the pointwise product then reads that buffer in place as its B.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from isamap.codegen.depthwise import DepthwiseShape, plane_fill
from isamap.codegen.region import Region
from isamap.hardware.target import Target

__all__ = [
    "MatrixPlan",
    "channel_kc",
    "channel_plan",
    "emit_channel_pointwise",
    "emit_fused_depthwise",
    "emit_fused_matmul",
    "full_depth_streams",
    "light_region",
    "matrix_plan",
    "pass_rows",
    "pixel_tiles",
    "reads_rows_in_place",
    "rows_per_block",
]


@dataclass(frozen=True)
class MatrixPlan:
    """The fused product's register tile per piece and its loop order."""

    mr: int
    nr: int  # columns per piece
    rows_outer: bool  # row panels outside the column panels
    kc: int  # depth of one K slice: its B panels fill half of B's memory


def _level_bandwidth(target: Target, working_set: int) -> float:
    """Bytes per cycle of the smallest memory that holds `working_set` bytes."""
    fits = [
        m for m in target.memories.values() if m.capacity_bytes >= working_set and m.name != "vregs"
    ]
    best = min(fits, key=lambda m: m.capacity_bytes, default=None)
    if best is None:
        best = min(target.memories.values(), key=lambda m: m.bandwidth_bytes_per_cycle)
    return best.bandwidth_bytes_per_cycle


def _split(lanes: int, mr0: int, nr0: int, pieces: int, m: int) -> tuple[int, int]:
    """An MR x NR register tile split between `pieces`: as many vector accumulators."""
    budget = max(1, mr0 * nr0 // lanes)
    nv = max(1, nr0 // lanes // pieces)
    return max(1, min(budget // (pieces * nv), m)), nv * lanes


def matrix_plan(
    target: Target,
    lanes: int,
    tiles: Sequence[tuple[int, int, float]],
    pieces: int,
    m: int,
    w: int,
    k: int,
    b_memory: str = "l1",
    b_packed: bool = False,
) -> MatrixPlan:
    """The register tile -- among the target's micro-kernels (MR, NR, issue cycles per rank-1
    update), each split between `pieces` -- with the fewest cycles once the edge tiles' padding
    is counted, and the loop order of an `m x (pieces * w)` product of depth `k` by the bytes
    each order re-reads (A per column panel, or B per row panel). K is cut in slices whose B
    panels fill half of `b_memory`; partial sums of the slices before the last wait in a
    scratch block. A B packed into contiguous panels (`b_packed`) is not cut when its panels
    of full depth stream fast enough (`full_depth_streams`): then slices would only add the
    partial sums' round trips (measured 8 % of a GRU step)."""

    def cycles(tile: tuple[int, int, float]) -> float:
        mr, nr = _split(lanes, tile[0], tile[1], pieces, m)
        used = pieces * mr * (nr // lanes) / max(1, tile[0] * tile[1] // lanes)
        return -(-m // mr) * -(-w // nr) * tile[2] * used

    best = min(tiles, key=cycles)
    mr, nr = _split(lanes, best[0], best[1], pieces, m)
    a_bytes = 4 * m * k
    b_bytes = 4 * pieces * k * w
    cols_outer = (-(-w // nr) - 1) * a_bytes / _level_bandwidth(target, a_bytes)
    rows_outer = (-(-m // mr) - 1) * b_bytes / _level_bandwidth(target, b_bytes)
    kc = max(1, min(k, target.memories[b_memory].capacity_bytes // 2 // (4 * pieces * nr)))
    kc = -(-k // -(-k // kc))  # evened out: the last slice is not a sliver
    if b_packed and full_depth_streams(target, 4 * pieces * nr, best[2], k):
        kc = k
    return MatrixPlan(mr, nr, rows_outer < cols_outer, kc)


def full_depth_streams(target: Target, row_bytes: int, cycles: float, k: int) -> bool:
    """Whether a packed B panel of depth `k` (`row_bytes` per rank-1 update, one every
    `cycles`) is read by the micro-kernel no faster than the smallest memory holding the whole
    panel supplies it, so every row tile can re-read it from there without waiting. (A B read
    in place, rows `ldb` apart, is a stream per row: kept in L1-sized slices.)"""
    return row_bytes / max(cycles, 1e-9) <= _level_bandwidth(target, row_bytes * k)


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


def reads_rows_in_place(d: DepthwiseShape) -> bool:
    """Whether the depthwise loop reads its input rows in place instead of a padded copy: with
    a column stride of 2, de-interleaving a row into its two phase planes cost more than the
    taps (one 32-byte store per 8 floats, about 2 cycles each; measured 196 of 315 us of a
    112x112x96 stride-2 layer), while each tap's vector is the even or odd lanes of a pair
    of vectors loaded from the row (one shuffle), the edges loaded masked."""
    return d.sw == 2


def pass_rows(target: Target, lanes: int, taps: int, temps: int = 2) -> int:
    """Output rows one pass of the depthwise loop computes together (a power of two, at most
    4): each input row loaded serves every output row it is a tap row of, so more rows per
    pass load fewer rows per FMA ((R - 1) * stride + r row loads for R), as long as the
    filter taps, R accumulators and `temps` temporaries (a tap's vector and a spare; three when
    rows are read in place: a pair of vectors and the tap's lanes of it) stay in the vector
    registers."""
    vregs = target.memories.get("vregs")
    regs = vregs.capacity_bytes // (4 * lanes) if vregs is not None else 16
    rows = 4
    while rows > 1 and taps + rows + temps > regs:
        rows //= 2
    return rows


def block_stride(rows: int, wo: int, lanes: int) -> int:
    """Floats between channels of the depthwise buffer: a block's pixels (and, when a row is
    not a whole number of vectors, the LANES - 1 floats its last vector stores past them)
    rounded up to an odd number of 64-byte lines, so every channel's row of B starts on a cache
    line and rows a power of two apart do not fall in the same cache sets."""
    spill = lanes - 1 if wo % lanes else 0
    lines = -(-(rows * wo + spill) // 16)
    return 16 * (lines + 1 - lines % 2)  # an odd number of lines: rows spread over the sets


def _operand_ptr(region: Region) -> dict[int, str]:
    return {node: f"E[{i}]" for i, node in enumerate(region.operands)}


def _edge_tiles(plan: MatrixPlan, lanes: int, m: int) -> list[tuple[int, int]]:
    """The (rows, vectors) a tile of the product can have: the full MR x NR/LANES; MR's
    remainder of `m` on the last row panel; and every vector count below NR/LANES on the last
    column panel (its width is known only at run time: a depthwise block's pixels)."""
    nv = plan.nr // lanes
    rows = [plan.mr] + ([m % plan.mr] if m % plan.mr else [])
    return [(r, v) for r in rows for v in range(nv, 0, -1)]


#: Element-wise operations of one vector instruction each (no constants of a polynomial).
LIGHT_OPS = frozenset({"+", "-", "*", "/", "max", "min", "relu", "relu6", "neg"})


def light_region(region: Region, epilogue: str | None) -> bool:
    """Whether a product's region (and its instruction's epilogue) is made of `LIGHT_OPS` only:
    a bias, a ReLU6, a residual add. Such a region is evaluated in the K loop's own function,
    its few temporaries beside the accumulators; a heavier one (a GRU's sigmoid and tanh) after
    the accumulators are handed over."""
    return all(op in LIGHT_OPS for _, op, _ in region.steps) and epilogue in (None, *LIGHT_OPS)


def _k_loop(
    fn: str,
    plan: MatrixPlan,
    lanes: int,
    ldbs: Sequence[int],
    rows: int,
    vecs: int,
    tail: list[str] | None = None,
) -> list[str]:
    """The K loop of a `rows` x `vecs`-vector corner of the MR x NR tile (an edge tile computes
    only the rows and vectors it stores: the padding of a 196-pixel plane on 16-wide tiles and
    of 64 rows on 6-tall ones was 9 % of a pointwise product's FMAs; measured 3-5 % of the
    14x14 blocks' time), handing the tile's accumulators over in the full tile's layout, zeros
    where it computed none; or, with `tail`, running that code on them instead (the region's
    stores of a whole tile, with the call's `row`, `col`, `E` and `O`)."""
    mr, nv, pieces = plan.mr, plan.nr // lanes, len(ldbs)
    keys = [(p, r, v) for p in range(pieces) for r in range(rows) for v in range(vecs)]
    acc = {key: "c{}_{}_{}".format(*key) for key in keys}
    bargs = ", ".join(f"const float* restrict b{p}" for p in range(pieces))
    after = (
        "int row, int col, const float* const* E, float* const* O"
        if tail is not None
        else "V* restrict out"
    )
    loop = [
        f"static __attribute__((noinline)) void {fn}(const float* restrict a, {bargs}, "
        f"int kc, {after}) {{",
        f"  V {', '.join(f'{x} = vzero()' for x in acc.values())};",
        "  for (int q = 0; q < kc; ++q) {",
    ]
    loop += [
        f"    V b{p}_{v} = vload(b{p} + q * {ldbs[p]} + {v * lanes});"
        for p in range(pieces)
        for v in range(vecs)
    ]
    for r in range(rows):
        loop.append(f"    {{ V a_ = vset1(a[q * {mr} + {r}]);")
        loop += [
            f"      {acc[p, r, v]} = vfma(a_, b{p}_{v}, {acc[p, r, v]});"
            for p in range(pieces)
            for v in range(vecs)
        ]
        loop.append("    }")
    loop.append("  }")
    if tail is not None:
        loop += ["  (void)E; (void)O;", *tail]
    else:
        slots = [(p, r, v) for p in range(pieces) for r in range(mr) for v in range(nv)]
        loop += [f"  out[{i}] = {acc.get(key, 'vzero()')};" for i, key in enumerate(slots)]
    loop.append("}")
    return loop


def _microkernel(
    fn: str,
    plan: MatrixPlan,
    lanes: int,
    m: int,
    ldbs: Sequence[int],
    region: Region,
    epilogue: str | None,
    sliced: tuple[int, int] | None,
) -> str:
    """Accumulate an MR x NR tile per piece over one K slice (an edge tile of the `m` rows or
    of the run's columns only its own rows and vectors, `_edge_tiles`); before the last slice,
    add to and store the partial sums in the scratch `s` (rows `spad` apart, pieces `sp`
    apart); after it, evaluate the region per vector."""
    mr, nv, pieces = plan.mr, plan.nr // lanes, len(ldbs)
    ops = _operand_ptr(region)
    exits = {e: f"O[{i}]" for i, e in enumerate(region.exits)}
    acc = {(p, r, v): f"c{p}_{r}_{v}" for p in range(pieces) for r in range(mr) for v in range(nv)}
    bargs = ", ".join(f"const float* restrict b{p}" for p in range(pieces))
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

    # the K loop is a function of its own, so its accumulators stay in registers whatever
    # the region after it needs; it hands them over through a small array in L1 -- but for a
    # whole tile of a product in one K slice with a light region (`light_region`), which
    # evaluates the region right after its loop (the handover cost 3-5 % of a 112x112x32
    # block's time, K = 32; with a GRU's gates in that function the step ran 2-5 % slower)
    edges = _edge_tiles(plan, lanes, m)
    bnames = ", ".join(f"b{p}" for p in range(pieces))
    loop: list[str] = []
    in_loop = not sliced and light_region(region, epilogue)
    if in_loop:
        whole = [f"  {{ {' '.join(body(r, v, None))} }}" for r in range(mr) for v in range(nv)]
        loop += _k_loop(f"{fn}_whole", plan, lanes, ldbs, mr, nv, whole)
    for rows, vecs in edges:
        loop += _k_loop(f"{fn}_k{rows}x{vecs}", plan, lanes, ldbs, rows, vecs)
    lines = [
        *loop,
        f"static inline void {fn}(const float* restrict a, {bargs}, int row, int col, int mr,",
        "    int nr, const float* const* E, float* const* O, int kc, int first, int last,",
        "    float* restrict s) {",
        *(
            []
            if not in_loop
            else [
                f"  if (mr == {mr} && nr == {plan.nr}) {{ "
                f"{fn}_whole(a, {bnames}, kc, row, col, E, O); (void)first; (void)last; "
                "(void)s; return; }"
            ]
        ),
        f"  V acc_[{len(acc)}];",
        f"  int nv_ = (nr + {lanes - 1}) / {lanes};",
        *[
            f"  {'if' if i == 0 else 'else if'} (mr == {rows} && nv_ == {vecs}) "
            f"{fn}_k{rows}x{vecs}(a, {bnames}, kc, acc_);"
            for i, (rows, vecs) in enumerate(edges)
        ],
        *[f"  V {x} = acc_[{i}];" for i, x in enumerate(acc.values())],
    ]
    if sliced:
        spad, sp = sliced

        def at(p: int, r: int, v: int) -> str:
            return f"s + {p * sp + r * spad + v * lanes}"

        lines.append("  if (!first) {")
        lines += [f"    {a} = vadd({a}, vload({at(*key)}));" for key, a in acc.items()]
        lines.append("  }")
        lines.append("  if (!last) {")
        lines += [f"    vstore({at(*key)}, {a});" for key, a in acc.items()]
        lines += ["    return;", "  }"]
    else:
        lines.append("  (void)first; (void)last; (void)s;")

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
    threads: int = 1,
) -> str:
    """`static int name(const float* A, const float* const* B, const float* const* E,
    float* const* O, int col0, int wcur)`: the fused product of row-major A (`m x k`) and the
    pieces `B[p]` (`k x wcur` blocks, wcur <= w, row strides `ldbs`), columns `col0 ..` of the
    region's layout. Each K slice of A is packed once into MR-tall panels. A B the caller
    owns with slack past its last column (`b_slack`: the depthwise buffer, already in cache and
    on cache-line rows) is read in place; any other B (weights such as the GRU's U, whose rows
    are a power of two apart and would collide in the cache's sets) is packed, slice by slice,
    into NR-wide zero-padded panels that every row tile then reads contiguously."""
    mr, nr, pieces = plan.mr, plan.nr, len(ldbs)
    spad, mpad = -(-w // nr) * nr, -(-m // mr) * mr
    sliced = (spad, mpad * spad) if plan.kc < k else None
    pack_b = not b_slack
    ldk = [nr] * pieces if pack_b else list(ldbs)
    parts = [_microkernel(f"{name}_mk", plan, lanes, m, ldk, region, epilogue, sliced)]
    kslices = -(-k // plan.kc)
    if pack_b:  # piece p, panel jr: kcur x NR floats at bs + (p * spad + jr) * kc
        bq = [f"bs + ((size_t){p * spad} + jr) * {plan.kc}" for p in range(pieces)]
    else:
        bq = [f"B[{p}] + (size_t)pc * {ldbs[p]} + jr" for p in range(pieces)]
    sarg = f"acc + (size_t)ir * {spad} + jr" if sliced else "NULL"
    args = (
        f"as + (size_t)ir * kcur, {', '.join(bq)}, ir, col0 + jr, mrc, nrc, E, O, kcur, "
        f"pc == 0, pc + kcur >= {k}, {sarg}"
    )
    jr_loop = (
        f"for (int jr = 0; jr < wcur; jr += {nr}) {{ int nrc = wcur - jr < {nr} ? wcur - jr : {nr};"
    )
    ir_loop = (
        f"for (int ir = 0; ir < {m}; ir += {mr}) {{ int mrc = {m} - ir < {mr} ? {m} - ir : {mr};"
    )
    outer, inner = (ir_loop, jr_loop) if plan.rows_outer else (jr_loop, ir_loop)
    # packing one K slice: A into MR-tall panels, B into NR-wide zero-padded panels; the same
    # functions pack every slice once when an operand is prepared (weights bound at load time)
    parts.append(
        f"""static void {name}_pack_a(const float* restrict A, int pc, int kcur,
    float* restrict dst) {{
  for (int ir = 0; ir < {mpad}; ir += {mr}) for (int q = 0; q < kcur; ++q)
    for (int i = 0; i < {mr}; ++i)
      dst[(size_t)ir * kcur + q * {mr} + i] =
          ir + i < {m} ? A[(size_t)(ir + i) * {k} + pc + q] : 0.0f;
}}
/* every K slice of A packed, slice pc at pc * {mpad}: what a prepared program keeps */
static float* {name}_prepare_a(const float* restrict A) {{
  float* dst = malloc(sizeof(float) * (size_t){mpad * k});
  if (dst) for (int pc = 0; pc < {k}; pc += {plan.kc})
    {name}_pack_a(A, pc, {k} - pc < {plan.kc} ? {k} - pc : {plan.kc}, dst + (size_t)pc * {mpad});
  return dst;
}}"""
    )
    if pack_b:
        parts.append(
            f"""static void {name}_pack_b(const float* const* B, int pc, int kcur, int wcur,
    float* restrict dst0) {{
  static const int LDB[{pieces}] = {{{", ".join(str(x) for x in ldbs)}}};
  for (int p = 0; p < {pieces}; ++p) for (int q = 0; q < kcur; ++q) {{
    const float* src = B[p] + (size_t)(pc + q) * LDB[p];
    float* dst = dst0 + (size_t)p * {spad} * {plan.kc} + q * {nr};
    int jr = 0;
    for (; jr + {nr} <= wcur; jr += {nr})
      for (int j = 0; j < {nr}; j += LANES)
        vstore(dst + (size_t)jr * {plan.kc} + j, vload(src + jr + j));
    if (jr < wcur)
      for (int j = 0; j < {nr}; ++j)
        dst[(size_t)jr * {plan.kc} + j] = jr + j < wcur ? src[jr + j] : 0.0f;
  }}
}}
/* every K slice of B packed, slice pc at pc * {pieces * spad} */
static float* {name}_prepare_b(const float* const* B) {{
  float* dst = malloc(sizeof(float) * (size_t){pieces * spad * kslices * plan.kc});
  if (dst) for (int pc = 0; pc < {k}; pc += {plan.kc})
    {name}_pack_b(B, pc, {k} - pc < {plan.kc} ? {k} - pc : {plan.kc}, {w},
                  dst + (size_t)pc * {pieces * spad});
  return dst;
}}"""
        )
    loops = [
        f"  for (int pc = 0; pc < {k}; pc += {plan.kc}) {{",
        f"    int kcur = {k} - pc < {plan.kc} ? {k} - pc : {plan.kc};",
        f"    const float* as = pa ? pa + (size_t)pc * {mpad} : ap;",
        f"    if (!pa) {name}_pack_a(A, pc, kcur, ap);",
    ]
    if pack_b:
        loops += [
            f"    const float* bs = pb ? pb + (size_t)pc * {pieces * spad} : bp;",
            f"    if (!pb) {name}_pack_b(B, pc, kcur, wcur, bp);",
        ]
    if threads > 1:  # tiles are independent: the outer tile loop over OpenMP threads
        loops.append(f"    #pragma omp parallel for schedule(static) num_threads({threads})")
    loops += [f"    {outer}", f"     {inner}", f"      {name}_mk({args});", "    }}", "  }"]
    acc_floats = pieces * mpad * spad if sliced else 1
    bp_floats = pieces * spad * plan.kc if pack_b else 1
    acc_alloc = f"isa_alloc(sizeof(float) * (size_t){acc_floats})" if sliced else "NULL"
    bp_alloc = f"pb ? NULL : isa_alloc(sizeof(float) * (size_t){bp_floats})" if pack_b else "NULL"
    body = [
        f"/* fused product {m} x {pieces}*{w} x {k}: tile {mr}x{nr} per piece, KC {plan.kc}, "
        f"{'rows' if plan.rows_outer else 'columns'} outside, "
        f"B {'packed' if pack_b else 'in place'} */",
        f"static int {name}(const float* restrict A, const float* const* B, "
        "const float* const* E, float* const* O, int col0, int wcur,",
        "    const float* restrict pa, const float* restrict pb) {",
        "  (void)pb;",
        f"  float* ap = pa ? NULL : isa_alloc(sizeof(float) * (size_t){mpad * plan.kc});",
        f"  float* acc = {acc_alloc};",
        f"  float* bp = {bp_alloc};",
        f"  if ((!pa && !ap){' || !acc' if sliced else ''}{' || (!pb && !bp)' if pack_b else ''}) "
        "{ isa_free(ap); isa_free(acc); isa_free(bp); return 1; }",
        *loops,
        "  isa_free(ap); isa_free(acc); isa_free(bp);",
        "  return 0;",
        "}",
    ]
    parts.append("\n".join(body))
    return "\n".join(parts) + "\n"


def emit_fused_depthwise(
    name: str,
    d: DepthwiseShape,
    region: Region,
    rows: int,
    pointwise: str | None,
    lanes: int,
    pass_rows: int = 2,
) -> str:
    """`static int name(const float* X, const float* F, const float* A, const float* const* E,
    float* const* O, const float* const* E2, float* const* O2)`.

    The depthwise convolution in blocks of `rows` output rows, its region applied; with
    `pointwise` (the fused product's function) each block's result (the region's single exit)
    goes to a `C x pixels` buffer (rows `block_stride` floats apart) the product reads as B
    together with the pointwise weights `A`, and `E2`/`O2`
    are the product's region operands and exits; without it the region's exits are stored.
    Output rows are computed `pass_rows` at a time (then passes of half as many for the rest
    of a block), every input row loaded serving each of them it is a tap row of."""
    hp_blk = (rows - 1) * d.sh + d.r  # padded input rows a block reads
    wq = -(-((d.wo - 1) * d.sw + d.s) // d.sw)  # columns per phase
    wpad = -(-(wq + 16) // 16) * 16
    phase = hp_blk * wpad
    pix = d.ho * d.wo
    ldd = block_stride(rows, d.wo, lanes)
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
            # a whole vector even at a row's end (masked stores are slow): its extra lanes land
            # on the next row's first pixels, which the descending column loop stores after
            # them, or on the channel's slack (`block_stride`)
            dst = f"dbuf + (size_t)c * {ldd} + (size_t)(hl + {hrow}) * {d.wo} + w"
            return [*code, f"vstore({dst}, {vals[exit_]});"]

        def store(e: int, val: str) -> str:
            ptr = f"{exits[e]} + (size_t)({rowx}) * {pix} + {colx}"
            return f"vstore({ptr}, {val});" if count is None else f"vstoren({ptr}, {val}, {count});"

        code, _ = region.code(rowx, colx, count, [acc], ops.__getitem__, store)
        return code

    direct = reads_rows_in_place(d)
    # read in place: tap t's columns 2 * w + t + ow are the even or odd lanes of the pair of
    # vectors at 2 * w + g, g the offset t + ow rounded down to even; taps of one g share it
    taps_of: dict[int, list[int]] = {}
    for t in range(d.s):
        taps_of.setdefault(2 * ((t + d.ow) // 2), []).append(t)
    w_lo = max(0, max(-(g // 2) for g in taps_of))  # from here no pair reads left of the row
    w_hi = min((d.w - 2 * lanes - g) // 2 for g in taps_of)  # up to here none reads past it

    def direct_taps(nrows: int, inside: bool) -> list[str]:
        lines = [f"acc{j} = vzero();" for j in range(nrows)]
        for i in range(d.r + (nrows - 1) * d.sh):
            users = [j for j in range(nrows) if 0 <= i - j * d.sh < d.r]
            if not users:  # a row between taps (row stride above the filter's height)
                continue
            for g, taps in sorted(taps_of.items()):
                at = [f"2 * w + {g + h * lanes}" for h in (0, 1)]
                if inside:
                    lo, hi = (f"vload(xr{i} + {a})" for a in at)
                else:  # lanes outside the row are its zero padding
                    lo, hi = (f"vload_range(xr{i}, {a}, {d.w})" for a in at)
                lines.append(f"{{ V lo_ = {lo}, hi_ = {hi};")
                for t in taps:
                    lanes_of = "vpair_odd" if (t + d.ow) % 2 else "vpair_even"
                    lines.append(f"{{ V t_ = {lanes_of}(lo_, hi_);")
                    lines += [
                        f"acc{j} = vfma(f{(i - j * d.sh) * d.s + t}, t_, acc{j});" for j in users
                    ]
                    lines.append("}")
                lines.append("}")
        # the pairs' lanes come in the family's order: one shuffle per output vector restores it
        return lines + [f"acc{j} = vunpair(acc{j});" for j in range(nrows)]

    def rows_code(nrows: int) -> list[str]:
        if direct:
            lines = [
                f"V {', '.join(f'acc{j}' for j in range(nrows))};",
                f"if (w >= {w_lo} && w <= {w_hi}) {{",
                *direct_taps(nrows, True),
                "} else {",
                *direct_taps(nrows, False),
                "}",
            ]
        else:
            lines = [f"V acc{j} = vzero();" for j in range(nrows)]
            for r in range(d.r + (nrows - 1) * d.sh):
                for s in range(d.s):
                    for j in range(nrows):
                        rr = r - j * d.sh
                        if 0 <= rr < d.r:
                            lines.append(
                                f"acc{j} = vfma(f{rr * d.s + s}, {tap(rr, s, j)}, acc{j});"
                            )
        for j in range(nrows):
            full = out_vec(f"acc{j}", j, None)
            part = out_vec(f"acc{j}", j, f"{d.wo} - w")
            lines.append(f"if (w + LANES <= {d.wo}) {{ {' '.join(full)} }}")
            lines.append(f"else {{ {' '.join(part)} }}")
        return lines

    def row_pointers(nrows: int) -> str:
        """The input rows of a pass read in place, a zero row for those in the padding."""
        return " ".join(
            f"const float* xr{i} = (unsigned)(h * {d.sh} + {i + d.oh}) < {d.h}u ? "
            f"x + (size_t)(h * {d.sh} + {i + d.oh}) * {d.w} : zrow;"
            for i in range(d.r + (nrows - 1) * d.sh)
        )

    fill = (
        ""
        if direct
        else "\n".join(
            plane_fill(d, "ycount", f"h0 * {d.sh} + ", phase, wpad, "        ", zeroed=True)
        )
    )
    columns = (
        f"for (int w = ({d.wo} - 1) / LANES * LANES; w >= 0; w -= LANES)"
        if feed
        else f"for (int w = 0; w < {d.wo}; w += LANES)"
    )
    sizes = [pass_rows]
    while sizes[-1] > 1:
        sizes.append(sizes[-1] // 2)
    passes = "\n".join(
        f"""        for (; hl + {n} <= hcur; hl += {n}) {{
          int h = h0 + hl; (void)h;{(" " + row_pointers(n)) if direct else ""}
          {columns} {{
          {(chr(10) + "          ").join(rows_code(n))}
          }}
        }}"""
        for n in sizes
    )
    filt = " ".join(f"V f{t} = vset1(f[{t}]);" for t in range(d.r * d.s))
    if feed:
        fn = pointwise
        pre = [
            f"  float* dbuf = isa_alloc(sizeof(float) * (size_t){d.c * ldd + 128});",
            "  if (!dbuf) { isa_free(plane); return 1; }",
        ]
        post_block = [
            "      const float* Bp[1] = {dbuf};",
            f"      if ({fn}(A, Bp, E2, O2, h0 * {d.wo}, hcur * {d.wo}, pa, NULL)) "
            "{ failed = 1; break; }",
        ]
        release = "  isa_free(dbuf);"
    else:
        pre, post_block, release = [], [], ""
    if direct:  # no plane: a zero row stands for the padding rows
        planes = d.w
        scratch = (
            f"float* plane = isa_alloc(sizeof(float) * (size_t){planes}); float* zrow = plane;"
        )
        zeroed = "the zero row"
    else:
        planes = d.sw * phase
        scratch = f"float* plane = isa_alloc(sizeof(float) * (size_t){planes});"
        zeroed = "the rows' copies write only the columns inside the input"
    text = f"""
/* depthwise {d.r}x{d.s}, stride {d.sh}x{d.sw}{", rows read in place" if direct else ""}:
   {d.n}x{d.c}x{d.h}x{d.w} -> {d.ho}x{d.wo},
   blocks of {rows} rows{", feeding the pointwise product" if feed else ""} */
static int {name}(const float* restrict X, const float* restrict F, const float* restrict A,
    const float* const* E, float* const* O, const float* const* E2, float* const* O2,
    const float* restrict pa) {{
  (void)A; (void)E2; (void)O2; (void)pa;
  int failed = 0;
  {scratch}
  if (!plane) return 1;
  /* zeroed once: {zeroed} */
  memset(plane, 0, sizeof(float) * (size_t){planes});
{chr(10).join(pre)}
  for (int n = 0; n < {d.n}; ++n)
    for (int h0 = 0; h0 < {d.ho}; h0 += {rows}) {{
      int hcur = {d.ho} - h0 < {rows} ? {d.ho} - h0 : {rows};
      for (int c = 0; c < {d.c}; ++c) {{
        int plane_id = n * {d.c} + c;
        const float* x = X + (size_t)plane_id * {d.h * d.w};
        const float* f = F + (size_t)c * {d.r * d.s};
        int ycount = (hcur - 1) * {d.sh} + {d.r}; (void)ycount;
{fill}
        {filt}
        int hl = 0;
{passes}
      }}
{chr(10).join(post_block)}
    }}
  isa_free(plane);
{release}
  return failed;
}}
"""
    return text


#: The channel-vectorised product is chosen when its tile updates, times this, are fewer than
#: the pixel-vectorised one's: it pays a transposing epilogue (each channel's row of pixels is
#: gathered from the tiles' partial sums) and broadcasts from strided buffer rows. Measured on a
#: Zen 4 with AVX2: at equal padding it ran about 0.93x the pixel-vectorised loop (a 14x14x384
#: -> 64 block; with the gathered epilogue and evened tiles, within the runs' spread of it);
#: with 12.5 % of a 7x7 plane's lanes padding, 1.15x it (7x7x960 -> 320).
CHANNEL_TILE_PENALTY = 1.1


def pixel_tiles(pixels: int, mr: int) -> list[int]:
    """The pixel counts of a channel-vectorised product's tiles (the C loop cuts them the same
    way at run time): as few tiles of at most `mr` as cover `pixels`, evened out so none is
    left a sliver whose accumulators would wait on the FMA latency."""
    tiles = -(-pixels // mr)
    base, extra = divmod(pixels, tiles)
    return [base + (t < extra) for t in range(tiles)]


def channel_plan(
    tiles: Sequence[tuple[int, int, float]], lanes: int, m: int, pixels: int
) -> tuple[int, int] | None:
    """The register tile (pixels x output channels) of a pointwise product `m x pixels`
    vectorised over its output channels instead of its pixels, when that takes fewer cycles
    (`CHANNEL_TILE_PENALTY` included) than the best pixel-vectorised tile: pixels are
    broadcast and the tiles evened out (`pixel_tiles`), so each pixel costs its share of a
    tile (a tile of 5 rows takes 5/6 of one of 6), while the pixel-vectorised loop pads the
    last vector of every channel row -- large on few-pixel planes (7x7: 49 pixels). None to
    keep the pixel-vectorised loop."""
    normal = min(-(-m // min(mr, m)) * -(-pixels // nr) * cyc for mr, nr, cyc in tiles)
    costs = [
        (pixels / mr * -(-m // nr) * cyc * CHANNEL_TILE_PENALTY, (mr, nr))
        for mr, nr, cyc in tiles
        if nr % lanes == 0
    ]
    if not costs:
        return None
    cost, tile = min(costs)
    return tile if cost < normal else None


def channel_kc(target: Target, memory: str, c: int, nr: int) -> int:
    """The channels per K slice of a channel-vectorised product: its NR-channel weight panel
    slice and the buffer lines a pixel tile broadcasts from (one 64-byte line per channel)
    together fill half of `memory` (the instruction's B memory, L1), so every pixel tile of the
    block reads the weights from there instead of streaming the whole panel from the next
    level; evened out so the last slice is not a sliver."""
    per_channel = 4 * nr + 64
    kc = max(1, min(c, target.memories[memory].capacity_bytes // 2 // per_channel))
    return -(-c // -(-c // kc))


def emit_channel_pointwise(
    name: str,
    tile: tuple[int, int],
    lanes: int,
    m: int,
    c: int,
    ldd: int,
    region: Region,
    epilogue: str | None,
    width: int,
    kc: int,
) -> str:
    """The fused pointwise product `Y[k, p] = sum_c A[k, c] B[c, p]` of a depthwise-separable
    block vectorised over its output channels k: the same signature as `emit_fused_matmul`'s
    function (A the `m x c` weights, B[0] the depthwise buffer, channels `ldd` floats apart;
    pixels `col0 .. col0 + wcur` of the region's layout, wcur <= `width`). A is packed into
    NR-channel panels (`_prepare_a`: once, when bound). For each panel the channels are taken
    `kc` at a time (`channel_kc`: the panel's slice stays in L1 for every pixel tile); each
    pixel tile x NR-channel tile accumulates a slice in registers (pixel values broadcast from
    the buffer in place) on top of its partial sums, kept pixel by pixel in a scratch block.
    The pixels are cut into as few tiles of at most MR as cover them, evened out (49 pixels
    on MR 6: four of 6 and five of 5, not eight of 6 and one of 1, whose one pixel would wait
    on the FMA latency for as long as a whole tile takes); every tile size has a kernel of its
    own. After the last slice the scratch block holds the panel as pixels x NR channels: each
    channel's row of pixels is gathered from it and the region evaluated and stored on whole
    vectors of pixels, as in the pixel-vectorised loop (one partial vector per row)."""
    mr, nr = tile
    nv = nr // lanes
    mpad = -(-m // nr) * nr
    wvec = -(-width // lanes) * lanes
    ops = _operand_ptr(region)
    exits = {e: f"O[{i}]" for i, e in enumerate(region.exits)}
    from isamap.codegen.loops import VECTOR_FNS

    wrap = VECTOR_FNS[epilogue] if epilogue else ""
    parts = []
    for rows in range(1, mr + 1):
        acc = [f"c{i}_{v}" for i in range(rows) for v in range(nv)]
        body = [
            f"static __attribute__((noinline)) void {name}_k{rows}(const float* restrict d, "
            "const float* restrict w, int kc, int first, V* restrict out) {",
            f"  V {', '.join(f'{x} = first ? vzero() : out[{j}]' for j, x in enumerate(acc))};",
            "  for (int q = 0; q < kc; ++q) {",
            *[f"    V w{v} = vload(w + q * {nr} + {v * lanes});" for v in range(nv)],
        ]
        for i in range(rows):
            body.append(f"    {{ V a_ = vset1(d[(size_t)q * {ldd} + {i}]);")
            body += [f"      c{i}_{v} = vfma(a_, w{v}, c{i}_{v});" for v in range(nv)]
            body.append("    }")
        body += ["  }", *[f"  out[{j}] = {x};" for j, x in enumerate(acc)], "}"]
        parts.append("\n".join(body))

    def region_code(count: str | None) -> str:
        rowx, colx = "jt + j", "col0 + p"

        def store(e: int, val: str) -> str:
            ptr = f"{exits[e]} + (size_t)({rowx}) * {region.width} + {colx}"
            return f"vstore({ptr}, {val});" if count is None else f"vstoren({ptr}, {val}, {count});"

        value = f"{wrap}(vload(row + p))"
        code, _ = region.code(rowx, colx, count, [value], ops.__getitem__, store)
        return " ".join(code)

    cases = "\n".join(
        f"          case {r}: {name}_k{r}(d, w + (size_t)pc * {nr}, kcur, pc == 0, acc); break;"
        for r in range(1, mr + 1)
    )
    parts.append(
        f"""/* the weights in {nr}-channel panels, c x {nr} floats each, zero-padded */
static float* {name}_prepare_a(const float* restrict A) {{
  float* dst = malloc(sizeof(float) * (size_t){mpad * c});
  if (!dst) return NULL;
  for (int jt = 0; jt < {mpad}; jt += {nr}) for (int q = 0; q < {c}; ++q)
    for (int j = 0; j < {nr}; ++j)
      dst[(size_t)jt * {c} + q * {nr} + j] = jt + j < {m} ? A[(size_t)(jt + j) * {c} + q] : 0.0f;
  return dst;
}}
/* pointwise product {m} x pixels x {c}, vectorised over output channels: tiles of up to {mr}
   pixels (evened out) x {nr} channels, {kc} channels per slice */
static int {name}(const float* restrict A, const float* const* B, const float* const* E,
    float* const* O, int col0, int wcur, const float* restrict pa, const float* restrict pb) {{
  (void)pb; (void)E; (void)O;
  if (wcur <= 0) return 0;
  float* own = pa ? NULL : {name}_prepare_a(A);
  const float* wp = pa ? pa : own;
  V* part = isa_alloc(sizeof(V) * (size_t){width * nv});
  if (!wp || !part) {{ free(own); isa_free(part); return 1; }}
  const float* pf = (const float*)part;
  int tiles = (wcur + {mr - 1}) / {mr}, base = wcur / tiles, extra = wcur % tiles;
  for (int jt = 0; jt < {m}; jt += {nr}) {{
    const float* w = wp + (size_t)jt * {c};
    int jn = {m} - jt < {nr} ? {m} - jt : {nr};
    for (int pc = 0; pc < {c}; pc += {kc}) {{
      int kcur = {c} - pc < {kc} ? {c} - pc : {kc};
      for (int t = 0, it = 0; t < tiles; ++t) {{
        int rows = base + (t < extra);
        const float* d = B[0] + (size_t)pc * {ldd} + it;
        V* acc = part + (size_t)it * {nv};
        switch (rows) {{
{cases}
          default: break;
        }}
        it += rows;
      }}
    }}
    for (int j = 0; j < jn; ++j) {{
      float row[{wvec}];
      for (int p = 0; p < wcur; ++p) row[p] = pf[(size_t)p * {nr} + j];
      for (int p = wcur; p < {wvec}; ++p) row[p] = 0.0f;
      int p = 0;
      for (; p + LANES <= wcur; p += LANES) {{ {region_code(None)} }}
      if (p < wcur) {{ int cnt = wcur - p; {region_code("cnt")} }}
    }}
  }}
  free(own);
  isa_free(part);
  return 0;
}}"""
    )
    return "\n".join(parts) + "\n"
