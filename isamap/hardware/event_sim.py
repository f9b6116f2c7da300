"""Event simulation of one scheduled call, block by block: the independent check on `timing.py`.

Every instruction of the call's loop nest (walked by `machine.tile_steps`, the reuse rules of
`timing.call_timing`) is an event on its engine, and each event waits for exactly what it reads,
as the unit's mechanisms (isamap/targets/README.md, "Timing mechanisms") allow:

- one DMA engine moves every block at the DRAM's bandwidth, loads and stores in program order;
  a block lands one DRAM latency after it leaves, and with a queue depth of d a move waits until
  the one d moves earlier (in its queue) has landed;
- each array (`count` of them, folds dealt out in turn) runs folds: WS preloads a weight block
  (`fill` cycles) then streams each A block's real rows; OS streams each K block's real depth
  into a held C block; a vector unit issues each block. Without double-buffered PEs a fold's
  drain holds the array; with them the next preload runs under the current stream (once the
  fold before has streamed) and only the results wait for the drain;
- decoupled queues: loads go out in the order the folds use them, a fold's stream waits for its
  own blocks, and a load for the readers of its buffer's previous tile; otherwise a tile's folds
  wait for all of its loads, and its loads for the iteration `copies` back to finish;
- a C tile's mvouts wait for the fold that finished it, and free its buffer as they stream out;
- a call onto a per-column bias moves the bias row into each new C tile, one move per
  accumulator block (the tile's one row of bytes shared among them), before the folds that
  accumulate onto it;
- a tap accumulation's operand tile (`ir/taps.py`) moves its distinct input pixels once, in the
  moves `timing.tap_move` counts, and each of its blocks is ready when its share has landed.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from isamap.hardware.machine import CTile, TileStep, tile_steps
from isamap.hardware.timing import ArrayModel, tap_move
from isamap.ir.program import MatmulCall, TileSchedule

__all__ = ["Event", "EventRun", "event_cycles", "event_run"]


@dataclass(frozen=True)
class Event:
    """One instruction (or a fold's drain) on an engine, with when it ran."""

    engine: str  # "dma" | "array" ("array1", ... with several units; "array.preload" for the
    # shadow registers of double-buffered PEs)
    name: str
    start: float
    end: float


@dataclass
class EventRun:
    """What the event simulation of a call found."""

    cycles: float  # end of the last event, minus one (as SCALE-Sim and call_timing count)
    array_busy: float = 0.0  # cycles the arrays spent on preloads, streams and drains
    dma_busy: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)  # instruction -> issues
    events: list[Event] = field(default_factory=list)  # every event, when kept


@dataclass
class _Slot:
    """One buffer's timing state: when each block of its tile arrives, when its readers end."""

    ready: dict[tuple[int, int], float] = field(default_factory=dict)
    read_end: float = 0.0  # last reader of the tile it holds
    stored: float = 0.0  # C buffers: when the previous tile's mvout finished
    done: float = 0.0  # C buffers: when the last fold writing it has its results


@dataclass
class _Array:
    """One matrix (or vector) unit's timing state."""

    free: float = 0.0  # end of its last stream (its last drain, when folds do not pipeline)
    stream_start: float = -1e30  # start of its last fold's stream
    preload_free: float = 0.0  # end of its last preload


class _Engines:
    """The DMA engine, the arrays, and the buffers between them, for one call."""

    def __init__(self, model: ArrayModel, call: MatmulCall, s: TileSchedule, keep: bool) -> None:
        self.model, self.call, self.s, self.keep = model, call, s, keep
        copies = 2 if s.double_buffer else 1
        self.slots = {op: [_Slot() for _ in range(copies)] for op in "ABC"}
        self.at = {op: -1 for op in "ABC"}  # slot holding each operand's current tile
        self.c_slot: dict[tuple[int, int, int], int] = {}
        self.dma_free = 0.0
        self.in_flight: dict[str, deque[float]] = {"load": deque(), "store": deque()}
        self.arrays = [_Array() for _ in range(model.count)]
        self.next_array = 0
        self.landed = 0.0  # when the last store's data reached DRAM
        self.loaded = 0.0  # when the current iteration's last load landed
        self.done: list[float] = []  # when each iteration's folds stopped reading
        self.results = 0.0  # when the last fold's results are in the accumulator
        self.run = EventRun(0.0)

    def _event(self, engine: str, role: str, start: float, duration: float) -> float:
        name = self.model.names.get(role, role)
        if role != "drain":
            self.run.counts[name] += 1
        if engine == "dma":
            self.run.dma_busy += duration
        else:
            self.run.array_busy += duration
        if self.keep:
            self.run.events.append(Event(engine, name, start, start + duration))
        return start + duration

    def dma(self, role: str, nbytes: float, after: float) -> float:
        """A block over the DMA engine, in program order, within its queue's depth; returns when
        its data lands, a DRAM latency after it leaves. A bias row goes in the load queue."""
        queued = "store" if role == "store" else "load"
        depth = self.model.load_depth if queued == "load" else self.model.store_depth
        queue = self.in_flight[queued]
        start = max(self.dma_free, after)
        if depth and len(queue) >= depth:
            start = max(start, queue.popleft())
        duration = nbytes / self.model.dram_bw
        self.dma_free = self._event("dma", role, start, duration)
        land = self.dma_free + self.model.dram_latency
        if depth:
            queue.append(land)
        return land

    def take(self, op: str) -> _Slot:
        """The next buffer of `op` (alternating when double-buffered), for a new tile."""
        self.at[op] = (self.at[op] + 1) % len(self.slots[op])
        slot = self.slots[op][self.at[op]]
        slot.ready = {}
        return slot

    def current(self, op: str) -> _Slot:
        return self.slots[op][self.at[op]]

    def array(self) -> tuple[int, _Array]:
        """The unit the next fold goes to (in turn)."""
        index = self.next_array
        self.next_array = (index + 1) % len(self.arrays)
        return index, self.arrays[index]


def _blocks(extent: int, block: int) -> list[int]:
    """Real sizes of the blocks covering `extent`."""
    return [min(block, extent - start) for start in range(0, extent, block)]


def _load_order(e: _Engines, step: TileStep) -> list[tuple[str, int, int]]:
    """(operand, block row, block column) of the iteration's loads, in issue order: A, B, then
    partial C sums; with decoupled queues, in the order the folds first read them."""
    bm, bn, bk = e.model.block
    rows, depth, cols = _blocks(step.mt, bm), _blocks(step.kt, bk), _blocks(step.nt, bn)
    want = {"A": step.load_a, "B": step.load_b, "C": step.reload_c or _bias_now(e, step)}
    if not e.model.decoupled:
        out = [("A", r, c) for r in range(len(rows)) for c in range(len(depth))]
        out += [("B", r, c) for r in range(len(depth)) for c in range(len(cols))]
        out += [("C", r, c) for r in range(len(rows)) for c in range(len(cols))]
        return [x for x in out if want[x[0]]]
    seen: set[tuple[str, int, int]] = set()
    out = []

    def need(op: str, r: int, c: int) -> None:
        if want[op] and (op, r, c) not in seen:
            seen.add((op, r, c))
            out.append((op, r, c))

    if e.model.systolic and e.s.dataflow == "WS":
        for j in range(len(cols)):
            for k in range(len(depth)):
                need("B", k, j)
                for i in range(len(rows)):
                    need("A", i, k)
                    need("C", i, j)
    else:
        for i in range(len(rows)):
            for j in range(len(cols)):
                need("C", i, j)
                for k in range(len(depth)):
                    need("A", i, k)
                    need("B", k, j)
    return out


def _bias_now(e: _Engines, step: TileStep) -> bool:
    """The step starts a C tile that accumulates onto its bias row (not one coming back)."""
    return e.call.bias and step.new_c and not step.reload_c


def _tap_moves(e: _Engines, op: str, step: TileStep) -> tuple[float, int] | None:
    """(bytes, moves) of the step's tile of `op` when it is a tap accumulation's views."""
    taps = e.call.taps
    if taps is None or taps.operand != op:
        return None
    bm, bn, bk = e.model.block
    ti, tj, tk = e.s.tile_i * bm, e.s.tile_j * bn, e.s.tile_k * bk
    start, length = (step.i0 * ti, step.mt) if op == "A" else (step.j0 * tj, step.nt)
    return tap_move(e.call, e.model, start, length, step.k0 * tk, step.kt)


def _loads(e: _Engines, step: TileStep) -> None:
    """The iteration's mvins, each waiting for its buffer to be free."""
    bm, bn, bk = e.model.block
    rows, depth, cols = _blocks(step.mt, bm), _blocks(step.kt, bk), _blocks(step.nt, bn)
    tile_free = 0.0
    if not e.model.decoupled:  # the buffers free when iteration t - copies has finished
        back = step.index - len(e.slots["A"])
        tile_free = e.done[back] if back >= 0 else 0.0
    slots: dict[str, _Slot] = {}
    free: dict[str, float] = {}
    for op, due in (("A", step.load_a), ("B", step.load_b)):
        if due:
            slots[op] = e.take(op)
            free[op] = max(slots[op].read_end, tile_free)  # the readers of its old tile are done
    bias = _bias_now(e, step)
    if step.new_c:
        slots["C"] = e.take("C")
        e.c_slot[(step.batch, step.i0, step.j0)] = e.at["C"]
        free["C"] = max(slots["C"].stored, tile_free)
        if not step.reload_c and not bias:  # zeros: ready once the previous tile is out
            for r in range(len(rows)):
                for c in range(len(cols)):
                    slots["C"].ready[(r, c)] = slots["C"].stored
    sizes = {
        "A": (rows, depth, e.model.in_bytes),
        "B": (depth, cols, e.model.in_bytes),
        "C": (rows, cols, e.model.acc_bytes),
    }
    order = _load_order(e, step)
    # a tap operand's tile: its moves dealt out over its blocks in the order they are wanted
    taps = {op: tile for op in "AB" if (tile := _tap_moves(e, op, step)) is not None}
    wanted = Counter(op for op, _, _ in order)
    sent: Counter[str] = Counter()
    issued: Counter[str] = Counter()
    landed: dict[str, float] = {}
    for op, r, c in order:
        outer, inner, elem = sizes[op]
        if op in taps:
            tile_bytes, moves = taps[op]
            sent[op] += 1
            upto = -(-sent[op] * moves // wanted[op])  # moves issued once this block is in
            while issued[op] < upto:
                issued[op] += 1
                landed[op] = e.dma("load", tile_bytes / moves, free[op])
            slots[op].ready[(r, c)] = landed.get(op, free[op])
        elif op == "C" and bias:  # the bias row: its bytes shared by the tile's blocks
            role = "bias" if "bias" in e.model.names else "load"
            slots[op].ready[(r, c)] = e.dma(role, inner[c] * elem / len(outer), free[op])
        else:
            slots[op].ready[(r, c)] = e.dma("load", outer[r] * inner[c] * elem, free[op])
    # without decoupled queues a tile is on chip when its last block lands (or, with nothing
    # to load, when the engine and the buffers are free)
    if any(issued.values()) or any(op not in taps for op, _, _ in order):
        e.loaded = e.dma_free + e.model.dram_latency
    else:
        e.loaded = max(e.dma_free, tile_free)


def _store(e: _Engines, tile: CTile) -> None:
    """mvout every block of a C tile once the fold that finished it has its results."""
    bm, bn, _ = e.model.block
    slot = e.slots["C"][e.c_slot[tile.key]]
    for nr in _blocks(tile.mt, bm):
        for nc in _blocks(tile.nt, bn):
            e.landed = e.dma("store", nr * nc * e.model.out_bytes, slot.done)
            slot.stored = e.dma_free  # streamed out of the accumulator: the buffer is free


def _fold(
    e: _Engines,
    weights: float,
    pieces: list[tuple[float, float]],
    reads: list[_Slot],
    c: _Slot,
) -> None:
    """One fold on the next array: its stationary block ready at `weights` (WS; None-like 0
    otherwise), then `pieces` (ready time, stream cycles) streamed in order."""
    m = e.model
    index, u = e.array()
    engine = "array" if index == 0 else f"array{index}"
    fill = m.fill_of(e.s.dataflow)
    gap = m.fill if m.systolic else 0.0
    if m.pipelined:
        # the preload goes into the shadow registers once the fold before has begun streaming
        begin = max(weights, u.preload_free, u.stream_start)
        # the preload shifts into the shadow registers: its own path, beside the stream
        if m.systolic:
            begin = e._event(f"{engine}.preload", "preload", begin, fill)
        u.preload_free = begin
        at = max(begin, u.free, u.stream_start + gap)
    else:
        begin = max(weights, u.free)
        at = e._event(engine, "preload", begin, fill) if m.systolic else begin
    first = True
    for ready, cycles in pieces:
        start = max(at, ready)
        if first:
            u.stream_start = start
        role = "compute" if first or "accumulate" not in m.names else "accumulate"
        if not m.systolic:
            role = "compute"
        at = e._event(engine, role, start, cycles)
        first = False
    for slot in reads:
        slot.read_end = max(slot.read_end, at)
    if m.pipelined:
        u.free = at
        c.done = max(c.done, at + m.drain)
    else:
        u.free = e._event(engine, "drain", at, m.drain) if m.drain else at
        c.done = max(c.done, u.free)
    e.results = max(e.results, c.done)


def _folds(e: _Engines, step: TileStep) -> None:
    """The iteration's folds, each waiting for the blocks it reads."""
    m = e.model
    bm, bn, bk = m.block
    a, b, c = e.current("A"), e.current("B"), e.current("C")
    rows, depth, cols = _blocks(step.mt, bm), _blocks(step.kt, bk), _blocks(step.nt, bn)
    gate = 0.0 if m.decoupled else e.loaded
    row_cycles, k_cycles = m.stream_cycles / bm, m.stream_cycles / bk
    if not m.systolic:  # one issue per block, i, j, then k
        for i in range(len(rows)):
            for j in range(len(cols)):
                for k in range(len(depth)):
                    ready = max(a.ready[(i, k)], b.ready[(k, j)], c.ready[(i, j)], gate)
                    _fold(e, 0.0, [(ready, m.stream_cycles)], [a, b], c)
        return
    if e.s.dataflow == "WS":
        for j in range(len(cols)):
            for k in range(len(depth)):
                pieces = [
                    (max(a.ready[(i, k)], c.ready[(i, j)], gate), nr * row_cycles)
                    for i, nr in enumerate(rows)
                ]
                _fold(e, max(b.ready[(k, j)], gate), pieces, [a, b], c)
    else:
        for i in range(len(rows)):
            for j in range(len(cols)):
                pieces = [
                    (
                        max(a.ready[(i, k)], b.ready[(k, j)], c.ready[(i, j)], gate),
                        nk * k_cycles,
                    )
                    for k, nk in enumerate(depth)
                ]
                _fold(e, 0.0, pieces, [a, b], c)


def event_run(
    model: ArrayModel, call: MatmulCall, s: TileSchedule, keep_events: bool = False
) -> EventRun:
    """Simulate `call` under `s` event by event; `keep_events` keeps every event in the result."""
    e = _Engines(model, call, s, keep_events)
    steps, last = tile_steps(call, s)
    for step in steps:
        if step.leave is not None and not s.double_buffer:
            _store(e, step.leave)  # single buffers: the store goes before the next loads
        _loads(e, step)
        if step.leave is not None and s.double_buffer:
            _store(e, step.leave)  # double-buffered: prefetch first, then store
        _folds(e, step)
        e.done.append(max(u.free for u in e.arrays))
    if last is not None:
        _store(e, last)
    end = max(e.landed, e.results, max(u.free for u in e.arrays))
    e.run.cycles = end - 1  # SCALE-Sim ends a run one cycle early
    return e.run


def event_cycles(model: ArrayModel, call: MatmulCall, s: TileSchedule) -> float:
    """Cycles of `call` under schedule `s`, every instruction an event on its engine."""
    return event_run(model, call, s).cycles
