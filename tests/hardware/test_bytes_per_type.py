"""DRAM bytes come from each tensor's own element type (issue 9): the roofline, host work, layout
moves and a matrix call's operand loads all count a tensor at its declared size, so no report
exceeds its roofline whatever the types."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import isamap


@pytest.fixture(scope="module")
def gemmini() -> isamap.Target:
    return isamap.load_target("gemmini")


def test_an_f32_transpose_moves_four_bytes_an_element(gemmini: isamap.Target) -> None:
    kernel = isamap.parse_kernel("tensor A[48, 40] f32\nB[j, i] = A[i, j]\n", name="tr")
    report = isamap.compile(kernel, gemmini).report  # no product: runs as declared
    elements = 48 * 40
    assert report.bytes["dram"] == 2 * 4 * elements  # read and written at f32
    dram = gemmini.dram().bandwidth_bytes_per_cycle
    assert report.roofline_cycles == pytest.approx(2 * 4 * elements / dram)
    assert report.cycles == pytest.approx(report.roofline_cycles)  # was 384 against 960


def test_an_int8_gemm_reads_one_byte_and_writes_its_int32_result(gemmini: isamap.Target) -> None:
    kernel = isamap.parse_kernel(
        "tensor A[64, 32] i8\ntensor B[32, 16] i8\nC[i, j] += A[i, k] * B[k, j]\n", name="g"
    )
    report = isamap.compile(kernel, gemmini).report
    dram = gemmini.dram().bandwidth_bytes_per_cycle
    assert report.roofline_cycles >= (64 * 32 + 32 * 16 + 4 * 64 * 16) / dram
    assert report.bytes["dram"] >= 64 * 32 + 32 * 16 + 4 * 64 * 16


KERNELS = {
    "transpose": "tensor A[{m}, {n}] {t}\nB[j, i] = A[i, j]\n",
    "relu": "tensor A[{m}, {n}] {t}\nB[i, j] = relu(A[i, j])\n",
    "gemm": "tensor A[{m}, {n}] {t}\ntensor B[{n}, {m}] {t}\nC[i, j] += A[i, k] * B[k, j]\n",
}


@settings(max_examples=6, deadline=None)
@given(
    kind=st.sampled_from(sorted(KERNELS)),
    dtype=st.sampled_from(["i8", "f32", "bf16"]),
    target=st.sampled_from(["gemmini", "nnp"]),
    m=st.integers(3, 40),
    n=st.integers(3, 40),
)
def test_no_report_exceeds_its_roofline_whatever_the_types(
    kind: str, dtype: str, target: str, m: int, n: int
) -> None:
    kernel = isamap.parse_kernel(KERNELS[kind].format(m=m, n=n, t=dtype), name=kind)
    loaded = isamap.load_target(target)
    quantize = target == "gemmini" and kind == "gemm" and dtype != "i8"  # else refused
    report = isamap.compile(kernel, loaded, quantize=quantize).report
    assert 0 < report.percent_of_roofline <= 100.0 + 1e-9
    dram = loaded.dram().bandwidth_bytes_per_cycle
    assert report.cycles >= report.bytes["dram"] / dram - 1
