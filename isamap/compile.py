"""`compile()`: kernel + target -> saturated e-graph -> extracted Mapping, a report, `run()`."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field

import numpy as np

from isamap.egraph import Limits, RunReport, Saturation, saturate
from isamap.extract import extract
from isamap.hardware.functional import run_mapping
from isamap.hardware.target import Target, load_target
from isamap.ir.kernel import Kernel
from isamap.ir.mapping import Mapping

__all__ = ["CompileReport", "CompileResult", "compile", "kernel_macs", "roofline_cycles"]


def kernel_macs(kernel: Kernel) -> int:
    """Multiply-accumulates of the kernel's contractions (`+=` statements), one per iteration."""
    return sum(
        math.prod(kernel.extents[i].values())
        for i, s in enumerate(kernel.statements)
        if s.accumulate and s.reduced_indices()
    )


def roofline_cycles(kernel: Kernel, target: Target) -> float:
    """The larger of compute-bound (MACs / peak MACs per cycle) and bandwidth-bound cycles
    (every input read and every output written once, over DRAM bandwidth)."""
    peak = max(u.macs_per_cycle for u in target.units.values())
    nbytes = target.dtype_bytes(target.input_dtype) * sum(
        math.prod(kernel.shapes[t]) for t in (*kernel.inputs(), *kernel.outputs())
    )
    return max(kernel_macs(kernel) / peak, nbytes / target.dram().bandwidth_bytes_per_cycle)


@dataclass
class CompileReport:
    """Cycles (analytic model), the roofline bound, instruction issues, e-graph and stage times."""

    cycles: float
    roofline_cycles: float
    instruction_counts: dict[str, int]
    macs: int
    egraph: RunReport
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def enodes(self) -> int:
        return self.egraph.enodes

    @property
    def eclasses(self) -> int:
        return self.egraph.eclasses

    def to_dict(self) -> dict[str, object]:
        return {
            "cycles": self.cycles,
            "roofline_cycles": self.roofline_cycles,
            "percent_of_roofline": 100.0 * self.roofline_cycles / self.cycles if self.cycles else 0,
            "instruction_counts": self.instruction_counts,
            "macs": self.macs,
            "egraph": self.egraph.to_dict(),
            "stage_seconds": self.stage_seconds,
        }

    def __str__(self) -> str:
        counts = ", ".join(f"{k} {v:,}" for k, v in self.instruction_counts.items())
        stages = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in self.stage_seconds.items())
        pct = 100.0 * self.roofline_cycles / self.cycles if self.cycles else 0.0
        return "\n".join(
            [
                f"cycles: {self.cycles:,.0f} (roofline {self.roofline_cycles:,.0f}, {pct:.1f}%)",
                f"MACs: {self.macs:,}",
                f"instructions: {counts}",
                f"e-graph: {self.egraph.summary()}",
                f"stages: {stages}",
            ]
        )


@dataclass
class CompileResult:
    """What `compile` returns: the mapping, its report, and the saturated e-graph it came from."""

    kernel: Kernel
    target: Target
    mapping: Mapping
    report: CompileReport
    saturation: Saturation

    def run(self, inputs: MappingABC[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute the mapping functionally (tile by tile on the target's instructions)."""
        return run_mapping(self.mapping, self.kernel, self.target, inputs)


def compile(
    kernel: Kernel,
    target: Target | str,
    cost: str | object = "latency",
    limits: Limits | None = None,
) -> CompileResult:
    """Map `kernel` onto `target`: saturate, extract under `cost`, and report."""
    if isinstance(target, str):
        target = load_target(target)
    sat = saturate(kernel, target, limits)
    t0 = time.perf_counter()
    mapping = extract(sat, cost)
    extract_seconds = time.perf_counter() - t0
    counts: Counter[str] = Counter()
    for node in mapping.nodes:
        counts.update(node.counts)
    stages = dict(sat.report.stage_seconds)
    stages["extract"] = extract_seconds
    report = CompileReport(
        cycles=sum(n.cycles for n in mapping.nodes),
        roofline_cycles=roofline_cycles(kernel, target),
        instruction_counts={k: v for k, v in sorted(counts.items()) if v > 0},
        macs=kernel_macs(kernel),
        egraph=sat.report,
        stage_seconds=stages,
    )
    return CompileResult(kernel, target, mapping, report, sat)
