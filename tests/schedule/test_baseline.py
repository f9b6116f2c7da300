"""The vendor baseline's own mapping (operand-swapped calls issued as the library issues them),
the transposer, and the library's tiles on a large GEMM against the roofline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import isamap
from isamap.hardware.functional import run_mapping
from isamap.hardware.sim import simulate_timing
from isamap.hardware.target_file import target_path
from isamap.ir.reference import evaluate, random_inputs
from isamap.schedule.baseline import own_mapping
from isamap.schedule.scheduler import schedule_mapping

# K = 256: transposing A through DRAM (256 x 96 int8) costs more than transposing B (256 x 16)
# and C (16 x 96 int32) back, so without a transposer isamap swaps the operands
TN = "tensor A[256, 96] i8\ntensor B[256, 16] i8\nC[i, j] += A[k, i] * B[k, j]\n"


def _no_transposer(tmp_path: Path) -> isamap.Target:
    text = target_path("gemmini").read_text()
    path = tmp_path / "gemmini_nt.toml"
    path.write_text(text.replace("transposer = true", "transposer = false"))
    return isamap.load_target(path)


def test_a_transposed_operand_costs_no_dram_round_trip(tmp_path: Path) -> None:
    big = "tensor A[1024, 3072] i8\ntensor B[1024, 16] i8\nC[i, j] += A[k, i] * B[k, j]\n"
    kernel = isamap.parse_kernel(big)
    with_t = isamap.compile(kernel, "gemmini").report
    # Gemmini reads A transposed on its way in: A and B once, C once (i32), nothing more
    assert with_t.bytes["dram"] == 1024 * 3072 + 1024 * 16 + 3072 * 16 * 4
    without = isamap.compile(kernel, _no_transposer(tmp_path)).report
    assert without.bytes["dram"] > with_t.bytes["dram"]
    assert without.cycles > with_t.cycles


def test_the_baseline_runs_swapped_calls_unswapped(tmp_path: Path) -> None:
    # without a transposer isamap runs C^T = B^T . A (A read as it lies, C transposed back)
    target = _no_transposer(tmp_path)
    kernel = isamap.parse_kernel(TN)
    result = isamap.compile(kernel, target)
    (call,) = result.mapping.instruction_calls()
    assert (call.attrs["m"], call.attrs["n"]) == (16, 96)
    own = own_mapping(result.mapping, target)
    (unswapped,) = own.instruction_calls()
    assert (unswapped.attrs["m"], unswapped.attrs["n"], unswapped.attrs["k"]) == (96, 16, 256)
    ops = [n.op for n in own.nodes]
    assert ops.count("transpose") == 1  # A^T into the call; B's and C's transposes are gone
    # the same numbers come out
    inputs = random_inputs(kernel, seed=3)
    got = run_mapping(own, kernel, target, inputs)
    np.testing.assert_allclose(got["C"], evaluate(kernel, inputs)["C"])
    # and it is what the report's baseline is timed on
    program = schedule_mapping(own, target, "gemmini-default")
    baseline = simulate_timing(program, own, target, kernel).cycles
    assert result.report.baseline_cycles == baseline


def test_a_mapping_without_swapped_calls_is_its_own() -> None:
    nn = TN.replace("A[256, 96]", "A[96, 256]").replace("A[k, i]", "A[i, k]")
    kernel = isamap.parse_kernel(nn)
    result = isamap.compile(kernel, "gemmini")
    assert own_mapping(result.mapping, result.target) is result.mapping


def test_gemmini_default_reaches_the_roofline_on_a_large_gemm() -> None:
    # double-buffered PEs and decoupled queues: the library's own tiles keep the array busy
    text = "tensor A[1024, 1024] i8\ntensor B[1024, 1024] i8\nC[i, j] += A[i, k] * B[k, j]\n"
    report = isamap.compile(isamap.parse_kernel(text), "gemmini").report
    assert report.baseline_schedule == "gemmini-default"
    assert report.roofline_cycles / report.baseline_cycles >= 0.85
