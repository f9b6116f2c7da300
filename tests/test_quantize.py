"""The quantizer's casts as gemmini's mvout requantizes (isamap/quantize.py with
egraph/requant_rules.py): f32 scale constants, a clipped ReLU kept in its product's integers, its
clip in the store's saturation when the scale guarantees it, and on the host when not."""

from __future__ import annotations

import numpy as np
import pytest

import isamap
from isamap.hardware.functional import run_mapping
from isamap.ir.kernel import Binary, Const
from isamap.quantize import hardware_kernel, integer_kernel
from tests.typed import check_outputs

# two layers: a GEMM with its bias and ReLU6, whose int8 requantization the second one reads
TWO_LAYERS = """tensor X[16, 32] f32
tensor W1[32, 24] f32
tensor b1[24] f32
tensor W2[24, 20] f32
T1[i, j] += X[i, k] * W1[k, j]
Y1[i, j] = T1[i, j] + b1[j]
R1[i, j] = min(relu(Y1[i, j]), 6)
T2[i, l] += R1[i, j] * W2[j, l]
"""


@pytest.fixture(scope="module")
def gemmini() -> isamap.Target:
    return isamap.load_target("gemmini")


@pytest.fixture(scope="module")
def source() -> isamap.Kernel:
    return isamap.parse_kernel(TWO_LAYERS)


def _cast_constant(kernel: isamap.Kernel, name: str) -> float:
    (s,) = [s for s in kernel.statements if s.target == name]
    assert isinstance(s.expr, Binary) and isinstance(s.expr.lhs, Const)
    return s.expr.lhs.value


def _clip_bound(kernel: isamap.Kernel, name: str) -> float:
    """c of `name = min(relu(P), c)`: the quantizer keeps a clipped ReLU in P's integers."""
    (s,) = [s for s in kernel.statements if s.target == name]
    assert isinstance(s.expr, Binary) and s.expr.op == "min" and isinstance(s.expr.rhs, Const)
    return s.expr.rhs.value


def _host(result: isamap.CompileResult) -> list[str]:
    return [n.describe() for n in result.mapping.nodes if n.unit == "host"]


def test_a_calibrated_relu6_is_requantized_by_mvout_clip_included(
    gemmini: isamap.Target, source: isamap.Kernel
) -> None:
    x = {n: v * 8 for n, v in isamap.random_inputs(source, seed=1).items()}  # past the clip
    result = isamap.compile(source, gemmini, quantize=True, calibration=x)
    q = result.quantization
    assert q is not None
    ratio = _cast_constant(q.kernel, "R1_q")
    assert float(np.float32(ratio)) == ratio  # the store's f32 scale holds it exactly
    bound = _clip_bound(q.kernel, "R1")  # 6 in the product's integers
    assert round(bound * ratio) >= 127  # the observed range (max <= 6): the clip is past int8
    assert _host(result) == []  # no host pass for the cast or the clip
    ints = q.quantize_inputs(x)
    check_outputs(run_mapping(result.mapping, q.kernel, gemmini, ints), q.kernel, ints)  # bitwise
    got = result.run_mapping(x)["T2"]  # float in, quantized, run, dequantized
    assert np.array_equal(result.run(x)["T2"], got)  # the program machine: the same numbers
    want = isamap.evaluate(source, x)["T2"]
    assert np.max(np.abs(got - want)) <= q.max_abs_error + 1e-9  # the reported error


def test_a_scale_that_cuts_below_the_clip_keeps_the_host_clip(
    gemmini: isamap.Target, source: isamap.Kernel
) -> None:
    # R1_q at scale 0.5: round(6 / 0.5) = 12 < 127, so min(., 6) clips inside int8's range
    kernel, _, _ = integer_kernel(source, gemmini, {"R1": 0.5})
    assert round(_clip_bound(kernel, "R1") * _cast_constant(kernel, "R1_q")) < 127
    result = isamap.compile(kernel, gemmini)
    assert any("min" in h or "relu6" in h or "R1" in h for h in _host(result))
    x = {n: np.clip(v * 16, -128, 127) for n, v in isamap.random_inputs(kernel, seed=2).items()}
    x = {n: np.round(v) for n, v in x.items()}
    check_outputs(result.run_mapping(x), kernel, x)


def test_hardware_kernel_narrows_a_layer_output_at_its_clip_range(gemmini: isamap.Target) -> None:
    layer = isamap.parse_kernel(TWO_LAYERS.split("T2[")[0].replace("tensor W2[24, 20] f32\n", ""))
    kernel = hardware_kernel(layer, gemmini)
    assert kernel.dtype("R1_q") == "i8" and kernel.outputs() == ("R1_q",)
    assert _cast_constant(kernel, "R1_q") == float(np.float32(127 / 6))
    result = isamap.compile(kernel, gemmini)
    assert _host(result) == []


@pytest.mark.parametrize("target", ["nnp", "vecdsp"])
def test_hardware_kernel_casts_to_a_float_type_at_unit_scale(target: str) -> None:
    """On a bf16 (f16) array a clipped ReLU a product reads is cast as it is: no scale filling
    the float type's range (bf16's 3.4e38 / 6 made every later product overflow), the clip's
    bound stays 6 and fuses into the call's relu6 where the store has one."""
    chip = isamap.load_target(target)
    kernel = hardware_kernel(
        isamap.parse_kernel(TWO_LAYERS + "Y2[i, l] = min(relu(T2[i, l]), 6)\n"), chip
    )
    (cast,) = [s for s in kernel.statements if s.target == "R1_q"]
    assert str(cast.expr) == "R1[i, j]"  # a plain cast: the store rounds to the float type
    assert _clip_bound(kernel, "R1") == _clip_bound(kernel, "Y2") == 6.0
    result = isamap.compile(kernel, chip)
    assert not [n for n in result.mapping.nodes if n.op == "full"]  # no range-filling factor
    if target == "nnp":  # whose matmul adds the bias and clips on the store (vecdsp's cannot)
        assert _host(result) == []
    x = isamap.random_inputs(kernel, seed=2)
    check_outputs(result.run(x), kernel, x)
