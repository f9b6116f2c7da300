"""Every memory is a constraint, at each operand's own element width: on a target whose A, B and C
are int8, int16 and int32 in three memories, every schedule a strategy returns allocates on the
machine and computes numpy's integers (issue 9, items 3 and 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import isamap
from isamap.hardware.footprint import operand_layout
from isamap.hardware.functional import operand_types
from isamap.hardware.machine import run_call
from isamap.hardware.timing import ArrayModel
from isamap.ir.program import MatmulCall
from isamap.ir.reference import evaluate, random_inputs
from isamap.schedule.scheduler import best_call

MIXED = str(Path(__file__).parent / "targets" / "mixed_widths.toml")


@pytest.fixture(scope="module")
def mixed() -> isamap.Target:
    return isamap.load_target(MIXED)


def test_each_operand_is_counted_at_its_own_width(mixed: isamap.Target) -> None:
    layout = operand_layout(mixed, "gemm")
    assert [(op.role, op.memory, op.elem_bytes) for op in layout.operands] == [
        ("A", "inp", 1),
        ("B", "wgt", 2),
        ("C", "acc", 4),
    ]
    # a 16x16 int16 weight block takes two 256-byte rows; at the target's int8 it would take one
    assert layout.space("B").block_rows == 2 and layout.space("B").per_row == 128
    assert dict(layout.capacity) == {"inp": 64, "wgt": 32, "acc": 16}


@pytest.mark.parametrize("strategy", ["heuristic", "random", "exhaustive"])
def test_every_schedule_fits_its_memories_and_equals_numpy(
    mixed: isamap.Target, strategy: str
) -> None:
    block = ArrayModel.for_instruction(mixed, "gemm").block
    types = operand_types(mixed.instruction("gemm"))

    @settings(max_examples=8, deadline=None, derandomize=True)
    @given(
        m=st.integers(1, 24), n=st.integers(1, 70), k=st.integers(1, 90), seed=st.integers(0, 99)
    )
    def runs(m: int, n: int, k: int, seed: int) -> None:
        s, _ = best_call(mixed, "gemm", 1, m, n, k, strategy)
        rng = np.random.default_rng(seed)
        x = rng.integers(-128, 128, (1, m, k)).astype(float)
        y = rng.integers(-(2**15), 2**15, (1, k, n)).astype(float)
        out = run_call(mixed, MatmulCall(0, "gemm", 1, m, n, k, block), s, x, y, types).output
        exact = x.astype(np.int64) @ y.astype(np.int64)
        assert np.array_equal(out, exact)  # no overrun, and int32 holds these sums

    runs()


def test_an_i8_by_i16_kernel_is_bit_exact(mixed: isamap.Target) -> None:
    kernel = isamap.parse_kernel(
        "tensor A[9, 70] i8\ntensor B[70, 50] i16\ntensor C[9, 50] i32\n"
        "C[i, j] += A[i, k] * B[k, j]\n"
    )
    result = isamap.compile(kernel, mixed)
    assert {c.call.instruction for c in result.program.calls} == {"gemm"}
    x = random_inputs(kernel, seed=4)
    assert np.array_equal(result.run(x)["C"], evaluate(kernel, x)["C"])
