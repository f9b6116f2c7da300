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
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache

from isamap.hardware.footprint import OperandLayout, operand_layout
from isamap.hardware.matrix_form import bias_move, matrix_form
from isamap.hardware.target import Instruction, Target
from isamap.ir.program import MatmulCall, TileSchedule
from isamap.ir.taps import TapGeometry, tap_depth

__all__ = [
    "ArrayModel",
    "CallTiming",
    "MoveQueue",
    "call_timing",
    "compute_cycles",
    "fold_cycles",
    "tap_call",
    "tap_move",
]


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
    """What timing needs of a target for one matrix instruction: its unit's mechanisms, its
    block, memories and energy.

    A compute unit runs *folds*: on a systolic unit one stationary block held while the other
    operand streams (WS: a bk x bn block of B, the tile's rows of A streamed; OS: a bm x bn block
    of C, the tile's depth streamed), `stream_cycles` per full instruction block streamed (its
    `issue_cycles`), `fill` cycles to load a weight block (the preload's issue cycles), `drain`
    cycles from the last streamed row to the result (latency minus issue). Without
    `double_buffered` PEs every fold pays fill, stream and drain (SCALE-Sim's fold); with them the
    next fold's stationary block loads under the current one, so back-to-back folds start
    `max(stream, fill)` apart and a run pays fill and drain once. A vector unit's fold is one
    issue: `issue_cycles` apart, `latency_cycles` to the last result.
    """

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
    systolic: bool = True  # a matrix unit (folds of a stationary block); else one fold per issue
    count: int = 1  # identical units; a tile's folds (issues) are spread over them
    issue_cycles: float = 1.0
    dataflows: tuple[str, ...] = ("WS", "OS")
    stream_cycles: float = 16.0  # cycles to stream one full instruction block (issue_cycles)
    fill: float = 16.0  # cycles to load a stationary weight block (WS)
    drain: float = 30.0  # cycles from a fold's last streamed row to its last result
    double_buffered: bool = False  # PEs hold two stationary blocks: folds pipeline
    decoupled: bool = False  # block-level dependencies between loads, folds and stores
    load_depth: int = 0  # loads in flight at once (0: unbounded)
    store_depth: int = 0  # stores in flight at once (0: unbounded)

    @property
    def pipelined(self) -> bool:
        """Back-to-back folds overlap (double-buffered PEs; a vector unit's issues always)."""
        return self.double_buffered or not self.systolic

    def folds(self, m: int, n: int, k: int, dataflow: str) -> tuple[int, float]:
        """Folds of one unit for an m x n x k tile, and the stream cycles of one fold."""
        bm, bn, bk = self.block
        if not self.systolic:
            issues = -(-m // bm) * -(-n // bn) * -(-k // bk)
            return -(-issues // self.count), self.stream_cycles
        if dataflow == "WS":
            return -(-(-(-k // bk) * -(-n // bn)) // self.count), m * self.stream_cycles / bm
        return -(-(-(-m // bm) * -(-n // bn)) // self.count), k * self.stream_cycles / bk

    def fill_of(self, dataflow: str) -> float:
        """Cycles before a run's first fold can stream: the weights' preload (WS); OS starts
        from zeros, and a vector unit from nothing."""
        return self.fill if self.systolic and dataflow == "WS" else 0.0

    def tile_busy(self, m: int, n: int, k: int, dataflow: str) -> float:
        """Cycles one tile keeps the array busy inside a run (no run fill, no final drain)."""
        folds, stream = self.folds(m, n, k, dataflow)
        if self.pipelined:
            return stream + (folds - 1) * max(stream, self.fill if self.systolic else 0.0)
        return folds * (self.fill_of(dataflow) + stream + self.drain)

    def tile_compute(self, m: int, n: int, k: int, dataflow: str) -> float:
        """Cycles of one on-chip tile of m x k . k x n run on its own (fill and drain included)."""
        busy = self.tile_busy(m, n, k, dataflow)
        if self.pipelined:
            return self.fill_of(dataflow) + busy + self.drain
        return busy

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
        preload = target.instructions.get(names.get("preload", ""))
        fill = preload.issue_cycles if preload is not None else float(max(unit.rows, 1))
        return ArrayModel(
            systolic=systolic,
            count=max(unit.count, 1),
            issue_cycles=ins.issue_cycles,
            stream_cycles=ins.issue_cycles,
            fill=fill,
            drain=max(float(ins.latency_cycles) - ins.issue_cycles, 0.0),
            double_buffered=unit.double_buffered,
            decoupled=unit.decoupled,
            load_depth=unit.load_queue_depth,
            store_depth=unit.store_queue_depth,
            dataflows=declared or (("WS",) if systolic else ("OS",)),
            rows=max(unit.rows, 1),
            cols=max(unit.cols, 1),
            block=(form.tile("m"), form.tile("n"), form.tile("k")),
            in_bytes=target.dtype_bytes(ins.semantics.dtype(form.lhs)),  # its own operand types
            acc_bytes=target.dtype_bytes(ins.semantics.dtype(form.out)),
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

    def writing(self, out_bytes: int) -> ArrayModel:
        """This model with results stored at `out_bytes` per element (a store that narrows them:
        an int8 requantized result is one byte in DRAM); memoised like `reading`."""
        if out_bytes == self.out_bytes:
            return self
        key = (id(self), -out_bytes)
        hit = _READING.get(key)
        if hit is not None and hit[0] is self:
            return hit[1]
        model = replace(self, out_bytes=out_bytes)
        _READING[key] = (self, model)
        return model

    def reading(self, in_bytes: int) -> ArrayModel:
        """This model with operands of `in_bytes` per element in DRAM (the kernel's own types:
        an f32 tensor is 4 bytes on the way in whatever the instruction computes in);
        memoised, so timings stay shared."""
        if in_bytes == self.in_bytes:
            return self
        key = (id(self), in_bytes)
        hit = _READING.get(key)
        if hit is not None and hit[0] is self:
            return hit[1]
        model = replace(self, in_bytes=in_bytes)
        _READING[key] = (self, model)
        return model

    def fits(self, s: TileSchedule) -> bool:
        """Every tile of `s` fits in the memory the instruction declares for its operand, twice
        when double-buffered, counted in that memory's rows (`footprint.OperandLayout`, the
        accounting the functional machine allocates by)."""
        return self.layout.fits(s)


_DATAFLOW_NAMES = {"weight_stationary": "WS", "output_stationary": "OS"}

# memo tables: models per (target, instruction), timings per (model, call shape, schedule)
_MODELS: dict[tuple[int, str], tuple[Target, ArrayModel]] = {}
_TIMINGS: dict[tuple[object, ...], tuple[ArrayModel, CallTiming]] = {}
_READING: dict[tuple[int, int], tuple[ArrayModel, ArrayModel]] = {}


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
        elif (
            ins.kind == "move" and writes == out_mem and dram in reads and bias_move(ins.semantics)
        ):
            names.setdefault("bias", ins.name)  # a bias row the product accumulates onto
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
    key = (id(model), call.b, call.m, call.n, call.k, call.bias, s, call.taps)
    hit = _TIMINGS.get(key)
    if hit is not None and hit[0] is model:
        return hit[1]
    if len(_TIMINGS) > 100_000:
        _TIMINGS.clear()
    timing = _extrapolated(model, call, s) or _walk(model, call, s)
    _TIMINGS[key] = (model, timing)
    return timing


#: Tile loops whose walk would touch more blocks than this are timed from their steady state
#: (below): the walk's cost is its tile iterations times the blocks each one moves and computes.
WALK_LIMIT = 20_000
_KEEP = 12  # full tiles walked along the dimension being extrapolated (past the start-up)


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
    per_tile = s.tile_i * s.tile_k + s.tile_k * s.tile_j + s.tile_i * s.tile_j
    if call.b * trips["i"] * trips["j"] * trips["k"] * per_tile <= limit:
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
            return replace(call, b=b, m=m, n=n, k=k)

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


#: Whether walks jump over repeated work (`_walk`, `MoveQueue.send`); False walks every tile
#: iteration and every move (tests/hardware/test_timing.py checks the jumps change nothing).
JUMPS = True


class MoveQueue:
    """Moves over the DMA engine with at most `depth` in flight (0: no bound): a move waits
    until the one `depth` moves earlier has landed, a DRAM latency after it left the engine."""

    def __init__(self, depth: int, latency: float) -> None:
        self.depth, self.latency = depth, latency
        self.lands: deque[float] = deque(maxlen=max(depth, 1))

    def send(self, at: float, busy: float, blocks: int, first: int = 0) -> tuple[float, float]:
        """Send `blocks` moves of `busy` engine cycles in all, from `at`: the engine's time after
        them, and when the first `first` of them have left the engine."""
        if not blocks:
            return at, at
        each = busy / blocks
        if not self.depth or (  # (a landing within rounding of `at` has landed: jumps below
            # shift times by sums, and a tie must not flip on the last bit)
            self.depth * each >= each + self.latency
            and (not self.lands or self.lands[0] <= at + 1e-9 * max(1.0, abs(at)))
        ):  # the queue never fills: the engine's own rate
            for i in range(max(blocks - self.depth, 0), blocks):
                self.lands.append(at + (i + 1) * each + self.latency)
            return at + busy, at + min(first, blocks) * each
        t, first_end = at, at
        lands, depth, latency = self.lands, self.depth, self.latency
        window: list[float] = []  # the queue's landings one period (`depth` moves) ago
        i = 0
        while i < blocks:
            if len(lands) == depth:
                t = max(t, lands[0])
            t += each
            lands.append(t + latency)
            i += 1
            if i == first:
                first_end = t
            if not JUMPS or i % depth or len(lands) < depth or i < first:
                continue
            # a full queue whose landings repeat one period later, shifted, repeats for ever
            # (each move depends only on the one before it and the one `depth` earlier): jump
            # the whole periods left
            shift = lands[0] - window[0] if window else math.nan
            tol = 1e-12 * max(abs(t), 1.0)
            if window and all(
                abs(x - w - shift) <= tol for x, w in zip(lands, window, strict=True)
            ):
                periods = (blocks - i) // depth
                if periods:
                    moved = [x + periods * shift for x in lands]
                    lands.clear()
                    lands.extend(moved)
                    t += periods * shift
                    i += periods * depth
            window = list(lands)
        return t, first_end


def _tile_move(rows: int, cols: int, br: int, bc: int, elem: int) -> tuple[float, int]:
    """(bytes, blocks) of moving a rows x cols tile in br x bc blocks."""
    return rows * cols * elem, -(-rows // br) * -(-cols // bc)


@dataclass(frozen=True)
class _Iteration:
    """What one tile iteration loads (flags) and its real extents."""

    mt: int
    nt: int
    kt: int
    load_a: bool
    load_b: bool
    reload_c: bool


def _last_load_tail(model: ArrayModel, it: _Iteration, dataflow: str) -> float:
    """Array cycles that must follow the landing of an iteration's last loaded block, with
    loads issued in the order the folds use them (decoupled queues): the rest of the fold that
    needed it and every fold after that one."""
    bm, bn, bk = model.block
    mb, nb, kb = -(-it.mt // bm), -(-it.nt // bn), -(-it.kt // bk)
    stream = model.folds(it.mt, it.nt, it.kt, dataflow)[1]
    fill = model.fill if model.systolic else 0.0
    slot = max(stream, fill) if model.pipelined else model.fill_of(dataflow) + stream + model.drain
    drain = 0.0 if model.pipelined else model.drain
    if model.systolic and dataflow == "WS":
        # fold (k, j), j outer: B(k, j), then A(., k) at j = 0 and C(., j) at k = 0, by rows
        total = kb * nb
        if it.load_b:
            last = total - 1
            rows_last = (it.load_a and nb == 1) or (it.reload_c and kb == 1)
        else:
            last = max((kb - 1) if it.load_a else -1, (nb - 1) * kb if it.reload_c else -1)
            rows_last = True
        row_block = min(bm, it.mt - (mb - 1) * bm) * model.stream_cycles / bm
        partial = row_block if rows_last else model.fill + stream
    else:  # fold (i, j), i outer: C(i, j) first, then A(i, k) / B(k, j) for each k
        total = mb * nb
        if it.reload_c:
            last = total - 1
            depth_last = (it.load_a and nb == 1) or (it.load_b and mb == 1)
        else:
            last = max((mb - 1) * nb if it.load_a else -1, (nb - 1) if it.load_b else -1)
            depth_last = True
        k_block = min(bk, it.kt - (kb - 1) * bk) * model.stream_cycles / bk
        if not model.systolic:  # a vector unit's fold (i, j) is its kb issues
            k_block, stream = model.stream_cycles, kb * model.stream_cycles
            slot = stream
        partial = k_block if depth_last else stream
    after = -(-(total - last - 1) // model.count)
    return partial + drain + after * slot


def _first_blocks(it: _Iteration) -> int:
    """How many blocks the first fold's first stream needs that load now (they go first)."""
    return int(it.load_a) + int(it.load_b) + int(it.reload_c)


#: One tile iteration of a walk, as far as timing is concerned: its extents (mt, nt, kt), which
#: operands it loads (A, B, C's partial sums back), the bytes and blocks of its loads, what its
#: C tile adds to the accumulator (partial sums or the bias written over the tile), the bias
#: row's DRAM bytes and moves, and the shape of the previous C tile if that is stored now.
_Step = tuple[
    int, int, int, bool, bool, bool, float, int, float, float, int, tuple[int, int] | None
]


def _steps(model: ArrayModel, call: MatmulCall, s: TileSchedule) -> Iterator[_Step]:
    """The tile loop's iterations in program order (batch outermost, then `s.loop_order`)."""
    bm, bn, bk = model.block
    trips = _trips(call, s)
    ti, tj, tk = s.tile_i * bm, s.tile_j * bn, s.tile_k * bk  # tile extents in elements
    extents = {
        "i": [_extent(x, ti, call.m) for x in range(trips["i"])],
        "j": [_extent(x, tj, call.n) for x in range(trips["j"])],
        "k": [_extent(x, tk, call.k) for x in range(trips["k"])],
    }
    in_bytes, acc_bytes = model.in_bytes, model.acc_bytes
    # a call onto a per-column bias: one bias row moved into each new C tile (DRAM bytes: one
    # row; the block's other rows re-read it, `gemmini.toml` mvin_bias)
    # (no bias move: the instruction adds the row in its datapath, loaded like an operand)
    bias = call.bias and ("bias" in model.names or "load" in model.names)
    taps = call.taps.operand if call.taps is not None else ""
    moves: dict[tuple[int, int, int, int, int], tuple[float, int]] = {}
    views: dict[tuple[int, int, int, int], tuple[float, int]] = {}

    def move(rows: int, cols: int, br: int, bc: int, elem: int) -> tuple[float, int]:
        key = (rows, cols, br, bc, elem)
        hit = moves.get(key)
        if hit is None:
            hit = moves[key] = _tile_move(rows, cols, br, bc, elem)
        return hit

    def tap_load(start: int, length: int, k0: int, kt: int) -> tuple[float, int]:
        key = (start, length, k0, kt)
        hit = views.get(key)
        if hit is None:
            hit = views[key] = tap_move(call, model, start, length, k0, kt)
        return hit

    order = s.loop_order
    where = [order.index(v) for v in "ijk"]
    a_at = b_at = c_at = None
    c_shape = (0, 0)
    for batch in range(call.b):
        for pos in itertools.product(*(range(trips[v]) for v in order)):
            i0, j0, k0 = pos[where[0]], pos[where[1]], pos[where[2]]
            mt, nt, kt = extents["i"][i0], extents["j"][j0], extents["k"][k0]
            load_a = (batch, i0, k0) != a_at
            load_b = (batch, k0, j0) != b_at
            nbytes, blocks = 0.0, 0
            if load_a:
                a_at = (batch, i0, k0)
                x, n = (
                    tap_load(i0 * ti, mt, k0 * tk, kt)
                    if taps == "A"
                    else move(mt, kt, bm, bk, in_bytes)
                )
                nbytes, blocks = nbytes + x, blocks + n
            if load_b:
                b_at = (batch, k0, j0)
                x, n = (
                    tap_load(j0 * tj, nt, k0 * tk, kt)
                    if taps == "B"
                    else move(kt, nt, bk, bn, in_bytes)
                )
                nbytes, blocks = nbytes + x, blocks + n
            reload = False
            acc_in = bias_in = 0.0
            bias_moves = 0
            store: tuple[int, int] | None = None
            if (batch, i0, j0) != c_at:
                if c_at is not None:
                    store = c_shape
                # the C tile was here before (at a smaller k0: every loop order walks k up)
                if k0 > 0:  # its partial sums come back to the accumulator
                    reload = True
                    x, n = move(mt, nt, bm, bn, acc_bytes)
                    nbytes, blocks, acc_in = nbytes + x, blocks + n, x
                elif bias:  # the bias row: one row's DMA per tile, issued as one move per
                    # accumulator block (repeating_bias re-reads the row)
                    bias_moves = -(-mt // bm) * -(-nt // bn)
                    nbytes, blocks = nbytes + nt * acc_bytes, blocks + bias_moves
                    acc_in = mt * nt * acc_bytes  # every row of the tile written
                    bias_in = nt * acc_bytes
                c_at, c_shape = (batch, i0, j0), (mt, nt)
            yield (mt, nt, kt, load_a, load_b, reload, nbytes, blocks, acc_in, bias_in,
                   bias_moves, store)  # fmt: skip


def _walk(model: ArrayModel, call: MatmulCall, s: TileSchedule) -> CallTiming:
    """Walk the tile loop: one DMA engine (loads and stores in program order), the array(s)
    running each tile's folds as the unit's mechanisms allow.

    The engines' next times are maxima and sums of their earlier ones, so once their state
    (every time in it: both engines, the buffers, the queues' landings) after some repeated
    work is the state before it shifted by a constant, every further repetition shifts it by
    that constant too. The walk uses that twice: within a run of identical iterations, and over
    the loop's outermost level (a batch, or one index of the outermost tile loop), whose
    sequence of iterations repeats. Long repetitive loops cost a few iterations to walk."""
    bm, bn, _ = model.block
    lat = model.dram_latency
    out = CallTiming(0.0, 0.0, 0.0, macs=call.macs)
    dma_free = array_free = 0.0
    last_start = -math.inf  # stream start of the array's last fold (pipelined PEs)
    results = 0.0  # when the last fold's results are in the accumulator
    copies = 2 if s.double_buffer else 1
    done: deque[float] = deque(maxlen=copies)  # when the last iterations' folds stopped
    # reading their buffers (the oldest frees the buffer the next iteration loads into)
    fill_ws = model.fill_of(s.dataflow)
    gap = model.fill if model.systolic and model.pipelined else 0.0
    drain = model.drain if model.pipelined else 0.0
    drain_held = 0.0 if model.pipelined else model.drain  # the array's last drain, per tile
    load_queue, store_queue = MoveQueue(model.load_depth, lat), MoveQueue(model.store_depth, lat)
    lands = (load_queue.lands, store_queue.lands)

    # the outermost level's units (a batch's slice at one index of the outermost tile loop),
    # each a run-length list of its iterations; later batches repeat the first batch's units
    # but for their first one (every operand loads anew there, the last C tile is stored)
    trips = _trips(call, s)
    per_unit = trips[s.loop_order[1]] * trips[s.loop_order[2]]
    count0 = trips[s.loop_order[0]]
    head = list(itertools.islice(_steps(model, call, s), (count0 + (call.b > 1)) * per_unit))
    table: dict[tuple[_Step, ...], int] = {}
    units: list[list[tuple[_Step, int]]] = []

    def unit_id(steps: tuple[_Step, ...]) -> int:
        if steps not in table:
            table[steps] = len(units)
            units.append([(k, sum(1 for _ in g)) for k, g in itertools.groupby(steps)])
        return table[steps]

    first = [unit_id(tuple(head[u * per_unit : (u + 1) * per_unit])) for u in range(count0)]
    sequence = list(first)
    if call.b > 1:
        later = [unit_id(tuple(head[count0 * per_unit :])), *first[1:]]
        sequence += later * (call.b - 1)
    # what the engines do per kind of iteration: (first blocks, compute, stream, tail, busy,
    # store's (busy, blocks), loaded)
    kinds: dict[_Step, tuple[int, float, float, float, float, tuple[float, int] | None, bool]]
    kinds = {}

    def kind(step: _Step) -> tuple[int, float, float, float, float, tuple[float, int] | None, bool]:
        mt, nt, kt, load_a, load_b, reload, nbytes, _, _, _, _, store = step
        it = _Iteration(mt, nt, kt, load_a, load_b, reload)
        stored = None
        if store is not None:
            x, n = _tile_move(*store, bm, bn, model.out_bytes)
            stored = (x / model.dram_bw, n)
        return (
            _first_blocks(it),
            model.tile_busy(mt, nt, kt, s.dataflow),
            model.folds(mt, nt, kt, s.dataflow)[1],
            _last_load_tail(model, it, s.dataflow),
            nbytes / model.dram_bw,
            stored,
            nbytes > 0,
        )

    # what moved and what computed: from each unit's iterations and how often it occurs
    tiles: Counter[tuple[int, int, int]] = Counter()  # (mt, nt, kt) -> iterations
    stores: Counter[tuple[int, int]] = Counter()  # (mt, nt) -> C tiles stored
    load_blocks = bias_moves = 0
    dram_in = acc_back = bias_in = 0.0
    for uid, times in Counter(sequence).items():
        for step, count in units[uid]:
            n = count * times
            mt, nt, kt, _, _, _, nbytes, blocks, acc_in, bias_row, moves, store = step
            tiles[(mt, nt, kt)] += n
            if store is not None:
                stores[store] += n
            load_blocks += blocks * n
            dram_in += nbytes * n
            acc_back += acc_in * n
            bias_in += bias_row * n
            bias_moves += moves * n
            per = kinds.get(step)
            if per is None:
                per = kinds[step] = kind(step)
            out.dma_cycles += per[4] * n
            out.compute_cycles += per[1] * n
    last = head[-1] if call.b == 1 else head[count0 * per_unit - 1]
    c_shape = (last[0], last[1])

    def state() -> tuple[float, ...]:
        return (dma_free, array_free, last_start, results, *done, *lands[0], *lands[1])

    def lengths() -> tuple[int, int, int]:
        return len(done), len(lands[0]), len(lands[1])

    def steady() -> bool:
        """The state is one a shift can be read from: the constants in the engines' maxima
        (an empty buffer, a first fold, a run's first preload) can no longer win."""
        return (
            len(done) == copies
            and last_start != -math.inf
            and not (model.pipelined and array_free < fill_ws)
        )

    def shifted(now: tuple[float, ...], before: tuple[float, ...]) -> float | None:
        """The constant `now` is `before` shifted by, if it is one."""
        if len(now) != len(before):
            return None
        shift = now[1] - before[1]
        tol = 1e-9 * max(1.0, abs(now[1]))
        if all(abs(x - y - shift) <= tol for x, y in zip(now, before, strict=True)):
            return shift
        return None

    def jump(by: float) -> None:
        nonlocal dma_free, array_free, last_start, results
        dma_free += by
        array_free += by
        last_start += by
        results += by
        for q in (done, *lands):
            moved = [x + by for x in q]
            q.clear()
            q.extend(moved)

    seen: dict[int, tuple[tuple[float, ...], tuple[int, int, int]]] = {}  # before unit u
    u = 0
    while u < len(sequence):
        now, shape = state(), lengths()
        seen[u] = (now, shape)
        jumped = False
        if JUMPS and steady():  # the units just walked repeat, and the state with them
            for period in dict.fromkeys((1, 2, count0, 2 * count0)):
                past = seen.get(u - period)
                if past is None or past[1] != shape:
                    continue
                pattern = sequence[u - period : u]
                periods = 0
                while sequence[u + periods * period : u + (periods + 1) * period] == pattern:
                    periods += 1
                shift = shifted(now, past[0]) if periods else None
                if shift is None:
                    continue
                jump(periods * shift)
                u += periods * period
                jumped = True
                break
        if jumped:
            continue
        for step, count in units[sequence[u]]:
            first_blocks, compute, stream, tail, busy, stored, loaded = kinds[step]
            blocks = step[7]
            history = [state()] if count > 2 and JUMPS else []
            entry = lengths()
            walked = 0
            while walked < count:
                # -- the DMA engine -----------------------------------------------------------
                buffer_free = done[0] if len(done) == copies else 0.0
                if stored is not None and not s.double_buffer:
                    # single buffers: the store goes before the next load
                    dma_free = store_queue.send(max(dma_free, results), *stored)[0]
                pending = results  # the previous C tile's results: when its store may go
                load_start = max(dma_free, buffer_free)
                dma_free, first_sent = load_queue.send(load_start, busy, blocks, first_blocks)
                if not model.decoupled:  # the tile's folds wait for all of its loads
                    ready = dma_free + lat if loaded else dma_free
                    ready_last = ready
                else:  # the first fold waits for its own blocks only
                    ready = first_sent + lat if first_blocks else 0.0
                    ready_last = dma_free + lat if loaded else 0.0
                if stored is not None and s.double_buffer:  # double buffers: prefetch, store
                    dma_free = store_queue.send(max(dma_free, pending), *stored)[0]
                # -- the array ----------------------------------------------------------------
                if model.pipelined:  # the first fold's preload, and the previous fold's, first
                    start = max(array_free, ready + fill_ws, last_start + gap)
                else:  # every fold pays its own fill (tile_busy)
                    start = max(array_free, ready)
                end = start + compute
                if model.decoupled and loaded:
                    end = max(end, ready_last + tail)
                last_start = end - stream
                results = end + drain
                array_free = end
                # the buffers free when the iteration's folds stopped reading them: with
                # decoupled queues at the end of their streams, otherwise when the tile is done
                done.append(end - drain_held if model.decoupled else end)
                walked += 1
                left = count - walked
                if left < 1 or not history:
                    continue
                history.append(state())
                if lengths() != entry or not steady():
                    entry, history = lengths(), [history[-1]]
                    continue
                for period in (1, 2):  # two buffers alternate: a state may repeat every second
                    if len(history) <= period or left < period:
                        continue
                    shift = shifted(history[-1], history[-1 - period])
                    if shift is None:
                        continue
                    periods = left // period
                    jump(periods * shift)
                    walked += periods * period
                    history = [state()]
                    break
        u += 1
    end = results
    stores[c_shape] += 1  # the last C tile
    x, n = _tile_move(*c_shape, bm, bn, model.out_bytes)
    dma_free = store_queue.send(max(dma_free, results), x / model.dram_bw, n)[0]
    end = max(end, dma_free + lat)  # the last write lands
    # what moved and what issued, from the tile shapes and how often each occurred
    bias_name = model.names.get("bias", model.names.get("load")) if call.bias else None
    out.counts[model.names.get("load", "load")] += load_blocks - bias_moves
    if bias_name is not None and bias_moves:
        out.counts[bias_name] += bias_moves
    out.bytes["dram"] += dram_in
    out.bytes["scratchpad"] += dram_in - bias_in
    out.bytes["accumulator"] += acc_back
    for (mt, nt), n in stores.items():
        _store(model, mt, nt, n, out)
    for (mt, nt, kt), n in tiles.items():
        _count_compute(model, s.dataflow, mt, nt, kt, out, n)
    out.cycles = end - 1  # SCALE-Sim ends a run one cycle early
    out.compute_cycles -= 1
    out.energy_pj = _energy(model, call, out)
    return out


def tap_move(
    call: MatmulCall, model: ArrayModel, start: int, length: int, k0: int, kt: int
) -> tuple[float, int]:
    """(bytes, blocks) of loading a tile of a tap accumulation's views (`ir/taps.py`): pixels
    [start, start + length) at depth columns [k0, k0 + kt). The tile's taps read overlapping
    input pixels (the halo): each distinct in-range pixel is loaded once per channel block, in
    rows of the block's pixel extent, and every tap reads its shifted rows where they lie; the
    per-tap zero padding of K and the out-of-range (padding) pixels move nothing."""
    geometry = call.taps
    assert geometry is not None
    bm, bn, bk = model.block
    rows = bm if geometry.operand == "A" else bn
    elements, blocks = _tap_tile(geometry, rows, bk, start, length, k0, kt)
    return elements * model.in_bytes, blocks


@lru_cache(maxsize=262_144)
def _tap_tile(
    geometry: TapGeometry, rows: int, bk: int, start: int, length: int, k0: int, kt: int
) -> tuple[int, int]:
    """(elements, blocks) of `tap_move` (memoised: schedules of one call load the same tiles)."""
    depth = tap_depth(geometry.channels, bk)
    elements = blocks = 0
    for pixels, channels in geometry.tile_reads(start, length, k0, kt, depth):
        elements += pixels * channels
        blocks += -(-pixels // rows) * -(-channels // bk)
    return elements, blocks


def tap_call(call: MatmulCall, geometry: TapGeometry, k_extent: int) -> MatmulCall:
    """`call` as the tap accumulation of `geometry`: its depth the taps one after another, each
    padded to the instruction's K extent."""
    depth = tap_depth(geometry.channels, k_extent)
    return replace(call, k=geometry.tap_count * depth, taps=geometry)


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
