"""Event simulation of one scheduled call, instruction by instruction: the check on `timing.py`.

Every instruction of the call's loop nest (walked by `machine.tile_steps`, the reuse rules of
`timing.call_timing`) is an event on its engine. The DMA engine moves each block at the DRAM's
bandwidth with pipelined requests (each block lands a DRAM latency after it leaves); the array
runs SCALE-Sim's folds piece by piece (WS: preload R cycles, each A block's real rows, R + C - 2 to
drain; OS: a zero preload taking no time, each K block's real depth, R + C - 2 to drain). A compute
waits for the mvins of the blocks it reads, an mvin for the readers of its buffer's previous tile,
an mvout for the fold that finished its C tile; each engine runs its events in program order.
With `by_tile` the dependencies coarsen to call_timing's (whole tiles), and the two agree exactly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from isamap.hardware.machine import CTile, TileStep, tile_steps
from isamap.hardware.timing import ArrayModel
from isamap.ir.program import MatmulCall, TileSchedule

__all__ = ["Event", "EventRun", "event_cycles", "event_run"]


@dataclass(frozen=True)
class Event:
    """One instruction (or a fold's drain) on an engine, with when it ran."""

    engine: str  # "dma" | "array"
    name: str
    start: float
    end: float


@dataclass
class EventRun:
    """What the event simulation of a call found."""

    cycles: float  # end of the last event, minus one (as SCALE-Sim and call_timing count)
    array_busy: float = 0.0  # cycles the array spent on preloads, streams and drains
    dma_busy: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)  # instruction -> issues
    events: list[Event] = field(default_factory=list)  # every event, when kept


@dataclass
class _Slot:
    """One buffer's timing state: when each block of its tile arrives, when its readers end."""

    ready: dict[tuple[int, int], float] = field(default_factory=dict)
    read_end: float = 0.0  # last reader of the tile it holds
    stored: float = 0.0  # C buffers: when the previous tile's mvout finished
    done: float = 0.0  # C buffers: end of the last fold writing it


class _Engines:
    """The DMA engine, the array, and the buffers between them, for one call."""

    def __init__(self, model: ArrayModel, s: TileSchedule, keep: bool, by_tile: bool) -> None:
        self.model, self.s, self.keep, self.by_tile = model, s, keep, by_tile
        copies = 2 if s.double_buffer else 1
        self.slots = {op: [_Slot() for _ in range(copies)] for op in "ABC"}
        self.at = {op: -1 for op in "ABC"}  # slot holding each operand's current tile
        self.c_slot: dict[tuple[int, int, int], int] = {}
        self.dma_free = self.array_free = 0.0
        self.landed = 0.0  # when the last store's data reached DRAM
        self.loaded = 0.0  # when the current iteration's last load finished
        self.done: list[float] = []  # end of each iteration's folds
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
        """A block over the DMA engine, in program order: the engine is busy for bytes over
        bandwidth (requests are pipelined); returns when its data lands, a DRAM latency later."""
        duration = nbytes / self.model.dram_bw
        self.dma_free = self._event("dma", role, max(self.dma_free, after), duration)
        return self.dma_free + self.model.dram_latency

    def array(self, role: str, duration: float, after: float) -> tuple[float, float]:
        start = max(self.array_free, after)
        self.array_free = self._event("array", role, start, duration)
        return start, self.array_free

    def take(self, op: str) -> _Slot:
        """The next buffer of `op` (alternating when double-buffered), for a new tile."""
        self.at[op] = (self.at[op] + 1) % len(self.slots[op])
        slot = self.slots[op][self.at[op]]
        slot.ready = {}
        return slot

    def current(self, op: str) -> _Slot:
        return self.slots[op][self.at[op]]


def _blocks(extent: int, block: int) -> list[int]:
    """Real sizes of the blocks covering `extent`."""
    return [min(block, extent - start) for start in range(0, extent, block)]


def _loads(e: _Engines, step: TileStep) -> None:
    """The iteration's mvins: A, B, then partial C sums, as one group (one latency)."""
    bm, bn, bk = e.model.block
    issued = e.run.counts[e.model.names.get("load", "load")]
    rows, depth, cols = _blocks(step.mt, bm), _blocks(step.kt, bk), _blocks(step.nt, bn)
    tile_free = 0.0
    if e.by_tile:  # call_timing's rule: the buffers free when iteration t - copies has finished
        back = step.index - len(e.slots["A"])
        tile_free = e.done[back] if back >= 0 else 0.0
    operands = (("A", step.load_a, rows, depth), ("B", step.load_b, depth, cols))
    for op, due, outer, inner in operands:
        if not due:
            continue
        slot = e.take(op)
        free = max(slot.read_end, tile_free)  # the readers of the tile it held are done
        for r, nr in enumerate(outer):
            for c, nc in enumerate(inner):
                slot.ready[(r, c)] = e.dma("load", nr * nc * e.model.in_bytes, free)
    if step.new_c:
        slot = e.take("C")
        e.c_slot[(step.batch, step.i0, step.j0)] = e.at["C"]
        for r, nr in enumerate(rows):
            for c, nc in enumerate(cols):
                if step.reload_c:
                    nbytes = nr * nc * e.model.acc_bytes
                    slot.ready[(r, c)] = e.dma("load", nbytes, max(slot.stored, tile_free))
                else:  # zeros: ready once the buffer's previous tile is out
                    slot.ready[(r, c)] = slot.stored
    loaded_any = e.run.counts[e.model.names.get("load", "load")] > issued
    # call_timing's rule: the tile is on chip when its last block lands (or, with nothing to
    # load, when the engine and the buffers are free)
    e.loaded = e.dma_free + e.model.dram_latency if loaded_any else max(e.dma_free, tile_free)


def _store(e: _Engines, tile: CTile) -> None:
    """mvout every block of a C tile once the fold that finished it has drained."""
    bm, bn, _ = e.model.block
    slot = e.slots["C"][e.c_slot[tile.key]]
    for nr in _blocks(tile.mt, bm):
        for nc in _blocks(tile.nt, bn):
            e.landed = e.dma("store", nr * nc * e.model.out_bytes, slot.done)
            slot.stored = e.dma_free  # streamed out of the accumulator: the buffer is free


def _folds(e: _Engines, step: TileStep) -> None:
    """The iteration's folds on the array, each waiting for the blocks it reads."""
    bm, bn, bk = e.model.block
    a, b, c = e.current("A"), e.current("B"), e.current("C")
    rows, depth, cols = _blocks(step.mt, bm), _blocks(step.kt, bk), _blocks(step.nt, bn)
    drain = e.model.rows + e.model.cols - 2
    if e.s.dataflow == "WS":
        for j in range(len(cols)):
            for k in range(len(depth)):
                after = max(b.ready[(k, j)], e.loaded if e.by_tile else 0.0)
                _, b.read_end = e.array("preload", e.model.rows, after)
                for i, nr in enumerate(rows):
                    role = "compute" if i == 0 else "accumulate"
                    after = max(a.ready[(i, k)], c.ready[(i, j)])
                    _, a.read_end = e.array(_role(e, role), nr, after)
                _, c.done = e.array("drain", drain, 0.0)
    else:
        for i in range(len(rows)):
            for j in range(len(cols)):
                e.array("preload", 0, 0.0)
                for k, nk in enumerate(depth):
                    role = "compute" if k == 0 else "accumulate"
                    after = max(a.ready[(i, k)], b.ready[(k, j)], c.ready[(i, j)])
                    after = max(after, e.loaded if e.by_tile else 0.0)
                    _, a.read_end = e.array(_role(e, role), nk, after)
                    b.read_end = a.read_end
                _, c.done = e.array("drain", drain, 0.0)


def _role(e: _Engines, role: str) -> str:
    return role if "accumulate" in e.model.names else "compute"


def event_run(
    model: ArrayModel,
    call: MatmulCall,
    s: TileSchedule,
    by_tile: bool = False,
    keep_events: bool = False,
) -> EventRun:
    """Simulate `call` under `s` event by event; `keep_events` keeps every event in the result.

    `by_tile` coarsens the dependencies to call_timing's: an iteration's folds wait for all of its
    loads, and a load for the iteration that last used its buffer (`t - 1`, or `t - 2` when
    double-buffered) to finish, drain included.
    """
    e = _Engines(model, s, keep_events, by_tile)
    steps, last = tile_steps(call, s)
    for step in steps:
        if step.leave is not None and not s.double_buffer:
            _store(e, step.leave)  # single buffers: the store goes before the next loads
        _loads(e, step)
        if step.leave is not None and s.double_buffer:
            _store(e, step.leave)  # double-buffered: prefetch first, then store
        _folds(e, step)
        e.done.append(e.array_free)
    if last is not None:
        _store(e, last)
    e.run.cycles = max(e.landed, e.array_free) - 1  # SCALE-Sim ends a run one cycle early
    return e.run


def event_cycles(model: ArrayModel, call: MatmulCall, s: TileSchedule) -> float:
    """Cycles of `call` under schedule `s`, every instruction an event on its engine."""
    return event_run(model, call, s).cycles
