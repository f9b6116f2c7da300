"""Search strategies for a matrix call's schedule: heuristic, exhaustive, random. Chosen by name
through `registry.py`, where a vendor library's baseline (every speedup is against it) registers."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

from isamap.hardware.target import Target
from isamap.hardware.timing import ArrayModel, call_timing
from isamap.ir.errors import IsamapError, SourceLoc
from isamap.ir.program import LOOP_ORDERS, MatmulCall, TileSchedule
from isamap.schedule.space import candidate_tiles, lower_bound, schedules

__all__ = ["STRATEGIES", "Strategy"]

#: A strategy: (array model, call, target) -> the schedule it picks.
Strategy = Callable[[ArrayModel, MatmulCall, Target], TileSchedule]

_RANDOM_SAMPLES = 64
_CHEAP_WALK = 2_000  # a schedule with fewer tile iterations is always timed in full
_HEURISTIC_MEASURED = 8  # candidates the heuristic times in full (best lower bounds)


def _cycles(model: ArrayModel, call: MatmulCall, s: TileSchedule) -> float:
    return call_timing(model, call, s).cycles


def _iterations(call: MatmulCall, s: TileSchedule) -> int:
    mb, nb, kb = call.blocks
    return call.b * -(-mb // s.tile_i) * -(-nb // s.tile_j) * -(-kb // s.tile_k)


def _none_fit(model: ArrayModel, call: MatmulCall, target: Target) -> IsamapError:
    """No schedule fits: say which memory cannot hold one block of each operand."""
    smallest = TileSchedule(model.dataflows[0], 1, 1, 1, "ijk", double_buffer=False)
    over = model.layout.overruns(smallest)
    why = "; ".join(
        f"'{o.memory}' has {o.rows} rows of {o.row_bytes} bytes, one "
        f"{'/'.join(label for label, _ in o.buffers)} block needs {o.needed}"
        for o in over
    )
    return IsamapError(
        f"no schedule of {call.instruction} fits on chip, not even one {call.block} block per "
        f"operand: {why or 'the memories are too small'}",
        SourceLoc(target.path),
    )


def _best(
    model: ArrayModel,
    call: MatmulCall,
    target: Target,
    options: list[TileSchedule],
    measure: int | None = None,
) -> TileSchedule:
    """The fastest of `options` that fit, timed in full; with `measure`, branch and bound: the
    options in order of their lower bound, timed until no bound can beat the best so far, at
    most `measure` of them (a schedule cheap to time does not count against it)."""
    options = [s for s in dict.fromkeys(options) if model.fits(s)]
    if not options:
        raise _none_fit(model, call, target)
    if measure is None:
        return min(options, key=lambda s: (_cycles(model, call, s), s.loop_order, s.dataflow))
    ranked = sorted(options, key=lambda s: lower_bound(model, call, s))
    best: tuple[float, str, str] | None = None
    chosen = ranked[0]
    timed = 0
    for s in ranked:
        if best is not None and lower_bound(model, call, s) >= best[0]:
            break
        if timed >= measure and _iterations(call, s) > _CHEAP_WALK:
            continue
        timed += 1
        key = (_cycles(model, call, s), s.loop_order, s.dataflow)
        if best is None or key < best:
            best, chosen = key, s
    return chosen


def exhaustive(model: ArrayModel, call: MatmulCall, target: Target) -> TileSchedule:
    """Every fitting schedule, best first by lower bound; stops when no bound can beat the best."""
    ranked = sorted(
        ((lower_bound(model, call, s), i, s) for i, s in enumerate(schedules(model, call))),
        key=lambda t: (t[0], t[1]),
    )
    if not ranked:
        raise _none_fit(model, call, target)
    best, best_cycles = ranked[0][2], float("inf")
    for bound, _, s in ranked:
        if bound >= best_cycles:
            break
        cycles = _cycles(model, call, s)
        if cycles < best_cycles:
            best, best_cycles = s, cycles
    return best


def heuristic(model: ArrayModel, call: MatmulCall, target: Target) -> TileSchedule:
    """Largest balanced tiles that fit, double-buffered (single-buffered only if nothing
    double-buffered fits); a few loop orders and both dataflows measured, the fastest kept."""
    for double_buffer in (True, False):
        options = _heuristic_options(model, call, double_buffer)
        if options:
            return _best(model, call, target, options, measure=_HEURISTIC_MEASURED)
    raise _none_fit(model, call, target)


def _heuristic_options(model: ArrayModel, call: MatmulCall, db: bool) -> list[TileSchedule]:
    """The heuristic's candidates with double buffering `db`: per dataflow and loop order, for
    each tile height the widest C tile that fits with the deepest K tile; the largest balanced
    C tile with K cut in pieces; and all of K on chip with a smaller output tile."""
    mb, nb, kb = call.blocks
    options: list[TileSchedule] = []

    # the largest tile that fits is the first that does from the top: no fit test is spent
    # on the smaller ones
    def deepest(df: str, ti: int, tj: int, order: str) -> int | None:
        tiles = reversed(candidate_tiles(kb))
        return next((t for t in tiles if model.fits(TileSchedule(df, ti, tj, t, order, db))), None)

    def widest(df: str, ti: int, order: str) -> int | None:
        tiles = reversed(candidate_tiles(nb))
        return next((t for t in tiles if model.fits(TileSchedule(df, ti, t, 1, order, db))), None)

    for df, order in itertools.product(model.dataflows, ("ijk", "jik", "ikj", "jki")):
        best_ij: tuple[int, int] | None = None
        for ti in candidate_tiles(mb):
            found = widest(df, ti, order)
            if found is None:
                break  # taller tiles need more memory still
            tj = found
            tk = deepest(df, ti, tj, order)
            if tk is not None:
                options.append(TileSchedule(df, ti, tj, tk, order, db))
            key = (ti * tj, -abs(ti - tj))
            if best_ij is None or key > (best_ij[0] * best_ij[1], -abs(best_ij[0] - best_ij[1])):
                best_ij = (ti, tj)
        if best_ij is None:
            continue
        ti, tj = best_ij
        tk = deepest(df, ti, tj, order) or 1
        # K in 2, 4, 8 pieces: a call of few tiles overlaps its loads with compute only then
        for pieces in (2, 4, 8):
            if tk >= pieces:
                options.append(TileSchedule(df, ti, tj, -(-tk // pieces), order, db))
        # a second candidate: all of K on chip with a smaller output tile, for operand reuse
        for ti2 in reversed(candidate_tiles(mb)):
            s2 = TileSchedule(df, ti2, tj, kb, order, db)
            if model.fits(s2):
                options.append(s2)
                break
    return options


def random_search(model: ArrayModel, call: MatmulCall, target: Target) -> TileSchedule:
    """The best of a fixed number of random fitting schedules (seeded by the call's shape)."""
    rng = random.Random(hash((call.b, call.m, call.n, call.k)) & 0xFFFF_FFFF)
    mb, nb, kb = call.blocks
    options: list[TileSchedule] = []
    tries = 0
    while len(options) < _RANDOM_SAMPLES and tries < 50 * _RANDOM_SAMPLES:
        tries += 1
        s = TileSchedule(
            rng.choice(model.dataflows),
            rng.choice(candidate_tiles(mb)),
            rng.choice(candidate_tiles(nb)),
            rng.choice(candidate_tiles(kb)),
            rng.choice(LOOP_ORDERS),
            rng.random() < 0.5,
        )
        if model.fits(s):
            options.append(s)
    if not options:
        options.append(TileSchedule(model.dataflows[0], 1, 1, 1, "ijk", False))
    return _best(model, call, target, options)


STRATEGIES: dict[str, Strategy] = {
    "heuristic": heuristic,
    "exhaustive": exhaustive,
    "random": random_search,
}
