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
from isamap.ir.kernel import Kernel
from isamap.ir.mapping import Mapping
from isamap.ir.program import Program, ScheduledCall

__all__ = [
    "SimResult",
    "element_bytes",
    "free_transposes",
    "host_dram_bytes",
    "simulate_timing",
]


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


#: Layout moves that go through DRAM (read and write every element), unless a transposer reads
#: them on the way in.
_MOVES = ("transpose", "broadcast", "block_diag")


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


def element_bytes(mapping: Mapping, target: Target, kernel: Kernel | None = None) -> list[int]:
    """Bytes per element of every mapping node's value, from the types the values have: an
    input or a kernel tensor its declared (or inferred) type, a matrix call's result as its
    unit stores it, a view or move its operand's, anything else its widest operand's. Without
    `kernel`, every value is taken at the target's input type."""
    default = target.dtype_bytes(target.input_dtype)
    if kernel is None:
        return [default] * len(mapping.nodes)
    out: list[int] = []
    for node in mapping.nodes:
        name = str(node.attrs["name"]) if node.op == "input" else node.tensor
        if name is not None and name in kernel.shapes:
            out.append(target.dtype_bytes(kernel.dtype(name)))
        elif node.op == "instr" and node.attrs.get("narrow"):  # stored narrowed
            out.append(target.dtype_bytes(str(node.attrs["narrow"])))
        elif node.op == "instr":
            out.append(ArrayModel.for_instruction(target, str(node.attrs["instruction"])).out_bytes)
        elif node.args:
            out.append(max(out[a] for a in node.args))
        else:
            out.append(default)
    return out


def host_dram_bytes(
    mapping: Mapping, node_id: int, target: Target, sizes: list[int] | None = None
) -> float:
    """DRAM bytes a host operation moves: each operand it reads and the result it writes, once
    (its caches hold nothing across operations), each at its own element size (`sizes`, from
    `element_bytes`; default the target's input type)."""
    sizes = sizes or element_bytes(mapping, target)
    node = mapping.nodes[node_id]
    nbytes = (math.prod(node.shape) if node.shape else 1) * sizes[node_id]
    for arg in dict.fromkeys(node.args):
        shape = mapping.nodes[arg].shape
        nbytes += (math.prod(shape) if shape else 1) * sizes[arg]
    return float(nbytes)


def simulate_timing(
    program: Program, mapping: Mapping, target: Target, kernel: Kernel | None = None
) -> SimResult:
    """Cycles and the rest for `program` (the schedules of `mapping`'s calls) on `target`; host
    work and layout moves at the element sizes of `kernel`'s types (`element_bytes`).

    Operations start when their operands are ready and their engine is free: the host runs
    beside the accelerator where the dependencies allow, the accelerator's operations (calls,
    layout moves, vector work) one after another. Both share the DRAM, so the program takes at
    least all of its DRAM traffic over the DRAM's bandwidth.
    """
    result = SimResult(0.0)
    dram = target.dram()
    free = free_transposes(mapping, target)
    sizes = element_bytes(mapping, target, kernel)
    finish: dict[int, float] = {}
    engine_free = {"host": 0.0, "accelerator": 0.0}
    for node in mapping.nodes:
        scheduled = program.call_for(node.id)
        cycles = 0.0
        if scheduled is None:
            cycles = 0.0 if node.id in free else node.cycles
            if node.unit == "host":
                moved = host_dram_bytes(mapping, node.id, target, sizes)
                result.bytes["dram"] += moved
                result.energy_pj += moved * dram.energy_pj_per_byte
                cycles = max(cycles, moved / dram.bandwidth_bytes_per_cycle)
            elif node.op in _MOVES and node.id not in free:  # through DRAM, at its own type
                moved = 2 * math.prod(node.shape) * sizes[node.id]
                result.bytes["dram"] += moved
                result.energy_pj += moved * dram.energy_pj_per_byte
                cycles = max(cycles, moved / dram.bandwidth_bytes_per_cycle)
            if cycles:
                result.busy[node.unit] += cycles
            result.counts.update(node.counts)
        else:
            in_bytes = None  # operands at their own types in DRAM
            if kernel is not None and node.args:  # the product's two operands (not a bias row,
                in_bytes = max(sizes[a] for a in node.args[:2])  # charged by the call itself)
            timing = _call_timing(node.id, scheduled, target, in_bytes)
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
    result.energy_pj += result.counts.get("host.mac", 0) * target.host.energy_pj_per_mac
    makespan = max(finish.values(), default=0.0)
    result.cycles = max(makespan, result.bytes["dram"] / dram.bandwidth_bytes_per_cycle)
    return result


def _call_timing(
    node: int, scheduled: ScheduledCall, target: Target, in_bytes: int | None = None
) -> CallTiming:
    """A scheduled call's timing: a direct convolution by its own model, a matrix call by the
    tile-loop walk with operands of `in_bytes` per element in DRAM (default: the instruction's
    types); SimulationError for a schedule the functional machine would reject."""
    call = scheduled.call
    if call.conv is not None:
        plan = conv_plan(target, call.instruction, call.conv)
        over = plan.overrun(scheduled.schedule)
        if over:
            raise SimulationError(f"%{node}: {over}")
        return conv_timing(plan, scheduled.schedule, call.bias)
    model = ArrayModel.for_instruction(target, call.instruction)
    if in_bytes is not None:
        model = model.reading(in_bytes)
    if call.narrow is not None:  # the store narrows the results on their way to DRAM
        model = model.writing(target.dtype_bytes(call.narrow))
    overruns = model.layout.overruns(scheduled.schedule)
    if overruns:  # no cycles for a schedule the functional machine would reject
        raise SimulationError(f"%{node}: {overruns[0].message('memory')}")
    return call_timing(model, call, scheduled.schedule)
