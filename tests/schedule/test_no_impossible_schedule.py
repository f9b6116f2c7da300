"""Issue 10, defect 3: `sim` never reports cycles for a schedule `run` would reject, and when no
schedule fits at all the answer is one IsamapError naming the target file."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import isamap
from isamap.hardware.machine import CallMachine, SimulationError
from isamap.hardware.sim import simulate_timing
from isamap.hardware.target import Target
from isamap.hardware.target_file import load_target as load_target_file
from isamap.hardware.target_file import target_path
from isamap.ir.program import MatmulCall, TileSchedule
from isamap.schedule.scheduler import best_call
from isamap.schedule.strategies import STRATEGIES
from tests.test_cli import assert_one_error_line, invoke

REPRO = """
tensor A[18, 266] f32
tensor B[266, 281] f32
C[i, j] += A[i, k] * B[k, j]
"""
VMAC_BLOCK = (1, 16, 1)


@pytest.fixture(scope="module")
def vecdsp() -> Target:
    return isamap.load_target("vecdsp")


def test_the_reproduction_runs_what_sim_reports(vecdsp: Target) -> None:
    # was: 99,124 cycles for a double-buffered 4x4x266 tiling that run rejected with
    # "scratchpad overrun: needs 4256 rows, has 4096"
    kernel = isamap.parse_kernel(REPRO)
    result = isamap.compile(kernel, vecdsp)
    (scheduled,) = result.program.calls
    assert scheduled.schedule != TileSchedule("OS", 4, 4, 266, "jik", True)
    # the machine allocates what the scheduler chose (running all 86,184 vmacs takes too long
    # here; tests/schedule/test_every_schedule_runs.py runs schedules in full on small shapes)
    CallMachine(vecdsp, scheduled.call, scheduled.schedule)
    # the old tiling, as the machine counts it: A and B blocks take one 32-byte row each
    call = MatmulCall(0, "vmac", 1, 18, 281, 266, VMAC_BLOCK)
    with pytest.raises(SimulationError, match="needs 4256 rows, has 4096"):
        CallMachine(vecdsp, call, TileSchedule("OS", 4, 4, 266, "jik", True))
    assert result.report.cycles > 0


@settings(max_examples=20, deadline=None)
@given(m=st.integers(1, 300), n=st.integers(1, 300), k=st.integers(100, 700))
def test_random_vecdsp_gemms_with_long_k_fit(vecdsp: Target, m: int, n: int, k: int) -> None:
    # the class of the reproduction: 12 of 40 such GEMMs overran before (heuristic)
    s, _ = best_call(vecdsp, "vmac", 1, m, n, k, "heuristic")
    CallMachine(vecdsp, MatmulCall(0, "vmac", 1, m, n, k, VMAC_BLOCK), s)


@pytest.mark.parametrize("strategy", ["random", "heuristic"])
@pytest.mark.parametrize("shape", [(1, 18, 281, 266), (1, 281, 18, 266)])
def test_the_reproduction_fits_either_way_round(
    vecdsp: Target, strategy: str, shape: tuple[int, int, int, int]
) -> None:
    s, _ = best_call(vecdsp, "vmac", *shape, strategy)
    CallMachine(vecdsp, MatmulCall(0, "vmac", *shape, VMAC_BLOCK), s)


def test_sim_refuses_to_time_a_schedule_that_overruns(vecdsp: Target) -> None:
    kernel = isamap.parse_kernel(REPRO)
    result = isamap.compile(kernel, vecdsp)
    (scheduled,) = result.program.calls
    result.program.calls[0] = type(scheduled)(
        scheduled.call,
        TileSchedule("OS", 4, 4, 266, "jik", True),
        scheduled.strategy,
        scheduled.names,
        scheduled.systolic,
    )
    with pytest.raises(SimulationError, match=r"overrun: needs 4256 rows, has 4096 rows of 32"):
        simulate_timing(result.program, result.mapping, vecdsp)


@pytest.fixture(scope="module")
def cramped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vecdsp with a local memory of one 128-byte row: an A element (2 bytes) and a B row
    (32 bytes) fit its bytes, but each takes a row of its own."""
    text = target_path("vecdsp").read_text()
    text = text.replace("capacity_bytes = 131072", "capacity_bytes = 128")
    text = text.replace("row_bytes = 32 ", "row_bytes = 128 ")
    path = tmp_path_factory.mktemp("targets") / "cramped.toml"
    path.write_text(text)
    return path


# isamap's own strategies (a vendor library's baseline refuses a target unlike its hardware)
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_no_schedule_fits_is_one_error_naming_the_target(cramped: Path, strategy: str) -> None:
    # isamap.load_target already refuses it (its baseline cannot schedule one block); the file
    # alone loads, and scheduling on it is the error
    with pytest.raises(isamap.IsamapError) as at_load:
        isamap.load_target(str(cramped))
    assert str(at_load.value).startswith(f"{cramped}:")
    assert "no schedule of vmac fits on chip" in str(at_load.value)
    target = load_target_file(str(cramped))
    with pytest.raises(isamap.IsamapError) as err:
        best_call(target, "vmac", 1, 18, 281, 266, strategy)
    text = str(err.value)
    assert text.startswith(f"{cramped}: no schedule of vmac fits on chip")
    assert "'local' has 1 rows of 128 bytes" in text


def test_sim_with_no_fitting_schedule_is_one_error_line(cramped: Path, tmp_path: Path) -> None:
    kernel = tmp_path / "gemm.kernel"
    kernel.write_text(REPRO)
    result = invoke("sim", str(kernel), "--target", str(cramped))
    assert result.exit_code == 2
    assert_one_error_line(result)
    assert str(cramped) in result.stderr
