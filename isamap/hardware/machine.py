"""Functional simulation of a Program: tiles really move through modelled on-chip memories.

Every scheduled matrix call walks its tile loop nest (the order and reuse rules of
`timing.call_timing`, shared with `event_sim` through `tile_steps`) one instruction at a time:
`mvin` copies a block from DRAM into rows of a Scratchpad (a spilled partial C back into the
Accumulator), `preload` puts a block in the array, the compute instructions apply their declared
semantics to blocks read from those rows, `mvout` writes a C block back to DRAM. Buffers sit at
fixed row offsets; overrunning a memory, reading a row no mvin wrote since the buffer took its tile,
or indexing past a buffer raises SimulationError.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field

import numpy as np

from isamap.hardware.direct_conv import conv_plan, run_conv_call
from isamap.hardware.footprint import OPERANDS, OperandLayout, OperandSpace, Overrun, operand_layout
from isamap.hardware.functional import (
    EXACT,
    OperandTypes,
    bias_rows,
    operand_types,
    requantize,
    run_instruction,
    run_node,
    store_outputs,
    tensor_nodes,
)
from isamap.hardware.matrix_form import MatrixForm, matrix_form
from isamap.hardware.target import Target
from isamap.hardware.timing import ArrayModel
from isamap.ir.errors import IsamapError
from isamap.ir.kernel import Kernel
from isamap.ir.mapping import Mapping
from isamap.ir.ops import UNARY
from isamap.ir.program import MatmulCall, Program, TileSchedule
from isamap.ir.reference import check_inputs
from isamap.ir.taps import stack_taps

__all__ = [
    "Accumulator",
    "Buffer",
    "CTile",
    "CallMachine",
    "CallRun",
    "MachineRun",
    "RowMemory",
    "Scratchpad",
    "SimulationError",
    "TileStep",
    "run_call",
    "run_program",
    "tile_steps",
    "trace_program",
]


class SimulationError(IsamapError):
    """The program did something the machine cannot: overran a memory, read an unwritten row."""


# -- the loop nest -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CTile:
    """One C tile of a call: batch, tile coordinates, real extents, and whether it is complete."""

    batch: int
    i0: int
    j0: int
    mt: int
    nt: int
    final: bool = False  # every K tile has been accumulated: the epilogue applies on the way out

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.batch, self.i0, self.j0)


@dataclass(frozen=True)
class TileStep:
    """One iteration of a call's tile loop nest and the data movement it implies."""

    index: int
    batch: int
    i0: int
    j0: int
    k0: int
    mt: int  # real extents of this iteration's tiles, in elements
    nt: int
    kt: int
    load_a: bool  # the A tile's coordinates changed: load it
    load_b: bool
    new_c: bool  # this iteration works on another C tile than the previous one
    reload_c: bool  # ... one already stored: its partial sums come back
    leave: CTile | None  # the C tile the previous iteration worked on, stored now


def _extent(index: int, tile: int, total: int) -> int:
    return min(tile, total - index * tile)


def tile_steps(call: MatmulCall, s: TileSchedule) -> tuple[list[TileStep], CTile | None]:
    """The iterations of `call` under `s` (batch outermost, then `s.loop_order`), and the C tile
    left to store after the last one; the same reuse rules as `timing.call_timing`."""
    bm, bn, bk = call.block
    mb, nb, kb = call.blocks
    trips = {"i": -(-mb // s.tile_i), "j": -(-nb // s.tile_j), "k": -(-kb // s.tile_k)}
    ti, tj, tk = s.tile_i * bm, s.tile_j * bn, s.tile_k * bk
    steps: list[TileStep] = []
    a_at = b_at = None
    current: CTile | None = None
    k_done: Counter[tuple[int, int, int]] = Counter()  # C tile -> K tiles accumulated into it

    def closed(c: CTile) -> CTile:
        return CTile(c.batch, c.i0, c.j0, c.mt, c.nt, k_done[c.key] == trips["k"])

    for batch in range(call.b):
        for pos in _positions(s.loop_order, trips):
            i0, j0, k0 = pos
            mt, nt, kt = _extent(i0, ti, call.m), _extent(j0, tj, call.n), _extent(k0, tk, call.k)
            load_a, load_b = (batch, i0, k0) != a_at, (batch, k0, j0) != b_at
            a_at, b_at = (batch, i0, k0), (batch, k0, j0)
            c_tile = CTile(batch, i0, j0, mt, nt)
            new_c = current is None or current.key != c_tile.key
            leave = closed(current) if new_c and current is not None else None
            reload_c = new_c and k_done[c_tile.key] > 0
            current = c_tile
            k_done[c_tile.key] += 1
            steps.append(
                TileStep(
                    index=len(steps),
                    batch=batch,
                    i0=i0,
                    j0=j0,
                    k0=k0,
                    mt=mt,
                    nt=nt,
                    kt=kt,
                    load_a=load_a,
                    load_b=load_b,
                    new_c=new_c,
                    reload_c=reload_c,
                    leave=leave,
                )
            )
    return steps, (closed(current) if current is not None else None)


def _positions(order: str, trips: dict[str, int]) -> Iterator[tuple[int, int, int]]:
    """(i0, j0, k0) of every iteration, loops nested in `order` (outer to inner)."""
    for x in range(trips[order[0]]):
        for y in range(trips[order[1]]):
            for z in range(trips[order[2]]):
                pos = dict(zip(order, (x, y, z), strict=True))
                yield pos["i"], pos["j"], pos["k"]


# -- memories ------------------------------------------------------------------------------------


class RowMemory:
    """An on-chip memory of `rows` rows of `row_bytes` bytes, handing out buffers of rows.

    Rows are counted by `footprint.OperandSpace` (the accounting the scheduler's fit check uses);
    each buffer keeps its own elements.
    """

    kind = "memory"

    def __init__(self, name: str, rows: int, row_bytes: int) -> None:
        self.name = name
        self.rows = rows
        self.row_bytes = row_bytes
        self.used = 0

    def allocate(self, requests: list[tuple[OperandSpace, str, int]]) -> list[Buffer]:
        """Buffers of the requested rows (operand, label, rows), one after another from the first
        free row; SimulationError if they do not all fit."""
        needed = self.used + sum(n for _, _, n in requests)
        if needed > self.rows:
            asked = tuple((label, n) for _, label, n in requests)
            over = Overrun(self.name, needed, self.rows, self.row_bytes, asked)
            raise SimulationError(over.message(self.kind))
        out = []
        for space, label, n in requests:
            out.append(Buffer(self, space, label, self.used, n))
            self.used += n
        return out


class Scratchpad(RowMemory):
    """A memory the instruction's A or B operands live in."""

    kind = "scratchpad"


class Accumulator(RowMemory):
    """A memory only the instruction's C operand (partial sums) lives in."""

    kind = "accumulator"


class Buffer:
    """A fixed range of rows of a memory, holding one tile's blocks of one operand at a time.

    Elements sit where `space.positions` puts them (row, slot within the row); a row is valid
    once a write covered it.
    """

    def __init__(
        self, memory: RowMemory, space: OperandSpace, label: str, offset: int, nrows: int
    ) -> None:
        self.memory, self.space, self.label = memory, space, label
        self.offset, self.nrows = offset, nrows
        self._data: np.ndarray | None = None  # allocated when first written
        self.valid = np.zeros(nrows, dtype=bool)

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            self._data = np.zeros((self.nrows, self.space.per_row))
        return self._data

    def block_rows(self, shape: tuple[int, int]) -> int:
        """Rows one block of `shape` takes (`footprint.OperandSpace.shape_rows`)."""
        return self.space.shape_rows(shape)

    def _span(self, row: int, shape: tuple[int, int]) -> slice:
        count = self.block_rows(shape)
        if row < 0 or row + count > self.nrows:
            raise SimulationError(
                f"{self.label}: rows {row}..{row + count - 1} outside its {self.nrows} rows"
            )
        return slice(row, row + count)

    def invalidate(self) -> None:
        """The buffer takes a new tile: nothing in it is valid until written."""
        self.valid[:] = False

    def write(self, row: int, block: np.ndarray) -> None:
        span = self._span(row, block.shape)
        rows, slots = self.space.positions(block.shape)
        self.data[row + rows, slots] = block
        self.valid[span] = True

    def read(self, row: int, shape: tuple[int, int]) -> np.ndarray:
        span = self._span(row, shape)
        bad = np.flatnonzero(~self.valid[span])
        if bad.size:
            raise SimulationError(
                f"{self.label}: row {row + int(bad[0])} read before any mvin wrote it"
            )
        rows, slots = self.space.positions(shape)
        block: np.ndarray = self.data[row + rows, slots]
        return block

    def accumulate(self, row: int, block: np.ndarray, types: OperandTypes) -> None:
        """Add `block` to the one at `row`, at the accumulator's width (`types.accumulate`)."""
        self.write(row, types.accumulate(self.read(row, block.shape), block))


# -- one call on the machine ---------------------------------------------------------------------


def _block(x: np.ndarray, r0: int, c0: int, shape: tuple[int, int]) -> np.ndarray:
    """The block of 2-D `x` at (r0, c0), zero-padded past the edges."""
    out = np.zeros(shape)
    part = x[r0 : r0 + shape[0], c0 : c0 + shape[1]]
    out[: part.shape[0], : part.shape[1]] = part
    return out


@dataclass
class _ViewPart:
    """Channels [lo, hi) of some taps of a views tile: its distinct pixels' slots, from block
    `first` of the buffer, `channel_blocks` blocks per group of pixels."""

    lo: int
    hi: int
    taps: frozenset[int]
    slot: dict[int, int]
    first: int
    channel_blocks: int


@dataclass
class _ViewTile:
    """A tap accumulation's views tile as loaded: the pixel each row reads at each tap (-1:
    padding), where its depth starts, each tap's depth, the block's pixel extent, its parts."""

    ids: np.ndarray
    k0: int
    depth: int
    pix: int
    block_rows: int
    parts: list[_ViewPart] = field(default_factory=list)
    blocks: int = 0


class CallMachine:
    """The scratchpad, accumulator and array one call runs on, and its instructions.

    Each instruction method counts its issue under the target's instruction name; the loop nest
    (`run`) is the only caller.
    """

    def __init__(
        self, target: Target, call: MatmulCall, s: TileSchedule, types: OperandTypes = EXACT
    ) -> None:
        ins = target.instruction(call.instruction)
        form = matrix_form(ins.semantics)
        if form is None or form.tile("b") != 1:
            raise SimulationError(f"{call.instruction}: not a matrix instruction without batch")
        self.form: MatrixForm = form
        self.types = types
        self.target = target
        self.call, self.s = call, s
        model = ArrayModel.for_instruction(target, call.instruction)
        self.names = model.names
        self.systolic = model.systolic  # else: one issue per block product, no preload
        self.counts: Counter[str] = Counter()
        bm, bn, bk = call.block
        self.a_shape, self.b_shape, self.c_shape = (bm, bk), (bk, bn), (bm, bn)
        self.copies = 2 if s.double_buffer else 1
        buffers = self._allocate(operand_layout(target, call.instruction))
        self.a, self.b, self.c = buffers["A"], buffers["B"], buffers["C"]
        self.slot = {"A": -1, "B": -1, "C": -1}  # buffer each operand's current tile is in
        self.c_slot: dict[tuple[int, int, int], int] = {}
        self.stationary: np.ndarray | None = None  # the block held in the array
        self.fresh = False  # preloaded and not yet computed with
        # [b, 1, n]: the bias row each new C tile starts from (a bias move puts it into the
        # accumulator), or that the instruction adds on the way out (a bias in its semantics)
        self.bias: np.ndarray | None = None
        self.preloads_bias = "bias" in self.names
        self.view_tiles: dict[str, _ViewTile] = {}  # a tap accumulation's views, as loaded

    def _allocate(self, layout: OperandLayout) -> dict[str, list[Buffer]]:
        """Every buffer of the call, at fixed offsets, in the memory the instruction declares for
        its operand (`layout.buffers`: one per operand and copy)."""
        allocated: list[Buffer] = []
        for name, asked in layout.buffers(self.s).items():
            requests = [(layout.space(label[0]), label, n) for label, n in asked]
            only_c = all(space.role == "C" for space, _, _ in requests)
            cls = Accumulator if only_c else Scratchpad
            memory = cls(name, layout.rows_of(name), requests[0][0].row_bytes)
            allocated.extend(memory.allocate(requests))
        return {op: [b for b in allocated if b.label[0] == op] for op in OPERANDS}

    def _row(self, buffer: Buffer, shape: tuple[int, int], r: int, c: int, cols: int) -> int:
        """First row of block (r, c) of a tile `cols` blocks wide."""
        return (r * cols + c) * buffer.block_rows(shape)

    def _issue(self, role: str) -> str:
        name = self.names.get(role, role)
        self.counts[name] += 1
        return name

    def _product(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """One block product by the instruction's declared semantics."""
        product: np.ndarray = run_instruction(self.form, a[None], b[None], types=self.types)[0]
        return product

    # -- the instructions -------------------------------------------------------------------------

    def mvin(self, buffer: Buffer, row: int, block: np.ndarray) -> None:
        """Copy one (zero-padded) block from DRAM into `buffer` at `row`."""
        self._issue("load")
        buffer.write(row, block)

    def preload(self, block: np.ndarray | None) -> None:
        """Put a block in the array: the B block (WS), or zeros for the C block (OS)."""
        self._issue("preload")
        self.stationary = np.zeros(self.c_shape) if block is None else block
        self.fresh = True

    def compute(self, a: np.ndarray, b: np.ndarray | None, first: bool) -> np.ndarray:
        """compute_preloaded (`first` of a fold) or compute_accumulated: A times the stationary
        B (WS, `b` None) or times `b` (OS, added to the C held); the block it produces."""
        role = "compute" if first or "accumulate" not in self.names else "accumulate"
        self._issue(role)
        # without a companion that reuses the stationary block, the compute instruction itself
        # keeps using it (the instruction declares it `stationary`)
        reused = role == "compute" and not self.fresh and "accumulate" in self.names
        if self.stationary is None or reused:
            raise SimulationError(f"{self.names.get(role, role)} without a preload")
        self.fresh = False
        if b is None:
            return self._product(a, self.stationary)
        self.stationary = self.types.accumulate(self.stationary, self._product(a, b))
        return self.stationary

    def mvout(
        self, buffer: Buffer, row: int, epilogue: str | None, final: bool = True
    ) -> np.ndarray:
        """Read one C block out of the accumulator, through `epilogue`, for DRAM; a final block
        of a requantizing call scaled and narrowed first (a partial sum goes out at full width,
        to be accumulated again)."""
        self._issue("store")
        block = buffer.read(row, self.c_shape)
        if final and self.call.narrow is not None and self.call.scale is not None:
            ins = self.target.instruction(self.call.instruction)
            return requantize(block, self.target, ins, self.call.scale, self.call.narrow, epilogue)
        return UNARY[epilogue].numpy(block) if epilogue else block

    # -- the loop nest ----------------------------------------------------------------------------

    def run(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """`a[b, m, k] . b[b, k, n]` through the machine, tile by tile."""
        out = np.zeros((self.call.b, self.call.m, self.call.n))
        steps, last = tile_steps(self.call, self.s)
        for step in steps:
            if step.leave is not None and not self.s.double_buffer:
                self._store(step.leave, out)  # one C buffer: empty it before anything comes in
            if step.load_a and self._views("A"):
                self._load_views(step, "A", a[step.batch])
            elif step.load_a:
                self._load(step, "A", a[step.batch], step.i0, step.k0, self.s.tile_k)
            if step.load_b and self._views("B"):
                self._load_views(step, "B", b[step.batch])
            elif step.load_b:
                self._load(step, "B", b[step.batch], step.k0, step.j0, self.s.tile_j)
            if step.new_c:
                self._open_c(step, out)
            if step.leave is not None and self.s.double_buffer:
                self._store(step.leave, out)  # prefetch first, then store
            self._compute(step)
        if last is not None:
            self._store(last, out)
        return out

    def _take(self, operand: str) -> Buffer:
        """The next buffer of `operand` (alternating when double-buffered), emptied."""
        self.slot[operand] = (self.slot[operand] + 1) % self.copies
        buffer = {"A": self.a, "B": self.b, "C": self.c}[operand][self.slot[operand]]
        buffer.invalidate()
        return buffer

    def _load(
        self, step: TileStep, operand: str, x: np.ndarray, r0: int, c0: int, wide: int
    ) -> None:
        shape = self.a_shape if operand == "A" else self.b_shape
        rows, cols = (step.mt, step.kt) if operand == "A" else (step.kt, step.nt)
        tr, tc = (
            (self.s.tile_i, self.s.tile_k) if operand == "A" else (self.s.tile_k, self.s.tile_j)
        )
        buffer = self._take(operand)
        for r in range(-(-rows // shape[0])):
            for c in range(-(-cols // shape[1])):
                block = _block(x, (r0 * tr + r) * shape[0], (c0 * tc + c) * shape[1], shape)
                self.mvin(buffer, self._row(buffer, shape, r, c, wide), block)

    def _open_c(self, step: TileStep, out: np.ndarray) -> None:
        """Give the new C tile a buffer: zeros, or its partial sums back from DRAM."""
        buffer = self._take("C")
        self.c_slot[(step.batch, step.i0, step.j0)] = self.slot["C"]
        bm, bn = self.c_shape
        for r in range(-(-step.mt // bm)):
            for c in range(-(-step.nt // bn)):
                row = self._row(buffer, self.c_shape, r, c, self.s.tile_j)
                if step.reload_c:
                    r0, c0 = (step.i0 * self.s.tile_i + r) * bm, (step.j0 * self.s.tile_j + c) * bn
                    self.mvin(buffer, row, _block(out[step.batch], r0, c0, self.c_shape))
                elif self.bias is not None and self.preloads_bias:  # the row down the block
                    c0 = (step.j0 * self.s.tile_j + c) * bn
                    self._issue("bias")
                    row_block = _block(self.bias[step.batch], 0, c0, (1, bn))
                    buffer.write(row, np.broadcast_to(row_block, self.c_shape).copy())
                else:  # the first compute overwrites instead of accumulating
                    buffer.write(row, np.zeros(self.c_shape))

    def _store(self, tile: CTile, out: np.ndarray) -> None:
        """mvout every block of a C tile; the epilogue only when the tile is final."""
        buffer = self.c[self.c_slot[tile.key]]
        bm, bn = self.c_shape
        epilogue = self.call.epilogue if tile.final else None
        added = self.bias if tile.final and not self.preloads_bias else None
        for r in range(-(-tile.mt // bm)):
            for c in range(-(-tile.nt // bn)):
                row = self._row(buffer, self.c_shape, r, c, self.s.tile_j)
                r0, c0 = (tile.i0 * self.s.tile_i + r) * bm, (tile.j0 * self.s.tile_j + c) * bn
                if added is not None:  # the instruction's datapath adds it before its function
                    self._issue("load")
                    bias = _block(added[tile.batch], 0, c0, (1, bn))
                    buffer.write(row, buffer.read(row, self.c_shape) + bias)
                block = self.mvout(buffer, row, epilogue, tile.final)
                dst = out[tile.batch, r0 : r0 + bm, c0 : c0 + bn]
                dst[...] = block[: dst.shape[0], : dst.shape[1]]

    # -- a tap accumulation's views (ir/taps.py) --------------------------------------------------

    def _views(self, operand: str) -> bool:
        """Whether `operand` of this call is the shifted views of a tap accumulation."""
        return self.call.taps is not None and self.call.taps.operand == operand

    def _load_views(self, step: TileStep, operand: str, x: np.ndarray) -> None:
        """Load a views tile with its halo: each distinct in-range input pixel of the tile's
        taps once per channel part, in blocks of the block's pixel extent (the counting of
        `timing.tap_move`); every tap then reads its shifted rows where they lie. `x` is the
        stacked views ([pixels, depth] for A, [depth, pixels] for B), which hold each input
        pixel's values wherever a tap reads it."""
        g = self.call.taps
        assert g is not None
        bm, bn, bk = self.call.block
        depth = self.call.k // g.tap_count
        if operand == "A":
            start, length, pix, shape = step.i0 * self.s.tile_i * bm, step.mt, bm, self.a_shape
        else:
            start, length, pix, shape = step.j0 * self.s.tile_j * bn, step.nt, bn, self.b_shape
        k0 = step.k0 * self.s.tile_k * bk
        buffer = self._take(operand)
        ids = g.pixel_ids(start, length, 0, g.tap_count)
        tile = _ViewTile(ids, k0, depth, pix, buffer.block_rows(shape))
        for lo, hi, taps in g.tile_parts(k0, step.kt, depth):
            sub = ids[:, taps[0] : taps[-1] + 1]
            rows, cols = np.nonzero(sub >= 0)
            uniq, first = np.unique(sub[rows, cols], return_index=True)
            slots = {int(p): n for n, p in enumerate(uniq)}
            part = _ViewPart(lo, hi, frozenset(taps), slots, tile.blocks, -(-(hi - lo) // bk))
            tile.parts.append(part)
            for pb in range(-(-len(uniq) // pix)):
                for cb in range(part.channel_blocks):
                    values = np.zeros((pix, bk))
                    c0, c1 = lo + cb * bk, min(lo + (cb + 1) * bk, hi)
                    for n in range(pb * pix, min((pb + 1) * pix, len(uniq))):
                        row, tap = int(rows[first[n]]), taps[0] + int(cols[first[n]])
                        span = slice(tap * depth + c0, tap * depth + c1)
                        got = x[start + row, span] if operand == "A" else x[span, start + row]
                        values[n - pb * pix, : c1 - c0] = got
                    block = values if operand == "A" else values.T
                    self.mvin(buffer, tile.blocks * tile.block_rows, block)
                    tile.blocks += 1
        self.view_tiles[operand] = tile

    def _view_block(self, operand: str, buffer: Buffer, rows: int, k: int) -> np.ndarray:
        """Block (`rows`, depth block `k`) of the views tile in `buffer`: each of its pixel rows
        read from where its input pixel lies (A: [bm, bk]; B: [bk, bn], `rows` the column)."""
        tile = self.view_tiles[operand]
        bk = self.call.block[2]
        col = tile.k0 + k * bk
        tap, ch0 = divmod(col, tile.depth)
        part = next(p for p in tile.parts if tap in p.taps and p.lo <= ch0 < p.hi)
        cb = (ch0 - part.lo) // bk
        shape = self.a_shape if operand == "A" else self.b_shape
        out = np.zeros((tile.pix, bk))
        held: dict[int, np.ndarray] = {}
        for r in range(tile.pix):
            row = rows * tile.pix + r
            if row >= tile.ids.shape[0] or tile.ids[row, tap] < 0:
                continue  # past the tile's edge, or the zero padding
            pb, within = divmod(part.slot[int(tile.ids[row, tap])], tile.pix)
            index = part.first + pb * part.channel_blocks + cb
            if index not in held:
                got = buffer.read(index * tile.block_rows, shape)
                held[index] = got if operand == "A" else got.T
            out[r] = held[index][within]
        return out if operand == "A" else out.T

    def _compute(self, step: TileStep) -> None:
        """The folds of one iteration: WS holds each B block, OS each C block."""
        a_buf, b_buf = self.a[self.slot["A"]], self.b[self.slot["B"]]
        c_buf = self.c[self.slot["C"]]
        bm, bn, bk = self.call.block
        mb, nb, kb = -(-step.mt // bm), -(-step.nt // bn), -(-step.kt // bk)
        tk, tj = self.s.tile_k, self.s.tile_j

        def a_block(i: int, k: int) -> np.ndarray:
            if self._views("A"):
                return self._view_block("A", a_buf, i, k)
            return a_buf.read(self._row(a_buf, self.a_shape, i, k, tk), self.a_shape)

        def b_block(k: int, j: int) -> np.ndarray:
            if self._views("B"):
                return self._view_block("B", b_buf, j, k)
            return b_buf.read(self._row(b_buf, self.b_shape, k, j, tj), self.b_shape)

        def c_row(i: int, j: int) -> int:
            return self._row(c_buf, self.c_shape, i, j, tj)

        if not self.systolic:
            for i in range(mb):
                for j in range(nb):
                    for k in range(kb):
                        self._issue("compute")
                        c_buf.accumulate(
                            c_row(i, j), self._product(a_block(i, k), b_block(k, j)), self.types
                        )
        elif self.s.dataflow == "WS":
            for j in range(nb):
                for k in range(kb):
                    self.preload(b_block(k, j))
                    for i in range(mb):
                        c_buf.accumulate(
                            c_row(i, j), self.compute(a_block(i, k), None, i == 0), self.types
                        )
        else:
            for i in range(mb):
                for j in range(nb):
                    self.preload(None)
                    held = self.stationary
                    for k in range(kb):
                        held = self.compute(a_block(i, k), b_block(k, j), k == 0)
                    assert held is not None
                    c_buf.accumulate(c_row(i, j), held, self.types)  # drain into the accumulator


@dataclass
class CallRun:
    """One call run on the machine: its result and the instructions it issued, by name."""

    output: np.ndarray
    counts: Counter[str]


def run_call(
    target: Target,
    call: MatmulCall,
    s: TileSchedule,
    a: np.ndarray,
    b: np.ndarray,
    types: OperandTypes = EXACT,
    bias: np.ndarray | None = None,
) -> CallRun:
    """`a[b, m, k] . b[b, k, n]` of `call` under schedule `s` (onto `bias`, [n] or [b, n], moved
    into each C tile by the target's bias move), through the modelled memories, in the numbers
    `types` (`functional.operand_types`; default float64).

    Raises SimulationError on an overrun, a read of an unwritten row, or mismatched shapes.
    """
    want_a, want_b = (call.b, call.m, call.k), (call.b, call.k, call.n)
    if a.shape != want_a or b.shape != want_b:
        raise SimulationError(
            f"%{call.node}: operands {a.shape} . {b.shape}, the call is {want_a} . {want_b}"
        )
    machine = CallMachine(target, call, s, types)
    if bias is not None:
        machine.bias = bias_rows(bias, call.b, call.n, types)
    return CallRun(machine.run(np.asarray(a, float), np.asarray(b, float)), machine.counts)


@dataclass
class MachineRun:
    """A program run on the machine: the kernel's outputs and the instructions issued."""

    outputs: dict[str, np.ndarray]
    counts: Counter[str] = field(default_factory=Counter)  # instruction -> issues, all calls
    calls: dict[int, Counter[str]] = field(default_factory=dict)  # node -> its call's issues


def trace_program(
    program: Program,
    mapping: Mapping,
    kernel: Kernel,
    target: Target,
    inputs: MappingABC[str, np.ndarray],
) -> MachineRun:
    """Run `mapping` like `functional.run_mapping`, every scheduled call on the machine."""
    for name in kernel.inputs():
        if name not in inputs:
            raise IsamapError(f"missing input '{name}' for kernel {kernel.name}")
    inputs = check_inputs(kernel, inputs)  # values of their declared types
    run = MachineRun({})
    values: list[np.ndarray] = []
    held = tensor_nodes(mapping)
    for node in mapping.nodes:
        scheduled = program.call_for(node.id)
        args = [values[i] for i in node.args]
        if node.op == "input":
            value = np.asarray(inputs[str(node.attrs["name"])], dtype=np.float64)
        elif scheduled is not None and scheduled.call.conv is not None:
            types = operand_types(target.instruction(scheduled.call.instruction), kernel)
            plan = conv_plan(target, scheduled.call.instruction, scheduled.call.conv)
            over = plan.overrun(scheduled.schedule)
            if over is not None:
                raise SimulationError(f"%{node.id}: direct convolution: {over}")
            epilogue = scheduled.call.epilogue
            x, w = args[:2]
            bias = args[2] if len(args) == 3 else None
            value, counts = run_conv_call(plan, scheduled.schedule, x, w, types, epilogue, bias)
            run.calls[node.id] = counts
            run.counts.update(counts)
        elif scheduled is not None:
            types = operand_types(target.instruction(scheduled.call.instruction), kernel)
            bias = args[2] if len(args) == 3 else None
            if scheduled.call.taps is not None:  # the taps one after another along K
                depth = scheduled.call.k // scheduled.call.taps.tap_count
                args = [*stack_taps(args[0], args[1], depth), *args[2:]]
            called = run_call(
                target, scheduled.call, scheduled.schedule, args[0], args[1], types, bias
            )
            value = called.output
            run.calls[node.id] = called.counts
            run.counts.update(called.counts)
        else:
            value = run_node(node, args, kernel, target)
        if tuple(value.shape) != tuple(node.shape):
            raise SimulationError(f"%{node.id} {node.op}: shape {value.shape} != {node.shape}")
        if node.id in held:  # a kernel tensor holds its declared type for every later reader
            value = store_outputs(kernel, {held[node.id]: value}, mapping, target)[held[node.id]]
        values.append(value)
    computed = {name: values[i] for name, i in mapping.outputs.items()}
    run.outputs = store_outputs(kernel, computed, mapping, target)
    return run


def run_program(
    program: Program,
    mapping: Mapping,
    kernel: Kernel,
    target: Target,
    inputs: MappingABC[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The kernel tensors `mapping` computes, by name, every scheduled call run on the machine
    (the same outputs as `functional.run_mapping`); `trace_program` also gives the counts."""
    return trace_program(program, mapping, kernel, target, inputs).outputs
