"""A cost model is a plain object: here one that counts only DRAM traffic of layout operations
and forbids the host, compared with the shipped `latency` and `instructions` models.

Run: python examples/03_custom_cost_model.py
"""

from __future__ import annotations

import math
from pathlib import Path

import isamap
from isamap.egraph import EGraphDump, ENode

HERE = Path(__file__).resolve().parent


class LayoutTraffic:
    """Elements moved by transposes and im2col windows; the host is never acceptable."""

    name = "layout-traffic"

    def node_cost(self, node: ENode, dump: EGraphDump) -> float:
        if node.op in ("Bmm", "HostStmt"):
            return math.inf
        if node.op in ("Transpose", "Window", "Broadcast"):
            return float(math.prod(dump.shapes[node.eclass]))
        return 0.0


def main() -> None:
    kernel = isamap.load_kernel(HERE / "kernels" / "conv2d.kernel")
    for cost in ("latency", "instructions", LayoutTraffic()):
        result = isamap.compile(kernel, "gemmini", cost=cost, quantize=True)  # f32 on int8
        name = cost if isinstance(cost, str) else cost.name
        print(f"{name:>15}: {result.mapping.cost:>10,.0f}   cycles {result.report.cycles:,.0f}")


if __name__ == "__main__":
    main()
