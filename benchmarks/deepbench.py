"""DeepBench GEMMs and GRU layers on a target: isamap against the vendor baseline.

A thin wrapper over `isamap bench` (isamap/bench/, docs/benchmarks.md): the same as
`isamap bench deepbench-gemm` and `isamap bench deepbench-gru` in one report.

Run:  python benchmarks/deepbench.py [--target T] [--schedule S] [--limit N] [--jobs N]
Writes benchmarks/reports/deepbench-<target>-<schedule>/report.md, report.json and plots.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from isamap.bench.report import write_report
from isamap.bench.runner import run_bench

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="gemmini")
    parser.add_argument("--schedule", default="heuristic")
    parser.add_argument("--limit", type=int, default=None, help="first N rows of each suite")
    parser.add_argument("--jobs", type=int, default=1, help="parallel worker processes")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    command = (
        f"python benchmarks/deepbench.py --target {args.target} --schedule {args.schedule}"
        f" --jobs {args.jobs}" + (f" --limit {args.limit}" if args.limit else "")
    )
    run = run_bench(
        ["deepbench-gemm", "deepbench-gru"],
        args.target,
        args.schedule,
        args.jobs,
        args.limit,
        command=command,
    )
    out = args.out or HERE / "reports" / f"deepbench-{args.target}-{args.schedule}"
    write_report(run, out)
    for name, suite in run.suites.items():
        s = suite.summary
        print(
            f"{name}: {s['workloads']} rows, geomean speedup {s['geomean_speedup']:.3f}x, "
            f"geomean {s['geomean_percent_of_roofline']:.1f}% of roofline, "
            f"{s['compile_seconds']:.1f} s"
        )
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
