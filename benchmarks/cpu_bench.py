"""Native code on the host CPU against numpy's BLAS and onnxruntime: the three CPU suites.

A thin wrapper over `isamap bench cpu-gemm | cpu-gru | cpu-mobilenet` (isamap/bench/cpu_suites.py,
docs/cpu.md) that writes every report under benchmarks/reports/ and regenerates the README's
CPU results section from them. Single thread, interleaved with the anchor in one process.

Run (OpenBLAS's kernel overrides unset for this command only, as docs/cpu.md explains):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/cpu_bench.py [--suite S]
        [--target T] [--repeats N] [--limit N]
    python benchmarks/cpu_bench.py --readme-only    # just regenerate the README section
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from isamap.bench.cpu_suites import CPU_SUITES, readme_section, run_cpu_suite, write_cpu_report

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
BEGIN, END = "<!-- cpu-results:begin -->", "<!-- cpu-results:end -->"


def update_readme() -> None:
    """Replace the README text between the CPU markers with the section of the saved reports."""
    reports = []
    for suite in CPU_SUITES:
        path = HERE / "reports" / suite / "report.json"
        if path.is_file():
            reports.append(json.loads(path.read_text()))
    text = README.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{README}: no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(head + BEGIN + "\n" + readme_section(reports) + END + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=[*CPU_SUITES, "all"], default="all")
    parser.add_argument("--target", default="host")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--readme-only", action="store_true")
    args = parser.parse_args()
    if not args.readme_only:
        for suite in CPU_SUITES if args.suite == "all" else [args.suite]:
            command = f"python benchmarks/cpu_bench.py --suite {suite} --target {args.target}"
            command += f" --repeats {args.repeats}" + (
                f" --limit {args.limit}" if args.limit else ""
            )
            run = run_cpu_suite(suite, args.target, args.repeats, args.limit, command, print)
            write_cpu_report(run, HERE / "reports" / suite)
            print(f"{suite}: geomean {run.geomean_ratio:.3f}x {run.anchor}")
    update_readme()


if __name__ == "__main__":
    main()
