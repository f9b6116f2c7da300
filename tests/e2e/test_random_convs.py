"""Random small convolutions and GEMMs, compiled, scheduled and run through the modelled
scratchpad and accumulator (property tests; shapes are rarely multiples of the array)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import isamap
from isamap.hardware.machine import run_program
from isamap.ir import builders
from tests.typed import check_outputs, typed_for

TARGETS = {name: isamap.load_target(name) for name in isamap.list_targets()}


def _check(kernel: isamap.Kernel, target: isamap.Target, seed: int) -> None:
    kernel = typed_for(kernel, target)  # int8 tensors on an integer-only target
    result = isamap.compile(kernel, target)
    inputs = isamap.random_inputs(kernel, seed=seed)
    outputs = run_program(result.program, result.mapping, kernel, target, inputs)
    check_outputs(outputs, kernel, inputs)  # bit for bit where integer


@settings(max_examples=12, deadline=None)
@given(
    c=st.integers(1, 5),
    hw=st.integers(3, 11),
    k=st.integers(1, 20),
    rs=st.sampled_from([1, 3]),
    stride=st.integers(1, 2),
    dilation=st.integers(1, 2),
    same=st.booleans(),
    target=st.sampled_from(sorted(TARGETS)),
)
def test_random_conv2d(
    c: int, hw: int, k: int, rs: int, stride: int, dilation: int, same: bool, target: str
) -> None:
    padding: int | str = "same" if same and dilation == 1 else 0
    if padding == 0 and (hw - dilation * (rs - 1)) < 1:
        return  # no output pixel: not a kernel
    kernel = builders.conv2d(
        1, c, hw, hw, k, rs, rs, stride=stride, dilation=dilation, padding=padding
    )
    _check(kernel, TARGETS[target], seed=c * hw + k)


@settings(max_examples=10, deadline=None)
@given(
    c=st.integers(1, 8),
    hw=st.integers(3, 9),
    k=st.integers(1, 24),
    stride=st.integers(1, 2),
    target=st.sampled_from(sorted(TARGETS)),
)
def test_random_dw_separable(c: int, hw: int, k: int, stride: int, target: str) -> None:
    kernel = builders.dw_separable(1, c, hw, hw, k, stride=stride)
    _check(kernel, TARGETS[target], seed=c + hw + k)


@settings(max_examples=10, deadline=None)
@given(
    m=st.integers(1, 70),
    n=st.integers(1, 70),
    k=st.integers(1, 70),
    ta=st.booleans(),
    target=st.sampled_from(sorted(TARGETS)),
)
def test_random_gemm(m: int, n: int, k: int, ta: bool, target: str) -> None:
    _check(builders.matmul(m, n, k, transpose_a=ta), TARGETS[target], seed=m + n + k)
