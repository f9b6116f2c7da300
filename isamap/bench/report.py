"""report.md and report.json of a benchmark run: suite summaries, whole-network totals, a row per
workload and a row per compiled kernel (mapping, cycles, utilisation, e-graph, stage times)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from isamap.bench.plots import PLOTS, write_plots
from isamap.bench.results import BenchRun, KernelResult, SuiteResult, WorkloadResult

__all__ = ["gains_table", "largest_gains", "markdown", "write_report"]

COMPOSITION = (
    "Cycles are simulated by isamap's timing model; the baseline is the target's own strategy "
    "(`{baseline}`) scheduling the same mapping on the same simulated hardware. A row made of "
    "several kernels sums them, each weighted by how often it runs: a DeepBench GRU layer is its "
    "input projection for all timesteps at once (one GEMM `X[T*batch, hidden] . [Wz|Wr|Wh]`, "
    "the three projections fused) plus T recurrent steps (`H . [Uz|Ur|Uh]` fused, the gates and "
    "the blend), so cycles = projection + T x step; likewise baseline, roofline, MACs and energy. "
    "A MobileNet depthwise-separable block (depthwise row + its pointwise or project row, with "
    "the residual add where the CSV has one) is one kernel. Geomeans are over rows."
)


def _n(x: float) -> str:
    return f"{x:,.0f}"


def _summary_table(run: BenchRun) -> list[str]:
    lines = [
        "| suite | rows | kernels | geomean speedup | geomean % of roofline | baseline's geomean "
        "% of roofline | total cycles | compile time (s) | saturation limit hits |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in run.suites.items():
        m = s.summary
        lines.append(
            f"| {name} | {m['workloads']} | {m['kernels']} | {m['geomean_speedup']:.2f}x | "
            f"{m['geomean_percent_of_roofline']:.1f}% | "
            f"{m.get('geomean_baseline_percent_of_roofline', 0.0):.1f}% | "
            f"{_n(m['total_cycles'])} | "
            f"{m['compile_seconds']:.1f} | {m['limit_hits']} |"
        )
    return lines


def _slowest(suite: SuiteResult) -> list[str]:
    lines = ["| kernel | compile time (s) | e-nodes |", "|---|---:|---:|"]
    for k in suite.summary["slowest"]:
        lines.append(f"| {k['key']} | {k['compile_seconds']:.2f} | {k['enodes']} |")
    return lines


def _network(suite: SuiteResult, run: BenchRun) -> list[str]:
    m = suite.summary
    speedup = m["total_baseline_cycles"] / m["total_cycles"] if m["total_cycles"] else 0.0
    roof = 100 * m["total_roofline_cycles"] / m["total_cycles"] if m["total_cycles"] else 0.0
    uses = ", ".join(f"`{i}` {n}" for i, n in m["instruction_use"].items())
    return [
        f"Whole network, batch 1: **{_n(m['total_cycles'])} cycles** "
        f"({run.baseline_schedule}: {_n(m['total_baseline_cycles'])}, {speedup:.2f}x; "
        f"{roof:.1f}% of the summed roofline), {_n(m['total_macs'])} MACs, effective "
        f"utilisation {100 * m['effective_utilisation']:.1f}% (MACs / (cycles x "
        f"{run.peak_macs_per_cycle:g} peak MACs/cycle)), energy "
        f"{m['total_energy_pj'] / 1e6:,.1f} uJ.",
        "",
        f"Layers using each instruction: {uses}.",
    ]


def _rows(suite: SuiteResult) -> list[str]:
    lines = [
        "| row | kind | parts | cycles | baseline | roofline | speedup | % roofline | MACs "
        "| energy (uJ) | instructions |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for w in suite.workloads:
        parts = " + ".join(
            f"{p['count']} x {p['key']}" if p["count"] != 1 else p["key"] for p in w.parts
        )
        lines.append(
            f"| {w.name} | {w.kind} | {parts} | {_n(w.cycles)} | {_n(w.baseline_cycles)} | "
            f"{_n(w.roofline_cycles)} | {w.speedup:.2f}x | {w.percent_of_roofline:.1f}% | "
            f"{_n(w.macs)} | {w.energy_pj / 1e6:,.2f} | {', '.join(w.instructions)} |"
        )
    return lines


def _mapping(k: KernelResult) -> str:
    calls = "; ".join(k.instruction_calls) or "no instruction"
    if k.host_ops:
        host = Counter(k.host_ops)
        calls += "; host: " + ", ".join(f"{op} x{n}" if n > 1 else op for op, n in host.items())
    return calls.replace("|", "\\|")


def _kernels(run: BenchRun) -> list[str]:
    lines = [
        "| kernel | mapping | cycles | baseline | roofline | % roofline | utilisation "
        "| energy (uJ) | e-nodes | saturate (ms) | extract (ms) | schedule + simulate (ms) |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for k in run.kernels.values():
        util = ", ".join(f"{u} {100 * v:.0f}%" for u, v in k.utilisation.items())
        st = k.stage_seconds
        lines.append(
            f"| {k.key} | {_mapping(k)} | {_n(k.cycles)} | {_n(k.baseline_cycles)} | "
            f"{_n(k.roofline_cycles)} | {k.percent_of_roofline:.1f}% | {util} | "
            f"{k.energy_pj / 1e6:,.2f} | {k.enodes} | {1000 * st.get('saturate', 0):.1f} | "
            f"{1000 * st.get('extract', 0):.1f} | "
            f"{1000 * st.get('schedule_and_simulate', 0):.1f} |"
        )
    return lines


def markdown(run: BenchRun) -> str:
    """The report as markdown."""
    lines = [
        f"# isamap benchmarks on {run.target}",
        "",
        f"`{run.command}`: schedule `{run.schedule}` against `{run.baseline_schedule}`; "
        f"{len(run.kernels)} distinct kernels compiled in {run.wall_seconds:.1f} s wall time "
        f"with {run.jobs} job(s). Peak {run.peak_macs_per_cycle:g} MACs/cycle, DRAM "
        f"{run.dram_bytes_per_cycle:g} bytes/cycle.",
        "",
        COMPOSITION.format(baseline=run.baseline_schedule),
        "",
        *_summary_table(run),
        "",
        *(f"![{p.removesuffix('.png')}]({p})" for p in PLOTS),
    ]
    for name, suite in run.suites.items():
        lines += ["", f"## {name}", ""]
        if name.startswith("mobilenet"):
            lines += [*_network(suite, run), ""]
        lines += ["Slowest kernels to compile:", "", *_slowest(suite), ""]
        lines += _rows(suite)
    lines += ["", "## Largest gains over the baseline", "", *gains_table([run])]
    lines += ["", "## Kernels", "", *_kernels(run)]
    return "\n".join(lines) + "\n"


def largest_gains(runs: list[BenchRun], count: int = 10) -> list[tuple[str, str, WorkloadResult]]:
    """The `count` rows (target, suite, row) where isamap's schedule gains most on its baseline."""
    rows = [(r.target, name, w) for r in runs for name, s in r.suites.items() for w in s.workloads]
    rows.sort(key=lambda t: (-t[2].speedup, t[0], t[1], t[2].name))
    return rows[:count]


def gains_table(runs: list[BenchRun], count: int = 10) -> list[str]:
    """isamap, the baseline and the roofline side by side for the rows that gain most."""
    lines = [
        "| target | suite | row | isamap cycles | baseline cycles | roofline | speedup "
        "| isamap % of roofline | baseline % of roofline |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for target, suite, w in largest_gains(runs, count):
        base = 100.0 * w.roofline_cycles / w.baseline_cycles if w.baseline_cycles else 0.0
        lines.append(
            f"| {target} | {suite} | {w.name} | {_n(w.cycles)} | {_n(w.baseline_cycles)} | "
            f"{_n(w.roofline_cycles)} | {w.speedup:.2f}x | {w.percent_of_roofline:.1f}% | "
            f"{base:.1f}% |"
        )
    return lines


def write_report(run: BenchRun, out: Path) -> dict[str, Path]:
    """Write report.md, report.json and the plots into `out` (created if missing)."""
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = run.to_dict()
    (out / "report.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(run), encoding="utf-8")
    plots = write_plots(run, out)
    return {"report.md": out / "report.md", "report.json": out / "report.json"} | {
        p.name: p for p in plots
    }
