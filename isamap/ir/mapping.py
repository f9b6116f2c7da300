"""Mapping: one way to compute a kernel on a target, as a DAG of instruction calls and layout ops.

It is what extraction returns and what the scheduler and the functional simulator consume: plain
data, printable as a listing and serialisable as JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field

__all__ = ["LAYOUT_OPS", "MapNode", "Mapping"]


def _product(dims: str) -> int:
    out = 1
    for d in dims.split("x"):
        out *= int(d)
    return out


#: Operations that only move or view data (run by the DMA, or free when a view).
LAYOUT_OPS = frozenset(
    {"reshape", "transpose", "window", "broadcast", "concat", "slice", "block_diag"}
)

Attr = int | float | str | None


@dataclass(frozen=True)
class MapNode:
    """One operation of a mapping.

    `op` is one of: input, reshape, transpose, window, broadcast, full, ew, fn, reduce_sum,
    concat, slice, host_matmul, host_stmt, instr. `unit` says what runs it: "host", "dma",
    "view" (no data moves), or the target unit of an instruction. `tensor` names the kernel tensor
    whose value this node is, where it is one ("D (re-laid out)" when it holds that tensor in
    another layout). `cost` is under the extraction's cost model;
    `cycles` and `counts` (instruction issues by name) come from the analytic model.
    """

    id: int
    op: str
    args: tuple[int, ...]
    attrs: MappingABC[str, Attr]
    shape: tuple[int, ...]
    unit: str
    cost: float = 0.0
    tensor: str | None = None
    cycles: float = 0.0
    counts: MappingABC[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        a = self.attrs
        if self.op == "input":
            return f"input {a['name']}"
        if self.op == "instr_conv":
            epi = " + bias" if a.get("bias") else ""
            epi += f" + {a['epilogue']}" if a.get("epilogue") else ""
            return (
                f"{a['instruction']}{epi} (direct conv) b={a['b']} pixels={a['m']} kernels={a['n']}"
                f" channels*taps={a['k']} tiles={a['tiles']}"
            )
        if self.op == "instr":
            epi = " + bias" if a.get("bias") else ""
            if a.get("narrow"):  # requantized on the store: scaled, narrowed, then the function
                epi += f" + scale {float(str(a['scale'])):g} to {a['narrow']}"
            epi += f" + {a['epilogue']}" if a.get("epilogue") else ""
            taps = f" taps={a['taps']}" if a.get("taps") else ""
            return (
                f"{a['instruction']}{epi}{taps} b={a['b']} m={a['m']} n={a['n']} k={a['k']}"
                f" tiles={a['tiles']}"
            )
        if self.op == "host_stmt":
            return f"host statement {a['index']}: {a['statement']}"
        details = " ".join(f"{k}={v}" for k, v in a.items())
        return f"{self.op} {details}".strip()


@dataclass
class Mapping:
    """A DAG of MapNodes in topological order and the node holding each result tensor."""

    kernel: str
    target: str
    cost_model: str
    cost: float
    nodes: list[MapNode] = field(default_factory=list)
    outputs: dict[str, int] = field(default_factory=dict)

    def node(self, node_id: int) -> MapNode:
        return self.nodes[node_id]

    def instruction_calls(self) -> list[MapNode]:
        return [n for n in self.nodes if n.op in ("instr", "instr_conv")]

    def host_ops(self) -> list[MapNode]:
        return [n for n in self.nodes if n.unit == "host"]

    def __str__(self) -> str:
        lines = [
            f"mapping of {self.kernel} on {self.target} (cost model {self.cost_model}: "
            f"{self.cost:,.0f})"
        ]
        for n in self.nodes:
            args = ", ".join(f"%{i}" for i in n.args)
            shape = "x".join(str(d) for d in n.shape) or "scalar"
            name = f"  # {n.tensor}" if n.tensor else ""
            lines.append(
                f"  %{n.id:<3} = [{n.unit}] {n.describe()}"
                f"{' (' + args + ')' if args else ''} : {shape}{name}"
            )
        outs = ", ".join(f"{t} = %{i}" for t, i in self.outputs.items())
        lines.append(f"  outputs: {outs}")
        lines.extend(self.call_summary())
        return "\n".join(lines)

    def produces(self, node_id: int) -> tuple[list[str], list[str]]:
        """Kernel tensors a node's value becomes through views and layout ops alone, and those
        it feeds through other operations (each search stops at the first tensor on a path)."""
        direct: list[str] = []
        fed: list[str] = []
        frontier = [(node_id, True)]
        seen: set[tuple[int, bool]] = set()
        while frontier:
            current, layout_only = frontier.pop(0)
            if (current, layout_only) in seen:
                continue
            seen.add((current, layout_only))
            node = self.nodes[current]
            if node.tensor is not None and current != node_id:
                found = direct if layout_only else fed
                if node.tensor not in found:
                    found.append(node.tensor)
                continue
            for n in self.nodes:
                if current in n.args:
                    frontier.append((n.id, layout_only and n.op in LAYOUT_OPS))
        return direct, [t for t in fed if t not in direct]

    def call_summary(self) -> list[str]:
        """One line per instruction call: what it computes, in how many calls, how full."""
        lines = []
        for n in self.instruction_calls():
            a = n.attrs
            work = int(str(a["b"])) * int(str(a["m"])) * int(str(a["n"])) * int(str(a["k"]))
            taps = int(str(a.get("taps") or 1))
            work *= taps
            packed = self._block_diagonal(n)
            for arg in n.args[:2]:  # only the non-zero blocks of its operands are real work
                work = round(work * (1.0 - self._zero_fraction(arg)))
            calls = _product(str(a["tiles"]))
            capacity = calls * _product(str(a.get("tile", "1")))
            used = 100.0 * work / capacity if capacity else 0.0
            epi = f" with {a['epilogue']}" if a.get("epilogue") else ""
            if a.get("narrow"):
                then = f", then {a['epilogue']}" if a.get("epilogue") else ""
                scale = float(str(a["scale"]))
                epi = f" read out scaled by {scale:g} and narrowed to {a['narrow']}{then}"
            if a.get("bias"):
                per = "output-channel" if n.op == "instr_conv" else "column"
                epi = f" onto a per-{per} bias{epi.replace(' with ', ', then ')}"
            if packed > 1:
                epi += f" (operand block-diagonal: {packed} channels per product)"
            direct, fed = self.produces(n.id)
            if n.tensor is not None:
                direct = [n.tensor, *direct]
            what = ", ".join(direct) if direct else "an intermediate"
            if fed:
                what += f" (feeding {', '.join(fed)})"
            sum_of = f"the sum over {taps} filter taps of " if taps > 1 else ""
            lines.append(
                f"  call %{n.id}: {a['instruction']}{epi} computes {what} as {sum_of}{a['b']} x "
                f"[{a['m']}x{a['k']}].[{a['k']}x{a['n']}] in {calls:,} tiles of "
                f"{a.get('tile')} (b x m x n x k); {used:.1f}% of their MACs are useful"
            )
        return lines

    def _block_diagonal(self, call: MapNode) -> int:
        """Channels per product when an operand of `call` is a block-diagonal packing (through
        views and layout moves), else 1."""
        stack = list(call.args)
        while stack:
            node = self.nodes[stack.pop()]
            if node.op == "block_diag":
                return int(str(node.attrs["groups"]))
            if node.op in ("reshape", "transpose", "slice"):
                stack.extend(node.args)
        return 1

    def _zero_fraction(self, node_id: int) -> float:
        """The fraction of a call operand's elements that are structural zeros, through views and
        layout moves: the off-diagonal blocks of a block-diagonal operand — g channels packed
        (`block_diag`: all but 1/g), or the products of a batched call (`full` 0 blocks joined
        in by concatenations)."""
        node = self.nodes[node_id]
        if node.op == "full":
            return 1.0 if float(str(node.attrs["value"])) == 0.0 else 0.0
        if node.op == "block_diag":
            return 1.0 - 1.0 / int(str(node.attrs["groups"]))
        if node.op in ("reshape", "transpose", "slice"):
            return self._zero_fraction(node.args[0])
        if node.op == "concat":
            sizes = [math.prod(self.nodes[a].shape) for a in node.args]
            zeros = sum(s * self._zero_fraction(a) for a, s in zip(node.args, sizes, strict=True))
            return zeros / max(sum(sizes), 1)
        return 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "kernel": self.kernel,
            "target": self.target,
            "cost_model": self.cost_model,
            "cost": self.cost,
            "outputs": self.outputs,
            "nodes": [
                {
                    "id": n.id,
                    "op": n.op,
                    "args": list(n.args),
                    "attrs": dict(n.attrs),
                    "shape": list(n.shape),
                    "unit": n.unit,
                    "cost": n.cost,
                    "tensor": n.tensor,
                    "cycles": n.cycles,
                    "counts": dict(n.counts),
                }
                for n in self.nodes
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)
