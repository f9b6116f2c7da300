"""Benchmark results as plain data: one `KernelResult` per compiled kernel, composed into
`WorkloadResult`s (report rows) and summarised per suite and per network; JSON in and out."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from isamap.bench.suites import Workload
from isamap.compile import CycleRatios

__all__ = [
    "BenchRun",
    "KernelResult",
    "SuiteResult",
    "WorkloadResult",
    "geomean",
    "summarise_suite",
]

#: How many of the slowest kernels to compile a suite summary lists.
SLOWEST = 5


def geomean(values: list[float]) -> float:
    """Geometric mean of the positive values (0.0 when there are none)."""
    positive = [v for v in values if v > 0]
    if not positive:
        return 0.0
    return math.exp(sum(math.log(v) for v in positive) / len(positive))


@dataclass
class KernelResult(CycleRatios):
    """One kernel compiled, scheduled and simulated in time on the target."""

    key: str
    kernel: str
    cycles: float
    baseline_cycles: float
    roofline_cycles: float
    macs: int
    dram_bytes: float
    energy_pj: float
    utilisation: dict[str, float]
    instruction_calls: list[str]
    instructions: list[str]
    host_ops: list[str]
    instruction_counts: dict[str, int]
    enodes: int
    eclasses: int
    iterations: int
    stop_reason: str
    stage_seconds: dict[str, float]
    compile_seconds: float

    @property
    def macs_per_cycle(self) -> float:
        return self.macs / self.cycles if self.cycles else 0.0

    @property
    def intensity(self) -> float:
        """MACs per byte of DRAM traffic (the roofline's operational intensity)."""
        return self.macs / self.dram_bytes if self.dram_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(
            speedup=self.speedup,
            percent_of_roofline=self.percent_of_roofline,
            macs_per_cycle=self.macs_per_cycle,
            intensity=self.intensity,
        )
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> KernelResult:
        derived = {"speedup", "percent_of_roofline", "macs_per_cycle", "intensity"}
        return cls(**{k: v for k, v in doc.items() if k not in derived})


@dataclass
class WorkloadResult(CycleRatios):
    """A report row: its parts' results summed, each weighted by how often it runs."""

    name: str
    kind: str
    parts: list[dict[str, Any]]  # role, key, count
    cycles: float
    baseline_cycles: float
    roofline_cycles: float
    macs: int
    energy_pj: float
    instructions: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def compose(cls, workload: Workload, kernels: dict[str, KernelResult]) -> WorkloadResult:
        """Sum the parts: cycles = sum over parts of count x the part's cycles (likewise baseline,
        roofline, MACs and energy)."""
        pairs = [(p, kernels[p.spec.key]) for p in workload.parts]
        used: list[str] = []
        for _, k in pairs:
            used += [i for i in k.instructions if i not in used]
        return cls(
            name=workload.name,
            kind=workload.kind,
            parts=[{"role": p.role, "key": p.spec.key, "count": p.count} for p, _ in pairs],
            cycles=sum(p.count * k.cycles for p, k in pairs),
            baseline_cycles=sum(p.count * k.baseline_cycles for p, k in pairs),
            roofline_cycles=sum(p.count * k.roofline_cycles for p, k in pairs),
            macs=sum(p.count * k.macs for p, k in pairs),
            energy_pj=sum(p.count * k.energy_pj for p, k in pairs),
            instructions=used,
            info=dict(workload.info),
        )

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(speedup=self.speedup, percent_of_roofline=self.percent_of_roofline)
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> WorkloadResult:
        return cls(**{k: v for k, v in doc.items() if k not in {"speedup", "percent_of_roofline"}})


@dataclass
class SuiteResult:
    """A suite's rows and its summary (geomeans, compile time, slowest kernels, network totals)."""

    name: str
    workloads: list[WorkloadResult]
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "workloads": [w.to_dict() for w in self.workloads],
        }


def summarise_suite(
    name: str,
    rows: list[WorkloadResult],
    kernels: dict[str, KernelResult],
    peak_macs_per_cycle: float,
) -> dict[str, Any]:
    """Geomean speedup and % of roofline over the rows, compile time of the suite's distinct
    kernels, its slowest kernels to compile, and whole-network totals."""
    keys = sorted({p["key"] for w in rows for p in w.parts})
    compiled = [kernels[k] for k in keys]
    slowest = sorted(compiled, key=lambda k: k.compile_seconds, reverse=True)[:SLOWEST]
    cycles = sum(w.cycles for w in rows)
    macs = sum(w.macs for w in rows)
    usage: Counter[str] = Counter()
    for w in rows:
        usage.update(w.instructions)
    return {
        "workloads": len(rows),
        "kernels": len(keys),
        "geomean_speedup": geomean([w.speedup for w in rows]),
        "geomean_percent_of_roofline": geomean([w.percent_of_roofline for w in rows]),
        "geomean_baseline_percent_of_roofline": geomean(
            [100.0 * w.roofline_cycles / w.baseline_cycles for w in rows if w.baseline_cycles]
        ),
        "compile_seconds": sum(k.compile_seconds for k in compiled),
        "slowest": [
            {"key": k.key, "compile_seconds": k.compile_seconds, "enodes": k.enodes}
            for k in slowest
        ],
        "total_cycles": cycles,
        "total_baseline_cycles": sum(w.baseline_cycles for w in rows),
        "total_roofline_cycles": sum(w.roofline_cycles for w in rows),
        "total_macs": macs,
        "total_energy_pj": sum(w.energy_pj for w in rows),
        "effective_utilisation": macs / (cycles * peak_macs_per_cycle) if cycles else 0.0,
        "instruction_use": dict(usage.most_common()),
        "limit_hits": sum(k.stop_reason != "saturated" for k in compiled),
    }


@dataclass
class BenchRun:
    """Everything a `bench` run produced: written as report.json, read back by the README table."""

    target: str
    schedule: str
    baseline_schedule: str
    peak_macs_per_cycle: float
    dram_bytes_per_cycle: float
    jobs: int
    wall_seconds: float
    command: str
    suites: dict[str, SuiteResult]
    kernels: dict[str, KernelResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "schedule": self.schedule,
            "baseline_schedule": self.baseline_schedule,
            "peak_macs_per_cycle": self.peak_macs_per_cycle,
            "dram_bytes_per_cycle": self.dram_bytes_per_cycle,
            "jobs": self.jobs,
            "wall_seconds": self.wall_seconds,
            "command": self.command,
            "suites": {name: s.to_dict() for name, s in self.suites.items()},
            "kernels": {key: k.to_dict() for key, k in self.kernels.items()},
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> BenchRun:
        suites = {
            name: SuiteResult(
                name, [WorkloadResult.from_dict(w) for w in s["workloads"]], s["summary"]
            )
            for name, s in doc["suites"].items()
        }
        kernels = {key: KernelResult.from_dict(k) for key, k in doc["kernels"].items()}
        scalars = {k: v for k, v in doc.items() if k not in {"suites", "kernels"}}
        return cls(suites=suites, kernels=kernels, **scalars)
