"""Rules derived from instruction semantics."""

from __future__ import annotations

import numpy as np

import isamap
from isamap.egraph.target_rules import (
    broadcast_reads,
    derive_rules,
    matrix_instructions,
    rules_program,
)
from isamap.hardware.matrix_form import matrix_form


def test_gemmini_rules() -> None:
    target = isamap.load_target("gemmini")
    assert matrix_instructions(target) == ["compute_preloaded"]  # compute_accumulated rides along
    names = [r.name for r in derive_rules(target)]
    assert names == [
        "bmm-to-compute_preloaded",
        "fuse-relu-into-compute_preloaded-via-mvout",
        # mvin_bias moves a bias row into the accumulator (gemmini.h repeating_bias)
        "bias-into-compute_preloaded-via-mvin_bias",
        "bias-swapped-into-compute_preloaded-via-mvin_bias",
        "batch-bias-into-compute_preloaded-via-mvin_bias",
        "batch-bias-swapped-into-compute_preloaded-via-mvin_bias",
        "fuse-relu-into-compute_preloaded-bias",
        # the same bias and relu on a tap accumulation's call (einsum-to-taps: InstrTaps)
        "taps-bias-into-compute_preloaded-via-mvin_bias",
        "taps-bias-swapped-into-compute_preloaded-via-mvin_bias",
        "taps-batch-bias-into-compute_preloaded-via-mvin_bias",
        "taps-batch-bias-swapped-into-compute_preloaded-via-mvin_bias",
        "fuse-relu-into-compute_preloaded-taps",
        "fuse-relu-into-compute_preloaded-taps-bias",
    ] + [n for n in names if "requant" in n or "through" in n or n == "scale-first"]
    # mvout scales and narrows (ACC_SCALE): the requantization rules (egraph/requant_rules.py)
    assert "requant-relu6-instrbiasscale-compute_preloaded-via-mvout-i8" in names
    text = rules_program(target)
    assert text.startswith("(ruleset target)")
    assert '(Instr "compute_preloaded" b m n k x y)' in text


def test_matrix_form_of_transposed_semantics() -> None:
    kernel = isamap.parse_kernel(
        "tensor A[8, 4] i8\ntensor B[2, 8] i8\nC[i, j] += A[k, i] * B[j, k]\n"
    )
    form = matrix_form(kernel)
    assert form is not None
    assert form.roles == {"k": "k", "i": "m", "j": "n"}
    assert (form.tile("m"), form.tile("n"), form.tile("k"), form.tile("b")) == (4, 2, 8, 1)
    assert form.indices("lhs") == ("k", "i") and form.indices("rhs") == ("j", "k")
    assert form.einsum() == "ab,ca->bc"


def test_no_matrix_form_for_elementwise() -> None:
    kernel = isamap.parse_kernel("tensor A[8] f32\nB[i] = relu(A[i])\n")
    assert matrix_form(kernel) is None


#: An int8 product onto an int32 bias, then a float residual added whole (MobileNetV2's block as
#: the suites declare it: the shortcut dequantized).
RESIDUAL = (
    "tensor A[24, 40] i8\ntensor B[40, 20] i8\ntensor c[20] i32\ntensor R[24, 20] f32\n"
    "T[i, j] += A[i, k] * B[k, j]\nY[i, j] = T[i, j] + c[j]\nZ[i, j] = R[i, j] + 0.5 * Y[i, j]\n"
)


def test_only_tensors_read_broadcast_can_be_a_bias() -> None:
    kernel = isamap.parse_kernel(RESIDUAL)
    assert broadcast_reads(kernel) == {"c"}
    target = isamap.load_target("gemmini")
    assert "bias-into-compute_preloaded-via-mvin_bias" in {
        r.name for r in derive_rules(target, kernel)
    }
    floats = isamap.parse_kernel(RESIDUAL.replace("c[20] i32", "c[20] f32"))
    assert broadcast_reads(floats) == {"c"}
    loads = ("bias-", "batch-bias-")  # the rules putting a bias row into the accumulator
    assert not any(r.name.startswith(loads) for r in derive_rules(target, floats))


def test_a_float_residual_leaves_the_int32_bias_in_the_accumulator() -> None:
    """The f32 shortcut is added on the host; the bias still goes into the accumulator (it was
    refused for every kernel with any f32 input), and the program computes numpy's numbers."""
    kernel = isamap.parse_kernel(RESIDUAL)
    result = isamap.compile(kernel, "gemmini", candidates=1)
    (call,) = result.mapping.instruction_calls()
    assert call.attrs.get("bias")
    x = isamap.random_inputs(kernel, seed=1)
    np.testing.assert_allclose(result.run(x)["Z"], isamap.evaluate(kernel, x)["Z"], rtol=1e-12)
