"""Extraction: choose one e-node per needed e-class, counting each shared e-class once (DAG cost).

Greedy DAG extraction (as in extraction-gym's `greedy-dag`): every e-class keeps its best e-node and
the set of e-classes that choice depends on, with their own costs; a node's cost is the sum over the
union of its children's sets, so a subterm shared by two operands is paid for once.

Extraction has a deadline (the saturation's `Limits.seconds`): the greedy passes stop once every
result has a choice and the time is up, the local search returns the best mapping found so far,
and the e-graph's report says extraction stopped at its time limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from isamap.egraph.dump import EGraphDump, ENode
from isamap.extract.cost import CostModel, cost_model
from isamap.extract.lower import build_mapping
from isamap.ir.errors import IsamapError
from isamap.ir.mapping import Mapping

if TYPE_CHECKING:
    from isamap.egraph.saturate import Saturation

__all__ = ["Choice", "extract_greedy", "variants_greedy", "walk"]

#: Extraction methods: greedy DAG + local search (here), or the ILP of exact.py.

#: e-class -> its chosen e-node
Choice = dict[str, ENode]

_MAX_PASSES = 100
#: Alternatives tried per round of improvement, and rounds, after the greedy pass.
_MAX_TRIES = 2000
_MAX_ROUNDS = 6


class _Budget:
    """A deadline (perf_counter seconds) and whether extraction had to stop at it."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.hit = False

    def over(self) -> bool:
        if time.perf_counter() >= self.deadline:
            self.hit = True
        return self.hit


class _Costs:
    """Memoised local costs: a cost model is pure, and extraction asks for each node many times."""

    def __init__(self, dump: EGraphDump, model: CostModel) -> None:
        self.dump, self.model = dump, model
        self.memo: dict[int, float] = {}

    def known(self, node: ENode) -> bool:
        return id(node) in self.memo

    def __call__(self, node: ENode) -> float:
        key = id(node)
        if key not in self.memo:
            self.memo[key] = self.model.node_cost(node, self.dump)
        return self.memo[key]


def greedy_dag(
    dump: EGraphDump, costs: _Costs, budget: _Budget | None = None, roots: list[str] | None = None
) -> Choice:
    """Best e-node per e-class, each costed as the sum over the e-classes its choice uses; past
    `budget`'s deadline, costs no more e-nodes of e-classes that have a choice and stops once
    every one of `roots` has one."""
    best: Choice = {}
    sets: dict[str, dict[str, float]] = {}
    totals: dict[str, float] = {}
    for _ in range(_MAX_PASSES):
        changed = False
        for cid, nodes in dump.classes.items():
            # past the deadline, an e-class that has a choice costs no new e-nodes (a cost model
            # may take milliseconds per node: thousands of them are the time limit's business)
            for node in nodes:
                refs = node.refs()
                if cid in refs or any(r not in sets for r in refs):
                    continue
                if budget is not None and cid in best and not costs.known(node) and budget.over():
                    continue
                merged: dict[str, float] = {}
                for r in refs:
                    merged.update(sets[r])
                if cid in merged:  # a cycle through this e-class
                    continue
                merged[cid] = costs(node)
                total = math.fsum(merged.values())
                if total < totals.get(cid, math.inf) - 1e-9:
                    totals[cid], best[cid], sets[cid] = total, node, merged
                    changed = True
        if not changed:
            break
        if budget is not None and all(r in best for r in roots or ()) and budget.over():
            break
    return best


def walk(roots: Iterable[str], refs: Callable[[str], Iterable[str]]) -> list[str]:
    """E-classes reachable from `roots` by `refs` (an e-class's child e-classes), depth first."""
    seen: set[str] = set()
    order: list[str] = []
    stack = list(roots)
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        order.append(cid)
        stack.extend(r for r in refs(cid) if r not in seen)
    return order


def _reachable(roots: list[str], choice: Choice) -> list[str]:
    return walk(roots, lambda cid: choice[cid].refs())


def _dag_cost(roots: list[str], choice: Choice, costs: _Costs) -> float:
    return math.fsum(costs(choice[c]) for c in _reachable(roots, choice))


def _improve(
    roots: list[str], choice: Choice, dump: EGraphDump, costs: _Costs, budget: _Budget
) -> Choice:
    """Sharing the greedy pass cannot see: force another e-node at one e-class, let the other
    e-classes switch to e-nodes that reuse the work it adds, keep the change if it pays.

    E-classes outside the current mapping are tried too (after those in it): forcing one is how
    a structure two steps away is reached (a three-way fused GEMM whose two-way part the greedy
    pass never chose)."""
    best, best_cost = choice, _dag_cost(roots, choice, costs)
    tries = 0
    for _ in range(_MAX_ROUNDS):
        improved = False
        inside = _reachable(roots, best)
        outside = [c for c in dump.classes if c not in set(inside) and c in choice]
        for cid in inside + outside:
            for node in dump.classes[cid]:
                current = best.get(cid, choice.get(cid))
                if node is current or any(r not in choice for r in node.refs()):
                    continue
                tries += 1
                if tries > _MAX_TRIES or budget.over():
                    return best
                forced = dict(choice) | dict(best)
                forced[cid] = node
                if _cyclic(roots, forced) or _reaches(forced, node, cid):
                    continue
                new = set(_reachable([cid], forced)) - set(_reachable(roots, best))
                cand, cost = _settle(roots, forced, new, dump, costs, budget)
                if cost < best_cost - 1e-9:
                    best, best_cost, improved = cand, cost, True
        if not improved:
            break
    return best


def _settle(
    roots: list[str],
    choice: Choice,
    new: set[str],
    dump: EGraphDump,
    costs: _Costs,
    budget: _Budget,
) -> tuple[Choice, float]:
    """Let e-classes switch to e-nodes that reuse the e-classes in `new`: all of them at once
    (a fused GEMM pays off only when every product it replaces uses it), then each switch undone
    again where that is cheaper, then single switches that still pay."""
    together = dict(choice)
    switched: list[str] = []
    for cid in _reachable(roots, choice):
        for node in dump.classes[cid]:
            refs = node.refs()
            if (
                node is not choice[cid]
                and new.intersection(refs)
                and all(r in choice for r in refs)
            ):
                together[cid] = node
                switched.append(cid)
                break
    cost = _dag_cost(roots, choice, costs)
    if switched and not _cyclic(roots, together):
        together_cost = _dag_cost(roots, together, costs)
        for cid in switched:  # undo the switches that do not help
            if budget.over():
                break
            trial = dict(together)
            trial[cid] = choice[cid]
            if _cyclic(roots, trial):
                continue
            trial_cost = _dag_cost(roots, trial, costs)
            if trial_cost < together_cost - 1e-9:
                together, together_cost = trial, trial_cost
        if together_cost < cost - 1e-9:
            choice, cost = together, together_cost
    for cid in _reachable(roots, choice):
        if budget.over():
            break
        for node in dump.classes[cid]:
            refs = node.refs()
            if node is choice[cid] or not new.intersection(refs):
                continue
            if any(r not in choice for r in refs):
                continue
            trial = dict(choice)
            trial[cid] = node
            if _cyclic(roots, trial):
                continue
            trial_cost = _dag_cost(roots, trial, costs)
            if trial_cost < cost - 1e-9:
                choice, cost = trial, trial_cost
                break
    return choice, cost


def _cyclic(roots: list[str], choice: Choice) -> bool:
    state: dict[str, int] = {}
    for root in roots:
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            cid, done = stack.pop()
            if done:
                state[cid] = 2
                continue
            if state.get(cid) == 2:
                continue
            if state.get(cid) == 1:
                return True
            state[cid] = 1
            stack.append((cid, True))
            for r in choice[cid].refs():
                if state.get(r) == 1:
                    return True
                if state.get(r) != 2:
                    stack.append((r, False))
    return False


def _roots(sat: Saturation) -> list[str]:
    """The e-classes of the kernel's outputs, each once (many outputs may share one)."""
    return list(dict.fromkeys(sat.dump.results[name] for name in sat.kernel.outputs()))


def _budget(sat: Saturation, deadline: float | None) -> _Budget:
    return _Budget(time.perf_counter() + sat.limits.seconds if deadline is None else deadline)


def extract_greedy(
    sat: Saturation, cost: str | object = "latency", deadline: float | None = None
) -> Mapping:
    """The cheapest mapping of `sat`'s kernel under `cost` by greedy DAG extraction plus local
    search (the exact extraction's warm start, and its fallback): the best found by `deadline`
    (perf_counter seconds; default: `sat.limits.seconds` from now)."""
    model = cost_model(cost, sat.target, sat.kernel)
    costs = _Costs(sat.dump, model)
    roots = _roots(sat)
    budget = _budget(sat, deadline)
    choice = _best(sat, roots, costs, budget)
    _note(sat, budget)
    return build_mapping(sat, choice, model, _dag_cost(roots, choice, costs))


def _note(sat: Saturation, budget: _Budget) -> None:
    sat.report.extract_stop_reason = "time-limit" if budget.hit else "complete"


def _best(sat: Saturation, roots: list[str], costs: _Costs, budget: _Budget) -> Choice:
    choice = greedy_dag(sat.dump, costs, budget, roots)
    if any(r not in choice for r in roots):
        raise IsamapError(f"no extractable mapping for {sat.kernel.name}")
    return _improve(roots, choice, sat.dump, costs, budget)


def variants_greedy(
    sat: Saturation, n: int, cost: str | object = "latency", deadline: float | None = None
) -> list[Mapping]:
    """Up to `n` distinct mappings, cheapest first, near the greedy one (not a k-best): each
    forces another e-node at one e-class of the greedy mapping, the rest chosen as before. Past
    `deadline` (default: `sat.limits.seconds` from now) the ones found so far."""
    model = cost_model(cost, sat.target, sat.kernel)
    costs = _Costs(sat.dump, model)
    roots = _roots(sat)
    budget = _budget(sat, deadline)
    choice = _best(sat, roots, costs, budget)
    candidates: list[tuple[float, Choice]] = [(_dag_cost(roots, choice, costs), choice)]
    for cid in _reachable(roots, choice):
        if budget.over():
            break
        for node in sat.dump.classes[cid]:
            if node is choice[cid] or any(r not in choice for r in node.refs()):
                continue
            forced = dict(choice)
            forced[cid] = node
            if _reaches(forced, node, cid):
                continue
            candidates.append((_dag_cost(roots, forced, costs), forced))
    candidates.sort(key=lambda c: c[0])
    result: list[Mapping] = []
    seen_text: set[str] = set()
    for total, ch in candidates:
        if result and budget.over():
            break
        mapping = build_mapping(sat, ch, model, total)
        text = "\n".join(str(mapping).splitlines()[1:])
        if text in seen_text:
            continue
        seen_text.add(text)
        result.append(mapping)
        if len(result) == n:
            break
    _note(sat, budget)
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
