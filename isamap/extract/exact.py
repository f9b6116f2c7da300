"""Exact extraction: the cheapest DAG mapping as an integer program, solved by HiGHS (`highspy`).

Greedy DAG extraction plus local search is fast but not optimal when sharing pays off in ways a
local move cannot see; this module is the option that is, and the oracle tests hold greedy to.
It also gives `variants` a real k-best: each solution found is cut off and the program re-solved.
Everything is generic over the EGraphDump (e-nodes, their e-class refs, the cost model's node
costs): no e-node kind is named here.

The program, over the e-classes reachable from the kernel's results:
- a binary per e-node (chosen) and per e-class (used); every result's e-class is used;
- a used e-class chooses exactly one of its e-nodes; a chosen e-node uses each child e-class;
- no cycles: inside each strongly connected component of the e-class graph, an order variable
  per e-class with a big-M row per edge (a chosen e-node comes after its children);
- minimise the sum of the chosen e-nodes' costs, so each shared e-class is paid once.
The greedy + local search solution is the MIP start, so the answer is never worse than greedy's;
at the time limit the best incumbent is returned with `optimal=False`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import highspy
import numpy as np

from isamap.egraph.dump import EGraphDump, ENode
from isamap.extract.cost import CostModel, cost_model
from isamap.extract.extractor import (
    Choice,
    _best,
    _budget,
    _Costs,
    _dag_cost,
    _reachable,
    _roots,
    walk,
)
from isamap.extract.lower import build_mapping
from isamap.ir.errors import IsamapError
from isamap.ir.mapping import Mapping

if TYPE_CHECKING:
    from isamap.egraph.saturate import Saturation

__all__ = [
    "DEFAULT_SECONDS",
    "ExactSolution",
    "ExtractionTimeLimit",
    "KBest",
    "candidate_mappings",
    "exact_choices",
    "extract_exact",
    "variants_exact",
]

#: The time limit when none is given: Limits().seconds, the saturation default.
DEFAULT_SECONDS = 60.0


class ExtractionTimeLimit(UserWarning):
    """The ILP stopped at its time limit: the mapping is the best found, not proven optimal."""


@dataclass(frozen=True)
class ExactSolution:
    """One mapping the ILP found: the chosen e-node of every e-class it uses (reachable from the
    results), its DAG cost, whether it is proven optimal, and the solver's time for it."""

    choice: Choice
    cost: float
    optimal: bool
    seconds: float

    def key(self) -> frozenset[tuple[str, ENode]]:
        """The mapping's identity: its (e-class, chosen e-node) pairs."""
        return frozenset(self.choice.items())


def _extractable(
    dump: EGraphDump, costs: _Costs, deadline: float = math.inf
) -> dict[str, list[ENode]]:
    """E-nodes that can be part of a finite mapping: finite cost, no self-loop, every child
    e-class itself has such an e-node (a fixpoint from the leaves up). Past `deadline` only
    e-nodes already costed count (the warm start's are): costing every e-node of a huge e-graph
    can take minutes, which is the time limit's business."""

    def costed(node: ENode) -> bool:
        return costs.known(node) or time.perf_counter() < deadline

    finite = {
        cid: [n for n in nodes if cid not in n.refs() and costed(n) and math.isfinite(costs(n))]
        for cid, nodes in dump.classes.items()
    }
    ok: set[str] = set()
    changed = True
    while changed:
        changed = False
        for cid, nodes in finite.items():
            if cid not in ok and any(all(r in ok for r in n.refs()) for n in nodes):
                ok.add(cid)
                changed = True
    return {
        cid: [n for n in finite[cid] if all(r in ok for r in n.refs())]
        for cid in finite
        if cid in ok
    }


def _reach(roots: Sequence[str], nodes: dict[str, list[ENode]]) -> list[str]:
    return walk(roots, lambda cid: (r for n in nodes[cid] for r in n.refs()))


def _components(classes: list[str], nodes: dict[str, list[ENode]]) -> dict[str, int]:
    """Strongly connected component of each e-class (Tarjan, iterative); only e-classes in a
    component with a cycle need order variables."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    comp: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    succ = {c: sorted({r for n in nodes[c] for r in n.refs()}) for c in classes}
    counter = 0
    for start in classes:
        if start in index:
            continue
        work: list[tuple[str, int]] = [(start, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            if i < len(succ[v]):
                work.append((v, i + 1))
                w = succ[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp[w] = index[v]
                    if w == v:
                        break
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return comp


class _Program:
    """The ILP for one e-graph, its roots and costs; solve, cut a solution off, solve again."""

    def __init__(
        self, dump: EGraphDump, roots: list[str], costs: _Costs, deadline: float = math.inf
    ) -> None:
        nodes = _extractable(dump, costs, deadline)
        if any(r not in nodes for r in roots):
            raise IsamapError("no extractable mapping: a result has no finite-cost e-node")
        self.roots, self.costs = roots, costs
        self.classes = _reach(roots, nodes)
        self.members = {c: nodes[c] for c in self.classes}
        self.nodes = [n for c in self.classes for n in nodes[c]]
        self.node_col = {id(n): i for i, n in enumerate(self.nodes)}
        base = len(self.nodes)
        self.class_col = {c: base + i for i, c in enumerate(self.classes)}
        comp = _components(self.classes, nodes)
        sizes: dict[int, int] = {}
        for c in self.classes:
            sizes[comp[c]] = sizes.get(comp[c], 0) + 1
        cyclic = [c for c in self.classes if sizes[comp[c]] > 1]
        base += len(self.classes)
        self.order_col = {c: base + i for i, c in enumerate(cyclic)}
        self.comp, self.comp_size = comp, sizes
        self.highs = self._build()

    def _build(self) -> highspy.Highs:
        # highspy.Highs() prints a banner on the C stdout before any option can silence it (it
        # would corrupt `--json` output); the core class it wraps does not.
        h = getattr(highspy, "_Highs", highspy.Highs)()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        h.setOptionValue("mip_rel_gap", 0.0)
        h.setOptionValue("mip_abs_gap", 1e-9)
        # the MIP start (and, in the k-best, the cuts) leave little for primal heuristics and
        # restarts to find; measured on the GRU cell's 12 best, turning them off halves the time
        for option in ("rins", "rens", "feasibility_jump", "root_reduced_cost"):
            h.setOptionValue(f"mip_heuristic_run_{option}", False)
        h.setOptionValue("mip_heuristic_effort", 0.0)
        h.setOptionValue("mip_allow_restart", False)
        nb, nc, no = len(self.nodes), len(self.classes), len(self.order_col)
        cost = [self.costs(n) for n in self.nodes] + [0.0] * (nc + no)
        lower = [0.0] * (nb + nc) + [0.0] * no
        upper = [1.0] * (nb + nc) + [
            float(self.comp_size[self.comp[c]] - 1) for c in self.order_col
        ]
        for r in self.roots:
            lower[self.class_col[r]] = 1.0
        h.addCols(nb + nc + no, np.array(cost), np.array(lower), np.array(upper), *_empty())
        binaries = np.arange(nb + nc, dtype=np.int32)
        h.changeColsIntegrality(nb + nc, binaries, np.ones(nb + nc, dtype=np.uint8))
        rows = _Rows()
        for c in self.classes:  # a used e-class chooses one e-node: sum x - u = 0
            members = [self.node_col[id(n)] for n in self.members[c]]
            rows.add(0.0, 0.0, [*members, self.class_col[c]], [1.0] * len(members) + [-1.0])
        for i, n in enumerate(self.nodes):
            for r in dict.fromkeys(n.refs()):  # a chosen e-node uses its children: x - u <= 0
                rows.add(-math.inf, 0.0, [i, self.class_col[r]], [1.0, -1.0])
                if r in self.order_col and self.comp[r] == self.comp[n.eclass]:
                    # t_c - t_r + M (1 - x) >= 1, i.e. t_c - t_r - M x >= 1 - M
                    big = float(self.comp_size[self.comp[r]])
                    cols = [self.order_col[n.eclass], self.order_col[r], i]
                    rows.add(1.0 - big, math.inf, cols, [1.0, -1.0, -big])
        # an e-class other than a result is used only if a chosen e-node needs it: u - sum x <= 0
        # (with no cycles, the chosen e-nodes are then exactly the mapping reachable from the
        # results, and nothing else: no free zero-cost extras to tell apart in the k-best)
        parents: dict[str, list[int]] = {c: [] for c in self.classes}
        for i, n in enumerate(self.nodes):
            for r in dict.fromkeys(n.refs()):
                parents[r].append(i)
        for c in self.classes:
            if c not in self.roots:
                cols = [self.class_col[c], *parents[c]]
                rows.add(-math.inf, 0.0, cols, [1.0] + [-1.0] * len(parents[c]))
        rows.flush(h)
        return h

    def start(self, choice: Choice) -> None:
        """Give HiGHS `choice` (an acyclic mapping from the roots) as its MIP start."""
        values = [0.0] * (len(self.nodes) + len(self.classes) + len(self.order_col))
        reachable = _reachable(self.roots, choice)
        if any(id(choice[c]) not in self.node_col for c in reachable):
            return  # it uses an e-node the program left out (an infinite cost): no start
        for c in reachable:
            values[self.node_col[id(choice[c])]] = 1.0
            values[self.class_col[c]] = 1.0
        rank: dict[int, int] = {}  # children before parents: a rank per component
        for c in _post_order(self.roots, choice):
            if c in self.order_col:
                k = self.comp[c]
                values[self.order_col[c]] = float(rank.get(k, 0))
                rank[k] = rank.get(k, 0) + 1
        solution = highspy.HighsSolution()
        solution.col_value = values
        self.highs.setSolution(solution)

    def solve(self, seconds: float) -> ExactSolution | None:
        """The cheapest mapping not cut off yet, or None if there is none (or none in time)."""
        h = self.highs
        h.setOptionValue("time_limit", max(seconds, 1e-3))
        t0 = time.perf_counter()
        h.run()
        elapsed = time.perf_counter() - t0
        status = h.getModelStatus()
        if h.getInfo().primal_solution_status != highspy.kSolutionStatusFeasible:
            return None
        values = h.getSolution().col_value
        choice: Choice = {}
        for c in self.classes:
            if values[self.class_col[c]] > 0.5:
                chosen = [n for n in self.members[c] if values[self.node_col[id(n)]] > 0.5]
                choice[c] = chosen[0]
        choice = {c: choice[c] for c in _reachable(self.roots, choice)}
        optimal = status == highspy.HighsModelStatus.kOptimal
        return ExactSolution(choice, _dag_cost(self.roots, choice, self.costs), optimal, elapsed)

    def timed_out(self) -> bool:
        """Whether the last solve stopped at its time limit."""
        return bool(self.highs.getModelStatus() == highspy.HighsModelStatus.kTimeLimit)

    def cut(self, solution: ExactSolution, costly: bool = False) -> None:
        """Exclude exactly `solution`'s mapping: not all of its decisions again (its e-nodes in
        e-classes with a choice). Any solution making all of them reaches exactly the same
        e-nodes from the results, and any other mapping differs in one of them. With `costly`,
        only its decisions of e-nodes that cost something: every mapping doing the same costed
        work by other free views is excluded with it."""
        cols = sorted(
            self.node_col[id(n)]
            for n in solution.choice.values()
            if len(self.members[n.eclass]) > 1 and (not costly or self.costs(n) > 0)
        )
        if not cols:  # the e-graph has only this one mapping
            cols = [self.node_col[id(n)] for n in solution.choice.values()]
        rows = _Rows()
        rows.add(-math.inf, float(len(cols) - 1), cols, [1.0] * len(cols))
        rows.flush(self.highs)


def _post_order(roots: Sequence[str], choice: Choice) -> list[str]:
    """E-classes reachable from `roots` under `choice`, children before parents."""
    seen: set[str] = set()
    order: list[str] = []
    for root in roots:
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            cid, done = stack.pop()
            if done:
                order.append(cid)
                continue
            if cid in seen:
                continue
            seen.add(cid)
            stack.append((cid, True))
            stack.extend((r, False) for r in choice[cid].refs() if r not in seen)
    return order


def _empty() -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """No matrix entries (columns are added before the rows that use them)."""
    return 0, np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32), np.zeros(0)


class _Rows:
    """Rows in compressed sparse row form, added to HiGHS in one call."""

    def __init__(self) -> None:
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.starts: list[int] = []
        self.index: list[int] = []
        self.value: list[float] = []

    def add(self, lower: float, upper: float, cols: list[int], values: list[float]) -> None:
        self.lower.append(lower)
        self.upper.append(upper)
        self.starts.append(len(self.index))
        self.index.extend(cols)
        self.value.extend(values)

    def flush(self, h: highspy.Highs) -> None:
        h.addRows(
            len(self.lower),
            np.array(self.lower),
            np.array(self.upper),
            len(self.index),
            np.array(self.starts, dtype=np.int32),
            np.array(self.index, dtype=np.int32),
            np.array(self.value),
        )


@dataclass(frozen=True)
class KBest:
    """What the k-best search found, cheapest first, and whether it stopped at its time limit
    (then the last solution may not be proven optimal, and more mappings may exist)."""

    solutions: list[ExactSolution]
    timed_out: bool
    seconds: float


def exact_choices(
    dump: EGraphDump,
    roots: list[str],
    costs: _Costs,
    k: int = 1,
    seconds: float = DEFAULT_SECONDS,
    start: Choice | None = None,
    close: float = math.inf,
    at_least: int = 1,
    tie: float = 0.0,
    tied: int = 0,
    costly: bool = False,
) -> KBest:
    """Up to `k` distinct mappings of `roots`, cheapest first, each the cheapest of those not
    found before it. After the first `at_least`, the search stops at a mapping costing more than
    (1 + `close`) times the best, or past the `k`-th; but a mapping within (1 + `tie`) of the
    best is still taken while fewer than `tied` are found (estimates that close cannot tell
    the mappings apart). With `costly`, mappings are distinct in the e-nodes that cost
    something (`_Program.cut`): two that differ only in free views are one. `seconds` bounds
    all solves together; `start` is the first solve's MIP start."""
    t0 = time.perf_counter()
    program = _Program(dump, roots, costs, t0 + seconds)
    if start is not None:
        program.start(start)
    found: list[ExactSolution] = []
    timed_out = False

    def wanted(index: int, cost: float) -> bool:
        best = found[0].cost
        close_enough = index < k and cost <= (1 + close) * best + 1e-9
        return close_enough or (index < tied and cost <= (1 + tie) * best + 1e-9)

    while len(found) < max(k, tied):
        remaining = seconds - (time.perf_counter() - t0)
        if remaining <= 0:
            timed_out = True
            break
        solution = program.solve(remaining)
        if solution is None:  # no mapping left, or none found in time
            timed_out = program.timed_out()
            break
        if len(found) >= at_least and not wanted(len(found), solution.cost):
            break
        found.append(solution)
        if not solution.optimal:  # the solver stopped early: the next would not be exact
            timed_out = True
            break
        program.cut(solution, costly)
    return KBest(found, timed_out, time.perf_counter() - t0)


def _solve(
    sat: Saturation,
    cost: str | object,
    k: int,
    seconds: float | None,
    close: float = math.inf,
    at_least: int = 1,
    greedy_first: bool = False,
    tie: float = 0.0,
    tied: int = 0,
    costly: bool = False,
) -> tuple[list[Choice], list[float], CostModel]:
    """Choices and their costs from the ILP (after greedy's, if `greedy_first`), or greedy's one
    choice if the ILP found none in time; a warning whenever the time limit cut it short."""
    model = cost_model(cost, sat.target, sat.kernel)
    costs = _Costs(sat.dump, model)
    roots = _roots(sat)
    limit = min(DEFAULT_SECONDS, sat.limits.seconds) if seconds is None else seconds
    started = time.perf_counter()
    budget = _budget(sat, started + limit)
    greedy = _best(sat, roots, costs, budget)  # the warm start, bounded too
    greedy = {c: greedy[c] for c in _reachable(roots, greedy)}
    left = max(limit - (time.perf_counter() - started), 0.05 * limit)
    result = exact_choices(
        sat.dump, roots, costs, k, left, greedy, close, at_least, tie, tied, costly
    )
    hit = budget.hit or result.timed_out or not result.solutions
    sat.report.extract_stop_reason = "time-limit" if hit else "complete"
    if not result.solutions:
        _warn(f"no ILP solution within {limit:g} s: the greedy mapping stands in")
    elif result.timed_out:
        _warn(
            f"exact extraction stopped at its time limit ({limit:g} s) after "
            f"{len(result.solutions)} mapping(s); the last is the best found, not proven optimal"
        )
    choices = [s.choice for s in result.solutions]
    if greedy_first or not choices:  # greedy's answer first, or standing in for the ILP's
        choices = [greedy, *(c for c in choices if c != greedy)]
    return choices, [_dag_cost(roots, c, costs) for c in choices], model


def _warn(message: str) -> None:
    warnings.warn(message, ExtractionTimeLimit, stacklevel=2)


def extract_exact(
    sat: Saturation, cost: str | object = "latency", seconds: float | None = None
) -> Mapping:
    """The cheapest mapping of `sat`'s kernel under `cost`, by ILP within `seconds` (default
    DEFAULT_SECONDS); at the limit the best found, with an ExtractionTimeLimit warning."""
    choices, totals, model = _solve(sat, cost, 1, seconds)
    return build_mapping(sat, choices[0], model, totals[0])


def variants_exact(
    sat: Saturation,
    n: int,
    cost: str | object = "latency",
    seconds: float | None = None,
    close: float = math.inf,
    at_least: int = 1,
) -> list[Mapping]:
    """The `n` cheapest distinct mappings (different e-nodes chosen from the results down),
    cheapest first; fewer if the e-graph has fewer, or if `seconds` ran out (then a warning).
    After the first `at_least`, only those within (1 + `close`) of the best cost."""
    if n <= 0:
        return []
    choices, totals, model = _solve(sat, cost, n, seconds, close, at_least)
    return [build_mapping(sat, c, model, t) for c, t in zip(choices, totals, strict=True)]


def candidate_mappings(
    sat: Saturation,
    cost: str | object,
    method: str,
    at_least: int,
    most: int,
    close: float,
    seconds: float | None = None,
    tie: float = 0.0,
    tied: int = 0,
) -> list[tuple[Mapping, Choice]]:
    """The mapping `method` ("greedy" or "exact") extracts, then the next best of the k-best:
    at least `at_least` mappings in all, and more while within (1 + `close`) of the best cost,
    up to `most`; past that, more while within (1 + `tie`) of it, up to `tied` (fewer if the
    e-graph has fewer). Each does other costed work than those before it: mappings that differ
    only in free views would simulate alike. Each with the choice of e-nodes it lowers."""
    choices, totals, model = _solve(
        sat, cost, most, seconds, close, at_least, method == "greedy", tie, tied, costly=True
    )
    pairs = zip(choices, totals, strict=True)
    return [(build_mapping(sat, c, model, t), c) for c, t in pairs][: max(most, tied)]
