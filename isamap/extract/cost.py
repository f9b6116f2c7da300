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
from isamap.hardware.timing import ArrayModel, call_timing, tap_call
from isamap.ir.conv import conv_call_geometry
from isamap.ir.einsum import einsum_extents
from isamap.ir.errors import IsamapError
from isamap.ir.kernel import Kernel
from isamap.ir.program import MatmulCall
from isamap.ir.taps import TapGeometry
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
    "element_sizes",
    "op_cost",
    "read_transposed",
]

#: A statement run by the generic host fallback costs the extraction this much more than its
#: time: it is an interpreted loop nest, kept for what nothing else computes. The penalty steers
#: the latency and energy models only; `op_cost` (what the simulator charges) is its real time.
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


def element_sizes(dump: EGraphDump, target: Target, kernel: Kernel) -> dict[str, int]:
    """Bytes per element of every e-class's value, sized as the simulator sizes the mapping node
    that computes it (`hardware.sim.element_bytes`): a kernel tensor (an input, a statement's
    result) at its declared or inferred type, a `Narrow` or a scaling store at the type it
    narrows to, a matrix call's result as its store writes it, a constant at the target's input
    type, anything else (views, moves, host arithmetic) at its widest operand's. Where an
    e-class's e-nodes disagree, the first of those kinds that sizes it decides; among views and
    host arithmetic, the widest (a product's i32 value re-laid out stays i32). Memoised per dump."""
    hit = _SIZES.get(id(dump))
    if hit is not None and hit[0] is dump and hit[1] is target and hit[2] is kernel:
        return hit[3]
    default = target.dtype_bytes(target.input_dtype)
    sizes: dict[str, int] = {}
    derived: list[str] = []  # e-classes sized from their operands (the fixpoint below)
    for cid, nodes in dump.classes.items():
        own = [v for n in nodes if (v := _own_bytes(n, target, kernel, default)) is not None]
        if own:
            sizes[cid] = min(own)
        elif nodes and nodes[0].op not in LIST_CONSTRUCTORS:
            derived.append(cid)
    for name, cid in dump.results.items():
        if name in kernel.shapes:
            sizes[cid] = target.dtype_bytes(kernel.dtype(name))
    settled = set(sizes)
    for _ in range(len(derived) + 1):  # widths only grow: each pass settles one more or stops
        changed = False
        for cid in derived:
            if cid in settled:
                continue
            each = [max(known) for n in dump.classes[cid]
                    if (known := [sizes[r] for r in n.refs() if r in sizes])]  # fmt: skip
            if each and max(each) != sizes.get(cid):
                sizes[cid] = max(each)
                changed = True
        if not changed:
            break
    if len(_SIZES) > 8:
        _SIZES.clear()
    _SIZES[id(dump)] = (dump, target, kernel, sizes)
    return sizes


_SIZES: dict[int, tuple[EGraphDump, Target, Kernel, dict[str, int]]] = {}


def _own_bytes(node: ENode, target: Target, kernel: Kernel, default: int) -> int | None:
    """An e-node's element size where the node itself says it (its type or its store's), else
    None (its operands' widest decides)."""
    op = node.op
    if op in LIST_CONSTRUCTORS:
        return None
    if op == "Input":
        name = node.str_arg(0)
        return target.dtype_bytes(kernel.dtype(name)) if name in kernel.shapes else default
    if op == "HostStmt":
        return target.dtype_bytes(kernel.dtype(kernel.statements[node.int_arg(0)].target))
    if op == "Narrow" or op in _SCALED:
        return target.dtype_bytes(node.str_arg(0 if op == "Narrow" else 2))
    if constructor(op).cost == "instruction" and op not in _CONV_CALLS:
        return ArrayModel.for_instruction(target, node.str_arg(0)).out_bytes
    return None if node.refs() else default  # a constant: the input type


#: Matrix calls whose store scales and narrows the result (the type it narrows to: literal 2).
_SCALED = ("InstrScale", "InstrBiasScale")
_CONV_CALLS = ("InstrConv", "InstrConvBias")


def _instruction_call(
    node: ENode, dump: EGraphDump, target: Target, kernel: Kernel, strategy: str
) -> OpCost:
    """A matrix call as the scheduler's `strategy` schedules it (memoised per shape), timed as
    the simulator times it: its operands read at their own element sizes in DRAM (an f32 window
    gathered im2col-style moves four bytes per duplicated element, a tap accumulation's halo
    once), its result written at the width its store writes (`hardware.sim`)."""
    first = {"Instr": 1, "InstrAct": 2, "InstrBias": 2, "InstrTaps": 3}.get(node.op, 4)
    b, m, n, k = (node.int_arg(first + i) for i in range(4))  # InstrScale: after its scale
    bias = node.op in ("InstrBias", "InstrBiasScale")
    taps = node.str_arg(1) if node.op == "InstrTaps" else ""  # k: each tap's depth
    name = node.str_arg(0)
    chosen, timing = best_call(target, name, b, m, n, k, strategy, bias=bias, taps=taps)
    model = ArrayModel.for_instruction(target, name)
    sizes = element_sizes(dump, target, kernel)
    operands = [sizes[r] for r in node.refs()[:2] if r in sizes]
    retimed = model.reading(max(operands)) if operands else model
    if node.op in _SCALED:
        retimed = retimed.writing(target.dtype_bytes(node.str_arg(2)))
    if retimed is not model:  # the schedule the scheduler picks, at the widths the data has
        call = MatmulCall(0, name, b, m, n, k, model.block, bias=bias)
        if taps:
            call = tap_call(call, TapGeometry.parse(taps), model.block[2])
        timing = call_timing(retimed, call, chosen)
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
    (`egraph/vocabulary.py`): matrix calls as scheduled by `strategy` and timed at the widths
    their data has, everything else from the analytic model, host work and layout moves taking
    at least their DRAM traffic at those widths, as the simulator charges them."""
    if node.op in LIST_CONSTRUCTORS:
        return OpCost(0.0)
    if node.op == "Transpose" and node.eclass in read_transposed(dump, target):
        return OpCost(0.0)
    cost = _analytic(node, dump, target, kernel, strategy)
    row = constructor(node.op)
    if row.unit == "host" or row.cost == "move":
        return _through_dram(node, dump, target, kernel, cost, row.unit == "host")
    return cost


def read_transposed(dump: EGraphDump, target: Target) -> frozenset[str]:
    """E-classes of transposes that move no data: every reader is a matrix call on a unit with
    a transposer, whose loads read the value transposed on the way in (`hardware.sim.
    free_transposes`, the same test on the chosen mapping). Two kinds of reader do not count
    against it: a transpose undoing it (the value it gives is at hand untransposed) and an
    alternative to such a call in the call's own e-class (the host product a call stands in
    for: if extraction took that, the host's product would cost far more than the move).
    Memoised per dump."""
    hit = _TRANSPOSED.get(id(dump))
    if hit is not None and hit[0] is dump and hit[1] is target:
        return hit[2]
    readers: dict[str, list[ENode]] = {}
    for nodes in dump.classes.values():
        for n in nodes:
            for ref in n.refs():
                readers.setdefault(ref, []).append(n)

    def transposing(n: ENode) -> bool:
        if n.op in LIST_CONSTRUCTORS or constructor(n.op).cost != "instruction":
            return False
        unit = target.units.get(target.instructions[n.str_arg(0)].unit)
        return unit is not None and unit.transposer

    found: set[str] = set()
    for cid, nodes in dump.classes.items():
        if not any(n.op == "Transpose" for n in nodes):
            continue
        calls = {n.eclass for n in readers.get(cid, []) if transposing(n)}
        others = [n for n in readers.get(cid, []) if n.op != "Transpose" and not transposing(n)]
        if calls and all(n.eclass in calls for n in others):
            found.add(cid)
    frozen = frozenset(found)
    if len(_TRANSPOSED) > 8:
        _TRANSPOSED.clear()
    _TRANSPOSED[id(dump)] = (dump, target, frozen)
    return frozen


_TRANSPOSED: dict[int, tuple[EGraphDump, Target, frozenset[str]]] = {}


def _through_dram(
    node: ENode, dump: EGraphDump, target: Target, kernel: Kernel, cost: OpCost, host: bool
) -> OpCost:
    """`cost` taking at least the DRAM traffic the simulator charges it, at the element sizes
    of the values (`element_sizes`): host work reads each operand and writes its result once; a
    layout move reads and writes every element (`hardware.sim.simulate_timing`)."""
    sizes = element_sizes(dump, target, kernel)
    default = target.dtype_bytes(target.input_dtype)

    def nbytes(cid: str) -> int:
        return math.prod(dump.shapes.get(cid, ())) * sizes.get(cid, default)

    if host:
        moved = nbytes(node.eclass) + sum(nbytes(c) for c in dict.fromkeys(_operands(node, dump)))
    else:
        moved = 2 * nbytes(node.eclass)
    cycles = moved / target.dram().bandwidth_bytes_per_cycle
    if cycles <= cost.cycles:
        return cost
    return OpCost(cycles, cost.counts, float(moved), cost.macs, cost.energy_pj)


def _operands(node: ENode, dump: EGraphDump) -> list[str]:
    """The e-classes of a node's tensor operands, a TensorList's elements flattened."""
    out: list[str] = []
    for ref in node.refs():
        cell = dump.classes.get(ref, [])
        if not cell or cell[0].op not in LIST_CONSTRUCTORS:
            out.append(ref)
            continue
        while cell and cell[0].op == "TCons":
            head, tail = cell[0].refs()
            out.append(head)
            cell = dump.classes.get(tail, [])
    return out


def _analytic(
    node: ENode, dump: EGraphDump, target: Target, kernel: Kernel, strategy: str
) -> OpCost:
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
        return _instruction_call(node, dump, target, kernel, strategy)
    if cost_class == "vector":
        return vector_elementwise(target, node.str_arg(0), elems)
    if cost_class == "statement":
        return host_statement(target, kernel, node.int_arg(0))
    return HOST_COSTS[node.op](node, dump, target, elems)


class LatencyCost:
    """Cycles: matrix calls as the scheduler runs them, other operations from the analytic model,
    operations one after another."""

    name = "latency"

    def __init__(self, target: Target, kernel: Kernel) -> None:
        self.target, self.kernel = target, kernel

    def node_cost(self, node: ENode, dump: EGraphDump) -> float:
        return op_cost(node, dump, self.target, self.kernel).cycles * _steering(node)


class EnergyCost:
    """Picojoules: MACs, bytes per memory level (as scheduled), host work."""

    name = "energy"

    def __init__(self, target: Target, kernel: Kernel) -> None:
        self.target, self.kernel = target, kernel

    def node_cost(self, node: ENode, dump: EGraphDump) -> float:
        return op_cost(node, dump, self.target, self.kernel).energy_pj * _steering(node)


def _steering(node: ENode) -> float:
    """What the latency and energy models add to an e-node's real cost: the host fallback's
    penalty, which keeps extraction off it where anything else exists."""
    return HOST_STMT_PENALTY if node.op == "HostStmt" else 1.0


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
