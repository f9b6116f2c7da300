"""Analytic costs of the operations that are not matrix calls: host work and layout moves.

Matrix instruction calls are costed by the scheduler (`schedule.scheduler.best_call`): their tile
loops are timed by `hardware.timing`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from isamap.hardware.target import Target

__all__ = ["TRANSCENDENTAL", "OpCost", "host_elementwise", "host_matmul", "layout_move"]

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
    energy = elements * per * host.energy_pj_per_mac  # one host instruction per element-cycle
    return OpCost(elements * per / host.elementwise_per_cycle, counts, 0.0, 0, energy)


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
