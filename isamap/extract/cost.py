"""Cost models: the cost of one e-node given the e-graph's shapes. Plain objects, chosen by name.

A cost model has a `name` and `node_cost(node, dump) -> float`, the node's own cost; extraction
adds children (each shared e-class once). `op_cost` is the analytic cost every model starts from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from isamap.egraph.dump import EGraphDump, ENode, Ref
from isamap.egraph.vocabulary import LIST_CONSTRUCTORS, constructor
from isamap.hardware.direct_conv import best_conv_schedule
from isamap.hardware.target import Target
from isamap.ir.conv import conv_call_geometry
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
    first = {"Instr": 1, "InstrAct": 2, "InstrBias": 2, "InstrTaps": 3}.get(node.op, 4)
    b, m, n, k = (node.int_arg(first + i) for i in range(4))  # InstrScale: after its scale
    bias = node.op in ("InstrBias", "InstrBiasScale")
    taps = node.str_arg(1) if node.op == "InstrTaps" else ""  # k: each tap's depth
    _, timing = best_call(target, node.str_arg(0), b, m, n, k, strategy, bias=bias, taps=taps)
    return OpCost(timing.cycles, timing.counts, timing.bytes["dram"], timing.macs, timing.energy_pj)


def _conv_call(node: ENode, dump: EGraphDump, target: Target) -> OpCost:
    """A direct-convolution call, as its own model schedules it (memoised per geometry)."""
    x, w = _child_shape(dump, node, 3), _child_shape(dump, node, 4)
    g = conv_call_geometry(node.str_arg(1), x, w)
    bias = node.op == "InstrConvBias"
    _, timing = best_conv_schedule(target, node.str_arg(0), g, bias)
    return OpCost(timing.cycles, timing.counts, timing.bytes["dram"], timing.macs, timing.energy_pj)


def _einsum_cost(node: ENode, dump: EGraphDump, target: Target, elems: int) -> OpCost:
    x, y = _child_shape(dump, node, 1), _child_shape(dump, node, 2)
    fitted = einsum_extents(node.str_arg(0), x, y)
    assert fitted is not None, node
    macs = math.prod(fitted[0].values())
    return host_contraction(target, macs, math.prod(x) + math.prod(y) + elems)


_HostCost = Callable[[ENode, EGraphDump, Target, int], OpCost]

#: The constructors of cost class "host", each priced by the analytic host model.
HOST_COSTS: dict[str, _HostCost] = {
    "Bmm": lambda n, d, t, e: host_matmul(
        t, n.int_arg(0), n.int_arg(1), n.int_arg(2), n.int_arg(3)
    ),
    "Einsum": _einsum_cost,
    "Ew": lambda n, d, t, e: host_elementwise(t, n.str_arg(0), e, operands=2),
    "Fn": lambda n, d, t, e: host_elementwise(t, n.str_arg(0), e),
    # the narrowing a tensor's store makes as it writes the value (the host writes its result
    # at the narrowed type; a call's store narrows on its way out): free, as it always was
    "Narrow": lambda n, d, t, e: OpCost(0.0),
    "ReduceSum": lambda n, d, t, e: host_elementwise(t, "+", math.prod(_child_shape(d, n, 0))),
}


def op_cost(
    node: ENode, dump: EGraphDump, target: Target, kernel: Kernel, strategy: str = "heuristic"
) -> OpCost:
    """The cost of one e-node on its own (children excluded), by its constructor's cost class
    (`egraph/vocabulary.py`): matrix calls as scheduled by `strategy`, everything else from the
    analytic model."""
    if node.op in LIST_CONSTRUCTORS:
        return OpCost(0.0)
    cost_class = constructor(node.op).cost
    elems = math.prod(_shape(dump, node))
    if cost_class == "view":
        # the DMA loads that read a view gather the parts from where they lie (a window is
        # im2col on the fly: the loads of the instruction's operand tiles read every windowed
        # element, duplicates included, and are costed there)
        return OpCost(0.0)
    if cost_class == "move":
        return layout_move(target, elems)
    if cost_class == "constant":
        return host_elementwise(target, "fill", elems, operands=0)
    if cost_class == "instruction" and node.op in ("InstrConv", "InstrConvBias"):
        return _conv_call(node, dump, target)
    if cost_class == "instruction":
        return _instruction_call(node, target, strategy)
    if cost_class == "vector":
        return vector_elementwise(target, node.str_arg(0), elems)
    if cost_class == "statement":
        return _host_stmt_cost(target, kernel, node.int_arg(0))
    return HOST_COSTS[node.op](node, dump, target, elems)


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
