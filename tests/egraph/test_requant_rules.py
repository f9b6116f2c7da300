"""Requantization on the store (isamap/egraph/requant_rules.py): a cast into an int8 tensor fused
into gemmini's scaling mvout where the rule's guards hold, a host pass where they do not; every
program runs and equals the reference bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import isamap
from isamap.egraph.target_rules import derive_rules
from tests.typed import check_outputs

GEMM = """tensor A[20, 40] i8
tensor W[40, 24] i8
tensor B[24] i32
tensor Y_q[20, 24] i8
C[i, j] += A[i, k] * W[k, j]
Y[i, j] = C[i, j] + B[j]
{body}
"""


@pytest.fixture(scope="module")
def gemmini() -> isamap.Target:
    return isamap.load_target("gemmini")


def _inputs(kernel: isamap.Kernel) -> dict[str, np.ndarray]:
    """Full-range int8 operands and a wide bias: results past int8 on both sides, so the
    saturation (and a clip's bound) matter."""
    rng = np.random.default_rng(3)
    x = {n: rng.integers(-128, 128, kernel.shapes[n]).astype(float) for n in ("A", "W")}
    x["B"] = rng.integers(-4000, 4000, kernel.shapes["B"]).astype(float)
    return x


def _compiled(body: str, target: isamap.Target) -> tuple[isamap.Kernel, isamap.CompileResult]:
    kernel = isamap.parse_kernel(GEMM.format(body=body))
    result = isamap.compile(kernel, target)
    x = _inputs(kernel)
    check_outputs(result.run(x), kernel, x)  # the program machine, through the memories
    check_outputs(result.run_mapping(x), kernel, x)  # the mapping, call by call
    return kernel, result


def _host(result: isamap.CompileResult) -> list[str]:
    return [n.describe() for n in result.mapping.nodes if n.unit == "host"]


def test_gemmini_derives_the_rules_and_a_target_without_a_scaling_store_none(
    gemmini: isamap.Target,
) -> None:
    names = {r.name for r in derive_rules(gemmini)}
    assert "requant-relu-instrbiasscale-compute_preloaded-via-mvout-i8" in names
    assert "requant-relu6-instrbiasscale-compute_preloaded-via-mvout-i8" in names
    nnp = isamap.load_target("nnp")
    assert not [r for r in derive_rules(nnp) if r.name.startswith("requant")]


@pytest.mark.parametrize(
    ("body", "epilogue"),
    [
        ("Y_q[i, j] = 0.015625 * relu(Y[i, j])", "relu"),  # a power of two
        ("Y_q[i, j] = Y[i, j] * 0.0234375", None),  # f32-exact, the constant second
        # relu6 under quantization: round(6 * 21.25) >= 127, the saturation is the clip
        ("R[i, j] = min(relu(Y[i, j]), 6)\nY_q[i, j] = 21.25 * R[i, j]", "relu"),
    ],
)
def test_the_cast_goes_out_through_mvout(gemmini: isamap.Target, body: str, epilogue: str) -> None:
    _, result = _compiled(body, gemmini)
    assert _host(result) == []
    (call,) = [n for n in result.mapping.nodes if n.op == "instr"]
    assert call.attrs["narrow"] == "i8" and (call.attrs.get("epilogue") or None) == epilogue
    listing = result.program.listing()
    assert "narrowed to i8" in listing
    # the int8 result leaves at one byte per element: less DRAM traffic than at full width
    wide = GEMM.format(body="Y_q[i, j] = relu(Y[i, j])").replace("tensor Y_q[20, 24] i8\n", "")
    full = isamap.compile(isamap.parse_kernel(wide), gemmini)  # int32 out
    assert result.sim.bytes["dram"] < full.sim.bytes["dram"]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("Y_q[i, j] = 0.01 * relu(Y[i, j])", "0.01 is no f32 value: mvout would scale by another"),
        # round(6 * 0.25) = 2 < 127: the clip at 6 cuts below the saturation, so it stays
        ("R[i, j] = min(relu(Y[i, j]), 6)\nY_q[i, j] = 0.25 * R[i, j]", "the guard fails"),
    ],
)
def test_the_cast_stays_on_the_host_where_a_guard_fails(
    gemmini: isamap.Target, body: str, why: str
) -> None:
    _, result = _compiled(body, gemmini)
    assert _host(result), why
    assert all(not n.attrs.get("narrow") for n in result.mapping.nodes), why
