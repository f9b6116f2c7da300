"""The report's figures (matplotlib, Agg backend, PNG): roofline, speedup over the baseline per
kernel, and compile time against e-graph size."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display: must precede pyplot

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from isamap.bench.results import BenchRun, KernelResult

__all__ = ["PLOTS", "write_plots"]

#: The files write_plots writes, in the order the report shows them.
PLOTS = ("roofline.png", "speedup.png", "compile_time.png")

_MARKERS = "osD^v<>p*"


def _suite_kernels(run: BenchRun) -> dict[str, list[KernelResult]]:
    """Each suite's distinct kernels (a kernel in two suites is drawn with the first)."""
    seen: set[str] = set()
    out: dict[str, list[KernelResult]] = {}
    for name, suite in run.suites.items():
        keys = [p["key"] for w in suite.workloads for p in w.parts]
        out[name] = [run.kernels[k] for k in dict.fromkeys(keys) if k not in seen]
        seen.update(keys)
    return out


def roofline(run: BenchRun) -> Figure:
    """Each kernel at (MACs per DRAM byte, achieved MACs per cycle) under the two roofs."""
    fig, ax = plt.subplots(figsize=(7, 5))
    groups = _suite_kernels(run)
    points = [k for ks in groups.values() for k in ks if k.intensity > 0 and k.macs_per_cycle > 0]
    peak, bw = run.peak_macs_per_cycle, run.dram_bytes_per_cycle
    lo = min([k.intensity for k in points] + [peak / bw]) / 4
    hi = max([k.intensity for k in points] + [peak / bw]) * 4
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(xs, [min(peak, bw * x) for x in xs], color="black", lw=1.5, label="roofline")
    ax.axvline(peak / bw, color="grey", ls=":", lw=0.8)
    for marker, (name, kernels) in zip(_MARKERS, groups.items(), strict=False):
        pts = [k for k in kernels if k.intensity > 0 and k.macs_per_cycle > 0]
        if pts:
            ax.scatter(
                [k.intensity for k in pts],
                [k.macs_per_cycle for k in pts],
                s=14,
                marker=marker,
                alpha=0.7,
                label=name,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (MACs per DRAM byte)")
    ax.set_ylabel("achieved MACs per cycle")
    ax.set_title(
        f"{run.target}: compute roof {peak:g} MACs/cycle, DRAM {bw:g} B/cycle", fontsize=10
    )
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    return fig


def speedup(run: BenchRun) -> Figure:
    """A bar per report row: cycles of the baseline schedule over isamap's."""
    rows = [(name, w) for name, s in run.suites.items() for w in s.workloads]
    fig, ax = plt.subplots(figsize=(max(7.0, min(0.06 * len(rows) + 3, 30.0)), 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    suite_color = {name: colors[i % len(colors)] for i, name in enumerate(run.suites)}
    ax.bar(
        range(len(rows)),
        [w.speedup for _, w in rows],
        color=[suite_color[name] for name, _ in rows],
        width=0.85,
    )
    handles = [Patch(color=color, label=name) for name, color in suite_color.items()]
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xlim(-1, len(rows))
    if len(rows) <= 40:
        ax.set_xticks(range(len(rows)), [w.name for _, w in rows], rotation=90, fontsize=6)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(rows)} kernels, in report order")
    ax.set_ylabel(f"speedup over {run.baseline_schedule}")
    ax.set_title(f"{run.target}: isamap ({run.schedule}) against {run.baseline_schedule}")
    ax.legend(handles=handles, fontsize=8)
    fig.tight_layout()
    return fig


def compile_time(run: BenchRun) -> Figure:
    """Compile time of each distinct kernel against the size of its e-graph."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for marker, (name, kernels) in zip(_MARKERS, _suite_kernels(run).items(), strict=False):
        if kernels:
            ax.scatter(
                [k.enodes for k in kernels],
                [k.compile_seconds for k in kernels],
                s=14,
                marker=marker,
                alpha=0.7,
                label=name,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("e-graph size (e-nodes)")
    ax.set_ylabel("compile time (s): saturate, extract, schedule, simulate")
    ax.set_title(f"{run.target}: compile time against e-graph size", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    return fig


def write_plots(run: BenchRun, out: Path) -> list[Path]:
    """Write the PLOTS into `out`; returns their paths."""
    paths = []
    for filename, draw in zip(PLOTS, (roofline, speedup, compile_time), strict=True):
        fig = draw(run)
        path = out / filename
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
