"""Kernels in their declared types, end to end (issue 9, item 5): an int8 GEMM/convolution suite
is bit-exact on gemmini against numpy's integers; a float kernel on gemmini is refused in one line
unless quantized; quantized, the report states the scales and the measured error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import isamap
from isamap.hardware.machine import run_program
from isamap.ir.reference import evaluate, random_inputs
from tests.test_cli import assert_one_error_line, invoke

I8_SUITE = {
    "gemm-i32": "tensor A[37, 50] i8\ntensor B[50, 29] i8\ntensor C[37, 29] i32\n"
    "C[i, j] += A[i, k] * B[k, j]",
    "gemm-i8-out": "tensor A[40, 70] i8\ntensor B[70, 33] i8\ntensor C[40, 33] i8\n"
    "C[i, j] += A[i, k] * B[k, j]",
    "gemm-relu-i8": "tensor A[20, 40] i8\ntensor B[40, 20] i8\ntensor C[20, 20] i8\n"
    "T[i, j] += A[i, k] * B[k, j]\nC[i, j] = relu(T[i, j])",
    "gemm-tn": "tensor A[48, 17] i8\ntensor B[48, 21] i8\ntensor C[17, 21] i32\n"
    "C[i, j] += A[k, i] * B[k, j]",
    "conv3x3": "tensor X[1, 6, 10, 10] i8 pad(0, 0, 1:1, 1:1)\ntensor W[8, 6, 3, 3] i8\n"
    "O[n, k, h, w] += X[n, c, h + r - 1, w + s - 1] * W[k, c, r, s]",
    "conv-stride2-i8-out": "tensor X[2, 4, 9, 9] i8\ntensor W[5, 4, 3, 3] i8\n"
    "tensor O[2, 5, 4, 4] i8\nO[n, k, h, w] += X[n, c, 2*h + r, 2*w + s] * W[k, c, r, s]",
    "pointwise": "tensor X[1, 16, 7, 7] i8\ntensor P[24, 16] i8\n"
    "Y[n, k, h, w] += X[n, c, h, w] * P[k, c]",
    "depthwise": "tensor X[1, 8, 8, 8] i8 pad(0, 0, 1:1, 1:1)\ntensor F[8, 3, 3] i8\n"
    "D[n, c, h, w] += X[n, c, h + r - 1, w + s - 1] * F[c, r, s]",
}
F32_GEMM = "tensor A[24, 40] f32\ntensor B[40, 20] f32\nC[i, j] += A[i, k] * B[k, j]\n"


@pytest.mark.parametrize("name", sorted(I8_SUITE))
def test_the_i8_suite_is_bit_exact_on_gemmini(name: str) -> None:
    kernel = isamap.parse_kernel(I8_SUITE[name], name=name.replace("-", "_"))
    result = isamap.compile(kernel, "gemmini")
    assert result.report.numbers == "in the declared types"
    assert any(c.call.instruction == "compute_preloaded" for c in result.program.calls)
    x = random_inputs(kernel, seed=7)
    got, want = result.run(x), evaluate(kernel, x)
    for out in kernel.outputs():
        assert np.array_equal(got[out], want[out]), out
        assert np.array_equal(got[out], np.rint(got[out]))


@pytest.mark.parametrize("quantize", [None, False])
def test_a_float_kernel_on_gemmini_is_refused_in_one_line(quantize: bool | None) -> None:
    kernel = isamap.parse_kernel(F32_GEMM, name="g")
    with pytest.raises(isamap.IsamapError) as err:
        isamap.compile(kernel, "gemmini", quantize=quantize)  # None: the default refuses too
    message = str(err.value)
    assert "\n" not in message
    # located at the contraction (line 3), so the CLI's line names the kernel file
    assert message.startswith(
        "<string>:3:1: kernel g multiplies f32 tensors, but target 'gemmini' multiplies"
    )
    assert "quantize=True" in message and "--quantize" in message


def test_the_cli_refuses_it_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "g.kernel"
    path.write_text(F32_GEMM)
    for command in ("sim", "extract"):
        for flags in ((), ("--no-quantize",)):
            res = invoke(command, str(path), "--target", "gemmini", *flags)
            assert res.exit_code == 2
            assert_one_error_line(res, "multiplies f32 tensors, but target 'gemmini' multiplies")


def test_quantized_the_report_gives_scales_and_the_measured_error() -> None:
    kernel = isamap.parse_kernel(F32_GEMM, name="g")
    calibration = random_inputs(kernel, seed=11)
    result = isamap.compile(kernel, "gemmini", quantize=True, calibration=calibration)
    q = result.quantization
    assert q is not None
    for name in ("A", "B"):
        assert q.scales[name] == pytest.approx(np.abs(calibration[name]).max() / 127)
    assert q.kernel.dtype("A") == "i8" and q.kernel.dtype("C") == "i32"
    got = result.run(calibration)["C"]  # dequantized floats
    want = evaluate(kernel, calibration)["C"]
    measured = np.linalg.norm(got - want) / np.linalg.norm(want)
    assert measured == pytest.approx(q.relative_error, rel=1e-9)
    assert 0 < q.relative_error < 0.05
    assert np.abs(got - want).max() == pytest.approx(q.max_abs_error, rel=1e-9)
    text = str(result.report)
    assert "numbers: quantized to i8 (symmetric, per tensor): scales A " in text
    assert f"relative {100 * q.relative_error:.2f}%" in text
    assert result.report.to_dict()["numbers"] == q.summary()


def test_quantize_from_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "g.kernel"
    path.write_text(F32_GEMM)
    res = invoke("sim", str(path), "--target", "gemmini", "--quantize")
    assert res.exit_code == 0, res.output
    assert "numbers: quantized to i8 (symmetric, per tensor): scales A " in res.output


def test_a_chain_of_products_is_requantized_between_them() -> None:
    """A depthwise result feeding a pointwise product is cast back to i8 with its own scale (a
    statement of the integer kernel), so both products run on the array in its types."""
    kernel = isamap.parse_kernel(
        "tensor X[1, 4, 6, 6] f32 pad(0, 0, 1:1, 1:1)\ntensor F[4, 3, 3] f32\n"
        "tensor P[8, 4] f32\nD[n, c, h, w] += X[n, c, h + r - 1, w + s - 1] * F[c, r, s]\n"
        "Y[n, k, h, w] += D[n, c, h, w] * P[k, c]\n",
        name="dws",
    )
    calibration = random_inputs(kernel, seed=5)
    result = isamap.compile(kernel, "gemmini", quantize=True, calibration=calibration)
    q = result.quantization
    assert q is not None
    integer = q.kernel
    assert integer.dtype("D") == "i32" and integer.dtype("D_q") == "i8"
    assert integer.dtype("Y") == "i32"
    want = evaluate(kernel, calibration)
    assert q.scales["D_q"] == pytest.approx(np.abs(want["D"]).max() / 127)
    assert q.output_scales["Y"] == pytest.approx(q.scales["D_q"] * q.scales["P"])
    calls = [c for c in result.program.calls if c.call.instruction == "compute_preloaded"]
    assert len(calls) == 2  # the depthwise and the pointwise product, both on the array
    ints = q.quantize_inputs(calibration)  # bit-exact against numpy on the integer kernel
    machine = run_program(result.program, result.mapping, integer, result.target, ints)
    assert np.array_equal(machine["Y"], evaluate(integer, ints)["Y"])
    # the error is over every product: D and Y. D_q leaves the depthwise call requantized by
    # mvout, so the mapping never materialises D: it is the integer kernel's, dequantized
    got = {**q.dequantize(evaluate(integer, ints)), **result.run(calibration)}
    assert "D" not in result.run(calibration)
    diff = np.concatenate([(got[t] - want[t]).ravel() for t in ("D", "Y")])
    measured = np.linalg.norm(diff) / np.linalg.norm(
        np.concatenate([want["D"].ravel(), want["Y"].ravel()])
    )
    assert measured == pytest.approx(q.relative_error, rel=1e-6)
    assert 0 < q.relative_error < 0.1


def test_quantize_refuses_what_per_tensor_scales_cannot_serve() -> None:
    two = isamap.parse_kernel(
        "tensor X[4, 8] f32\ntensor H[4, 8] f32\ntensor W[8, 8] f32\ntensor U[8, 8] f32\n"
        "T[i, j] += X[i, k] * W[k, j]\nT[i, j] += H[i, k] * U[k, j]\n",
        name="cell",
    )
    with pytest.raises(isamap.IsamapError, match=r"quantize: kernel cell: T sums several products"):
        isamap.compile(two, "gemmini", quantize=True)
    scaled = isamap.parse_kernel(
        "tensor A[4, 8] f32\ntensor B[8, 4] f32\nC[i, j] += 0.5 * A[i, k] * B[k, j]\n", name="s"
    )
    with pytest.raises(isamap.IsamapError, match=r"quantize: kernel s: C is not one product"):
        isamap.compile(scaled, "gemmini", quantize=True)


def test_a_gate_after_the_product_computes_in_float_on_its_dequantized_value() -> None:
    cell = isamap.parse_kernel(
        "tensor X[4, 8] f32\ntensor W[8, 8] f32\ntensor b[8] f32\n"
        "T[i, j] += X[i, k] * W[k, j]\nY[i, j] = sigmoid(T[i, j] + b[j])\n",
        name="cell",
    )
    calibration = random_inputs(cell, seed=9)
    result = isamap.compile(cell, "gemmini", quantize=True, calibration=calibration)
    q = result.quantization
    assert q is not None
    assert (q.kernel.dtype("X"), q.kernel.dtype("T"), q.kernel.dtype("b")) == ("i8", "i32", "f32")
    assert "sigmoid(" in str(q.kernel) and f"{q.output_scales['T']!r} * T[i, j]" in str(q.kernel)
    assert [c.call.instruction for c in result.program.calls] == ["compute_preloaded"]
    want = evaluate(cell, calibration)["Y"]
    got = result.run(calibration)["Y"]  # float: the gate's output needs no dequantizing
    assert np.abs(got - want).max() <= q.max_abs_error + 1e-12
    assert 0 < q.relative_error < 0.05


def test_a_bias_on_a_product_is_held_in_the_accumulator_at_the_product_s_scale() -> None:
    layer = isamap.parse_kernel(
        "tensor X[12, 20] f32\ntensor W[20, 24] f32\ntensor b[24] f32\n"
        "T[i, j] += X[i, k] * W[k, j]\nY[i, j] = T[i, j] + b[j]\nZ[i, j] = relu(Y[i, j])\n",
        name="fc",
    )
    calibration = random_inputs(layer, seed=4)
    result = isamap.compile(layer, "gemmini", quantize=True, calibration=calibration)
    q = result.quantization
    assert q is not None
    assert (q.kernel.dtype("b"), q.kernel.dtype("T")) == ("i32", "i32")
    assert q.scales["b"] == q.output_scales["T"] == q.output_scales["Y"]
    # the bias is preloaded into the accumulator (Gemmini's mvin_bias), not added on the host
    assert [c.call.bias for c in result.program.calls] == [True]
    want = evaluate(layer, calibration)["Z"]
    got = result.run(calibration)["Z"]
    assert np.abs(got - want).max() <= q.max_abs_error + 1e-12
    assert 0 < q.relative_error < 0.05


def test_quantize_arguments_are_checked() -> None:
    kernel = isamap.parse_kernel(F32_GEMM)
    with pytest.raises(isamap.IsamapError, match="quantize must be True, False or None"):
        isamap.compile(kernel, "gemmini", quantize="yes")  # type: ignore[arg-type]
    with pytest.raises(isamap.IsamapError, match="calibration inputs are for quantize=True"):
        isamap.compile(kernel, "gemmini", calibration=random_inputs(kernel))
    with pytest.raises(isamap.IsamapError, match="input A has shape"):
        isamap.compile(kernel, "gemmini", quantize=True, calibration={"A": [1.0], "B": [1.0]})


def test_run_mapping_of_a_quantized_result_dequantizes() -> None:
    kernel = isamap.parse_kernel(F32_GEMM)
    result = isamap.compile(kernel, "gemmini", quantize=True)
    x = random_inputs(kernel, seed=3)
    assert np.array_equal(result.run_mapping(x)["C"], result.run(x)["C"])


def test_the_report_says_when_an_instruction_does_not_hold_the_kernel_s_types() -> None:
    text = "tensor A[20, 24] {t}\ntensor B[24, 18] {t}\nC[i, j] += A[i, k] * B[k, j]\n"
    f32 = isamap.compile(isamap.parse_kernel(text.format(t="f32")), "nnp").report.numbers
    assert f32 == (
        "computed in float64, not in the hardware's types: matmul takes bf16 x bf16, "
        "the kernel multiplies f32"
    )
    bf16 = isamap.compile(isamap.parse_kernel(text.format(t="bf16")), "nnp").report.numbers
    assert bf16 == "in the declared types"
