"""Timing simulation of a Program: cycles, utilisation per unit, bytes per memory level, energy.

Matrix calls are timed by `timing.call_timing` (their tile loops, DMA and array overlapping);
every other mapping operation takes its analytic cycles, host work at least its DRAM traffic, and
a transpose read by a unit with a transposer nothing. The host overlaps the accelerator where the
dependencies allow; the DRAM bounds the whole. A schedule whose tiles overrun a memory is refused
(`footprint.OperandLayout`, the machine's own accounting), never timed.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from isamap.hardware.direct_conv import conv_plan, conv_timing
from isamap.hardware.machine import SimulationError
from isamap.hardware.target import Target
from isamap.hardware.timing import ArrayModel, CallTiming, call_timing
from isamap.ir.mapping import Mapping
from isamap.ir.program import Program, ScheduledCall

__all__ = ["SimResult", "free_transposes", "host_dram_bytes", "simulate_timing"]


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


def free_transposes(mapping: Mapping, target: Target) -> set[int]:
    """Transpose nodes whose every reader is an instruction call on a unit with a transposer:
    the loads read them transposed on the way in, so they move no data of their own."""
    free: set[int] = set()
    for node in mapping.nodes:
        if node.op != "transpose":
            continue
        users = [u for u in mapping.nodes if node.id in u.args]
        if users and all(
            u.op == "instr" and u.unit in target.units and target.units[u.unit].transposer
            for u in users
        ):
            free.add(node.id)
    return free


def host_dram_bytes(mapping: Mapping, node_id: int, target: Target) -> float:
    """DRAM bytes a host operation moves: each operand it reads and the result it writes, once
    (its caches hold nothing across operations)."""
    node = mapping.nodes[node_id]
    elements = math.prod(node.shape) if node.shape else 1
    for arg in dict.fromkeys(node.args):
        shape = mapping.nodes[arg].shape
        elements += math.prod(shape) if shape else 1
    return elements * target.dtype_bytes(target.input_dtype)


def simulate_timing(program: Program, mapping: Mapping, target: Target) -> SimResult:
    """Cycles and the rest for `program` (the schedules of `mapping`'s calls) on `target`.

    Operations start when their operands are ready and their engine is free: the host runs
    beside the accelerator where the dependencies allow, the accelerator's operations (calls,
    layout moves, vector work) one after another. Both share the DRAM, so the program takes at
    least all of its DRAM traffic over the DRAM's bandwidth.
    """
    result = SimResult(0.0)
    dram = target.dram()
    free = free_transposes(mapping, target)
    finish: dict[int, float] = {}
    engine_free = {"host": 0.0, "accelerator": 0.0}
    for node in mapping.nodes:
        scheduled = program.call_for(node.id)
        cycles = 0.0
        if scheduled is None:
            cycles = 0.0 if node.id in free else node.cycles
            if node.unit == "host":
                moved = host_dram_bytes(mapping, node.id, target)
                result.bytes["dram"] += moved
                result.energy_pj += moved * dram.energy_pj_per_byte
                cycles = max(cycles, moved / dram.bandwidth_bytes_per_cycle)
            if cycles:
                result.busy[node.unit] += cycles
            result.counts.update(node.counts)
        else:
            timing = _call_timing(node.id, scheduled, target)
            result.calls[node.id] = timing
            cycles = timing.cycles
            result.busy[node.unit] += timing.compute_cycles
            result.busy["dma"] += timing.dma_cycles
            for level, nbytes in timing.bytes.items():
                result.bytes[level] += nbytes
            result.counts.update(timing.counts)
            result.energy_pj += timing.energy_pj
            result.macs += timing.macs
        engine = "host" if node.unit == "host" else "accelerator"
        ready = max((finish[a] for a in node.args), default=0.0)
        start = max(ready, engine_free[engine]) if cycles else ready
        finish[node.id] = start + cycles
        if cycles:
            engine_free[engine] = finish[node.id]
    for node in mapping.nodes:  # layout moves go through DRAM, unless a transposer reads them
        if node.op in ("transpose", "broadcast", "block_diag") and node.id not in free:
            moved = 2 * math.prod(node.shape) * target.dtype_bytes(target.input_dtype)
            result.bytes["dram"] += moved
            result.energy_pj += moved * dram.energy_pj_per_byte
    result.energy_pj += result.counts.get("host.mac", 0) * target.host.energy_pj_per_mac
    makespan = max(finish.values(), default=0.0)
    result.cycles = max(makespan, result.bytes["dram"] / dram.bandwidth_bytes_per_cycle)
    return result


def _call_timing(node: int, scheduled: ScheduledCall, target: Target) -> CallTiming:
    """A scheduled call's timing: a direct convolution by its own model, a matrix call by the
    tile-loop walk; SimulationError for a schedule the functional machine would reject."""
    call = scheduled.call
    if call.conv is not None:
        plan = conv_plan(target, call.instruction, call.conv)
        over = plan.overrun(scheduled.schedule)
        if over:
            raise SimulationError(f"%{node}: {over}")
        return conv_timing(plan, scheduled.schedule)
    model = ArrayModel.for_instruction(target, call.instruction)
    overruns = model.layout.overruns(scheduled.schedule)
    if overruns:  # no cycles for a schedule the functional machine would reject
        raise SimulationError(f"%{node}: {overruns[0].message('memory')}")
    return call_timing(model, call, scheduled.schedule)
