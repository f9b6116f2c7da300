"""Benchmark suites (DeepBench GEMM and GRU, MobileNet v1 and v2) compiled on a target, with
reports: `isamap bench` and `python -m isamap.bench.readme` (docs/benchmarks.md).

Modules: `suites` (the kernels), `runner` (compiling them, in parallel), `results` (the data and
summaries), `report` (report.md/json), `plots` (PNGs), `readme` (the README's Results section).
Importing this package does not load matplotlib; `report` and `plots` do.
"""

from __future__ import annotations

from isamap.bench.results import BenchRun
from isamap.bench.runner import ALL, run_bench
from isamap.bench.suites import SUITES, suite_workloads

__all__ = ["ALL", "SUITES", "BenchRun", "run_bench", "suite_workloads"]
