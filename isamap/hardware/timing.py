"""Timing of a scheduled matrix call: analytic per loop level, with DMA and compute overlapping.

The array's compute cycles follow SCALE-Sim's fold model (docs/calibration.md): weight-stationary
runs ceil(K/R) * ceil(N/C) folds of M + 2R + C - 2 cycles (R cycles to load the weights, M rows
streamed, R + C - 2 to drain the skew), output-stationary ceil(M/R) * ceil(N/C) folds of
K + R + C - 2, and a call ends one cycle early. Data moves over one DMA engine at the DRAM's
bandwidth; requests are pipelined, so the engine is busy for bytes / bandwidth while each
burst's data lands one DRAM latency after it leaves the engine. The loop over on-chip tiles is
walked tile by tile (never instruction by instruction): each tile's loads, folds and store are
closed forms, and the two engines overlap as the double buffering allows.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from isamap.hardware.footprint import OperandLayout, operand_layout
from isamap.hardware.matrix_form import matrix_form
from isamap.hardware.target import Instruction, Target
from isamap.ir.program import MatmulCall, TileSchedule

__all__ = ["ArrayModel", "CallTiming", "call_timing", "compute_cycles", "fold_cycles"]


def fold_cycles(rows: int, cols: int, m: int, n: int, k: int, dataflow: str) -> int:
    """Cycles of the folds of one on-chip tile (no final adjustment)."""
    if dataflow == "WS":
        return math.ceil(k / rows) * math.ceil(n / cols) * (m + 2 * rows + cols - 2)
    if dataflow == "OS":
        return math.ceil(m / rows) * math.ceil(n / cols) * (k + rows + cols - 2)
    raise ValueError(f"unknown dataflow {dataflow!r}")


def compute_cycles(rows: int, cols: int, m: int, n: int, k: int, dataflow: str) -> int:
    """SCALE-Sim's compute cycles of an m x k . k x n GEMM on a rows x cols array, in one tile."""
    return fold_cycles(rows, cols, m, n, k, dataflow) - 1


@dataclass(frozen=True)
class ArrayModel:
    """What timing needs of a target for one matrix instruction: array, blocks, memories, energy."""

    rows: int
    cols: int
    block: tuple[int, int, int]
    in_bytes: int
    acc_bytes: int
    out_bytes: int
    layout: OperandLayout  # where A, B and C tiles live: the one fit check (hardware.footprint)
    dram_bw: float
    dram_latency: float
    pj_dram: float
    pj_spad: float
    pj_acc: float
    pj_mac: float
    names: dict[str, str] = field(default_factory=dict)  # role -> instruction name
    systolic: bool = True  # a matrix unit (SCALE-Sim folds); else one issue per instruction tile
    count: int = 1  # identical units; a tile's folds (issues) are spread over them
    issue_cycles: float = 1.0
    dataflows: tuple[str, ...] = ("WS", "OS")

    def tile_compute(self, m: int, n: int, k: int, dataflow: str) -> int:
        """Array cycles of one on-chip tile of m x k . k x n, spread over the units."""
        if self.systolic:
            if dataflow == "WS":
                folds = math.ceil(k / self.rows) * math.ceil(n / self.cols)
                per_fold = m + 2 * self.rows + self.cols - 2
            else:
                folds = math.ceil(m / self.rows) * math.ceil(n / self.cols)
                per_fold = k + self.rows + self.cols - 2
            return math.ceil(folds / self.count) * per_fold
        bm, bn, bk = self.block
        issues = math.ceil(m / bm) * math.ceil(n / bn) * math.ceil(k / bk)
        return math.ceil(math.ceil(issues / self.count) * self.issue_cycles)

    @staticmethod
    def for_instruction(target: Target, name: str) -> ArrayModel:
        """The model of matrix instruction `name` of `target` (memoised per target and name)."""
        key = (id(target), name)
        hit = _MODELS.get(key)
        if hit is not None and hit[0] is target:
            return hit[1]
        model = ArrayModel._build(target, name)
        _MODELS[key] = (target, model)
        return model

    @staticmethod
    def _build(target: Target, name: str) -> ArrayModel:
        ins = target.instruction(name)
        form = matrix_form(ins.semantics)
        if form is None:
            raise ValueError(f"instruction {name} has no matrix form")
        unit = target.units[ins.unit]
        spad = target.memories[ins.operands[form.lhs]]
        acc = target.memories[ins.operands[form.out]]
        dram = target.dram()
        names = _companions(target, ins)
        store = target.instructions.get(names.get("store", ""))
        out_bytes = target.dtype_bytes(target.input_dtype)
        if store is not None:
            dram_side = store.semantics.statements[0].target
            out_bytes = target.dtype_bytes(store.semantics.dtype(dram_side))
        systolic = unit.kind == "matrix"
        declared = tuple(_DATAFLOW_NAMES[d] for d in unit.dataflows if d in _DATAFLOW_NAMES)
        return ArrayModel(
            systolic=systolic,
            count=max(unit.count, 1),
            issue_cycles=ins.issue_cycles,
            dataflows=declared or (("WS",) if systolic else ("OS",)),
            rows=max(unit.rows, 1),
            cols=max(unit.cols, 1),
            block=(form.tile("m"), form.tile("n"), form.tile("k")),
            in_bytes=target.dtype_bytes(target.input_dtype),
            acc_bytes=target.dtype_bytes(target.acc_dtype),
            out_bytes=out_bytes,
            layout=operand_layout(target, name),
            dram_bw=dram.bandwidth_bytes_per_cycle,
            dram_latency=float(dram.latency_cycles),
            pj_dram=dram.energy_pj_per_byte,
            pj_spad=spad.energy_pj_per_byte,
            pj_acc=acc.energy_pj_per_byte,
            pj_mac=unit.energy_pj_per_mac,
            names=names,
        )

    def fits(self, s: TileSchedule) -> bool:
        """Every tile of `s` fits in the memory the instruction declares for its operand, twice
        when double-buffered, counted in that memory's rows (`footprint.OperandLayout`, the
        accounting the functional machine allocates by)."""
        return self.layout.fits(s)


_DATAFLOW_NAMES = {"weight_stationary": "WS", "output_stationary": "OS"}

# memo tables: models per (target, instruction), timings per (model, call shape, schedule)
_MODELS: dict[tuple[int, str], tuple[Target, ArrayModel]] = {}
_TIMINGS: dict[tuple[int, int, int, int, int, TileSchedule], tuple[ArrayModel, CallTiming]] = {}


def _companions(target: Target, compute: Instruction) -> dict[str, str]:
    """Names of the instructions that work with a matrix instruction (by their semantics)."""
    names = {"compute": compute.name}
    form = matrix_form(compute.semantics)
    assert form is not None
    dram = target.dram().name
    in_mem, out_mem = compute.operands[form.lhs], compute.operands[form.out]
    for ins in target.instructions.values():
        if ins is compute:
            continue
        writes = ins.operands[ins.semantics.statements[0].target]
        reads = {m for t, m in ins.operands.items() if t != ins.semantics.statements[0].target}
        if ins.kind == "compute" and ins.reuses_stationary:
            names.setdefault("accumulate", ins.name)
        elif ins.kind != "compute" and ins.stationary is not None:
            names.setdefault("preload", ins.name)
        elif ins.kind == "move" and writes == in_mem and dram in reads:
            names.setdefault("load", ins.name)
        elif ins.kind == "move" and writes == dram and out_mem in reads:
            names.setdefault("store", ins.name)
    return names


@dataclass
class CallTiming:
    """Cycles of a call and where they went."""

    cycles: float
    compute_cycles: float
    dma_cycles: float
    bytes: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # level -> B
    counts: Counter[str] = field(default_factory=Counter)  # instruction -> issues
    energy_pj: float = 0.0
    macs: int = 0

    @property
    def array_utilisation(self) -> float:
        return self.compute_cycles / self.cycles if self.cycles else 0.0

    @property
    def dma_utilisation(self) -> float:
        return self.dma_cycles / self.cycles if self.cycles else 0.0


def _extent(index: int, tile: int, total: int) -> int:
    return min(tile, total - index * tile)


def _trips(call: MatmulCall, s: TileSchedule) -> dict[str, int]:
    mb, nb, kb = call.blocks
    return {"i": -(-mb // s.tile_i), "j": -(-nb // s.tile_j), "k": -(-kb // s.tile_k)}


def call_timing(model: ArrayModel, call: MatmulCall, s: TileSchedule) -> CallTiming:
    """Cycles of `call` under schedule `s`: the on-chip tile loop walked with two engines.

    Memoised per model, call shape and schedule; the result is shared, so treat it as read-only.
    """
    key = (id(model), call.b, call.m, call.n, call.k, s)
    hit = _TIMINGS.get(key)
    if hit is not None and hit[0] is model:
        return hit[1]
    if len(_TIMINGS) > 100_000:
        _TIMINGS.clear()
    timing = _extrapolated(model, call, s) or _walk(model, call, s)
    _TIMINGS[key] = (model, timing)
    return timing


#: Tile loops with more iterations than this are timed from their steady state (below).
WALK_LIMIT = 20_000
_KEEP = 6  # full tiles walked along the dimension being extrapolated (past the start-up)


def _extrapolated(
    model: ArrayModel, call: MatmulCall, s: TileSchedule, limit: int | None = None
) -> CallTiming | None:
    """A long tile loop, timed from two shorter ones: the same call with only a few full tiles
    (plus the edge tile) along its outermost long dimension, and two more. Every full tile along
    that loop repeats the same work, so once the engines reach their steady state each pair of
    tiles adds the same cycles, bytes and issues: the total is linear in their number.
    None when the loop is short enough to walk."""
    limit = WALK_LIMIT if limit is None else limit
    trips = _trips(call, s)
    if call.b * trips["i"] * trips["j"] * trips["k"] <= limit:
        return None
    bm, bn, bk = model.block
    tile = {"i": s.tile_i * bm, "j": s.tile_j * bn, "k": s.tile_k * bk}
    size = {"i": call.m, "j": call.n, "k": call.k}
    dims = [("b", 1, call.b)] + [(v, tile[v], size[v]) for v in s.loop_order]
    for var, step, extent in dims:
        full, edge = divmod(extent, step)
        if full < 3 * _KEEP:
            continue

        def shrunk(n: int, var: str = var, step: int = step, edge: int = edge) -> MatmulCall:
            value = n * step + edge
            b, m, n, k = call.b, call.m, call.n, call.k
            if var == "b":
                b = value
            elif var == "i":
                m = value
            elif var == "j":
                n = value
            else:
                k = value
            return MatmulCall(call.node, call.instruction, b, m, n, k, call.block, call.epilogue)

        # two buffers alternate, so the steady state may repeat every second tile: walk a short
        # loop with the same parity as the full one and one two tiles longer
        kept = _KEEP + (full - _KEEP) % 2
        short = call_timing(model, shrunk(kept), s)
        longer = call_timing(model, shrunk(kept + 2), s)
        extra = (full - kept) / 2
        out = CallTiming(
            cycles=short.cycles + extra * (longer.cycles - short.cycles),
            compute_cycles=short.compute_cycles
            + extra * (longer.compute_cycles - short.compute_cycles),
            dma_cycles=short.dma_cycles + extra * (longer.dma_cycles - short.dma_cycles),
            macs=call.macs,
            energy_pj=short.energy_pj + extra * (longer.energy_pj - short.energy_pj),
        )
        for name in set(short.counts) | set(longer.counts):
            out.counts[name] = short.counts[name] + round(
                extra * (longer.counts[name] - short.counts[name])
            )
        for level in set(short.bytes) | set(longer.bytes):
            out.bytes[level] = short.bytes[level] + extra * (
                longer.bytes[level] - short.bytes[level]
            )
        return out
    return None


def _walk(model: ArrayModel, call: MatmulCall, s: TileSchedule) -> CallTiming:
    bm, bn, bk = model.block
    trips = _trips(call, s)
    ti, tj, tk = s.tile_i * bm, s.tile_j * bn, s.tile_k * bk  # tile extents in elements
    extents = {
        "i": [_extent(x, ti, call.m) for x in range(trips["i"])],
        "j": [_extent(x, tj, call.n) for x in range(trips["j"])],
        "k": [_extent(x, tk, call.k) for x in range(trips["k"])],
    }
    bw, lat = model.dram_bw, model.dram_latency
    in_bytes, acc_bytes = model.in_bytes, model.acc_bytes
    out = CallTiming(0.0, 0.0, 0.0, macs=call.macs)
    dma_free = array_free = 0.0
    before_last = last = 0.0  # compute end of the iterations t - 2 and t - 1 (buffer reuse)
    pending: tuple[float, float] | None = None  # a C tile's store: (ready time, duration)
    visited: set[tuple[int, int, int]] = set()
    tiles: Counter[tuple[int, int, int]] = Counter()  # (mt, nt, kt) -> iterations
    stores: Counter[tuple[int, int]] = Counter()  # (mt, nt) -> C tiles stored
    compute_of: dict[tuple[int, int, int], int] = {}
    load_blocks = 0
    dram_in = acc_back = 0.0
    order = s.loop_order
    where = [order.index(v) for v in "ijk"]
    a_at = b_at = c_at = None
    c_shape = (0, 0)
    for batch in range(call.b):
        for pos in itertools.product(*(range(trips[v]) for v in order)):
            i0, j0, k0 = pos[where[0]], pos[where[1]], pos[where[2]]
            mt, nt, kt = extents["i"][i0], extents["j"][j0], extents["k"][k0]
            load = 0.0
            if (batch, i0, k0) != a_at:
                a_at = (batch, i0, k0)
                load += mt * kt * in_bytes
                load_blocks += -(-mt // bm) * -(-kt // bk)
            if (batch, k0, j0) != b_at:
                b_at = (batch, k0, j0)
                load += kt * nt * in_bytes
                load_blocks += -(-kt // bk) * -(-nt // bn)
            store_now: float | None = None
            c_tile = (batch, i0, j0)
            if c_tile != c_at:
                if c_at is not None:
                    stores[c_shape] += 1
                    store_now = c_shape[0] * c_shape[1] * model.out_bytes / bw
                if c_tile in visited:  # partial sums come back to the accumulator
                    load += mt * nt * acc_bytes
                    acc_back += mt * nt * acc_bytes
                    load_blocks += -(-mt // bm) * -(-nt // bn)
                visited.add(c_tile)
                c_at, c_shape = c_tile, (mt, nt)
            dram_in += load
            shape = (mt, nt, kt)
            tiles[shape] += 1
            compute = compute_of.get(shape)
            if compute is None:
                compute = compute_of[shape] = model.tile_compute(mt, nt, kt, s.dataflow)
            if store_now is not None:  # the previous C tile's store, queued on the DMA engine
                pending = (array_free, store_now)
            # -- the two engines ------------------------------------------------------------
            buffer_free = before_last if s.double_buffer else last
            if pending is not None and not s.double_buffer:
                # single buffers: the store goes before the next load
                dma_free = max(dma_free, pending[0]) + pending[1]
                array_free = max(array_free, dma_free)
                pending = None
            load_time = load / bw  # the engine's busy time; the data lands lat later
            dma_free = max(dma_free, buffer_free) + load_time
            load_end = dma_free + (lat if load else 0.0)
            if pending is not None:  # double-buffered: prefetch first, then store
                dma_free = max(dma_free, pending[0]) + pending[1]
                pending = None
            array_free = max(load_end, array_free) + compute
            before_last, last = last, array_free
            out.dma_cycles += load_time
            out.compute_cycles += compute
    end = array_free
    if c_at is not None:
        stores[c_shape] += 1
        dma_free = max(dma_free, array_free) + c_shape[0] * c_shape[1] * model.out_bytes / bw
        end = max(end, dma_free + lat)  # the last write lands
    # what moved and what issued, from the tile shapes and how often each occurred
    out.counts[model.names.get("load", "load")] += load_blocks
    out.bytes["dram"] += dram_in
    out.bytes["scratchpad"] += dram_in
    out.bytes["accumulator"] += acc_back
    for (mt, nt), n in stores.items():
        _store(model, mt, nt, n, out)
    for (mt, nt, kt), n in tiles.items():
        _count_compute(model, s.dataflow, mt, nt, kt, out, n)
    out.cycles = end - 1  # SCALE-Sim ends a run one cycle early
    out.compute_cycles -= 1
    out.energy_pj = _energy(model, call, out)
    return out


def _store(model: ArrayModel, mt: int, nt: int, n: int, out: CallTiming) -> None:
    """Account `n` stores of an mt x nt C tile (bytes, issues, the DMA engine's busy time)."""
    nbytes = mt * nt * model.out_bytes
    out.bytes["dram"] += n * nbytes
    out.bytes["accumulator"] += n * mt * nt * model.acc_bytes
    bm, bn, _ = model.block
    out.counts[model.names.get("store", "store")] += n * -(-mt // bm) * -(-nt // bn)
    out.dma_cycles += n * nbytes / model.dram_bw  # streamed out; the write lands later


def _count_compute(
    model: ArrayModel, dataflow: str, mt: int, nt: int, kt: int, out: CallTiming, n: int = 1
) -> None:
    """Account the instruction issues and on-chip traffic of `n` tiles of mt x nt x kt."""
    bm, bn, bk = model.block
    mb, nb, kb = -(-mt // bm), -(-nt // bn), -(-kt // bk)
    names = model.names
    if not model.systolic:  # one issue per instruction tile
        out.counts[names["compute"]] += n * mb * nb * kb
        out.bytes["scratchpad"] += n * mb * nb * kb * (bm * bk + bk * bn) * model.in_bytes
        out.bytes["accumulator"] += n * mb * nb * kb * bm * bn * model.acc_bytes
        return
    if dataflow == "WS":  # one preload per (k, n) block, then the M blocks stream
        folds, per_fold = kb * nb, mb
    else:  # one preload (zeros) per (m, n) output block, then the K blocks stream
        folds, per_fold = mb * nb, kb
    folds *= n
    out.counts[names.get("preload", "preload")] += folds
    first = names["compute"]
    if "accumulate" in names:
        out.counts[first] += folds
        out.counts[names["accumulate"]] += folds * (per_fold - 1)
    else:
        out.counts[first] += folds * per_fold
    # operand reads from the scratchpad: each fold reads its stationary block once and streams
    # the other operand's rows; partial sums go to the accumulator once per fold
    out.bytes["scratchpad"] += folds * (bk * bn + per_fold * bm * bk) * model.in_bytes
    out.bytes["accumulator"] += folds * per_fold * bm * bn * model.acc_bytes


def _energy(model: ArrayModel, call: MatmulCall, t: CallTiming) -> float:
    bm, bn, bk = model.block
    mb, nb, kb = call.blocks
    padded_macs = call.b * mb * bm * nb * bn * kb * bk
    return (
        padded_macs * model.pj_mac
        + t.bytes["dram"] * model.pj_dram
        + t.bytes["scratchpad"] * model.pj_spad
        + t.bytes["accumulator"] * model.pj_acc
    )
