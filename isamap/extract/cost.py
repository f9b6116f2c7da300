"""Cost models: the cost of one e-node given the e-graph's shapes. Plain objects, chosen by name.

A cost model has a `name` and `node_cost(node, dump) -> float`, the node's own cost; extraction
adds children (each shared e-class once). `op_cost` is the analytic cost every model starts from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from isamap.egraph.dump import EGraphDump, ENode, Ref
from isamap.hardware.target import Target
from isamap.ir.einsum import einsum_extents
from isamap.ir.errors import IsamapError
from isamap.ir.kernel import Kernel
from isamap.schedule.analytic import (
    OpCost,
    host_contraction,
    host_elementwise,
    host_matmul,
    host_statement,
    layout_move,
    vector_elementwise,
)
from isamap.schedule.scheduler import best_call

__all__ = [
    "COST_MODELS",
    "CostModel",
    "EnergyCost",
    "InstructionsCost",
    "LatencyCost",
    "cost_model",
    "op_cost",
]

#: A statement run by the generic host fallback costs this much more than the same work run as
#: structured host operations: it is an interpreted loop nest.
HOST_STMT_PENALTY = 1.5


@runtime_checkable
class CostModel(Protocol):
    """What extraction needs from a cost model."""

    name: str

    def node_cost(self, node: ENode, dump: EGraphDump) -> float: ...


def _shape(dump: EGraphDump, node: ENode) -> tuple[int, ...]:
    return dump.shapes.get(node.eclass, ())


def _child_shape(dump: EGraphDump, node: ENode, index: int) -> tuple[int, ...]:
    ref = node.args[index]
    assert isinstance(ref, Ref)
    return dump.shapes.get(ref.eclass, ())


def _host_stmt_cost(target: Target, kernel: Kernel, index: int) -> OpCost:
    """A statement on the host (schedule.analytic.host_statement: arithmetic and DRAM traffic),
    with the penalty that keeps extraction off it where anything else exists."""
    cost = host_statement(target, kernel, index)
    return OpCost(
        cost.cycles * HOST_STMT_PENALTY,
        cost.counts,
        cost.dram_bytes,
        0,
        cost.energy_pj * HOST_STMT_PENALTY,
    )


def _instruction_call(node: ENode, target: Target, strategy: str) -> OpCost:
    """A matrix call, as the scheduler's `strategy` would run it (memoised per shape)."""
    first = 1 if node.op == "Instr" else 2
    b, m, n, k = (node.int_arg(first + i) for i in range(4))
    _, timing = best_call(target, node.str_arg(0), b, m, n, k, strategy)
    return OpCost(timing.cycles, timing.counts, timing.bytes["dram"], timing.macs, timing.energy_pj)


def op_cost(
    node: ENode, dump: EGraphDump, target: Target, kernel: Kernel, strategy: str = "heuristic"
) -> OpCost:
    """The cost of one e-node on its own (children excluded): matrix calls as scheduled by
    `strategy`, everything else from the analytic model."""
    op = node.op
    elems = math.prod(_shape(dump, node))
    if op in ("Input", "Reshape", "Slice", "Concat", "Window", "TNil", "TCons"):
        # views: the DMA loads that read them gather the parts from where they lie (a window is
        # im2col on the fly: the loads of the instruction's operand tiles read every windowed
        # element, duplicates included, and are costed there)
        return OpCost(0.0)
    if op in ("Transpose", "Broadcast", "BlockDiag"):
        return layout_move(target, elems)
    if op == "Full":
        return host_elementwise(target, "fill", elems, operands=0)
    if op == "Bmm":
        return host_matmul(
            target, node.int_arg(0), node.int_arg(1), node.int_arg(2), node.int_arg(3)
        )
    if op == "Einsum":
        x, y = _child_shape(dump, node, 1), _child_shape(dump, node, 2)
        fitted = einsum_extents(node.str_arg(0), x, y)
        assert fitted is not None, node
        macs = math.prod(fitted[0].values())
        return host_contraction(target, macs, math.prod(x) + math.prod(y) + elems)
    if op in ("Instr", "InstrAct"):
        return _instruction_call(node, target, strategy)
    if op in ("VecFn", "VecEw"):
        return vector_elementwise(target, node.str_arg(0), elems)
    if op == "Ew":
        return host_elementwise(target, node.str_arg(0), elems, operands=2)
    if op == "Fn":
        return host_elementwise(target, node.str_arg(0), elems)
    if op == "ReduceSum":
        return host_elementwise(target, "+", math.prod(_child_shape(dump, node, 0)))
    if op == "HostStmt":
        return _host_stmt_cost(target, kernel, node.int_arg(0))
    raise ValueError(f"no cost for e-node {op}")


class LatencyCost:
    """Cycles: matrix calls as the scheduler runs them, other operations from the analytic model,
    operations one after another."""

    name = "latency"

    def __init__(self, target: Target, kernel: Kernel) -> None:
        self.target, self.kernel = target, kernel

    def node_cost(self, node: ENode, dump: EGraphDump) -> float:
        return op_cost(node, dump, self.target, self.kernel).cycles


class EnergyCost:
    """Picojoules: MACs, bytes per memory level (as scheduled), host work."""

    name = "energy"

    def __init__(self, target: Target, kernel: Kernel) -> None:
        self.target, self.kernel = target, kernel

    def node_cost(self, node: ENode, dump: EGraphDump) -> float:
        return op_cost(node, dump, self.target, self.kernel).energy_pj


class InstructionsCost:
    """Instruction issues: target instructions, one per host operation, DMA tiles for layouts."""

    name = "instructions"

    def __init__(self, target: Target, kernel: Kernel) -> None:
        self.target, self.kernel = target, kernel

    def node_cost(self, node: ENode, dump: EGraphDump) -> float:
        cost = op_cost(node, dump, self.target, self.kernel)
        issues = float(sum(cost.counts.values()))
        if node.op in ("Transpose", "Broadcast"):
            issues += math.ceil(cost.dram_bytes / 256)  # one 16x16-byte DMA tile per issue
        return issues


#: Shipped cost models by name.
COST_MODELS: dict[str, Callable[[Target, Kernel], CostModel]] = {
    "latency": LatencyCost,
    "energy": EnergyCost,
    "instructions": InstructionsCost,
}


def cost_model(spec: str | object, target: Target, kernel: Kernel) -> CostModel:
    """A cost model from a name in COST_MODELS or an object following CostModel."""
    if isinstance(spec, str):
        try:
            factory = COST_MODELS[spec]
        except KeyError:
            known = ", ".join(COST_MODELS)
            raise IsamapError(f"unknown cost model '{spec}' (known: {known})") from None
        return factory(target, kernel)
    if isinstance(spec, CostModel):
        return spec
    raise TypeError(f"not a cost model: {spec!r}")
