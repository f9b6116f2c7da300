"""The README's "Results" section, generated from the report.json files of `isamap bench` runs.

Run:  python -m isamap.bench.readme bench-results/*/report.json [--write README.md]
Without --write it prints the section; with it, the section replaces README's last one of that
name (or is appended).
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

from isamap.bench.report import gains_table
from isamap.bench.results import BenchRun, geomean
from isamap.bench.suites import SUITES

__all__ = ["HEADING", "results_section", "update_readme"]

HEADING = "## Results"

#: Prose is wrapped like the rest of the README.
WIDTH = 100

#: The command that regenerates the section; recorded in it.
REGENERATE = "python -m isamap.bench.readme bench-results/*/report.json --write README.md"


def _wrap(text: str) -> list[str]:
    """Prose lines at WIDTH, never breaking inside a word or at its hyphens (code spans)."""
    return textwrap.wrap(text, WIDTH, break_on_hyphens=False, break_long_words=False)


def load_runs(paths: Sequence[Path]) -> list[BenchRun]:
    """The runs saved in these report.json files, ordered by target."""
    runs = [BenchRun.from_dict(json.loads(p.read_text(encoding="utf-8"))) for p in paths]
    return sorted(runs, key=lambda r: (r.target, list(r.suites)))


def headline_table(runs: Sequence[BenchRun]) -> list[str]:
    """A row per target and suite: geomean speedup, geomean % of roofline, times."""
    lines = [
        "| target | suite | rows | geomean speedup | isamap: geomean % of roofline "
        "| baseline: geomean % of roofline | total cycles | compile time (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        for name, suite in run.suites.items():
            m = suite.summary
            base = geomean([100 * w.roofline_cycles / w.baseline_cycles for w in suite.workloads])
            lines.append(
                f"| {run.target} | {name} | {m['workloads']} | {m['geomean_speedup']:.2f}x "
                f"over {run.baseline_schedule} | {m['geomean_percent_of_roofline']:.1f}% | "
                f"{base:.1f}% | {m['total_cycles']:,.0f} | {m['compile_seconds']:.0f} |"
            )
    return lines


def network_table(runs: Sequence[BenchRun]) -> list[str]:
    """Whole MobileNets: cycles, MACs and effective utilisation per target."""
    lines = [
        "| target | network | cycles | baseline cycles | MACs | effective utilisation |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for run in runs:
        for name, suite in run.suites.items():
            if not name.startswith("mobilenet"):
                continue
            m = suite.summary
            lines.append(
                f"| {run.target} | {name} | {m['total_cycles']:,.0f} | "
                f"{m['total_baseline_cycles']:,.0f} | {m['total_macs']:,} | "
                f"{100 * m['effective_utilisation']:.1f}% |"
            )
    return lines if len(lines) > 2 else []


def runs_table(runs: Sequence[BenchRun]) -> list[str]:
    """The command behind each report and its wall time."""
    lines = ["| target | command | wall time (s) |", "|---|---|---:|"]
    lines += [f"| {r.target} | `{r.command}` | {r.wall_seconds:.0f} |" for r in runs]
    return lines


def missing_suites(runs: Sequence[BenchRun]) -> list[str]:
    """A line per target that lacks some suite, naming them."""
    have: dict[str, set[str]] = {}
    for r in runs:
        have.setdefault(r.target, set()).update(r.suites)
    return [
        f"- {target}: no {', '.join(s for s in SUITES if s not in suites)} results "
        '(see docs/benchmarks.md, "Where the time goes").'
        for target, suites in have.items()
        if set(SUITES) - suites
    ]


def results_section(runs: Sequence[BenchRun]) -> str:
    """The "Results" section as markdown."""
    intro = (
        "Simulated cycles of isamap's mapping and schedule, of the target's own baseline, and the "
        "roofline (the larger of MACs over peak MACs per cycle and every input read and output "
        "written once over DRAM bandwidth), for each row. The baseline on gemmini is "
        "`gemmini-default`: Gemmini's library (`tiled_matmul_auto`: its tile sizes, loop order "
        "and double buffering) called as the library is called, on C = A . B with transposed "
        "operands read through the transposer, never isamap's operand-swapped products; on nnp "
        "and vecdsp, which have no vendor library, it is isamap's own `heuristic` schedule, so "
        "1.00x there. Every schedule is timed by one model with the mechanisms the target "
        "declares (docs/calibration.md): double-buffered PEs (fill and drain once per run of "
        "folds), decoupled load/execute/store queues (a fold starts when its own blocks have "
        "landed), bounded queue depths, the instruction's own block shape and issue rate, the "
        "transposer, host work through DRAM alongside the accelerator; two independent "
        "implementations (analytic, event-driven) agree within 25% both ways, 1-3% on average. "
        "Left out (each with its expected effect in docs/calibration.md): int8 outputs of "
        "plain GEMMs, tiled_matmul_outer's operand reuse across tiles, command issue. "
        "A convolution's "
        "baseline is Gemmini's conv loop (`tiled_conv_auto`'s tile on a tap accumulation, the "
        "input tile loaded with its halo once) where the library would run the layer as it "
        "lies (NHWC input, HWIO weights, more than 8 channels, a tile a schedule can run as it "
        "is); any other keeps `tiled_matmul_auto` on its im2col GEMM, as every layer of the "
        "ONNX MobileNets (NCHW) does. "
        "On MobileNet the baseline runs on isamap's mapping, which packs depthwise channels "
        "block-diagonally where Gemmini's library would run its own per-channel depthwise loop "
        "(slower), so the speedup there understates the gain over the library; the packing "
        "rule's effect alone is in "
        "[benchmarks/reports/depthwise-packing-gemmini]"
        "(benchmarks/reports/depthwise-packing-gemmini/report.md). "
        "Geomeans are over the suite's rows; a GRU row is a whole layer (input projection + "
        "timesteps x recurrent step), a MobileNet row a layer or a depthwise-separable block "
        "of the network built as an ONNX graph, with its biases and ReLU6 "
        "([docs/benchmarks.md](docs/benchmarks.md)), in the types each target computes in "
        "(int8 with int32 biases on gemmini, each layer's output narrowed to int8 as the next "
        "layer reads it; bf16 on nnp and f16 on vecdsp, each layer's output cast to that type "
        "as it is); the biases are moved into the accumulator before the product (gemmini's "
        "`mvin_bias`, nnp's `load_bias`) and the activation applied on the way out. On "
        "gemmini the int8 cast goes out through mvout (ACC_SCALE: scaled, rounded, saturated, "
        "then RELU), with ReLU6's clip folded into the saturation where the scale fills int8 "
        "with its range. What stays on the host on gemmini is MobileNet v2's residual blocks "
        "(bias, clip, cast and add). "
        "Compile time is the sum over the suite's "
        "distinct kernels, one process each; the wall time of each run is below."
    )
    lines = [HEADING, "", *_wrap(intro), "", *headline_table(runs)]
    network = network_table(runs)
    if network:
        lines += ["", *network]
    lines += [
        "",
        "The ten rows where isamap's schedule gains most on its baseline (why: "
        '[docs/benchmarks.md](docs/benchmarks.md), "Where isamap gains most"):',
        "",
        *gains_table(list(runs)),
    ]
    missing = missing_suites(runs)
    if missing:
        lines += ["", *missing]
    lines += [
        "",
        "Generated from the runs' report.json files (wall times on a 2-core machine):",
        "",
        *runs_table(runs),
        "",
        "Regenerate this section with",
        "",
        "```bash",
        REGENERATE,
        "```",
    ]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, section: str) -> None:
    """Replace the README's last "Results" section (it runs to the end of the file) or append."""
    text = readme.read_text(encoding="utf-8")
    at = text.rfind(f"\n{HEADING}\n")
    head = text[: at + 1] if at >= 0 else text.rstrip("\n") + "\n\n"
    readme.write_text(head + section, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    """Print the section, or write it into a README with --write."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("reports", nargs="+", type=Path, help="report.json files")
    parser.add_argument("--write", type=Path, metavar="README", help="update this README")
    args = parser.parse_args(argv)
    section = results_section(load_runs(args.reports))
    if args.write is not None:
        update_readme(args.write, section)
    else:
        print(section, end="")


if __name__ == "__main__":
    main()
