"""Run saturation yourself: limits, the run report, several variants, and e-graph dumps.

Run: python examples/02_saturate_and_inspect.py
"""

from __future__ import annotations

from pathlib import Path

import isamap

HERE = Path(__file__).resolve().parent


def main() -> None:
    kernel = isamap.load_kernel(HERE / "kernels" / "gru_cell.kernel")
    target = isamap.load_target("gemmini")
    sat = isamap.saturate(kernel, target, limits=isamap.Limits(iterations=20, enodes=20_000))
    print(sat.report.summary())
    for rule, matches in sorted(sat.report.matches_per_rule.items()):
        print(f"  {rule}: {matches} matches")

    for i, mapping in enumerate(sat.variants(3, cost="latency")):
        calls = [n.describe() for n in mapping.instruction_calls()]
        print(f"variant {i}: {mapping.cost:,.0f} cycles; calls: {calls}")

    print(f"graphviz text: {len(sat.to_dot().splitlines())} lines; JSON {len(sat.to_json())} bytes")


if __name__ == "__main__":
    main()
