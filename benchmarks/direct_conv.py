"""Direct convolution against im2col on a direct-convolution target, timed by one model in one run.

Every convolution below is compiled for the target twice: with every rule, and with the derived
rule `einsum-window-to-<instruction>` disabled, so the product can only map as an im2col GEMM
onto the same instruction (its 1x1 reading; the window gathered by the loads) or on the host.
Both use the same cost model, scheduler and timing, so the ratios are the direct mapping's effect
alone: cycles, and DRAM bytes (the im2col copy reads every input element once per tap).

Run: python benchmarks/direct_conv.py [--target examples/isa/nvdla.toml] [--out DIR]
Writes report.md and report.json to --out (default benchmarks/reports/direct-conv-nvdla).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import isamap
from isamap.egraph.target_rules import conv_instructions
from isamap.ir import builders
from isamap.ir.kernel import Kernel


def _kernels() -> dict[str, Kernel]:
    conv = builders.conv2d
    return {
        "conv3x3_s1_p1 (16->24, 20x20)": conv(1, 16, 20, 20, 24, 3, 3, padding=1),
        "conv3x3_s2_p1 (16->32, 21x21)": conv(1, 16, 21, 21, 32, 3, 3, stride=2, padding=1),
        "conv3x3_d2 (16->24, 24x24)": builders.conv2d(1, 16, 24, 24, 24, 3, 3, dilation=2),
        "conv3x3_g4 (32->32, 20x20)": builders.conv2d(1, 32, 20, 20, 32, 3, 3, padding=1, groups=4),
        "conv5x5_p2 (8->16, 28x28)": builders.conv2d(1, 8, 28, 28, 16, 5, 5, padding=2),
        "conv3x3_p1 (32->64, 28x28)": builders.conv2d(1, 32, 28, 28, 64, 3, 3, padding=1),
        "depthwise3x3 (32, 28x28)": builders.depthwise(1, 32, 28, 28, 3, 3),
    }


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="examples/isa/nvdla.toml")
    parser.add_argument("--out", default="benchmarks/reports/direct-conv-nvdla")
    args = parser.parse_args()
    target = isamap.load_target(args.target)
    (name,) = conv_instructions(target)[:1]
    rule = f"einsum-window-to-{name}"
    rows = []
    for label, kernel in _kernels().items():
        t0 = time.perf_counter()
        direct = isamap.compile(kernel, target)
        t1 = time.perf_counter()
        im2col = isamap.compile(kernel, target, disabled_rules=[rule])
        rows.append(
            {
                "kernel": label,
                "direct_cycles": direct.report.cycles,
                "im2col_cycles": im2col.report.cycles,
                "speedup": im2col.report.cycles / direct.report.cycles,
                "direct_dram_bytes": direct.report.bytes.get("dram", 0.0),
                "im2col_dram_bytes": im2col.report.bytes.get("dram", 0.0),
                "direct_calls": [n.describe() for n in direct.mapping.instruction_calls()],
                "im2col_calls": [n.describe() for n in im2col.mapping.instruction_calls()]
                or ["host"],
                "compile_seconds": t1 - t0,
            }
        )
        print(f"{label}: {rows[-1]['speedup']:.2f}x", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = f"python benchmarks/direct_conv.py --target {args.target} --out {args.out}"
    (out / "report.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    lines = [
        f"# Direct convolution vs im2col on {target.name} (`{name}`)",
        "",
        f"`{command}`; the same cost model, scheduler and timing both ways; im2col: `{rule}`",
        "disabled (the product maps as a GEMM onto the same instruction, or on the host).",
        "",
        "| kernel | direct cycles | im2col cycles | speedup | DRAM B direct | DRAM B im2col |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kernel']} | {r['direct_cycles']:,.0f} | {r['im2col_cycles']:,.0f} | "
            f"{r['speedup']:.2f}x | {r['direct_dram_bytes']:,.0f} | {r['im2col_dram_bytes']:,.0f} |"
        )
    speedups = [float(str(r["speedup"])) for r in rows]
    lines += ["", f"Geometric mean speedup: {_geomean(speedups):.2f}x", ""]
    (out / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
