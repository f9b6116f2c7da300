"""Program: a Mapping with every instruction call scheduled as a loop nest over tiles.

A matrix call computes `C[b] = A[b] . B[b]` (`A` m x k, `B` k x n) with an instruction whose tile
is `R x Kb` . `Kb x C` (rows/cols/depth of one "block"). Its schedule fixes:

- the on-chip tile, in blocks: `tile_i` x `tile_k` blocks of A and `tile_k` x `tile_j` of B in the
  scratchpad, `tile_i` x `tile_j` blocks of C in the accumulator (twice each when double-buffered);
- the order of the three loops over those tiles (`loop_order`, outer to inner, over i, j, k), inside
  a loop over the batch; an operand tile is loaded when its coordinates change from one iteration
  to the next, a C tile is stored when the next iteration works on another C tile, and reloaded
  (accumulated) when the loop order comes back to a C tile already stored;
- the dataflow inside a tile: weight-stationary (WS: a K x N block held in the array, the A rows
  streamed) or output-stationary (OS: an M x N block of C held, K streamed);
- double buffering: the next tile loads while the current one computes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from isamap.ir.conv import ConvGeometry
from isamap.ir.taps import TapGeometry

__all__ = ["DATAFLOWS", "LOOP_ORDERS", "MatmulCall", "Program", "ScheduledCall", "TileSchedule"]

DATAFLOWS = ("WS", "OS")
LOOP_ORDERS = ("ijk", "ikj", "jik", "jki", "kij", "kji")


@dataclass(frozen=True)
class MatmulCall:
    """The work of one instruction call of a mapping: `b` products of m x k by k x n."""

    node: int
    instruction: str
    b: int
    m: int
    n: int
    k: int
    block: tuple[int, int, int]  # rows (M), columns (N), depth (K) of one instruction tile
    epilogue: str | None = None
    # a tap accumulation (ir/taps.py): K is the taps one after another, each padded to the
    # block's depth; one operand is the shifted views of an input, loaded with their halo once
    taps: TapGeometry | None = None
    #: A direct-convolution call (`hardware.direct_conv`): m pixels, n kernels, k channels x taps
    #: of this geometry, the input read in place.
    conv: ConvGeometry | None = None
    bias: bool = False  # accumulates onto a per-column bias row, moved in per C tile
    #: Read out scaled by `scale` and narrowed to integer type `narrow` by its store, then
    #: through the epilogue (requantization on the store: egraph/requant_rules.py).
    scale: float | None = None
    narrow: str | None = None

    @property
    def blocks(self) -> tuple[int, int, int]:
        """Blocks along M, N, K (edge blocks zero-padded)."""
        r, c, d = self.block
        return (-(-self.m // r), -(-self.n // c), -(-self.k // d))

    @property
    def macs(self) -> int:
        return self.b * self.m * self.n * self.k


@dataclass(frozen=True)
class TileSchedule:
    """How one call runs: on-chip tile in blocks, loop order, dataflow, double buffering."""

    dataflow: str
    tile_i: int
    tile_j: int
    tile_k: int
    loop_order: str = "ijk"
    double_buffer: bool = True

    def __post_init__(self) -> None:
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f"dataflow {self.dataflow!r} not in {DATAFLOWS}")
        if self.loop_order not in LOOP_ORDERS:
            raise ValueError(f"loop order {self.loop_order!r} not in {LOOP_ORDERS}")
        if min(self.tile_i, self.tile_j, self.tile_k) < 1:
            raise ValueError("tile sizes are at least one block")

    def describe(self) -> str:
        db = "double-buffered" if self.double_buffer else "single-buffered"
        return (
            f"{self.dataflow} tiles {self.tile_i}x{self.tile_j}x{self.tile_k} blocks (i x j x k), "
            f"loops {self.loop_order}, {db}"
        )


@dataclass(frozen=True)
class ScheduledCall:
    """A call with its schedule and the strategy that chose it."""

    call: MatmulCall
    schedule: TileSchedule
    strategy: str
    # the target's names: instructions by role (load, store, preload, compute, accumulate),
    # memories (in_memory, out_memory), and who applies the epilogue (epilogue_by)
    names: Mapping[str, str] = field(default_factory=dict)
    systolic: bool = True
    #: The listing, when the call's own model writes it (a direct convolution's loop nest)
    lines: tuple[str, ...] = ()

    def listing(self, prefix: str = "  ") -> list[str]:
        """The loop nest as an assembly-like listing, in the target's own names."""
        if self.lines:
            return [prefix + line for line in self.lines]
        c, s = self.call, self.schedule
        mb, nb, kb = c.blocks
        trips = {"i": -(-mb // s.tile_i), "j": -(-nb // s.tile_j), "k": -(-kb // s.tile_k)}
        r, col, d = c.block
        n = self.names
        load, store = n.get("load", "load"), n.get("store", "store")
        first = n.get("compute", c.instruction)
        again = n.get("accumulate", first)
        spad, acc = n.get("in_memory", "scratchpad"), n.get("out_memory", "accumulator")
        lines = [
            f"{prefix}; %{c.node} {c.instruction}: {c.b} x [{c.m}x{c.k}].[{c.k}x{c.n}], "
            f"{s.describe()}, chosen by {self.strategy}"
        ]
        if c.taps is not None:
            t, views = c.taps.tap_count, c.taps.operand
            lines.append(
                f"{prefix}; the sum over {t} filter taps of [{c.m}x{c.k // t}].[{c.k // t}x{c.n}]"
                f" products accumulated in {n.get('out_memory', 'the accumulator')}; {views} "
                f"tiles are shifted views of the input, loaded with their halo once"
            )
        depth = prefix
        if c.b > 1:
            lines.append(f"{depth}for b in 0..{c.b}:")
            depth += "  "
        for var in s.loop_order:
            lines.append(f"{depth}for {var}0 in 0..{trips[var]}:")
            depth += "  "
        a_blocks, b_blocks = f"{s.tile_i}x{s.tile_k}", f"{s.tile_k}x{s.tile_j}"
        lines.append(f"{depth}{load} A[i0, k0] -> {spad}  ; {a_blocks} blocks of {r}x{d}")
        lines.append(f"{depth}{load} B[k0, j0] -> {spad}  ; {b_blocks} blocks of {d}x{col}")
        if not self.systolic:
            lines.append(f"{depth}for i, j, k in the tile's blocks:")
            lines.append(f"{depth}  {first} A[i, k], B[k, j] -> {acc} C[i, j]")
        elif s.dataflow == "WS":
            lines.append(f"{depth}for j in 0..{s.tile_j}: for k in 0..{s.tile_k}:")
            lines.append(f"{depth}  {n.get('preload', 'preload')} B[k, j]")
            lines.append(f"{depth}  {first} A[0, k]; {again} A[1..{s.tile_i}, k] -> {acc} C[i, j]")
        else:
            lines.append(f"{depth}for i in 0..{s.tile_i}: for j in 0..{s.tile_j}:")
            lines.append(f"{depth}  {n.get('preload', 'preload')} C[i, j] (zero)")
            lines.append(
                f"{depth}  {first} A[i, 0], B[0, j]; {again} A[i, 1..{s.tile_k}], "
                f"B[1..{s.tile_k}, j]"
            )
        by = n.get("epilogue_by", store)
        epi = f" ({c.epilogue} applied by {by})" if c.epilogue else ""
        if c.narrow:
            then = f", then {c.epilogue}" if c.epilogue else ""
            epi = f" (scaled by {c.scale:g} and narrowed to {c.narrow}{then} by {store})"
        lines.append(f"{depth}{store} C[i0, j0]{epi} when the next iteration leaves this C tile")
        return lines


@dataclass
class Program:
    """A scheduled mapping: its matrix calls with schedules; every other node runs as mapped."""

    kernel: str
    target: str
    strategy: str
    calls: list[ScheduledCall] = field(default_factory=list)

    def call_for(self, node: int) -> ScheduledCall | None:
        return next((c for c in self.calls if c.call.node == node), None)

    def listing(self) -> str:
        lines = [f"program {self.kernel} on {self.target} (schedule {self.strategy})"]
        for sc in self.calls:
            lines.extend(sc.listing())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "kernel": self.kernel,
            "target": self.target,
            "strategy": self.strategy,
            "calls": [
                {"call": asdict(sc.call), "schedule": asdict(sc.schedule), "strategy": sc.strategy}
                for sc in self.calls
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)
