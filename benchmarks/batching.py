"""Independent small products with and without batching into one call, one model, one run.

Each kernel is compiled for a target twice: with every rule, and with
`batch-independent-products` disabled (each product its own call). Both use the same cost model,
scheduler and timing, so the ratio is the rule's effect alone. The kernels are independent
products of a size below and at the instruction's tile: side by side (same M), stacked (same N),
three in a row, the two towers of a two-tower recommender (user and item features projected by
their own weights, one batch), and products that already fill the array (where the rule must add
nothing).

Run: python benchmarks/batching.py [--target gemmini] [--out benchmarks/reports/batching-gemmini]
Writes report.md and report.json to --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import isamap

RULE = "batch-independent-products"


def _products(shapes: list[tuple[int, int, int]]) -> str:
    """Independent int8 products `P<i> = A<i> . B<i>`, A<i> [m, k], B<i> [k, n]."""
    decls, stmts = [], []
    for i, (m, k, n) in enumerate(shapes, start=1):
        decls += [f"tensor A{i}[{m}, {k}] i8", f"tensor B{i}[{k}, {n}] i8"]
        stmts.append(f"P{i}[i, j] += A{i}[i, k] * B{i}[k, j]")
    return "\n".join(decls + stmts) + "\n"


KERNELS = {
    "side_by_side_16x8x8": _products([(16, 8, 8), (16, 8, 8)]),
    "stacked_8x8x16": _products([(8, 8, 16), (8, 8, 16)]),
    "three_16xk4-6xn4-6": _products([(16, 4, 5), (16, 6, 4), (16, 4, 6)]),
    "two_tower_b16_u6_i10_d8": (
        "tensor U[16, 6] i8\ntensor Wu[6, 8] i8\ntensor V[16, 10] i8\ntensor Wv[10, 8] i8\n"
        "EU[b, d] += U[b, f] * Wu[f, d]\nEV[b, d] += V[b, g] * Wv[g, d]\n"
    ),
    "already_full_32x32x32": _products([(32, 32, 32), (32, 32, 32)]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="gemmini")
    parser.add_argument("--out", default="benchmarks/reports/batching-gemmini")
    args = parser.parse_args()
    target = isamap.load_target(args.target)
    rows = []
    for name, text in KERNELS.items():
        kernel = isamap.parse_kernel(text, name=name)
        batched = isamap.compile(kernel, target)
        apart = isamap.compile(kernel, target, disabled_rules=[RULE])
        inputs = isamap.random_inputs(kernel, seed=0)
        reference = isamap.evaluate(kernel, inputs)
        outputs = batched.run(inputs)
        equal = all((outputs[t] == reference[t]).all() for t in kernel.outputs())
        rows.append(
            {
                "kernel": name,
                "cycles": batched.report.cycles,
                "calls": len(batched.mapping.instruction_calls()),
                "apart_cycles": apart.report.cycles,
                "apart_calls": len(apart.mapping.instruction_calls()),
                "speedup": apart.report.cycles / batched.report.cycles,
                "equals_numpy": equal,
            }
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({"target": args.target, "rows": rows}, indent=1))
    lines = [
        f"# Batching independent small products on {args.target}",
        "",
        f"Command: `python benchmarks/batching.py --target {args.target}`. Cycles with every",
        f"rule against `{RULE}` disabled, same cost model, heuristic schedule and timing",
        "model, one run.",
        "",
        "| kernel | cycles (calls) | apart: cycles (calls) | speedup | equals numpy |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kernel']} | {r['cycles']:,.0f} ({r['calls']}) | {r['apart_cycles']:,.0f} "
            f"({r['apart_calls']}) | {r['speedup']:.2f}x | {r['equals_numpy']} |"
        )
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
