"""The rows of a bench report where isamap's schedule gains most on the baseline, and why.

Reads a bench report (`isamap bench ... --out DIR` writes DIR/report.json), takes the `--count`
rows with the largest speedup, recompiles each of their kernels on the report's target, and
times isamap's program and the baseline's (the target's `baseline_schedule` on the library's own
unswapped mapping, as `compile` does) side by side with the same model. For each it states the
mechanism behind the gain, from what differs between the two programs:

- `DRAM traffic`: the baseline moves more bytes (its tiles re-read an operand that isamap's
  tiles and loop order keep on chip); both are DRAM-bound, so the bytes are the time;
- `padding`: the baseline issues more array MACs (its tiles pad a dimension further);
- `overlap`: same bytes and MACs, but the baseline's loads and compute overlap less (a smaller
  tile leaves the array idle while the first load of each tile lands);
- `operand swap`: isamap's mapping issues the product as Cᵀ = Bᵀ·Aᵀ, which the library does not.

Run: python benchmarks/largest_gains.py benchmarks/reports/all-gemmini [--count 10]
Writes gains.md and gains.json into the report directory (or --out).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import isamap
from isamap.bench.onnx_suites import workloads
from isamap.bench.suites import KernelSpec
from isamap.compile import kernel_macs
from isamap.hardware.sim import SimResult, simulate_timing
from isamap.ir.program import Program
from isamap.schedule.baseline import own_mapping
from isamap.schedule.scheduler import schedule_mapping

#: Relative difference below which two programs' bytes or MACs count as the same.
SAME = 0.02


def _specs(suite: str) -> dict[str, KernelSpec]:
    return {p.spec.key: p.spec for w in workloads(suite) for p in w.parts}


def _schedules(program: Program) -> list[str]:
    return [f"{sc.call.instruction} {sc.schedule.describe()}" for sc in program.calls]


def _array_cycles(sim: SimResult) -> float:
    return sum(t.compute_cycles for t in sim.calls.values())


def explain(spec: KernelSpec, target: isamap.Target) -> dict[str, Any]:
    """isamap's and the baseline's programs for one kernel, and the mechanism of the gain."""
    kernel = spec.build(target)
    result = isamap.compile(kernel, target)
    own = own_mapping(result.mapping, target)
    base_program = schedule_mapping(own, target, target.baseline_schedule)
    base = simulate_timing(base_program, own, target, kernel)
    ours = result.sim
    ours_b, base_b = ours.bytes.get("dram", 0.0), base.bytes.get("dram", 0.0)
    ours_c, base_c = _array_cycles(ours), _array_cycles(base)
    swapped = own.nodes != result.mapping.nodes
    reasons = []
    if base_b > ours_b * (1 + SAME):
        reasons.append(
            f"DRAM traffic: the baseline moves {base_b / ours_b:.2f}x the bytes "
            f"({base_b:,.0f} B against {ours_b:,.0f} B)"
        )
    if base_c > ours_c * (1 + SAME):
        reasons.append(
            f"padding and folds: the baseline's array is busy {base_c / ours_c:.2f}x as long "
            f"({base_c:,.0f} against {ours_c:,.0f} cycles)"
        )
    if swapped:
        reasons.append("operand swap: isamap issues the product as Cᵀ = Bᵀ·Aᵀ")
    if not reasons:
        reasons.append(
            "overlap: the same bytes and array time, but the baseline's tiles overlap loads "
            "and compute less"
        )
    return {
        "kernel": spec.key,
        "cycles": ours.cycles,
        "baseline_cycles": base.cycles,
        "dram_bytes": ours_b,
        "baseline_dram_bytes": base_b,
        "array_cycles": ours_c,
        "baseline_array_cycles": base_c,
        "schedule": _schedules(result.program),
        "baseline_schedule": _schedules(base_program),
        "reasons": reasons,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("report", type=Path, help="a bench report directory")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    doc = json.loads((args.report / "report.json").read_text())
    target = isamap.load_target(doc["target"])
    rows = [
        (suite, row)
        for suite, body in doc["suites"].items()
        for row in body["workloads"]
        if row["cycles"] > 0
    ]
    rows.sort(key=lambda t: -t[1]["baseline_cycles"] / t[1]["cycles"])
    out: list[dict[str, Any]] = []
    specs: dict[str, dict[str, KernelSpec]] = {}
    for suite, row in rows[: args.count]:
        found = specs.setdefault(suite, _specs(suite))
        parts = [found[p["key"]] for p in row["parts"] if p["key"] in found]
        main_part = max(parts, key=lambda s: kernel_macs(s.build(target)))
        entry = {
            "suite": suite,
            "row": row["name"],
            "speedup": row["baseline_cycles"] / row["cycles"],
        }
        entry |= explain(main_part, target)
        out.append(entry)
        print(f"{row['name']}: {entry['speedup']:.2f}x; " + "; ".join(entry["reasons"]))
    dest = args.out or args.report
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "gains.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    lines = [
        f"# The {len(out)} rows where isamap's schedule gains most on {doc['target']}",
        "",
        f"`python benchmarks/largest_gains.py {args.report}`: each row's largest kernel "
        "recompiled, isamap's program and the baseline's timed by the same model.",
        "",
        "| suite | row | speedup in the report | speedup recompiled | isamap schedule "
        "| baseline schedule | why |",
        "|---|---|---:|---:|---|---|---|",
    ]
    for e in out:
        again = e["baseline_cycles"] / e["cycles"] if e["cycles"] else 0.0
        lines.append(
            f"| {e['suite']} | {e['row']} | {e['speedup']:.2f}x | {again:.2f}x | "
            f"{'; '.join(e['schedule'])} | "
            f"{'; '.join(e['baseline_schedule'])} | {'; '.join(e['reasons'])} |"
        )
    (dest / "gains.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
