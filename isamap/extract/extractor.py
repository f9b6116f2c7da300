"""Extraction: choose one e-node per needed e-class, counting each shared e-class once (DAG cost).

Greedy DAG extraction (as in extraction-gym's `greedy-dag`): every e-class keeps its best e-node and
the set of e-classes that choice depends on, with their own costs; a node's cost is the sum over the
union of its children's sets, so a subterm shared by two operands is paid for once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from isamap.egraph.dump import EGraphDump, ENode
from isamap.extract.cost import CostModel, cost_model
from isamap.extract.lower import build_mapping
from isamap.ir.errors import IsamapError
from isamap.ir.mapping import Mapping

if TYPE_CHECKING:
    from isamap.egraph.saturate import Saturation

__all__ = ["Choice", "extract", "extract_variants", "greedy_dag"]

#: e-class -> its chosen e-node
Choice = dict[str, ENode]

_MAX_PASSES = 100


def greedy_dag(dump: EGraphDump, model: CostModel) -> tuple[Choice, dict[str, dict[str, float]]]:
    """Best e-node per e-class and, per e-class, the costs of every e-class its choice uses."""
    local: dict[int, float] = {}
    best: Choice = {}
    sets: dict[str, dict[str, float]] = {}
    totals: dict[str, float] = {}
    for _ in range(_MAX_PASSES):
        changed = False
        for cid, nodes in dump.classes.items():
            for node in nodes:
                refs = node.refs()
                if any(r not in sets for r in refs) or cid in refs:
                    continue
                key = id(node)
                if key not in local:
                    local[key] = model.node_cost(node, dump)
                merged: dict[str, float] = {}
                for r in refs:
                    merged.update(sets[r])
                if cid in merged:  # a cycle through this e-class
                    continue
                merged[cid] = local[key]
                total = math.fsum(merged.values())
                if total < totals.get(cid, math.inf) - 1e-9:
                    totals[cid], best[cid], sets[cid] = total, node, merged
                    changed = True
        if not changed:
            break
    return best, sets


def _dag_cost(roots: list[str], choice: Choice, dump: EGraphDump, model: CostModel) -> float:
    seen: set[str] = set()
    stack = list(roots)
    total = 0.0
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        node = choice[cid]
        total += model.node_cost(node, dump)
        stack.extend(node.refs())
    return total


def _roots(sat: Saturation) -> list[str]:
    return [sat.dump.results[name] for name in sat.kernel.outputs()]


def extract(sat: Saturation, cost: str | object = "latency") -> Mapping:
    """The cheapest mapping of `sat`'s kernel under `cost`."""
    model = cost_model(cost, sat.target, sat.kernel)
    choice, _ = greedy_dag(sat.dump, model)
    roots = _roots(sat)
    missing = [r for r in roots if r not in choice]
    if missing:
        raise IsamapError(f"no extractable mapping for {sat.kernel.name}")
    total = _dag_cost(roots, choice, sat.dump, model)
    return build_mapping(sat, choice, model, total)


def extract_variants(sat: Saturation, n: int, cost: str | object = "latency") -> list[Mapping]:
    """Up to `n` distinct mappings, cheapest first: each forces another e-node at one e-class
    of the best mapping (a result or any class it uses), the rest chosen as before."""
    model = cost_model(cost, sat.target, sat.kernel)
    choice, _ = greedy_dag(sat.dump, model)
    roots = _roots(sat)
    candidates: list[tuple[float, Choice]] = [(_dag_cost(roots, choice, sat.dump, model), choice)]
    used: list[str] = []
    stack, seen = list(roots), set()
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        used.append(cid)
        stack.extend(choice[cid].refs())
    for cid in used:
        for node in sat.dump.classes[cid]:
            if node is choice[cid] or any(r not in choice for r in node.refs()):
                continue
            forced = dict(choice)
            forced[cid] = node
            if _reaches(forced, node, cid):
                continue
            candidates.append((_dag_cost(roots, forced, sat.dump, model), forced))
    candidates.sort(key=lambda c: c[0])
    result: list[Mapping] = []
    seen_text: set[str] = set()
    for total, ch in candidates:
        mapping = build_mapping(sat, ch, model, total)
        text = "\n".join(str(mapping).splitlines()[1:])
        if text in seen_text:
            continue
        seen_text.add(text)
        result.append(mapping)
        if len(result) == n:
            break
    return result


def _reaches(choice: Choice, start: ENode, target: str) -> bool:
    """True if following `choice` from `start`'s children comes back to e-class `target`."""
    stack = list(start.refs())
    seen: set[str] = set()
    while stack:
        cid = stack.pop()
        if cid == target:
            return True
        if cid in seen:
            continue
        seen.add(cid)
        stack.extend(choice[cid].refs())
    return False

