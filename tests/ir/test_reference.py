"""Numpy reference semantics, checked against np.einsum and explicit loops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from isamap.ir import (
    IsamapError,
    Kernel,
    batched_matmul,
    conv2d,
    depthwise,
    dw_separable,
    evaluate,
    gru_cell,
    matmul,
    parse_kernel,
    pointwise,
    random_inputs,
)
from isamap.ir import reference as reference_module

Array = NDArray[np.float64]


def conv_loops(
    x: Array,
    w: Array,
    stride: int,
    dilation: int,
    pads: tuple[tuple[int, int], ...],
    out_hw: tuple[int, int],
) -> Array:
    """NCHW cross-correlation by explicit loops over an explicitly zero-padded input."""
    xp = np.pad(x, ((0, 0), (0, 0), *pads))
    n = x.shape[0]
    k, _, r, s = w.shape
    out = np.zeros((n, k, *out_hw))
    for h, ww, rr, ss in itertools.product(range(out_hw[0]), range(out_hw[1]), range(r), range(s)):
        patch = xp[:, :, stride * h + dilation * rr, stride * ww + dilation * ss]  # [n, c]
        out[:, :, h, ww] += patch @ w[:, :, rr, ss].T
    return out


def test_matmul_and_transposes() -> None:
    for ta, tb in itertools.product([False, True], repeat=2):
        k = matmul(5, 7, 3, transpose_a=ta, transpose_b=tb)
        x = random_inputs(k, seed=1)
        a = x["A"].T if ta else x["A"]
        b = x["B"].T if tb else x["B"]
        np.testing.assert_allclose(evaluate(k, x)["C"], a @ b, rtol=1e-12)


def test_batched_matmul() -> None:
    k = batched_matmul(3, 4, 5, 6)
    x = random_inputs(k)
    np.testing.assert_allclose(evaluate(k, x)["C"], np.einsum("bik,bkj->bij", x["A"], x["B"]))


def test_conv2d_stride_dilation_same_padding() -> None:
    k = conv2d(2, 3, 11, 10, 4, 3, 3, stride=2, dilation=2, padding="same")
    x = random_inputs(k)
    out = evaluate(k, x)["O"]
    pads = k.tensors["X"].padding[2:]
    assert out.shape == (2, 4, 6, 5)
    np.testing.assert_allclose(out, conv_loops(x["X"], x["W"], 2, 2, pads, (6, 5)), atol=1e-12)


def test_depthwise() -> None:
    k = depthwise(1, 4, 7, 7, 3, 3, stride=2, padding=1)
    x = random_inputs(k)
    out = evaluate(k, x)["D"]
    xp = np.pad(x["X"], ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros_like(out)
    for h, w, r, s in itertools.product(range(4), range(4), range(3), range(3)):
        ref[:, :, h, w] += xp[:, :, 2 * h + r, 2 * w + s] * x["F"][:, r, s]
    np.testing.assert_allclose(out, ref, atol=1e-12)


def test_grouped_conv_equals_per_group_convs() -> None:
    g, cg, kg = 2, 3, 2
    k = conv2d(1, g * cg, 6, 6, g * kg, 3, 3, padding="same", groups=g)
    x = random_inputs(k)
    out = evaluate(k, x)["O"]
    pads = k.tensors["X"].padding[3:]
    for gi in range(g):
        ref = conv_loops(x["X"][:, gi], x["W"][gi], 1, 1, pads, (6, 6))
        np.testing.assert_allclose(out[:, gi], ref, atol=1e-12)


def test_dw_separable_and_pointwise() -> None:
    k = dw_separable(1, 3, 5, 5, 4)
    x = random_inputs(k)
    res = evaluate(k, x)
    pk = pointwise(1, 3, 5, 5, 4)
    y = evaluate(pk, {"X": res["D"], "P": x["P"]})["Y"]
    np.testing.assert_allclose(res["Y"], y)
    np.testing.assert_allclose(y, np.einsum("nchw,kc->nkhw", res["D"], x["P"]))


def test_gru_cell_matches_hand_written_numpy() -> None:
    k = gru_cell(3, 5, 4)
    x = random_inputs(k, seed=7)

    def sigmoid(v: Array) -> Array:
        return np.asarray(1.0 / (1.0 + np.exp(-v)))

    z = sigmoid(x["X"] @ x["Wz"] + x["H"] @ x["Uz"])
    r = sigmoid(x["X"] @ x["Wr"] + x["H"] @ x["Ur"])
    n = np.tanh(x["X"] @ x["Wh"] + r * (x["H"] @ x["Uh"]))
    h_new = (1 - z) * n + z * x["H"]
    out = evaluate(k, x)
    np.testing.assert_allclose(out["Hn"], h_new, rtol=1e-12)
    assert set(out) == {"Gz", "Z", "Gr", "R", "Xh", "Hh", "N", "Hn"}


def test_padding_reads_zero_and_reversed_reads() -> None:
    k = parse_kernel("tensor A[4] pad(2:1)\nY[i] = A[i - 2] + A[3 - i]\n")
    a = np.arange(1.0, 5.0)
    # i in 0..5 (A[i - 2] reads -2..3); A[3 - i] reads 3..-2
    expected = np.array([0, 0, 1, 2, 3, 4]) + np.array([4, 3, 2, 1, 0, 0])
    np.testing.assert_allclose(evaluate(k, {"A": a})["Y"], expected)


def test_accumulate_assign_broadcast_scalar_and_functions() -> None:
    text = """
tensor A[2, 3]
tensor s[]
tensor Y[4, 3]
T[i] += A[i, j]
T[i] += A[i, j] * s[]
Y[k, j] = relu(A[1, j] - 0.5) + exp(-s[]) * sigmoid(A[0, j]) - tanh(A[0, 2])
total[] += A[i, j]
"""
    k = parse_kernel(text)
    a = np.array([[1.0, -2.0, 3.0], [0.25, 1.5, -1.0]])
    s = np.array(2.0)
    out = evaluate(k, {"A": a, "s": s})
    np.testing.assert_allclose(out["T"], a.sum(1) * 3)
    row = np.maximum(a[1] - 0.5, 0) + np.exp(-2.0) / (1 + np.exp(-a[0])) - np.tanh(a[0, 2])
    np.testing.assert_allclose(out["Y"], np.broadcast_to(row, (4, 3)))
    assert out["total"].shape == () and out["total"] == pytest.approx(a.sum())


def test_input_errors() -> None:
    k = matmul(2, 3, 4)
    x = random_inputs(k)
    with pytest.raises(IsamapError, match="missing input B"):
        evaluate(k, {"A": x["A"]})
    with pytest.raises(IsamapError, match=r"input A has shape \(4, 2\), expected \(2, 4\)"):
        evaluate(k, {"A": x["A"].T, "B": x["B"]})
    with pytest.raises(IsamapError, match="no tensor named Q"):
        evaluate(k, {**x, "Q": x["A"]})


def test_random_inputs_are_deterministic_and_small() -> None:
    k = conv2d(1, 2, 5, 5, 3, 3, 3)
    a, b = random_inputs(k, seed=3), random_inputs(k, seed=3)
    assert set(a) == {"X", "W"}
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert 0.2 < float(np.std(a["X"])) < 1.0


def test_chunked_evaluation_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    kernels: list[Kernel] = [
        matmul(6, 5, 7),
        parse_kernel("tensor A[6, 5]\nB[i, j] = relu(A[i, j])\n"),
    ]
    for k in kernels:
        x = random_inputs(k)
        whole = evaluate(k, x)
        monkeypatch.setattr(reference_module, "_CHUNK_ELEMENTS", 13)
        chunked = evaluate(k, x)
        monkeypatch.undo()
        for name in whole:
            np.testing.assert_allclose(chunked[name], whole[name], rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 9), n=st.integers(1, 9), kk=st.integers(1, 9), seed=st.integers(0, 99))
def test_property_matmul_equals_numpy(m: int, n: int, kk: int, seed: int) -> None:
    k = matmul(m, n, kk)
    x = random_inputs(k, seed=seed)
    np.testing.assert_allclose(evaluate(k, x)["C"], x["A"] @ x["B"], rtol=1e-10, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(
    h=st.integers(3, 9),
    w=st.integers(3, 9),
    r=st.integers(1, 3),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    padding=st.sampled_from([0, 1, "same"]),
)
def test_property_conv2d_equals_loops(
    h: int, w: int, r: int, stride: int, dilation: int, padding: int | str
) -> None:
    if (r - 1) * dilation + 1 > min(h, w) and padding == 0:
        return  # no output position fits; the checker rejects this shape
    k = conv2d(1, 2, h, w, 3, r, r, stride=stride, dilation=dilation, padding=padding)
    x = random_inputs(k)
    out = evaluate(k, x)["O"]
    pads = k.tensors["X"].padding[2:]
    ref = conv_loops(x["X"], x["W"], stride, dilation, pads, out.shape[2:])
    np.testing.assert_allclose(out, ref, atol=1e-12)


def test_max_reduction_statement() -> None:
    from isamap.ir.parser import parse_kernel as parse

    k = parse(
        "tensor X[3, 4, 5] f32 pad(0, 0, 1:0)\nM[i, j] max= X[i, j, r - 1]\nS[i] += M[i, j]\n"
    )
    assert "M[i, j] max= X[i, j, r - 1]" in str(k)
    x = np.random.default_rng(0).standard_normal((3, 4, 5)) - 5.0  # all negative: padding wins
    out = evaluate(k, {"X": x})
    padded = np.concatenate([np.zeros((3, 4, 1)), x], axis=2)[:, :, :5]
    np.testing.assert_array_equal(out["M"], padded.max(axis=2))
    np.testing.assert_allclose(out["S"], padded.max(axis=2).sum(axis=1))
