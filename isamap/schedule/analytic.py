"""An analytic cost for one mapped operation: instruction issues, bytes moved, cycles, energy.

This is the first, honest model the `latency` cost model asks: instruction issues x issue interval,
bytes moved / DRAM bandwidth, overlapped (decoupled access/execute), plus fill and memory latency.
The scheduler replaces the matrix part with real tiling and loop-order search.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from isamap.hardware.matrix_form import MatrixForm, matrix_form
from isamap.hardware.target import Instruction, Target

__all__ = [
    "TRANSCENDENTAL",
    "OpCost",
    "host_elementwise",
    "host_matmul",
    "layout_move",
    "matmul_call",
    "matrix_group",
]

#: Elementwise functions that cost `transcendental_cycles` on a unit instead of one cycle.
TRANSCENDENTAL = frozenset({"sigmoid", "tanh", "exp"})


@dataclass(frozen=True)
class OpCost:
    """Cycles, instruction issues by name, DRAM bytes, MACs and energy of one operation."""

    cycles: float
    counts: Counter[str] = field(default_factory=Counter)
    dram_bytes: float = 0.0
    macs: int = 0
    energy_pj: float = 0.0


@dataclass(frozen=True)
class MatrixGroup:
    """A matrix instruction with its companions: the one that reuses the stationary operand,
    the move that loads its inputs, the move that stores its output, and the preload."""

    compute: Instruction
    form: MatrixForm
    accumulate: Instruction | None
    load: Instruction | None
    store: Instruction | None
    preload: Instruction | None


def _writes(ins: Instruction) -> str:
    return ins.operands[ins.semantics.statements[0].target]


def _reads(ins: Instruction) -> set[str]:
    target = ins.semantics.statements[0].target
    return {mem for t, mem in ins.operands.items() if t != target}


def matrix_group(target: Target, name: str) -> MatrixGroup:
    """The matrix instruction `name` of `target` and the instructions that work with it."""
    compute = target.instruction(name)
    form = matrix_form(compute.semantics)
    if form is None:
        raise ValueError(f"instruction '{name}' has no matrix form")
    dram = target.dram().name
    in_mem = compute.operands[form.lhs]
    out_mem = compute.operands[form.out]
    accumulate = load = store = preload = None
    for ins in target.instructions.values():
        if ins is compute:
            continue
        if (
            ins.kind == "compute"
            and ins.reuses_stationary
            and ins.semantics_text.replace(" ", "") == compute.semantics_text.replace(" ", "")
        ):
            accumulate = accumulate or ins
        elif ins.kind != "compute" and ins.stationary is not None:
            preload = preload or ins
        elif ins.kind == "move" and _writes(ins) == in_mem and dram in _reads(ins):
            load = load or ins
        elif ins.kind == "move" and _writes(ins) == dram and out_mem in _reads(ins):
            store = store or ins
    return MatrixGroup(compute, form, accumulate, load, store, preload)


def _tile_elems(ins: Instruction) -> int:
    target = ins.semantics.statements[0].target
    return math.prod(ins.operand_shape(target))


def matmul_call(
    target: Target, name: str, b: int, m: int, n: int, k: int, epilogue: str | None = None
) -> OpCost:
    """Cost of `(Instr name b m n k x y)`: the Bmm tiled and padded to the instruction."""
    g = matrix_group(target, name)
    form, comp = g.form, g.compute
    bt = math.ceil(b / form.tile("b"))
    mt, nt, kt = (math.ceil(d / form.tile(r)) for d, r in ((m, "m"), (n, "n"), (k, "k")))
    calls = bt * mt * nt * kt
    stationary = comp.stationary
    if stationary == form.rhs:  # weight-stationary: hold a K x N tile, stream the M tiles
        preloads = bt * nt * kt
    elif stationary == form.lhs:
        preloads = bt * mt * kt
    else:
        preloads = calls
    counts: Counter[str] = Counter()
    if g.accumulate is not None:
        counts[comp.name] += preloads
        counts[g.accumulate.name] += calls - preloads
    else:
        counts[comp.name] += calls
    compute_cycles = calls * comp.issue_cycles
    if g.preload is not None:
        counts[g.preload.name] += preloads
        compute_cycles += preloads * g.preload.issue_cycles

    in_bytes = target.dtype_bytes(target.input_dtype)
    a_bytes, b_bytes = b * m * k * in_bytes, b * k * n * in_bytes
    c_bytes = b * m * n * in_bytes
    onchip = target.memories[comp.operands[form.lhs]].capacity_bytes
    if a_bytes + b_bytes <= onchip:
        traffic_in = a_bytes + b_bytes
    else:  # one operand is re-fetched once per tile of the other: take the better loop order
        traffic_in = min(a_bytes * nt + b_bytes, a_bytes + b_bytes * mt)
    if g.load is not None:
        counts[g.load.name] += math.ceil(traffic_in / (_tile_elems(g.load) * in_bytes))
    if g.store is not None:
        counts[g.store.name] += bt * mt * nt
    dram = target.dram()
    dma_cycles = (traffic_in + c_bytes) / dram.bandwidth_bytes_per_cycle
    cycles = max(compute_cycles, dma_cycles) + comp.latency_cycles + dram.latency_cycles
    macs = b * m * n * k
    unit = target.units[comp.unit]
    energy = (
        calls * math.prod(form.extents.values()) * unit.energy_pj_per_mac
        + (traffic_in + c_bytes) * dram.energy_pj_per_byte
        + sum(target.instructions[i].energy_pj * c for i, c in counts.items())
    )
    del epilogue  # a fused epilogue rides on the store: no extra issue
    return OpCost(cycles, counts, traffic_in + c_bytes, macs, energy)


def host_matmul(target: Target, b: int, m: int, n: int, k: int) -> OpCost:
    """A batched matrix product on the host unit."""
    macs = b * m * n * k
    host = target.host
    counts: Counter[str] = Counter({"host.mac": macs})
    return OpCost(macs / host.macs_per_cycle, counts, 0.0, macs, macs * host.energy_pj_per_mac)


def host_elementwise(target: Target, op: str, elements: int) -> OpCost:
    """`elements` applications of elementwise `op` (`+`, `relu`, `sigmoid`, ...) on the host."""
    host = target.host
    per = host.transcendental_cycles if op in TRANSCENDENTAL else 1.0
    counts: Counter[str] = Counter({f"host.{op}": elements})
    return OpCost(elements * per / host.elementwise_per_cycle, counts)


def layout_move(target: Target, elements: int) -> OpCost:
    """A data-layout operation (transpose, im2col, concat): read and write every element once."""
    dram = target.dram()
    nbytes = 2 * elements * target.dtype_bytes(target.input_dtype)
    return OpCost(
        nbytes / dram.bandwidth_bytes_per_cycle,
        Counter(),
        nbytes,
        0,
        nbytes * dram.energy_pj_per_byte,
    )
