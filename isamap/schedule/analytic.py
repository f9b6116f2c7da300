"""Analytic costs of the operations that are not matrix calls: host work and layout moves.

Matrix instruction calls are costed by the scheduler (`schedule.scheduler.best_call`): their tile
loops are timed by `hardware.timing`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from isamap.hardware.elementwise_form import elementwise_form
from isamap.hardware.target import Target
from isamap.ir.kernel import Access, Binary, Kernel, Unary, walk
from isamap.ir.ops import TRANSCENDENTAL  # the operators costing `transcendental_cycles`

__all__ = [
    "TRANSCENDENTAL",
    "OpCost",
    "host_contraction",
    "host_elementwise",
    "host_matmul",
    "host_statement",
    "layout_move",
    "vector_elementwise",
]


@dataclass(frozen=True)
class OpCost:
    """Cycles, instruction issues by name, DRAM bytes, MACs and energy of one operation."""

    cycles: float
    counts: Counter[str] = field(default_factory=Counter)
    dram_bytes: float = 0.0
    macs: int = 0
    energy_pj: float = 0.0


def _host(
    target: Target, compute: float, elements: int, counts: Counter[str], macs: int, energy: float
) -> OpCost:
    """Host work that reads and writes `elements` through DRAM: compute and traffic overlap (the
    host's caches and prefetchers hide the latency)."""
    dram = target.dram()
    nbytes = elements * target.dtype_bytes(target.input_dtype)
    cycles = max(compute, nbytes / dram.bandwidth_bytes_per_cycle)
    energy += nbytes * dram.energy_pj_per_byte
    return OpCost(cycles, counts, nbytes, macs, energy)


def host_statement(target: Target, kernel: Kernel, index: int) -> OpCost:
    """Statement `index` of `kernel` run on the host as written: its arithmetic per point of its
    iteration space, and the DRAM traffic of every tensor it reads and the one it writes (read
    back too when it accumulates), each once; compute and traffic overlap."""
    s = kernel.statements[index]
    space = math.prod(kernel.extents[index].values())
    nodes = list(walk(s.expr))
    ops = sum(isinstance(e, Binary | Unary) for e in nodes) + int(s.accumulate)
    slow = sum(
        (isinstance(e, Unary) and e.fn in TRANSCENDENTAL)
        or (isinstance(e, Binary) and e.op in TRANSCENDENTAL)
        for e in nodes
    )
    host = target.host
    compute = space * (ops + slow * (host.transcendental_cycles - 1)) / host.elementwise_per_cycle
    counts: Counter[str] = Counter({"host.stmt": space * max(ops, 1)})
    energy = compute * host.elementwise_per_cycle * host.energy_pj_per_mac
    read = {e.tensor for e in nodes if isinstance(e, Access)}
    moved = sum(math.prod(kernel.shapes[t]) for t in read)
    moved += math.prod(kernel.shapes[s.target]) * (2 if s.accumulate else 1)
    return _host(target, compute, moved, counts, 0, energy)


def host_matmul(target: Target, b: int, m: int, n: int, k: int) -> OpCost:
    """A batched matrix product on the host unit."""
    macs = b * m * n * k
    host = target.host
    counts: Counter[str] = Counter({"host.mac": macs})
    moved = b * (m * k + k * n + m * n)
    return _host(
        target, macs / host.macs_per_cycle, moved, counts, macs, macs * host.energy_pj_per_mac
    )


def host_contraction(target: Target, macs: int, moved: int) -> OpCost:
    """A general contraction (an einsum of `macs` multiply-adds over `moved` elements) on the
    host unit."""
    host = target.host
    counts: Counter[str] = Counter({"host.mac": macs})
    return _host(
        target, macs / host.macs_per_cycle, moved, counts, macs, macs * host.energy_pj_per_mac
    )


def host_elementwise(target: Target, op: str, elements: int, operands: int = 1) -> OpCost:
    """`elements` applications of elementwise `op` (`+`, `relu`, `sigmoid`, ...) on the host,
    reading `operands` tensors and writing one."""
    host = target.host
    per = host.transcendental_cycles if op in TRANSCENDENTAL else 1.0
    counts: Counter[str] = Counter({f"host.{op}": elements})
    energy = elements * per * host.energy_pj_per_mac  # one host instruction per element-cycle
    compute = elements * per / host.elementwise_per_cycle
    return _host(target, compute, (operands + 1) * elements, counts, 0, energy)


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


def vector_elementwise(target: Target, name: str, elements: int) -> OpCost:
    """`elements` applications of elementwise instruction `name`, its lanes at a time, with the
    operands streamed from DRAM and the result written back (overlapped)."""
    ins = target.instruction(name)
    form = elementwise_form(ins.semantics)
    if form is None:
        raise ValueError(f"instruction {name} is not elementwise")
    unit = target.units[ins.unit]
    issues = math.ceil(elements / form.lanes)
    compute = math.ceil(issues / max(unit.count, 1)) * ins.issue_cycles
    dram = target.dram()
    nbytes = (form.arity + 1) * elements * target.dtype_bytes(target.input_dtype)
    cycles = max(compute, nbytes / dram.bandwidth_bytes_per_cycle) + ins.latency_cycles
    energy = (
        elements * unit.energy_pj_per_mac
        + nbytes * dram.energy_pj_per_byte
        + issues * ins.energy_pj
    )
    return OpCost(cycles, Counter({name: issues}), nbytes, 0, energy)
