"""Timing simulation of a Program: cycles, utilisation per unit, bytes per memory level, energy.

Matrix calls are timed by `timing.call_timing` (their tile loops, DMA and array overlapping);
every other mapping operation (host work, layout moves) takes its analytic cycles. Operations run
one after another, as the mapping orders them. A schedule whose tiles overrun a memory is refused
(`footprint.OperandLayout`, the machine's own accounting), never timed.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from isamap.hardware.machine import SimulationError
from isamap.hardware.target import Target
from isamap.hardware.timing import ArrayModel, CallTiming, call_timing
from isamap.ir.mapping import Mapping
from isamap.ir.program import Program

__all__ = ["SimResult", "simulate_timing"]


@dataclass
class SimResult:
    """What the timing simulation reports for a whole program."""

    cycles: float
    busy: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # unit -> cycles
    bytes: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # level -> B
    counts: Counter[str] = field(default_factory=Counter)  # instruction -> issues
    energy_pj: float = 0.0
    macs: int = 0
    calls: dict[int, CallTiming] = field(default_factory=dict)

    def utilisation(self) -> dict[str, float]:
        return {u: (b / self.cycles if self.cycles else 0.0) for u, b in sorted(self.busy.items())}

    def to_dict(self) -> dict[str, object]:
        return {
            "cycles": self.cycles,
            "utilisation": self.utilisation(),
            "bytes": dict(self.bytes),
            "instruction_counts": {k: v for k, v in sorted(self.counts.items()) if v},
            "energy_pj": self.energy_pj,
            "macs": self.macs,
        }


def simulate_timing(program: Program, mapping: Mapping, target: Target) -> SimResult:
    """Cycles and the rest for `program` (the schedules of `mapping`'s calls) on `target`."""
    result = SimResult(0.0)
    for node in mapping.nodes:
        scheduled = program.call_for(node.id)
        if scheduled is None:
            result.cycles += node.cycles
            if node.cycles:
                result.busy[node.unit] += node.cycles
            result.counts.update(node.counts)
            continue
        model = ArrayModel.for_instruction(target, scheduled.call.instruction)
        over = model.layout.overruns(scheduled.schedule)
        if over:  # no cycles for a schedule the functional machine would reject
            raise SimulationError(f"%{node.id}: {over[0].message('memory')}")
        timing = call_timing(model, scheduled.call, scheduled.schedule)
        result.calls[node.id] = timing
        result.cycles += timing.cycles
        result.busy[node.unit] += timing.compute_cycles
        result.busy["dma"] += timing.dma_cycles
        for level, nbytes in timing.bytes.items():
            result.bytes[level] += nbytes
        result.counts.update(timing.counts)
        result.energy_pj += timing.energy_pj
        result.macs += timing.macs
    dram = target.dram()
    for node in mapping.nodes:  # layout moves go through DRAM
        if node.op in ("transpose", "broadcast", "block_diag"):
            moved = 2 * math.prod(node.shape) * target.dtype_bytes(target.input_dtype)
            result.bytes["dram"] += moved
            result.energy_pj += moved * dram.energy_pj_per_byte
    result.energy_pj += result.counts.get("host.mac", 0) * target.host.energy_pj_per_mac
    return result
