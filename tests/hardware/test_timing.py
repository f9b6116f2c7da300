"""The timing model: SCALE-Sim's compute cycles, and the tile loop's overlap of DMA and compute."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import isamap
from isamap.hardware.timing import ArrayModel, _extrapolated, _walk, call_timing, compute_cycles
from isamap.ir.program import MatmulCall, TileSchedule
from isamap.schedule.space import schedules

# (rows, cols, M, N, K, dataflow, cycles measured by SCALE-Sim 3.0.0 itself, via
# benchmarks/scalesim_compare.py; report in benchmarks/reports/scalesim/)
SCALESIM_MEASURED = [
    (16, 16, 16, 16, 16, "WS", 61),
    (16, 16, 32, 16, 48, "WS", 233),
    (16, 16, 64, 64, 64, "WS", 1759),
    (16, 16, 100, 36, 72, "WS", 2189),
    (16, 16, 17, 33, 65, "WS", 944),
    (16, 16, 128, 32, 16, "WS", 347),
    (16, 16, 1, 1, 1, "WS", 46),
    (16, 16, 8, 100, 20, "WS", 755),
    (16, 16, 16, 16, 16, "OS", 45),
    (16, 16, 32, 16, 48, "OS", 155),
    (16, 16, 64, 64, 64, "OS", 1503),
    (16, 16, 100, 36, 72, "OS", 2141),
    (16, 16, 17, 33, 65, "OS", 569),
    (16, 16, 128, 32, 16, "OS", 735),
    (16, 16, 1, 1, 1, "OS", 30),
    (16, 16, 8, 100, 20, "OS", 349),
    (32, 32, 64, 64, 64, "WS", 631),
    (32, 32, 100, 36, 72, "WS", 1163),
    (32, 32, 17, 33, 65, "WS", 665),
    (32, 32, 64, 64, 64, "OS", 503),
    (32, 32, 100, 36, 72, "OS", 1071),
    (32, 32, 17, 33, 65, "OS", 253),
    (8, 32, 100, 36, 72, "WS", 2627),
    (8, 32, 17, 33, 65, "WS", 1133),
    (8, 32, 100, 36, 72, "OS", 2859),
    (8, 32, 17, 33, 65, "OS", 617),
    (32, 8, 100, 36, 72, "WS", 2549),
    (32, 8, 17, 33, 65, "WS", 1304),
    (32, 8, 100, 36, 72, "OS", 2199),
    (32, 8, 17, 33, 65, "OS", 514),
]


@pytest.mark.parametrize("case", SCALESIM_MEASURED)
def test_compute_cycles_equal_scalesim(case: tuple[int, int, int, int, int, str, int]) -> None:
    rows, cols, m, n, k, dataflow, measured = case
    assert compute_cycles(rows, cols, m, n, k, dataflow) == measured


def test_formulas() -> None:
    # OS: ceil(M/R) ceil(N/C) folds of K + R + C - 2
    # WS: ceil(K/R) ceil(N/C) folds of M + 2R + C - 2
    assert compute_cycles(16, 16, 100, 36, 72, "OS") == 7 * 3 * (72 + 30) - 1
    assert compute_cycles(16, 16, 100, 36, 72, "WS") == 5 * 3 * (100 + 46) - 1
    with pytest.raises(ValueError):
        compute_cycles(16, 16, 1, 1, 1, "IS")


@pytest.fixture(scope="module")
def model() -> ArrayModel:
    return ArrayModel.for_instruction(isamap.load_target("gemmini"), "compute_preloaded")


@pytest.mark.parametrize("dataflow", ["WS", "OS"])
def test_one_tile_call_computes_like_scalesim(model: ArrayModel, dataflow: str) -> None:
    call = MatmulCall(0, "compute_preloaded", 1, 100, 36, 72, model.block)
    s = TileSchedule(dataflow, 7, 3, 5, "ijk", False)
    timing = call_timing(model, call, s)
    assert timing.compute_cycles == compute_cycles(16, 16, 100, 36, 72, dataflow)
    # single-buffered: load everything, compute, store
    load = (100 * 72 + 72 * 36) / 16 + 100
    store = 100 * 36 * 4 / 16 + 100
    assert timing.cycles == pytest.approx(load + timing.compute_cycles + 1 + store - 1)


def test_double_buffering_overlaps(model: ArrayModel) -> None:
    call = MatmulCall(0, "compute_preloaded", 1, 512, 512, 512, model.block)
    single = call_timing(model, call, TileSchedule("OS", 4, 4, 8, "ijk", False))
    double = call_timing(model, call, TileSchedule("OS", 4, 4, 8, "ijk", True))
    assert double.compute_cycles == single.compute_cycles
    assert double.cycles < single.cycles
    assert double.cycles >= max(double.compute_cycles, double.dma_cycles)


def test_loop_order_changes_reuse(model: ArrayModel) -> None:
    call = MatmulCall(0, "compute_preloaded", 1, 256, 256, 64, model.block)
    # K in one tile: with j innermost the A tile stays on chip across j
    ijk = call_timing(model, call, TileSchedule("OS", 2, 2, 4, "ijk", True))
    kij = call_timing(model, call, TileSchedule("OS", 2, 2, 1, "kij", True))
    assert ijk.bytes["dram"] == 256 * 64 * 8 // 8 + 64 * 256 * 8 + 256 * 256 * 4
    # k outermost: C tiles are stored and come back for every k step
    assert kij.counts["mvout"] > ijk.counts["mvout"]
    assert kij.cycles > ijk.cycles


def test_fits(model: ArrayModel) -> None:
    assert model.fits(TileSchedule("WS", 5, 5, 51, "ijk", True))
    assert not model.fits(TileSchedule("WS", 5, 5, 52, "ijk", True))
    assert not model.fits(TileSchedule("WS", 6, 6, 1, "ijk", True))  # 36 C blocks > 512 rows / 16


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 3),
    m=st.integers(1, 1200),
    n=st.integers(1, 200),
    k=st.integers(1, 600),
    pick=st.integers(0, 10_000),
)
def test_long_loops_extrapolate_from_their_steady_state(
    model: ArrayModel, b: int, m: int, n: int, k: int, pick: int
) -> None:
    call = MatmulCall(0, "compute_preloaded", b, m, n, k, model.block)
    space = [s for s in schedules(model, call) if s.tile_i * s.tile_j * s.tile_k <= 4]
    s = space[pick % len(space)]
    walked = _walk(model, call, s)
    extrapolated = _extrapolated(model, call, s, limit=1)
    assume(extrapolated is not None)  # some dimension has enough full tiles to extrapolate along
    assert extrapolated is not None
    assert extrapolated.cycles == pytest.approx(walked.cycles, rel=0.005)
    assert dict(extrapolated.counts) == dict(walked.counts)
    assert extrapolated.bytes["dram"] == pytest.approx(walked.bytes["dram"])


@pytest.mark.parametrize("dataflow", ["WS", "OS"])
@pytest.mark.parametrize("double_buffer", [True, False])
def test_extrapolation_equals_the_walk(
    model: ArrayModel, dataflow: str, double_buffer: bool
) -> None:
    call = MatmulCall(0, "compute_preloaded", 2, 1200, 300, 500, model.block)
    s = TileSchedule(dataflow, 1, 2, 3, "ijk", double_buffer)
    extrapolated = _extrapolated(model, call, s, limit=1)
    assert extrapolated is not None
    walked = _walk(model, call, s)
    assert extrapolated.cycles == pytest.approx(walked.cycles, rel=1e-9)
    assert dict(extrapolated.counts) == dict(walked.counts)
