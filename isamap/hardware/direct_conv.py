"""A direct-convolution call: its tile schedule, its timing and its run on the machine.

A call computes `out[b, k, o...] += x[b, c, stride*o + dilation*t - pad...] * w[b, k, c, t...]`
(`ir.conv.ConvGeometry`) on an instruction with a `ConvForm` (`conv_form.py`) without an im2col
copy: the loop nest runs over the batch and, in the schedule's order, over tiles of output rows
(`i`, along the first spatial dimension longer than one; the others whole), of output-channel
blocks (`j`) and of input-channel blocks (`k`). Per iteration:

- the input tile is loaded when its (batch, rows, channels) change: the input rows those output
  rows read, the halo included, clipped to the input (padding is made on chip, never loaded);
- the weight tile (every tap of its channel blocks) when its (batch, channels, kernels) change;
- the engine issues one instruction per (pixel stripe, output-channel block, input-channel block,
  tap), each reading its shifted stripe of the input tile where it lies;
- the output tile stays in the accumulator across the input-channel blocks and is stored when the
  next iteration leaves it (and brought back if the loop order returns to it).

Timing walks the same loop nest with one DMA engine and the compute unit overlapping as double
buffering allows (the next tiles load while the current ones compute); the machine runs it on
numpy buffers whose sizes are checked against the memories the instruction declares.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from isamap.hardware.conv_form import ConvForm, instruction_conv_form
from isamap.hardware.functional import EXACT, OperandTypes, conv_bias_start
from isamap.hardware.target import Target
from isamap.hardware.timing import ArrayModel, CallTiming
from isamap.ir.conv import ConvGeometry
from isamap.ir.errors import IsamapError, SourceLoc
from isamap.ir.ops import UNARY
from isamap.ir.program import LOOP_ORDERS, MatmulCall, TileSchedule

__all__ = [
    "ConvPlan",
    "best_conv_schedule",
    "conv_call",
    "conv_listing",
    "conv_plan",
    "conv_timing",
    "run_conv_call",
]


@dataclass(frozen=True, eq=False)
class ConvPlan:
    """What a call of geometry `g` on one instruction needs: blocks, bytes, memories (one per
    target, instruction and geometry: `conv_plan` memoises them, timings key on identity)."""

    name: str
    g: ConvGeometry
    form: ConvForm
    model: ArrayModel
    row_dim: int  # the spatial dimension tiled by output rows
    x_mem: str
    w_mem: str
    out_mem: str
    capacity: dict[str, int]
    in_bytes: int
    w_bytes: int
    acc_bytes: int
    out_bytes: int

    @property
    def rows(self) -> int:
        return self.g.spatial[self.row_dim].out_size

    @property
    def row_pixels(self) -> int:
        """Output pixels of one output row (every other spatial dimension whole)."""
        return self.g.pixels // self.rows

    def trips(self, s: TileSchedule) -> dict[str, int]:
        _, nb, kb = self.form.blocks(self.g)
        return {"i": -(-self.rows // s.tile_i), "j": -(-nb // s.tile_j), "k": -(-kb // s.tile_k)}

    def extents(self, s: TileSchedule, i0: int, j0: int, k0: int) -> tuple[int, int, int]:
        """Output rows, output channels and input channels of tile (i0, j0, k0)."""
        f, g = self.form, self.g
        rows = min(s.tile_i, self.rows - i0 * s.tile_i)
        kt = min(s.tile_j * f.atom_k, g.k - j0 * s.tile_j * f.atom_k)
        ct = min(s.tile_k * f.atom_c, g.c - k0 * s.tile_k * f.atom_c)
        return rows, kt, ct

    def input_rows(self, first: int, count: int) -> tuple[int, int]:
        return self.g.spatial[self.row_dim].input_rows(first, count)

    def x_tile_elems(self, first: int, count: int, ct: int) -> int:
        lo, hi = self.input_rows(first, count)
        others = math.prod(s.size for d, s in enumerate(self.g.spatial) if d != self.row_dim)
        return ct * max(hi - lo, 0) * others

    def w_tile_elems(self, kt: int, ct: int) -> int:
        return kt * ct * self.g.taps

    def out_tile_elems(self, rows: int, kt: int) -> int:
        return kt * rows * self.row_pixels

    def usage(self, s: TileSchedule) -> dict[str, int]:
        """Bytes each memory holds under `s`: the largest tile of each operand, twice when
        double-buffered. Tiles are allocated in whole instruction blocks (channels padded to
        the atomic sizes), as the engine reads them."""
        f = self.form
        copies = 2 if s.double_buffer else 1
        rows, kt, ct = min(s.tile_i, self.rows), s.tile_j * f.atom_k, s.tile_k * f.atom_c
        worst_x = max(
            self.x_tile_elems(i * s.tile_i, min(s.tile_i, self.rows - i * s.tile_i), ct)
            for i in range(self.trips(s)["i"])
        )
        used: Counter[str] = Counter()
        used[self.x_mem] += copies * worst_x * self.in_bytes
        used[self.w_mem] += copies * self.w_tile_elems(kt, ct) * self.w_bytes
        pixels = -(-rows * self.row_pixels // f.stripe) * f.stripe
        used[self.out_mem] += copies * kt * pixels * self.acc_bytes
        return dict(used)

    def overrun(self, s: TileSchedule) -> str | None:
        for mem, used in self.usage(s).items():
            if used > self.capacity[mem]:
                return f"{mem} holds {self.capacity[mem]} bytes, the tiles need {used}"
        return None

    def fits(self, s: TileSchedule) -> bool:
        return self.overrun(s) is None


def conv_plan(target: Target, name: str, g: ConvGeometry) -> ConvPlan:
    """The plan of a call of `g` on direct-convolution instruction `name` of `target`."""
    key = (id(target), name, g)
    hit = _PLANS.get(key)
    if hit is not None and hit[0] is target:
        return hit[1]
    if len(_PLANS) > 4096:
        _PLANS.clear()
    plan = _build_plan(target, name, g)
    _PLANS[key] = (target, plan)
    return plan


_PLANS: dict[tuple[int, str, ConvGeometry], tuple[Target, ConvPlan]] = {}


def _build_plan(target: Target, name: str, g: ConvGeometry) -> ConvPlan:
    ins = target.instruction(name)
    form = instruction_conv_form(ins)
    if form is None:
        raise ValueError(f"instruction {name} is not a direct convolution")
    row_dim = next((d for d, s in enumerate(g.spatial) if s.out_size > 1), 0)
    of = ins.semantics.dtype
    model = ArrayModel.for_instruction(target, name)
    return ConvPlan(
        name=name,
        g=g,
        form=form,
        model=model,
        row_dim=row_dim,
        x_mem=ins.operands[form.x],
        w_mem=ins.operands[form.w],
        out_mem=ins.operands[form.out],
        capacity={m: target.memories[m].capacity_bytes for m in ins.operands.values()},
        in_bytes=target.dtype_bytes(of(form.x)),
        w_bytes=target.dtype_bytes(of(form.w)),
        acc_bytes=target.dtype_bytes(of(form.out)),
        out_bytes=model.out_bytes,
    )


def conv_call(
    node: int,
    name: str,
    g: ConvGeometry,
    model: ArrayModel,
    epilogue: str | None = None,
    bias: bool = False,
) -> MatmulCall:
    """The call as its GEMM view (`b` batches of pixels x kernels x (channels . taps)), carrying
    its geometry (what the listing, the reports and the MAC counts read), whether it accumulates
    onto a per-output-channel bias, and the function its store applies on the way out."""
    return MatmulCall(
        node,
        name,
        g.b,
        g.pixels,
        g.k,
        g.c * g.taps,
        model.block,
        epilogue=epilogue,
        bias=bias,
        conv=g,
    )


@dataclass(frozen=True)
class _Step:
    batch: int
    i0: int
    j0: int
    k0: int
    load_x: bool
    load_w: bool
    new_out: bool
    reload_out: bool
    leave: tuple[int, int, int] | None  # the output tile stored now
    final: bool  # (for the machine) this is the last input-channel tile of its output tile
    #: the first step of its (batch, output-channel tile): a call onto a bias moves that tile's
    #: biases now, once; the bias unit holds them for every output tile of those channels
    load_bias: bool = False


def _steps(plan: ConvPlan, s: TileSchedule) -> Iterator[_Step]:
    trips = plan.trips(s)
    x_at = w_at = out_at = None
    seen: Counter[tuple[int, int, int]] = Counter()
    channels: set[tuple[int, int]] = set()
    for batch in range(plan.g.b):
        for pos in itertools.product(*(range(trips[v]) for v in s.loop_order)):
            at = dict(zip(s.loop_order, pos, strict=True))
            i0, j0, k0 = at["i"], at["j"], at["k"]
            x_key, w_key, o_key = (batch, i0, k0), (batch, j0, k0), (batch, i0, j0)
            new_out = o_key != out_at
            step = _Step(
                batch,
                i0,
                j0,
                k0,
                load_x=x_key != x_at,
                load_w=w_key != w_at,
                new_out=new_out,
                reload_out=new_out and seen[o_key] > 0,
                leave=out_at if new_out else None,
                final=seen[o_key] + 1 == trips["k"],
                load_bias=(batch, j0) not in channels,
            )
            channels.add((batch, j0))
            x_at, w_at, out_at = x_key, w_key, o_key
            seen[o_key] += 1
            yield step


def _issues(plan: ConvPlan, rows: int, kt: int, ct: int) -> int:
    f = plan.form
    stripes = -(-rows * plan.row_pixels // f.stripe)
    return stripes * -(-kt // f.atom_k) * -(-ct // f.atom_c) * plan.g.taps


def conv_timing(plan: ConvPlan, s: TileSchedule, bias: bool = False) -> CallTiming:
    """Cycles, bytes, issues and energy of a call under `s` (memoised); with `bias`, each output
    tile starts from its output channels' biases, moved in once per output-channel tile (the
    target's bias move: NVDLA SDP's per-channel bias read; the bias unit holds them)."""
    return _timing(plan, s, bias)


@lru_cache(maxsize=4096)
def _timing(plan: ConvPlan, s: TileSchedule, bias: bool) -> CallTiming:
    model, f = plan.model, plan.form
    names = model.names
    bw, lat = model.dram_bw, model.dram_latency
    out = CallTiming(0.0, 0.0, 0.0, macs=plan.g.macs)
    dma = array = 0.0
    done: list[float] = []
    copies = 2 if s.double_buffer else 1
    pending: tuple[float, float] | None = None  # a leaving output tile: ready at, bytes
    tiles: dict[tuple[int, int, int], tuple[int, int]] = {}  # output tile -> (rows, kt)
    results = 0.0
    issues = 0
    current = (0, 0, 0)
    for step in _steps(plan, s):
        rows, kt, ct = plan.extents(s, step.i0, step.j0, step.k0)
        nbytes = 0.0
        if step.load_x:
            elems = plan.x_tile_elems(step.i0 * s.tile_i, rows, ct)
            nbytes += elems * plan.in_bytes
            out.counts[names.get("load", "load")] += 1
        if step.load_w:
            nbytes += plan.w_tile_elems(kt, ct) * plan.w_bytes
            out.counts[names.get("load", "load")] += 1
        if step.reload_out:
            back = plan.out_tile_elems(rows, kt) * plan.acc_bytes
            nbytes += back
            out.bytes["accumulator"] += back
        if bias and step.load_bias:  # the output-channel tile's kt biases, once
            bias_bytes = kt * plan.acc_bytes
            nbytes += bias_bytes
            out.bytes["accumulator"] += bias_bytes
            out.bytes["scratchpad"] -= bias_bytes  # counted below with the loads; not CBUF
            out.counts[names.get("bias", names.get("load", "load"))] += -(-kt // f.atom_k)
        if step.leave is not None and step.leave in tiles:
            lr, lk = tiles[step.leave]
            pending = (results, plan.out_tile_elems(lr, lk) * plan.out_bytes)
        current = (step.batch, step.i0, step.j0)
        tiles[current] = (rows, kt)
        back_at = len(done) - copies
        free = done[back_at] if back_at >= 0 else 0.0
        if pending is not None and not s.double_buffer:
            dma = max(dma, pending[0]) + pending[1] / bw
            out.bytes["dram"] += pending[1]
            out.counts[names.get("store", "store")] += 1
            pending = None
        start_load = max(dma, free)
        dma = start_load + nbytes / bw
        ready = dma + lat if nbytes else start_load
        out.bytes["dram"] += nbytes
        out.bytes["scratchpad"] += nbytes
        out.dma_cycles += nbytes / bw
        if pending is not None:
            dma = max(dma, pending[0]) + pending[1] / bw
            out.bytes["dram"] += pending[1]
            out.counts[names.get("store", "store")] += 1
            pending = None
        n = _issues(plan, rows, kt, ct)
        issues += n
        busy = -(-n // model.count) * model.issue_cycles
        start = max(array, ready)
        array = start + busy
        results = array + model.drain
        done.append(array)
        out.compute_cycles += busy
    lr, lk = tiles[current]
    final = plan.out_tile_elems(lr, lk) * plan.out_bytes
    dma = max(dma, results) + final / bw
    out.bytes["dram"] += final
    out.dma_cycles += final / bw
    out.counts[names.get("store", "store")] += 1
    out.counts[names["compute"]] += issues
    out.bytes["scratchpad"] += issues * (f.stripe * f.atom_c + f.atom_c * f.atom_k) * plan.in_bytes
    out.bytes["accumulator"] += issues * f.stripe * f.atom_k * plan.acc_bytes
    out.cycles = max(results, dma + lat)
    padded = issues * f.stripe * f.atom_k * f.atom_c
    out.energy_pj = (
        padded * model.pj_mac
        + out.bytes["dram"] * model.pj_dram
        + out.bytes["scratchpad"] * model.pj_spad
        + out.bytes["accumulator"] * model.pj_acc
    )
    return out


def _candidates(blocks: int, limit: int = 4) -> list[int]:
    """Tile sizes (in blocks) worth trying, largest first: the least padding per trip count."""
    sizes = sorted({-(-blocks // trips) for trips in range(1, blocks + 1)}, reverse=True)
    return sizes[:limit]


def best_conv_schedule(
    target: Target, name: str, g: ConvGeometry, bias: bool = False
) -> tuple[TileSchedule, CallTiming]:
    """The fastest schedule of a small space: for each loop order and buffering, the channel
    tiles among the largest few, and output-row tiles from the most that fit down to a
    sixteenth of the rows (memoised); `bias`: the call accumulates onto a per-channel bias."""
    return _best(id(target), target, name, g, bias)


@lru_cache(maxsize=1024)
def _best(
    key: int, target: Target, name: str, g: ConvGeometry, bias: bool
) -> tuple[TileSchedule, CallTiming]:
    plan = conv_plan(target, name, g)
    _, nb, kb = plan.form.blocks(g)
    best: tuple[TileSchedule, CallTiming] | None = None
    for db, order in itertools.product((True, False), LOOP_ORDERS):
        for tk, tj in itertools.product(_candidates(kb), _candidates(nb)):
            most = _most_rows(plan, tj, tk, order, db)
            for rows in _row_tiles(plan.rows, most):
                s = TileSchedule("WS", rows, tj, tk, order, db)
                timing = conv_timing(plan, s, bias)
                if best is None or timing.cycles < best[1].cycles:
                    best = (s, timing)
    if best is None:
        raise IsamapError(
            f"direct convolution {name}: not even one output row of one channel block fits "
            f"({plan.overrun(TileSchedule('WS', 1, 1, 1, 'ijk', False))})",
            SourceLoc(target.path),
        )
    return best


def _row_tiles(rows: int, most: int) -> list[int]:
    """Output rows per tile worth trying: the most that fit, and the sizes giving a few more
    trips (smaller tiles let loads overlap compute sooner)."""
    if most == 0:
        return []
    sizes = {most} | {-(-rows // t) for t in (2, 3, 4, 6, 8, 16)}
    return sorted((r for r in sizes if r <= most), reverse=True)


def _most_rows(plan: ConvPlan, tj: int, tk: int, order: str, db: bool) -> int:
    """The most output rows per tile that fit with these channel tiles (0: not even one)."""
    lo, hi = 0, plan.rows
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if plan.fits(TileSchedule("WS", mid, tj, tk, order, db)):
            lo = mid
        else:
            hi = mid - 1
    return lo


def conv_listing(
    plan: ConvPlan,
    s: TileSchedule,
    node: int,
    prefix: str = "  ",
    epilogue: str | None = None,
    names: dict[str, str] | None = None,
    bias: bool = False,
) -> list[str]:
    """The call's loop nest in the target's names."""
    g, f, n = plan.g, plan.form, names or plan.model.names
    trips = plan.trips(s)
    sp = ", ".join(
        f"{x.out}: {x.size}->{x.out_size} taps {x.taps} stride {x.stride} dilation "
        f"{x.dilation} pad {x.pad}/{x.pad_after}"
        for x in g.spatial
        if x.out_size > 1 or x.taps > 1
    )
    load, store, compute = n.get("load", "load"), n.get("store", "store"), n["compute"]
    lines = [
        f"{prefix}; %{node} {plan.name} (direct convolution, no im2col): {g.b} x "
        f"[K {g.k}, C {g.c}], {sp}; tiles of {s.tile_i} output rows x {s.tile_j} kernel "
        f"blocks of {f.atom_k} x {s.tile_k} channel blocks of {f.atom_c}, loops "
        f"{s.loop_order}, {'double' if s.double_buffer else 'single'}-buffered"
    ]
    depth = prefix
    if g.b > 1:
        lines.append(f"{depth}for b in 0..{g.b}:")
        depth += "  "
    for var in s.loop_order:
        lines.append(f"{depth}for {var}0 in 0..{trips[var]}:")
        depth += "  "
    lines.append(
        f"{depth}{load} X[b, k0 channels, the input rows of i0 with their halo] -> {plan.x_mem}"
    )
    lines.append(f"{depth}{load} W[b, j0 kernels, k0 channels, every tap] -> {plan.w_mem}")
    if bias:
        mover = n.get("bias", load)
        lines.append(f"{depth}{mover} bias[b, j0 kernels] -> {plan.out_mem} O[j0, i0] when new")
    lines.append(f"{depth}for each tap, stripe of {f.stripe} pixels, kernel and channel block:")
    lines.append(f"{depth}  {compute} X (shifted in place), W[tap] -> {plan.out_mem} O[j0, i0]")
    by = n.get("epilogue_by", store)
    epi = f" ({epilogue} applied by {by} on the way out)" if epilogue else ""
    lines.append(f"{depth}{store} O[b, j0, i0]{epi} when the next iteration leaves it")
    return lines


def run_conv_call(
    plan: ConvPlan,
    s: TileSchedule,
    x: np.ndarray,
    w: np.ndarray,
    types: OperandTypes = EXACT,
    epilogue: str | None = None,
    bias: np.ndarray | None = None,
) -> tuple[np.ndarray, Counter[str]]:
    """Run the call on the machine: tiles moved into buffers sized against the instruction's
    memories (IsamapError on an overrun), every instruction issue computed from the on-chip input
    tile at its shifted position; each new output tile starts from its channels' `bias` ([K] or
    [B, K]) when there is one, moved in once per output-channel tile. The result in the Einsum's
    own axis order, and the issues."""
    over = plan.overrun(s)
    if over is not None:  # the machine says SimulationError before it gets here
        raise IsamapError(f"direct convolution {plan.name}: {over}")
    g, f = plan.g, plan.form
    names = plan.model.names
    xs = types.operand("lhs", g.canonical_x(np.asarray(x, dtype=np.float64)))
    ws = types.operand("rhs", g.canonical_w(np.asarray(w, dtype=np.float64)))
    out = np.zeros((g.b, g.k, g.pixels))
    start = None if bias is None else conv_bias_start(g, bias, types)
    held_bias: dict[tuple[int, int], np.ndarray] = {}  # (batch, j0) -> [kt, 1], in the bias unit
    counts: Counter[str] = Counter()
    dim = plan.row_dim
    x_tile: np.ndarray | None = None
    x_lo = 0
    w_tile: np.ndarray | None = None
    acc: dict[tuple[int, int, int], np.ndarray] = {}
    stored: dict[tuple[int, int, int], np.ndarray] = {}
    for step in _steps(plan, s):
        rows, kt, ct = plan.extents(s, step.i0, step.j0, step.k0)
        first = step.i0 * s.tile_i
        c0, k0 = step.k0 * s.tile_k * f.atom_c, step.j0 * s.tile_j * f.atom_k
        if step.load_x:  # the input rows these output rows read, halo included
            x_lo, hi = plan.input_rows(first, rows)
            index: list[int | slice] = [slice(None)] * xs.ndim
            index[0], index[1], index[2 + dim] = step.batch, slice(c0, c0 + ct), slice(x_lo, hi)
            x_tile = xs[tuple(index)].copy()
            counts[names.get("load", "load")] += 1
        if step.load_w:
            w_tile = ws[step.batch, k0 : k0 + kt, c0 : c0 + ct].copy()
            counts[names.get("load", "load")] += 1
        assert x_tile is not None and w_tile is not None
        key = (step.batch, step.i0, step.j0)
        if start is not None and step.load_bias:  # the channels' biases moved in, once
            held_bias[(step.batch, step.j0)] = start[step.batch, k0 : k0 + kt, :1].copy()
            counts[names.get("bias", names.get("load", "load"))] += -(-kt // f.atom_k)
        if step.new_out:
            fresh = np.zeros((kt, rows * plan.row_pixels))
            if start is not None and not step.reload_out:  # each new tile starts from them
                fresh = np.repeat(held_bias[(step.batch, step.j0)], rows * plan.row_pixels, 1)
            acc[key] = stored.pop(key) if step.reload_out else fresh
        part = _tile_product(plan, x_tile, x_lo, w_tile, first, rows)
        counts[names["compute"]] += _issues(plan, rows, kt, ct)
        acc[key] = types.accumulate(acc[key], part)
        if step.leave is not None and step.leave in acc:
            stored[step.leave] = acc.pop(step.leave)
            counts[names.get("store", "store")] += 1
    for key, value in acc.items():
        stored[key] = value
        counts[names.get("store", "store")] += 1
    for (batch, i0, j0), value in stored.items():
        rows, kt, _ = plan.extents(s, i0, j0, 0)
        k0, p0 = j0 * s.tile_j * f.atom_k, i0 * s.tile_i * plan.row_pixels
        out[batch, k0 : k0 + kt, p0 : p0 + rows * plan.row_pixels] = value
    if epilogue:  # every output tile is stored complete once, through the epilogue
        out = UNARY[epilogue].numpy(out)
    shaped = out.reshape((g.b, g.k, *(x.out_size for x in g.spatial)))
    return g.from_canonical(shaped), counts


def _tile_product(
    plan: ConvPlan, x_tile: np.ndarray, x_lo: int, w_tile: np.ndarray, first: int, rows: int
) -> np.ndarray:
    """[kt, rows * row_pixels]: the sum over taps and channels of the tile, each tap's stripe of
    input read from the on-chip tile at its shifted position (zero where it falls in padding)."""
    g, dim = plan.g, plan.row_dim
    ct = x_tile.shape[0]
    kt = w_tile.shape[0]
    outs = []
    for d, sp in enumerate(g.spatial):
        o = np.arange(first, first + rows) if d == dim else np.arange(sp.out_size)
        outs.append(o)
    total = np.zeros((kt, rows * plan.row_pixels))
    for taps in itertools.product(*(range(sp.taps) for sp in g.spatial)):
        grids = []
        valid = np.ones([len(o) for o in outs], dtype=bool)
        for d, (sp, t) in enumerate(zip(g.spatial, taps, strict=True)):
            pos = sp.stride * outs[d] + sp.dilation * t - sp.pad
            lo = x_lo if d == dim else 0
            size = x_tile.shape[1 + d]
            local = pos - lo
            ok = (local >= 0) & (local < size)
            shape = [1] * len(outs)
            shape[d] = len(outs[d])
            valid &= ok.reshape(shape)
            grids.append(np.clip(local, 0, size - 1).reshape(shape))
        gather: tuple[slice | np.ndarray, ...] = (slice(None), *grids)
        block = x_tile[gather]  # [ct, pixels...]
        block = np.where(valid, block, 0.0).reshape(ct, -1)
        pick: tuple[slice | int, ...] = (slice(None), slice(None), *taps)
        weights = w_tile[pick]  # [kt, ct]
        total += weights @ block
    return total
