"""E-graph statistics of the example kernels: size, mappings, saturation and extraction time.

Run: python benchmarks/egraph_stats.py [--target gemmini] [--variants 200]
Prints one row per example kernel: e-nodes, e-classes, distinct mappings among the first
`--variants` that `Saturation.variants` returns, distinct instruction call-sets among them,
saturation and extraction wall time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import isamap

KERNELS = Path(__file__).resolve().parent.parent / "examples" / "kernels"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="gemmini")
    parser.add_argument("--variants", type=int, default=200)
    args = parser.parse_args()
    target = isamap.load_target(args.target)
    print("| kernel | e-nodes | e-classes | mappings | call-sets | saturate ms | extract ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for path in sorted(KERNELS.glob("*.kernel")):
        kernel = isamap.load_kernel(str(path))
        t0 = time.perf_counter()
        sat = isamap.saturate(kernel, target)
        t1 = time.perf_counter()
        sat.extract("latency")
        t2 = time.perf_counter()
        variants = sat.variants(args.variants, cost="instructions")
        callsets = {tuple(sorted(n.describe() for n in m.instruction_calls())) for m in variants}
        print(
            f"| {path.stem} | {sat.report.enodes} | {sat.report.eclasses} | {len(variants)} "
            f"| {len(callsets)} | {1000 * (t1 - t0):.1f} | {1000 * (t2 - t1):.1f} |"
        )


if __name__ == "__main__":
    main()
