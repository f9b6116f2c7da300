"""Extraction: cost models by name or object, shared subterms counted once, variants."""

from __future__ import annotations

import math

import pytest

import isamap
from isamap.egraph.dump import EGraphDump, ENode
from isamap.extract import InstructionsCost, LatencyCost, cost_model, extract, extract_variants
from tests.typed import check_outputs, typed_for


@pytest.fixture(scope="module")
def gemmini() -> isamap.Target:
    return isamap.load_target("gemmini")


SHARED = """
tensor A[24, 40] i8
tensor B[24, 20] i8
tensor D[24, 36] i8
C[i, j] += A[k, i] * B[k, j]
E[i, l] += A[k, i] * D[k, l]
"""


class NoFusion:
    """Latency, but concatenation (GEMM fusion) forbidden: the two products stay apart."""

    name = "no-fusion"

    def __init__(self, target: isamap.Target, kernel: isamap.Kernel) -> None:
        self.latency = LatencyCost(target, kernel)

    def node_cost(self, node: ENode, dump: EGraphDump) -> float:
        return math.inf if node.op == "Concat" else self.latency.node_cost(node, dump)


def test_shared_subterm_is_paid_once(gemmini: isamap.Target) -> None:
    kernel = isamap.parse_kernel(SHARED)
    mapping = isamap.compile(kernel, gemmini, cost=NoFusion(gemmini, kernel)).mapping
    assert len(mapping.instruction_calls()) == 2
    transposes = [n for n in mapping.nodes if n.op == "transpose"]
    assert len(transposes) == 1  # A's transpose feeds both calls, and is paid for once
    users = [n for n in mapping.nodes if transposes[0].id in n.args]
    assert len(users) == 2
    assert mapping.cost == pytest.approx(math.fsum(n.cost for n in mapping.nodes))


def test_cost_models_by_name(gemmini: isamap.Target) -> None:
    kernel = typed_for(isamap.load_kernel("examples/kernels/gemm.kernel"), gemmini)
    assert isinstance(cost_model("latency", gemmini, kernel), LatencyCost)
    assert isinstance(cost_model("instructions", gemmini, kernel), InstructionsCost)
    with pytest.raises(isamap.IsamapError, match="unknown cost model 'speed'"):
        cost_model("speed", gemmini, kernel)
    by_instructions = isamap.compile(kernel, gemmini, cost="instructions")
    assert by_instructions.mapping.cost_model == "instructions"
    assert by_instructions.mapping.cost == sum(by_instructions.report.instruction_counts.values())


class NoAccelerator:
    """A user's cost model: forbids the matrix instruction, so everything runs on the host."""

    name = "no-accelerator"

    def node_cost(self, node: ENode, dump: EGraphDump) -> float:
        if node.op in ("Instr", "InstrAct"):
            return math.inf
        return 1.0


def test_custom_cost_model_object(gemmini: isamap.Target) -> None:
    kernel = typed_for(isamap.load_kernel("examples/kernels/gemm.kernel"), gemmini)
    result = isamap.compile(kernel, gemmini, cost=NoAccelerator())
    assert not result.mapping.instruction_calls()
    assert result.mapping.cost_model == "no-accelerator"
    inputs = isamap.random_inputs(kernel)
    check_outputs(result.run(inputs), kernel, inputs)


def test_variants_are_distinct_and_sorted(gemmini: isamap.Target) -> None:
    kernel = isamap.load_kernel("examples/kernels/gemm_relu.kernel")
    sat = isamap.saturate(kernel, gemmini)
    variants = extract_variants(sat, 5)
    assert len(variants) >= 3
    texts = {"\n".join(str(v).splitlines()[1:]) for v in variants}
    assert len(texts) == len(variants)
    assert [v.cost for v in variants] == sorted(v.cost for v in variants)
    assert variants[0].cost == extract(sat).cost
    assert any(n.op == "fn" for v in variants for n in v.nodes)  # relu on the host is one


def test_mapping_json_round_trip(gemmini: isamap.Target) -> None:
    import json

    conv = typed_for(isamap.load_kernel("examples/kernels/conv2d.kernel"), gemmini)
    mapping = isamap.compile(conv, gemmini).mapping
    data = json.loads(mapping.to_json())
    assert data["outputs"] == {"O": len(mapping.nodes) - 1}
    assert [n["op"] for n in data["nodes"]] == [n.op for n in mapping.nodes]
    assert "window" in str(mapping)


def test_the_host_fallback_is_penalised_in_extraction_not_in_time() -> None:
    """A statement only the generic host fallback computes: extraction weighs it at
    HOST_STMT_PENALTY times its time, to keep off it where anything else exists, but the
    simulator charges the time it takes (the analytic host model's), and the program runs."""
    from isamap.extract.cost import HOST_STMT_PENALTY
    from isamap.schedule.analytic import host_statement

    kernel = isamap.parse_kernel("tensor S[64, 48] f32\nY[i, j] = S[i, j] * 0.25\n", name="s")
    result = isamap.compile(kernel, "nnp")
    kernel = result.kernel
    assert [n.op for n in result.mapping.nodes] == ["input", "host_stmt"]
    cycles = host_statement(result.target, kernel, 0).cycles
    assert result.report.cycles == pytest.approx(cycles)
    assert result.mapping.cost == pytest.approx(HOST_STMT_PENALTY * cycles)
    inputs = isamap.random_inputs(kernel, seed=2)
    check_outputs(result.run(inputs), kernel, inputs)
