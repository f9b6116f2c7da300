"""The functional machine: tiles through a modelled scratchpad and accumulator, against numpy."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import isamap
from isamap.hardware.machine import (
    CallMachine,
    SimulationError,
    run_call,
    run_program,
    trace_program,
)
from isamap.hardware.target import Target
from isamap.hardware.target_file import target_path
from isamap.hardware.timing import ArrayModel, call_timing
from isamap.ir.program import DATAFLOWS, LOOP_ORDERS, MatmulCall, TileSchedule
from isamap.schedule.space import schedules
from tests.typed import check_outputs, typed_for

KERNELS = sorted((Path(__file__).resolve().parents[2] / "examples" / "kernels").glob("*.kernel"))
COMPUTE = "compute_preloaded"


@pytest.fixture(scope="module")
def gemmini() -> Target:
    return isamap.load_target("gemmini")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Target:
    """Gemmini with a 4 KiB scratchpad (256 rows) and a 4 KiB accumulator (64 rows)."""
    text = target_path("gemmini").read_text()
    text = text.replace("capacity_bytes = 262144", "capacity_bytes = 4096")
    text = text.replace("capacity_bytes = 65536 ", "capacity_bytes = 4096 ")
    path = tmp_path_factory.mktemp("targets") / "gemmini_small.toml"
    path.write_text(text)
    return isamap.load_target(str(path))


def _operands(b: int, m: int, n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((b, m, k)), rng.standard_normal((b, k, n))


def _check(target: Target, call: MatmulCall, s: TileSchedule, seed: int = 0) -> Counter[str]:
    a, b = _operands(call.b, call.m, call.n, call.k, seed)
    run = run_call(target, call, s, a, b)
    want = a @ b
    if call.epilogue == "relu":
        want = np.maximum(want, 0.0)
    np.testing.assert_allclose(run.output, want, rtol=1e-10, atol=1e-10)
    model = ArrayModel.for_instruction(target, COMPUTE)
    assert run.counts == call_timing(model, call, s).counts
    return run.counts


shapes = st.tuples(st.integers(1, 2), st.integers(1, 70), st.integers(1, 70), st.integers(1, 70))


@settings(max_examples=100, deadline=None)
@given(
    shape=shapes,
    tiles=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
    dataflow=st.sampled_from(DATAFLOWS),
    order=st.sampled_from(LOOP_ORDERS),
    double_buffer=st.booleans(),
    epilogue=st.sampled_from([None, "relu"]),
)
def test_random_gemm_equals_numpy(
    gemmini: Target,
    shape: tuple[int, int, int, int],
    tiles: tuple[int, int, int],
    dataflow: str,
    order: str,
    double_buffer: bool,
    epilogue: str | None,
) -> None:
    b, m, n, k = shape
    call = MatmulCall(0, COMPUTE, b, m, n, k, (16, 16, 16), epilogue)
    mb, nb, kb = call.blocks
    ti, tj, tk = (min(t, blocks) for t, blocks in zip(tiles, (mb, nb, kb), strict=True))
    _check(gemmini, call, TileSchedule(dataflow, ti, tj, tk, order, double_buffer))


@settings(max_examples=60, deadline=None)
@given(shape=shapes, pick=st.integers(0, 10**6), epilogue=st.sampled_from([None, "relu"]))
def test_fitting_schedules_on_a_small_scratchpad(
    small: Target, shape: tuple[int, int, int, int], pick: int, epilogue: str | None
) -> None:
    # the small target forces several tiles per dimension, so spills and reloads happen
    b, m, n, k = shape
    model = ArrayModel.for_instruction(small, COMPUTE)
    call = MatmulCall(0, COMPUTE, b, m, n, k, model.block, epilogue)
    space = list(schedules(model, call))
    assert space
    _check(small, call, space[pick % len(space)], seed=pick)


def test_spilled_partial_sums_skip_the_epilogue(gemmini: Target) -> None:
    # k outermost: every C tile is stored and reloaded once per K tile; relu only at the end
    call = MatmulCall(0, COMPUTE, 1, 40, 40, 64, (16, 16, 16), "relu")
    counts = _check(gemmini, call, TileSchedule("WS", 1, 1, 1, "kij", False))
    # 4 K tiles x 3 x 3 C tiles of one block: every iteration leaves its C tile
    assert counts["mvout"] == 4 * 9
    # A changes with (k, i): 12; B with every j: 36; C comes back for the last 3 K tiles: 27
    assert counts["mvin"] == 12 + 36 + 27


@pytest.mark.parametrize("path", KERNELS, ids=lambda p: p.stem)
def test_example_kernels_equal_the_reference(path: Path, gemmini: Target) -> None:
    kernel = typed_for(isamap.load_kernel(str(path)), gemmini)  # int8 tensors on gemmini
    result = isamap.compile(kernel, gemmini)
    inputs = isamap.random_inputs(kernel, seed=1)
    run = trace_program(result.program, result.mapping, kernel, gemmini, inputs)
    check_outputs(run.outputs, kernel, inputs)  # bit for bit where integer
    assert set(run.outputs) <= set(isamap.evaluate(kernel, inputs))
    outputs = run_program(result.program, result.mapping, kernel, gemmini, inputs)
    assert outputs.keys() == result.run(inputs).keys()
    # the machine issues what the timing model counts, instruction for instruction
    matrix = {
        n: c for n, c in result.report.instruction_counts.items() if n in gemmini.instructions
    }
    assert dict(run.counts) == matrix
    assert len(run.calls) == len(result.program.calls)


def test_scratchpad_overrun(gemmini: Target) -> None:
    call = MatmulCall(0, COMPUTE, 1, 64, 64, 64, (16, 16, 16))
    huge = TileSchedule("WS", 64, 64, 64, "ijk", True)
    a, b = _operands(1, 64, 64, 64, 0)
    with pytest.raises(SimulationError, match=r"scratchpad overrun: needs 262144 rows, has 16384"):
        run_call(gemmini, call, huge, a, b)


def test_accumulator_overrun(small: Target) -> None:
    # A and B tiles: 2 x (64 + 64) rows of 256 fit; C: 2 x 64 rows of 64 do not
    call = MatmulCall(0, COMPUTE, 1, 32, 32, 32, (16, 16, 16))
    s = TileSchedule("OS", 2, 2, 2, "ijk", True)
    a, b = _operands(1, 32, 32, 32, 0)
    with pytest.raises(SimulationError, match=r"accumulator overrun: needs 128 rows, has 64"):
        run_call(small, call, s, a, b)
    run_call(small, call, TileSchedule("OS", 2, 2, 2, "ijk", False), a, b)


@pytest.mark.parametrize("tiles", [(1, 1, 1), (2, 2, 2), (3, 1, 2), (2, 3, 4)])
@pytest.mark.parametrize("double_buffer", [True, False])
def test_overrun_exactly_when_the_model_says_it_does_not_fit(
    small: Target, tiles: tuple[int, int, int], double_buffer: bool
) -> None:
    model = ArrayModel.for_instruction(small, COMPUTE)
    call = MatmulCall(0, COMPUTE, 1, 50, 50, 50, model.block)
    s = TileSchedule("WS", *tiles, "ijk", double_buffer)
    a, b = _operands(1, 50, 50, 50, 0)
    if model.fits(s):
        run_call(small, call, s, a, b)
    else:
        with pytest.raises(SimulationError, match="overrun"):
            run_call(small, call, s, a, b)


def _skip_nth_mvin(monkeypatch: pytest.MonkeyPatch, nth: int, only: str = "") -> None:
    """Make the machine drop its `nth` mvin (counting only buffers labelled `only...`)."""
    real = CallMachine.mvin
    seen = [0]

    def faulty(self: CallMachine, buffer: object, row: int, block: np.ndarray) -> None:
        if getattr(buffer, "label", "").startswith(only):
            seen[0] += 1
            if seen[0] == nth:
                return
        real(self, buffer, row, block)  # type: ignore[arg-type]

    monkeypatch.setattr(CallMachine, "mvin", faulty)


@pytest.mark.parametrize(("nth", "only"), [(1, ""), (7, ""), (10, "B"), (2, "C")])
def test_a_missing_mvin_is_caught(
    gemmini: Target, monkeypatch: pytest.MonkeyPatch, nth: int, only: str
) -> None:
    call = MatmulCall(0, COMPUTE, 1, 40, 40, 64, (16, 16, 16))
    s = TileSchedule("OS", 1, 2, 1, "kji", True)  # spills: C tiles come back (label C)
    _check(gemmini, call, s)
    _skip_nth_mvin(monkeypatch, nth, only)
    with pytest.raises(SimulationError, match="read before any mvin wrote it"):
        _check(gemmini, call, s)


def test_a_missing_preload_is_caught(gemmini: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CallMachine, "preload", lambda self, block: None)
    call = MatmulCall(0, COMPUTE, 1, 20, 20, 20, (16, 16, 16))
    with pytest.raises(SimulationError, match="without a preload"):
        _check(gemmini, call, TileSchedule("WS", 1, 1, 1, "ijk", True))


def test_an_index_past_a_buffer_is_caught(gemmini: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    real = CallMachine._row

    def off_by_one_block(self: CallMachine, *args: object) -> int:
        return real(self, *args) + 16  # type: ignore[arg-type]

    monkeypatch.setattr(CallMachine, "_row", off_by_one_block)
    call = MatmulCall(0, COMPUTE, 1, 32, 32, 32, (16, 16, 16))
    with pytest.raises(SimulationError, match="outside its"):
        _check(gemmini, call, TileSchedule("WS", 2, 2, 2, "ijk", True))


def test_operand_shapes_must_match_the_call(gemmini: Target) -> None:
    call = MatmulCall(3, COMPUTE, 1, 8, 8, 8, (16, 16, 16))
    a, b = _operands(1, 8, 8, 9, 0)
    with pytest.raises(SimulationError, match="%3"):
        run_call(gemmini, call, TileSchedule("WS", 1, 1, 1), a, b)


def test_a_host_statement_reads_an_overflowed_value_as_the_kernel_does(gemmini: Target) -> None:
    """exp of a large int8 product overflows f32 on the host; the next statement (the int8 cast
    before the second product) reads infinity as numpy's reference does, and saturates it."""
    kernel = typed_for(
        isamap.parse_kernel(
            "tensor X[4, 8] f32\ntensor Y[8] f32\ntensor W[4, 3] f32\n"
            "T[i] += X[i, k] * Y[k]\nU[i] = exp(T[i])\nV[q] += U[i] * W[i, q]\n"
        ),
        gemmini,
    )
    result = isamap.compile(kernel, gemmini)
    inputs = {
        "X": np.full((4, 8), 100.0),
        "Y": np.full(8, 100.0),
        "W": np.arange(12.0).reshape(4, 3) - 6,
    }
    inputs = {n: v for n, v in inputs.items() if n in kernel.inputs()}
    want = isamap.evaluate(kernel, inputs)
    assert np.isinf(want["U"]).all()
    got = result.simulate(inputs)
    for name in kernel.outputs():
        np.testing.assert_array_equal(got[name], want[name])
