"""The reference computes in the declared types: integer inputs are integers of their range, float
inputs are rounded to their type, results are stored in the written tensor's type (saturated)."""

from __future__ import annotations

import numpy as np
import pytest

import isamap
from isamap.ir.dtypes import KERNEL_DTYPES, dtype
from isamap.ir.errors import IsamapError
from isamap.ir.reference import evaluate, random_inputs

GEMM = """
tensor A[6, 40] {a}
tensor B[40, 5] {b}
tensor C[6, 5] {c}
C[i, j] += A[i, k] * B[k, j]
"""


def _gemm(a: str, b: str, c: str) -> isamap.Kernel:
    return isamap.parse_kernel(GEMM.format(a=a, b=b, c=c))


@pytest.mark.parametrize("t", KERNEL_DTYPES)
def test_every_type_parses_and_random_inputs_are_its_values(t: str) -> None:
    kernel = _gemm(t, t, "f32")
    x = random_inputs(kernel, seed=2)
    for name in ("A", "B"):
        assert np.array_equal(dtype(t).hold(x[name]), x[name])  # f32 is carried in float64
    if dtype(t).is_integer:
        assert np.abs(x["A"]).max() > 1  # integers, not rounded noise


def test_an_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(IsamapError, match=r"unknown dtype 'int4' \(expected one of u8, i8"):
        isamap.parse_kernel("tensor A[4] int4\nB[i] = A[i]\n")


def test_i8_gemm_is_the_integer_product_saturated_to_the_output_type() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (6, 40))
    b = rng.integers(-128, 128, (40, 5))
    exact = a.astype(np.int64) @ b.astype(np.int64)
    wide = evaluate(_gemm("i8", "i8", "i32"), {"A": a, "B": b})["C"]
    narrow = evaluate(_gemm("i8", "i8", "i8"), {"A": a, "B": b})["C"]
    assert np.array_equal(wide, exact)
    assert np.array_equal(narrow, np.clip(exact, -128, 127))
    assert (np.abs(exact) > 127).any()  # the case saturates somewhere


def test_u8_by_i8_mixed_signs() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 256, (6, 40)), rng.integers(-128, 128, (40, 5))
    got = evaluate(_gemm("u8", "i8", "i32"), {"A": a, "B": b})["C"]
    assert np.array_equal(got, a @ b)


def test_integer_inputs_must_be_integers_of_their_range() -> None:
    kernel = _gemm("i8", "u8", "i32")
    ok = np.zeros((40, 5))
    with pytest.raises(IsamapError, match=r"input A holds 0.5 at index \(0, 0\), not a i8 value"):
        evaluate(kernel, {"A": np.full((6, 40), 0.5), "B": ok})
    with pytest.raises(
        IsamapError, match=r"input B holds -1.0 .* not a u8 value \(integers 0..255"
    ):
        evaluate(kernel, {"A": np.zeros((6, 40)), "B": np.full((40, 5), -1.0)})


def test_float_inputs_are_rounded_to_their_type() -> None:
    kernel = _gemm("bf16", "bf16", "f32")
    a = np.full((6, 40), 1 + 2.0**-9)  # below half a bf16 ulp above 1: rounds to 1
    got = evaluate(kernel, {"A": a, "B": np.ones((40, 5))})["C"]
    assert np.array_equal(got, np.full((6, 5), 40.0))
    with pytest.raises(IsamapError, match="out of the range of fp8_e4m3"):
        evaluate(_gemm("fp8_e4m3", "bf16", "f32"), {"A": np.full((6, 40), 500.0), "B": a.T[:, :5]})


def test_a_bf16_output_is_rounded() -> None:
    x = {"A": np.full((6, 40), 1.01), "B": np.ones((40, 5))}
    got = evaluate(_gemm("f32", "f32", "bf16"), x)["C"]
    assert np.array_equal(got, np.full((6, 5), 40.5))  # 40.4 is no bf16: 40.5 is the nearest
    np.testing.assert_allclose(evaluate(_gemm("f32", "f32", "f32"), x)["C"], 40.4, rtol=1e-12)


def test_undeclared_tensors_take_the_accumulation_type() -> None:
    kernel = isamap.parse_kernel(
        "tensor A[4, 4] i8\ntensor B[4, 4] i8\n"
        "T[i, j] += A[i, k] * B[k, j]\nR[i, j] = relu(T[i, j]) * 2\nS[i, j] = sigmoid(T[i, j])\n"
    )
    assert (kernel.dtype("T"), kernel.dtype("R"), kernel.dtype("S")) == ("i32", "i32", "f32")
