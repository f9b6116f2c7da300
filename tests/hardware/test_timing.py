"""The timing model: SCALE-Sim's compute cycles per fold, the unit's mechanisms (pipelined folds,
decoupled queues, queue depths, issue rates), and the tile loop's overlap of DMA and compute."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import isamap
from isamap.hardware import timing
from isamap.hardware.event_sim import event_run
from isamap.hardware.matrix_form import matrix_form
from isamap.hardware.target_file import target_path
from isamap.hardware.timing import ArrayModel, _extrapolated, _walk, call_timing, compute_cycles
from isamap.ir.program import MatmulCall, TileSchedule
from isamap.schedule.scheduler import best_call
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


def _per_fold(model: ArrayModel) -> ArrayModel:
    """The same array without its mechanisms: every fold pays fill and drain (SCALE-Sim)."""
    return dataclasses.replace(
        model, double_buffered=False, decoupled=False, load_depth=0, store_depth=0
    )


@pytest.mark.parametrize("dataflow", ["WS", "OS"])
def test_one_tile_call_computes_like_scalesim(model: ArrayModel, dataflow: str) -> None:
    # without double-buffered PEs every fold is SCALE-Sim's fold
    plain = _per_fold(model)
    call = MatmulCall(0, "compute_preloaded", 1, 100, 36, 72, model.block)
    s = TileSchedule(dataflow, 7, 3, 5, "ijk", False)
    timing = call_timing(plain, call, s)
    assert timing.compute_cycles == compute_cycles(16, 16, 100, 36, 72, dataflow)
    # single-buffered: load everything, compute, store
    load = (100 * 72 + 72 * 36) / 16 + 100
    store = 100 * 36 * 4 / 16 + 100
    assert timing.cycles == pytest.approx(load + timing.compute_cycles + 1 + store - 1)


@pytest.mark.parametrize("dataflow", ["WS", "OS"])
@pytest.mark.parametrize(("m", "n", "k"), [(100, 16, 16), (16, 16, 16), (1, 1, 1), (37, 9, 16)])
def test_a_single_fold_run_is_scalesims_fold(
    model: ArrayModel, dataflow: str, m: int, n: int, k: int
) -> None:
    # one fold: nothing to pipeline, so the mechanisms change nothing and SCALE-Sim holds
    call = MatmulCall(0, "compute_preloaded", 1, m, n, k, model.block)
    if dataflow == "OS" and m > 16:
        call = MatmulCall(0, "compute_preloaded", 1, 16, n, m, model.block)
    assert model.tile_compute(call.m, call.n, call.k, dataflow) - 1 == compute_cycles(
        16, 16, call.m, call.n, call.k, dataflow
    )


def test_back_to_back_weight_blocks_pay_fill_and_drain_once(model: ArrayModel) -> None:
    # 16 weight blocks (K = N = 64) each streaming 64 rows of A: Gemmini's PEs preload the next
    # block under the current one, so the tile pays the 16-cycle fill and the 30-cycle drain
    # once; without the second register set every block pays them (SCALE-Sim per fold)
    m, n, k = 64, 64, 64
    assert model.double_buffered
    assert model.tile_compute(m, n, k, "WS") == 16 + 16 * 64 + 30
    assert _per_fold(model).tile_compute(m, n, k, "WS") == 16 * (16 + 64 + 30)
    # a short stream (M = 4) cannot hide the 16-cycle preload: blocks go 16 cycles apart
    assert model.tile_compute(4, n, k, "WS") == 16 + 4 + 15 * 16 + 30
    # across tiles too: a 1024^3 GEMM under the library's tiles runs within 0.1% of its MACs
    call = MatmulCall(0, "compute_preloaded", 1, 1024, 1024, 1024, model.block)
    s = TileSchedule("WS", 4, 4, 16, "ijk", True)
    assert call_timing(model, call, s).cycles < 1.001 * 1024**3 / 256


def test_a_compute_starts_before_its_tile_has_landed(model: ArrayModel) -> None:
    # decoupled queues: the first fold waits for its own blocks, not the whole 4x4x8-block tile
    call = MatmulCall(0, "compute_preloaded", 1, 64, 64, 128, model.block)
    s = TileSchedule("WS", 4, 4, 8, "ijk", False)
    coupled = dataclasses.replace(model, decoupled=False)
    assert call_timing(model, call, s).cycles < call_timing(coupled, call, s).cycles
    run = event_run(model, call, s, keep_events=True)
    first_fold = min(e.start for e in run.events if e.engine == "array")
    last_load = max(e.end for e in run.events if e.name == "mvin")
    assert first_fold < last_load
    run = event_run(coupled, call, s, keep_events=True)
    first_fold = min(e.start for e in run.events if e.engine == "array")
    assert first_fold >= max(e.end for e in run.events if e.name == "mvin") + model.dram_latency


def test_load_queue_depth_bounds_the_dma(model: ArrayModel) -> None:
    # with two mvins in flight, each 256-byte block waits for a DRAM round trip: 2 per 116 cycles
    call = MatmulCall(0, "compute_preloaded", 1, 512, 16, 512, model.block)
    s = TileSchedule("OS", 32, 1, 32, "ijk", True)
    deep = call_timing(model, call, s)
    shallow = call_timing(dataclasses.replace(model, load_depth=2), call, s)
    assert shallow.dma_cycles == deep.dma_cycles  # the engine's busy time is the same
    blocks = (512 * 512 + 512 * 16) // 256
    assert shallow.cycles >= (blocks - 2) / 2 * (16 + 100)
    assert deep.cycles < 0.5 * shallow.cycles


def test_double_buffering_overlaps(model: ArrayModel) -> None:
    call = MatmulCall(0, "compute_preloaded", 1, 512, 512, 512, model.block)
    single = call_timing(model, call, TileSchedule("OS", 4, 4, 8, "ijk", False))
    double = call_timing(model, call, TileSchedule("OS", 4, 4, 8, "ijk", True))
    assert double.compute_cycles == single.compute_cycles
    assert double.cycles < single.cycles
    assert double.cycles >= max(double.compute_cycles, double.dma_cycles)


DOT = """
[instructions.dot]
unit = "systolic"
kind = "compute"
semantics = "C[i, j] += A[i, k] * B[k, j]"
extents = { i = 1, j = 1, k = 16 }
operands = { A = "scratchpad", B = "scratchpad", C = "accumulator" }
latency_cycles = 31
issue_cycles = 1.0
"""


def test_a_poorly_shaped_instruction_costs_what_it_does(tmp_path: Path) -> None:
    # a 1-wide dot product on the same 16x16 array uses one PE column: each of its folds holds
    # one output (OS) or one weight column (WS), so the same GEMM takes >= 10x the 16^3 one
    text = target_path("gemmini").read_text()
    text = text.replace('baseline_schedule = "gemmini-default"', 'baseline_schedule = "heuristic"')
    path = tmp_path / "gemmini_dot.toml"
    path.write_text(text + DOT)
    target = isamap.load_target(path)
    full = best_call(target, "compute_preloaded", 1, 256, 256, 256)[1].cycles
    dot = best_call(target, "dot", 1, 256, 256, 256)[1].cycles
    assert dot >= 10 * full


def test_vector_issues_and_latency_are_honoured() -> None:
    # a vector unit issues one block per issue_cycles, and its last result comes latency later
    target = isamap.load_target("vecdsp")
    model = ArrayModel.for_instruction(target, "vmac")
    ins = target.instruction("vmac")
    issues = 8 * 2 * 8  # an 8 x 32 x 8 tile in 1 x 16 x 1 blocks
    assert model.tile_compute(8, 32, 8, "OS") == issues * ins.issue_cycles + (
        ins.latency_cycles - ins.issue_cycles
    )
    slow = dataclasses.replace(model, stream_cycles=4.0)
    assert slow.tile_compute(8, 32, 8, "OS") == issues * 4.0 + model.drain


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


# most small calls have nothing to extrapolate along and are filtered out: that is expected,
# so the filtering health check (which fails on the ratio alone) is off
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
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


def test_mechanism_keys_are_read_and_checked(tmp_path: Path) -> None:
    target = isamap.load_target("gemmini")
    unit = target.units["systolic"]
    assert (unit.double_buffered, unit.decoupled, unit.transposer) == (True, True, True)
    assert (unit.load_queue_depth, unit.store_queue_depth) == (8, 4)
    assert not target.units["dma"].double_buffered  # the defaults: no mechanism
    text = target_path("gemmini").read_text()
    for old, bad, why in [
        ("double_buffered = true", 'double_buffered = "yes"', "must be true or false"),
        ("load_queue_depth = 8", "load_queue_depth = -1", "'load_queue_depth' must be >= 0"),
    ]:
        path = tmp_path / "bad.toml"
        path.write_text(text.replace(old, bad))
        with pytest.raises(isamap.IsamapError, match=why) as err:
            isamap.load_target(path)
        assert err.value.loc is not None and err.value.loc.line


def _matrix_models() -> list[ArrayModel]:
    """The matrix instructions' models of the shipped accelerators."""
    found = []
    for name in ("gemmini", "nnp", "vecdsp"):
        target = isamap.load_target(name)
        for ins in target.instructions.values():
            if ins.kind == "compute" and matrix_form(ins.semantics) is not None:
                found.append(ArrayModel.for_instruction(target, ins.name))
    return found


MATRIX_MODELS = _matrix_models()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pick=st.integers(0, 10**6),
    b=st.integers(1, 40),
    m=st.integers(1, 300),
    n=st.integers(1, 300),
    k=st.integers(1, 300),
    bias=st.booleans(),
    schedule=st.integers(0, 10**6),
)
def test_jumping_over_repeated_work_changes_nothing(
    pick: int, b: int, m: int, n: int, k: int, bias: bool, schedule: int
) -> None:
    """The walk's jumps (runs of identical iterations, repeated outer units, a full load queue)
    give the figures of walking every iteration and every move."""
    model = MATRIX_MODELS[pick % len(MATRIX_MODELS)]
    call = MatmulCall(0, model.names["compute"], b, m, n, k, model.block, bias=bias)
    space = [s for s in schedules(model, call) if model.fits(s)]
    assume(space)
    s = space[schedule % len(space)]
    jumped = _walk(model, call, s)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(timing, "JUMPS", False)
        walked = _walk(model, call, s)
    for field in ("cycles", "compute_cycles", "dma_cycles", "energy_pj"):
        assert getattr(jumped, field) == pytest.approx(getattr(walked, field), rel=1e-9), field
    assert dict(jumped.counts) == dict(walked.counts)
    assert set(jumped.bytes) == set(walked.bytes)
    for level, moved in walked.bytes.items():
        assert jumped.bytes[level] == pytest.approx(moved, rel=1e-9)


def test_a_repeated_loop_is_jumped_not_walked(
    model: ArrayModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 batches of the same small product: a few are walked, the rest is one jump."""
    call = MatmulCall(0, "compute_preloaded", 300, 40, 40, 40, model.block)
    s = TileSchedule("WS", 1, 1, 1, "ijk", True)
    sends: list[int] = []
    real = timing.MoveQueue.send

    def counted(q: timing.MoveQueue, *args: float) -> tuple[float, float]:
        sends.append(1)
        return real(q, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(timing.MoveQueue, "send", counted)
    jumped = _walk(model, call, s)
    few = len(sends)
    monkeypatch.setattr(timing, "JUMPS", False)
    walked = _walk(model, call, s)
    assert len(sends) - few > 20 * few  # every iteration's load and store, against a few
    assert jumped.cycles == pytest.approx(walked.cycles, rel=1e-9)
