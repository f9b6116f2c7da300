"""Kernels no rule names, mapped onto every shipped target and run tile by tile against numpy.

Each kernel must put its contractions on the target's matrix instruction (not the host), and every
mapping the extractor offers (the best and the next variants) must compute the same values as
numpy; the scheduled program, run through the modelled memories, too.
"""

from __future__ import annotations

import math
from functools import cache

import pytest

import isamap
from isamap.egraph import EGraphDump, ENode
from isamap.egraph.target_rules import matrix_instructions
from isamap.extract import LatencyCost
from isamap.hardware.machine import run_program
from isamap.ir import builders
from tests.typed import check_outputs, typed_for

TEXT_KERNELS = {
    "transposed_operands": """
        tensor A[40, 24] f32
        tensor B[36, 40] f32
        C[i, j] += A[k, i] * B[j, k]
    """,
    "batched_matmul": """
        tensor A[3, 20, 18] f32
        tensor B[3, 18, 22] f32
        C[b, i, j] += A[b, i, k] * B[b, k, j]
    """,
    "attention_scores": """
        tensor Q[2, 3, 12, 8] f32
        tensor K[2, 3, 10, 8] f32
        S[b, h, i, j] += Q[b, h, i, d] * K[b, h, j, d]
    """,
    "two_reduction_indices": """
        tensor A[18, 4, 5] f32
        tensor B[4, 5, 21] f32
        C[i, j] += A[i, k, l] * B[k, l, j]
    """,
    "matrix_vector": """
        tensor A[50, 30] f32
        tensor x[30] f32
        y[i] += A[i, k] * x[k]
    """,
    "outer_product": """
        tensor a[200] f32
        tensor b[170] f32
        C[i, j] += a[i] * b[j]
    """,
    "gemm_chain": """
        tensor A[20, 24] f32
        tensor B[24, 18] f32
        tensor D[18, 30] f32
        T[i, j] += A[i, k] * B[k, j]
        E[i, l] += T[i, j] * D[j, l]
    """,
    "scaled_gemm_bias_relu": """
        tensor A[33, 17] f32
        tensor B[17, 19] f32
        tensor bias[19] f32
        T[i, j] += 0.5 * A[i, k] * B[k, j]
        C[i, j] = relu(T[i, j] + bias[j])
    """,
    "tensor_contraction_4d": """
        tensor A[3, 4, 5, 6] f32
        tensor B[6, 5, 7] f32
        C[a, b, d] += A[a, b, c, e] * B[e, c, d]
    """,
}

BUILT_KERNELS = {
    "conv2d_stride2": lambda: builders.conv2d(1, 4, 11, 11, 8, 3, 3, stride=2, padding="same"),
    "conv2d_dilated": lambda: builders.conv2d(2, 3, 12, 12, 5, 3, 3, dilation=2),
    "conv2d_grouped": lambda: builders.conv2d(1, 8, 8, 8, 8, 3, 3, padding=1, groups=2),
    "depthwise": lambda: builders.depthwise(1, 6, 9, 9, 3, 3, padding="same"),
    "pointwise": lambda: builders.pointwise(2, 12, 5, 5, 20),
    "dw_separable": lambda: builders.dw_separable(1, 8, 8, 8, 24),
    "gru_cell": lambda: builders.gru_cell(3, 20, 24),
    "batched_builder": lambda: builders.batched_matmul(2, 17, 9, 33),
    "matmul_transposed": lambda: builders.matmul(21, 34, 19, transpose_a=True, transpose_b=True),
}


def _kernels() -> dict[str, isamap.Kernel]:
    out = {name: isamap.parse_kernel(text, name=name) for name, text in TEXT_KERNELS.items()}
    out.update({name: build() for name, build in BUILT_KERNELS.items()})
    return out


KERNELS = _kernels()


@pytest.fixture(scope="module")
def gemmini() -> isamap.Target:
    return isamap.load_target("gemmini")


TARGETS = {name: isamap.load_target(name) for name in isamap.list_targets()}


_check = check_outputs


@cache
def saturated(name: str, target_name: str) -> isamap.Saturation:
    """KERNELS[name] saturated on TARGETS[target_name] (the default limits), made once: the
    variants test below and tests/rules/test_eclass_consistency.py check the same e-graph (its
    mappings run, and every e-node evaluated); neither changes it."""
    return isamap.saturate(KERNELS[name], TARGETS[target_name])


@cache
def _on_gemmini(name: str) -> isamap.CompileResult:
    """KERNELS[name] (in int8) compiled on gemmini with the default latency model, made once:
    the mapping test below and the gemmini-specific tests after it read the same compile."""
    gemmini = TARGETS["gemmini"]
    return isamap.compile(typed_for(KERNELS[name], gemmini), gemmini)


class NoHostContractions:
    """Latency, with contractions on the host forbidden: what the rules found, on its own."""

    name = "latency-no-host"

    def __init__(self, target: isamap.Target, kernel: isamap.Kernel) -> None:
        self.latency = LatencyCost(target, kernel)
        self.kernel = kernel

    def node_cost(self, node: ENode, dump: EGraphDump) -> float:
        if node.op in ("Bmm", "Einsum"):
            return math.inf
        if node.op == "HostStmt" and self.kernel.statements[node.int_arg(0)].accumulate:
            return math.inf  # a cast into int8 (`tests.typed`) may run there; a `+=` may not
        return self.latency.node_cost(node, dump)


def host_contractions(mapping: isamap.Mapping) -> list[str]:
    """The contractions a mapping leaves to the host (a host statement that only casts a
    tensor to the next product's integer type is not one)."""
    return [
        n.describe()
        for n in mapping.nodes
        if n.op in ("host_matmul", "einsum")
        or (n.op == "host_stmt" and "+=" in str(n.attrs["statement"]))
    ]


@pytest.mark.parametrize("target_name", sorted(TARGETS))
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_contractions_map_to_the_matrix_instruction(name: str, target_name: str) -> None:
    """On gemmini the latency model itself puts every contraction on the array; on the other
    targets some of these small kernels are cheaper on the host (nnp's four 32x32 units and
    HBM latency, vecdsp's matrix-vector product), so there the host is ruled out to check that
    the rules found a complete mapping onto the target's instructions."""
    target = TARGETS[target_name]
    kernel = typed_for(KERNELS[name], target)
    if target_name == "gemmini":  # the latency model itself puts them on the array
        result = _on_gemmini(name)
    else:
        result = isamap.compile(kernel, target, cost=NoHostContractions(target, kernel))
    contractions = sum(1 for s in kernel.statements if s.accumulate and len(s.accesses()) == 2)
    calls = result.mapping.instruction_calls()
    assert calls, f"{name}: no instruction call in\n{result.mapping}"
    assert {c.attrs["instruction"] for c in calls} <= set(matrix_instructions(target))
    assert not host_contractions(result.mapping), str(result.mapping)
    assert len(calls) <= contractions
    assert result.report.cycles >= result.report.roofline_cycles > 0
    inputs = isamap.random_inputs(kernel, seed=7)
    _check(result.simulate(inputs), kernel, inputs)  # CPU targets: native in tests/codegen
    _check(run_program(result.program, result.mapping, kernel, target, inputs), kernel, inputs)


@pytest.mark.parametrize("target_name", sorted(TARGETS))
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_every_variant_computes_the_kernel(name: str, target_name: str) -> None:
    kernel, target = KERNELS[name], TARGETS[target_name]
    sat = saturated(name, target_name)
    variants = sat.variants(4)
    assert variants
    costs = [v.cost for v in variants]
    assert costs == sorted(costs)
    inputs = isamap.random_inputs(kernel, seed=3)
    from isamap.hardware.functional import run_mapping

    for mapping in variants:
        _check(run_mapping(mapping, kernel, target, inputs), kernel, inputs)


def test_conv_uses_im2col_window() -> None:
    result = _on_gemmini("conv2d_stride2")
    windows = [n for n in result.mapping.nodes if n.op == "window"]
    assert len(windows) == 1
    call = result.mapping.instruction_calls()[0]
    # n, h, w group into one axis (1 * 6 * 6) and the 8 filters into the other, in whichever
    # orientation the cost model prefers; K groups c, r, s (4 * 3 * 3)
    assert {call.attrs["m"], call.attrs["n"]} == {36, 8} and call.attrs["k"] == 36


def test_depthwise_channels_are_packed_block_diagonally(gemmini: isamap.Target) -> None:
    """Six channels of 3x3 taps: one product per channel uses one array column in 16; the
    packing rule puts the six in one product with block-diagonal weights, and it is cheaper."""
    kernel = typed_for(KERNELS["depthwise"], gemmini)
    result = _on_gemmini("depthwise")
    (call,) = result.mapping.instruction_calls()
    assert any(n.op == "block_diag" for n in result.mapping.nodes)
    assert call.attrs["b"] == 1 and 6 in (call.attrs["m"], call.attrs["n"])
    assert call.attrs["k"] == 6 * 9
    per_channel = isamap.compile(kernel, gemmini, disabled_rules=["einsum-pack-channels"])
    (plain,) = per_channel.mapping.instruction_calls()
    assert plain.attrs["b"] == 6 and 1 in (plain.attrs["m"], plain.attrs["n"])
    assert result.report.cycles < per_channel.report.cycles
    inputs = isamap.random_inputs(kernel)
    _check(result.run(inputs), kernel, inputs)


def test_gru_gate_gemms_are_fused(gemmini: isamap.Target) -> None:
    kernel = typed_for(KERNELS["gru_cell"], gemmini)
    result = _on_gemmini("gru_cell")
    calls = result.mapping.instruction_calls()
    # six gate products in fewer calls: X.[Wz|Wr|Wh] and H.[Uz|Ur|Uh] (operand-sharing fusion)
    # or a gate's X.Wz + H.Uz accumulated over one K (sum fusion), or both; each product's
    # MACs computed once (batch 3, input 20, hidden 24)
    assert 2 <= len(calls) <= 4
    macs = sum(
        int(str(c.attrs["b"]))
        * int(str(c.attrs["m"]))
        * int(str(c.attrs["n"]))
        * int(str(c.attrs["k"]))
        for c in calls
    )
    assert macs == 3 * 24 * (3 * 20 + 3 * 24)
    assert sum(n.op == "concat" for n in result.mapping.nodes) >= 2
    unfused = isamap.compile(kernel, gemmini, cost="instructions")
    assert unfused.report.instruction_counts["compute_preloaded"] > 0


def test_relu_epilogue_is_fused_into_the_store(gemmini: isamap.Target) -> None:
    kernel = typed_for(isamap.load_kernel("examples/kernels/gemm_relu.kernel"), gemmini)
    result = isamap.compile(kernel, gemmini)
    (call,) = result.mapping.instruction_calls()
    assert call.attrs["epilogue"] == "relu"
    assert not result.mapping.host_ops()


def test_sigmoid_runs_on_the_host(gemmini: isamap.Target) -> None:
    kernel = isamap.parse_kernel(
        """
        tensor A[8, 8] i8
        tensor B[8, 8] i8
        T[i, j] += A[i, k] * B[k, j]
        S[i, j] = sigmoid(T[i, j])
        """
    )
    result = isamap.compile(kernel, gemmini)
    host = result.mapping.host_ops()
    assert [n.attrs.get("fn") for n in host] == ["sigmoid"]
    assert result.report.instruction_counts["host.sigmoid"] == 64
