"""Every schedule any strategy returns runs on the functional machine: no memory overrun, and the
numbers equal numpy, on every shipped target, tiny8 and a VTA-like target whose A and B live in
separate buffers of different sizes. The scheduler's fit check and the machine's allocation are
one accounting (`hardware.footprint`); these tests hold them to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import isamap
from isamap.hardware.machine import CallMachine, SimulationError, run_call, run_program
from isamap.hardware.target import Target
from isamap.hardware.timing import ArrayModel
from isamap.ir.program import DATAFLOWS, MatmulCall, TileSchedule
from isamap.schedule.registry import strategy_names
from isamap.schedule.scheduler import best_call, schedule_mapping

ROOT = Path(__file__).resolve().parents[2]
VTA_LIKE = str(Path(__file__).parent / "targets" / "vta_like.toml")
TINY8 = str(ROOT / "examples" / "new_hardware" / "tiny8.toml")

#: (target, matrix instruction, largest m, n, k drawn): shapes small enough for the machine to
#: run quickly (vmac's 1x16x1 and 1x64x1 blocks issue once per element of A) and large enough to
#: need several tiles where the memories are small (vecdsp's registers, tiny8, vta_like).
CASES = [
    ("gemmini", "compute_preloaded", (80, 80, 80)),
    ("vecdsp", "vmac", (12, 40, 12)),
    ("nnp", "matmul", (80, 80, 80)),
    ("nnp", "vmac", (8, 130, 8)),
    (TINY8, "mmrelu", (60, 60, 60)),
    (VTA_LIKE, "gemm", (24, 60, 60)),
]
IDS = [f"{Path(t).stem}-{ins}" for t, ins, _ in CASES]
#: Gemmini's library serves only targets laid out like Gemmini (a square array, A and B in one
#: scratchpad, C in an accumulator); elsewhere it refuses at the target file.
GEMMINI_LIKE = {("gemmini", "compute_preloaded"), (TINY8, "mmrelu"), ("nnp", "matmul")}
_TARGETS: dict[str, Target] = {}


def target_of(name: str) -> Target:
    if name not in _TARGETS:
        _TARGETS[name] = isamap.load_target(name)
    return _TARGETS[name]


def _serves(name: str, instruction: str, strategy: str) -> bool:
    return strategy != "gemmini-default" or (name, instruction) in GEMMINI_LIKE


def _shape(limits: tuple[int, int, int]) -> st.SearchStrategy[tuple[int, int, int, int]]:
    m, n, k = limits
    return st.tuples(st.integers(1, 2), st.integers(1, m), st.integers(1, n), st.integers(1, k))


@pytest.mark.parametrize("strategy", sorted(strategy_names()))
@pytest.mark.parametrize(("name", "instruction", "limits"), CASES, ids=IDS)
def test_every_strategy_schedule_runs_and_equals_numpy(
    name: str, instruction: str, limits: tuple[int, int, int], strategy: str
) -> None:
    target = target_of(name)
    if not _serves(name, instruction, strategy):
        with pytest.raises(isamap.IsamapError, match=rf"^{target.path}: gemmini-default: "):
            best_call(target, instruction, 1, 16, 16, 16, strategy)
        return
    block = ArrayModel.for_instruction(target, instruction).block

    @settings(max_examples=10, deadline=None, derandomize=True)
    @given(shape=_shape(limits), seed=st.integers(0, 2**16))
    def runs(shape: tuple[int, int, int, int], seed: int) -> None:
        b, m, n, k = shape
        s, _ = best_call(target, instruction, b, m, n, k, strategy)
        rng = np.random.default_rng(seed)
        x, y = rng.standard_normal((b, m, k)), rng.standard_normal((b, k, n))
        run = run_call(target, MatmulCall(0, instruction, b, m, n, k, block), s, x, y)
        np.testing.assert_allclose(run.output, x @ y, rtol=1e-10, atol=1e-10)

    runs()


def _allocates(target: Target, call: MatmulCall, s: TileSchedule) -> bool:
    try:
        CallMachine(target, call, s)
    except SimulationError as err:
        assert "overrun: needs" in str(err)
        return False
    return True


@settings(max_examples=120, deadline=None)
@given(
    case=st.sampled_from(CASES),
    tiles=st.tuples(st.integers(1, 64), st.integers(1, 64)),
    dataflow=st.sampled_from(DATAFLOWS),
    double_buffer=st.booleans(),
)
def test_the_fit_check_is_the_machines_allocation(
    case: tuple[str, str, tuple[int, int, int]],
    tiles: tuple[int, int],
    dataflow: str,
    double_buffer: bool,
) -> None:
    # for any C tile, the deepest K tile the machine can allocate (found by bisection on the
    # machine alone) is the deepest the scheduler accepts: they agree at the boundary
    name, instruction, _ = case
    target = target_of(name)
    model = ArrayModel.for_instruction(target, instruction)
    call = MatmulCall(0, instruction, 1, 1 << 20, 1 << 20, 1 << 20, model.block)

    def schedule(tk: int) -> TileSchedule:
        return TileSchedule(dataflow, *tiles, tk, "ijk", double_buffer)

    lo, hi = 0, 1 << 20  # the machine allocates tk = lo (0: none) and not tk = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _allocates(target, call, schedule(mid)) else (lo, mid)
    if lo:
        assert model.fits(schedule(lo))
    assert not model.fits(schedule(hi))


@pytest.mark.parametrize(("name", "instruction", "limits"), CASES, ids=IDS)
def test_the_machine_refuses_exactly_what_does_not_fit(
    name: str, instruction: str, limits: tuple[int, int, int]
) -> None:
    # both sides of the property above, on every case: one block fits, 400^3 blocks do not
    target = target_of(name)
    model = ArrayModel.for_instruction(target, instruction)
    call = MatmulCall(0, instruction, 1, 4096, 4096, 4096, model.block)
    CallMachine(target, call, TileSchedule(model.dataflows[0], 1, 1, 1, "ijk", True))
    huge = TileSchedule(model.dataflows[0], 400, 400, 400, "ijk", True)
    assert not model.fits(huge)
    with pytest.raises(SimulationError, match="overrun: needs"):
        CallMachine(target, call, huge)


GEMM_RELU = """
tensor A[20, 36] f32
tensor B[36, 24] f32
T[i, j] += A[i, k] * B[k, j]
C[i, j] = relu(T[i, j])
"""


@pytest.mark.parametrize(
    "name", ["gemmini", "vecdsp", "nnp", TINY8, VTA_LIKE], ids=lambda n: Path(n).stem
)
def test_every_strategy_program_runs_through_run_program(name: str) -> None:
    target = target_of(name)
    kernel = isamap.parse_kernel(GEMM_RELU)
    mapping = isamap.saturate(kernel, target).extract("latency")
    assert mapping.instruction_calls(), "the GEMM runs on the target's matrix instruction"
    inputs = isamap.random_inputs(kernel, seed=3)
    want = isamap.evaluate(kernel, inputs)["C"]
    for strategy in sorted(strategy_names()):
        instruction = str(mapping.instruction_calls()[0].attrs["instruction"])
        if not _serves(name, instruction, strategy):
            continue
        program = schedule_mapping(mapping, target, strategy)
        outputs = run_program(program, mapping, kernel, target, inputs)
        np.testing.assert_allclose(outputs["C"], want, rtol=1e-9, atol=1e-9, err_msg=strategy)
