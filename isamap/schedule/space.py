"""The space of tile schedules for one matrix call, and a lower bound on any schedule's cycles.

Tile sizes worth trying are, per dimension, the smallest tile giving each possible trip count
(`ceil(blocks / trips)`): any other size has the same trips and more padding. The bound (each
engine must at least do its own work) lets exhaustive search skip most of the space.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from isamap.hardware.timing import ArrayModel
from isamap.ir.program import LOOP_ORDERS, MatmulCall, TileSchedule

__all__ = ["candidate_tiles", "lower_bound", "schedules"]


def candidate_tiles(blocks: int) -> list[int]:
    """Tile sizes (in blocks) that give each trip count with the least padding, ascending."""
    return sorted({-(-blocks // trips) for trips in range(1, blocks + 1)})


def schedules(
    model: ArrayModel,
    call: MatmulCall,
    dataflows: tuple[str, ...] | None = None,
    orders: tuple[str, ...] = LOOP_ORDERS,
) -> Iterator[TileSchedule]:
    """Every schedule of the space that fits on chip (dataflows: the unit's, by default)."""
    dataflows = dataflows or model.dataflows
    mb, nb, kb = call.blocks
    for db in (True, False):
        for ti, tj in itertools.product(candidate_tiles(mb), candidate_tiles(nb)):
            for tk in candidate_tiles(kb):
                probe = TileSchedule(dataflows[0], ti, tj, tk, orders[0], db)
                if not model.fits(probe):
                    break  # larger tk only needs more scratchpad
                for df in dataflows:
                    for order in orders:
                        yield TileSchedule(df, ti, tj, tk, order, db)


def _loads(order: str, trips: dict[str, int], uses: str) -> int:
    """How many times an operand tile indexed by `uses` is (re)loaded under `order`."""
    moving = [order.index(v) for v in uses if trips[v] > 1]  # a loop of one trip moves nothing
    if not moving:
        return 1
    innermost = max(moving)
    count = 1
    for v in order[: innermost + 1]:
        count *= trips[v]
    return count


def _dim_classes(total: int, tile: int) -> list[tuple[int, int]]:
    """(extent, count) of the full tiles and of the edge tile along one dimension."""
    full, edge = divmod(total, tile)
    out = [(tile, full)] if full else []
    if edge:
        out.append((edge, 1))
    return out


def lower_bound(model: ArrayModel, call: MatmulCall, s: TileSchedule) -> float:
    """Cycles no run of `s` can beat: the larger of the array's and the DMA engine's own work."""
    bm, bn, bk = model.block
    ti, tj, tk = s.tile_i * bm, s.tile_j * bn, s.tile_k * bk
    compute = 0.0
    for (mt, cm), (nt, cn), (kt, ck) in itertools.product(
        _dim_classes(call.m, ti), _dim_classes(call.n, tj), _dim_classes(call.k, tk)
    ):
        compute += cm * cn * ck * model.tile_busy(mt, nt, kt, s.dataflow)
    compute *= call.b
    if model.pipelined:  # a run's first preload and last drain, once
        compute += model.fill_of(s.dataflow) + model.drain
    mb, nb, kb = call.blocks
    trips = {"i": -(-mb // s.tile_i), "j": -(-nb // s.tile_j), "k": -(-kb // s.tile_k)}
    full = trips["i"] * trips["k"], trips["k"] * trips["j"], trips["i"] * trips["j"]
    a = call.m * call.k * model.in_bytes * _loads(s.loop_order, trips, "ik") / full[0]
    b = call.k * call.n * model.in_bytes * _loads(s.loop_order, trips, "kj") / full[1]
    c = call.m * call.n * model.out_bytes * _loads(s.loop_order, trips, "ij") / full[2]
    if call.taps is not None:  # the views: every input pixel they read comes in at least once
        views = call.taps
        least = views.pixels(0, views.row_count, 0, views.tap_count) * views.channels
        if views.operand == "A":
            a = least * model.in_bytes
        else:
            b = least * model.in_bytes
    dma = call.b * (a + b + c) / model.dram_bw
    lat = model.dram_latency
    # the array cannot start before the first tile has landed, and the last C tile leaves only
    # after the array is done; the DMA engine's last write lands a latency after it leaves
    first = min(ti, call.m) * min(tk, call.k) + min(tk, call.k) * min(tj, call.n)
    first_load = first * model.in_bytes / model.dram_bw + lat
    if model.decoupled or call.taps is not None:  # the first fold waits for its own blocks
        first_load = lat  # only (a tap tile may be smaller than its rows x depth): one latency
    ti, tj = s.tile_i * bm, s.tile_j * bn
    last_c = (call.m - (trips["i"] - 1) * ti) * (call.n - (trips["j"] - 1) * tj)  # the edge
    last_store = last_c * model.out_bytes / model.dram_bw + lat
    return max(first_load + compute + last_store, dma + lat) - 1
