"""Exact (ILP) extraction as the oracle: greedy + local search against it, the k-best against
brute-force enumeration, cycles, the time limit, and compile's close candidates."""

from __future__ import annotations

import glob
import itertools
import json
import math
import random
import sys
import warnings
from pathlib import Path

import pytest

import isamap
from isamap.egraph.dump import EGraphDump, ENode, Ref
from isamap.extract import ExtractionTimeLimit, cost_model, extract, extract_variants
from isamap.extract.exact import candidate_mappings, exact_choices
from isamap.extract.extractor import (
    Choice,
    _best,
    _budget,
    _Costs,
    _dag_cost,
    _reachable,
    _roots,
)
from isamap.hardware.sim import simulate_timing
from isamap.schedule.scheduler import schedule_mapping
from tests.typed import check_outputs, typed_for

compile_module = sys.modules["isamap.compile"]  # `isamap.compile` the name is the function

KERNELS = sorted(glob.glob(str(Path(__file__).parents[2] / "examples/kernels/*.kernel")))
TARGETS = ("gemmini", "vecdsp", "nnp")
#: Relative slack in "equal" costs (the ILP's objective is a float sum, ours an fsum).
EPS = 1e-9
#: How much dearer than the exact optimum greedy + local search was measured to be, per cost
#: model, on the e-graphs of the Bmm-level encoder: on two GEMMs sharing an operand with a relu
#: after one (SHARED_RELU; 450 random sizes x targets x models, seed 5) up to 40.5% under latency
#: (nnp, A[33, 4] B[4, 8] D[4, 33]), 17.0% under energy and 66.7% under instructions. On the
#: literal encoder's e-graphs it can be dearer still (62% on nnp, A[16, 24] B[24, 4] D[24, 24]),
#: which is why the exact extraction is the default and greedy only its warm start; the test
#: prints the cases beyond these figures.
GREEDY_TOLERANCE = {"latency": 0.5, "energy": 0.25, "instructions": 0.8}
#: Sizes of SHARED_RELU where greedy is worse (regression cases for the tolerance).
GREEDY_WORSE = [
    "tensor A[33, 4] f32\ntensor B[4, 8] f32\ntensor D[4, 33] f32\n",
    "tensor A[4, 8] f32\ntensor B[8, 4] f32\ntensor D[8, 12] f32\n",
    "tensor A[20, 8] f32\ntensor B[8, 8] f32\ntensor D[8, 12] f32\n",
]
SHARED_RELU = (
    "C[i, j] += A[i, k] * B[k, j]\nE[i, l] += A[i, k] * D[k, l]\nR[i, l] = relu(E[i, l])\n"
)


@pytest.fixture(scope="module")
def targets() -> dict[str, isamap.Target]:
    return {name: isamap.load_target(name) for name in TARGETS}


def _random_kernels(count: int, seed: int = 8) -> list[str]:
    """Small kernels with sharing and layout choices: chained, shared-operand and transposed
    products, with and without an elementwise epilogue."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        m, k, n, p = (rng.choice([4, 8, 12, 16, 20, 24, 33]) for _ in range(4))
        shape = rng.choice(["chain", "shared", "transposed"])
        lines = [f"tensor A[{m}, {k}] f32"]
        if shape == "chain":
            lines += [f"tensor B[{k}, {n}] f32", f"tensor D[{n}, {p}] f32"]
            lines += ["T[i, j] += A[i, k] * B[k, j]", "C[i, l] += T[i, j] * D[j, l]"]
        elif shape == "shared":
            lines += [f"tensor B[{k}, {n}] f32", f"tensor D[{k}, {p}] f32"]
            lines += ["C[i, j] += A[i, k] * B[k, j]", "E[i, l] += A[i, k] * D[k, l]"]
        else:
            lines += [f"tensor B[{n}, {k}] f32", "C[j, i] += A[i, k] * B[j, k]"]
        if rng.random() < 0.5:
            out = lines[-1].split("[")[0]
            idx = lines[-1].split("]")[0].split("[")[1]
            lines.append(f"R[{idx}] = {rng.choice(['relu', 'sigmoid'])}({out}[{idx}])")
        texts.append("\n".join(lines) + "\n")
    return texts


def _greedy_and_exact(sat: isamap.Saturation, cost: str) -> tuple[float, float, float, float, bool]:
    model = cost_model(cost, sat.target, sat.kernel)
    costs = _Costs(sat.dump, model)
    roots = _roots(sat)
    greedy = _best(sat, roots, costs, _budget(sat, None))
    result = exact_choices(sat.dump, roots, costs, 1, 60.0, start=greedy)
    (best,) = result.solutions
    # the ILP's answer is a real mapping and costs what it says
    assert best.cost == pytest.approx(_dag_cost(roots, best.choice, costs), rel=EPS)
    assert set(_reachable(roots, best.choice)) == set(best.choice)
    return _dag_cost(roots, greedy, costs), best.cost, result.seconds, best.seconds, best.optimal


@pytest.mark.parametrize("target", TARGETS)
def test_greedy_is_exact_on_every_example(targets: dict[str, isamap.Target], target: str) -> None:
    worse: dict[str, float] = {}
    for path in KERNELS:
        sat = isamap.saturate(isamap.load_kernel(path), targets[target])
        for cost in GREEDY_TOLERANCE:
            greedy, exact, _, _, optimal = _greedy_and_exact(sat, cost)
            assert optimal
            assert exact <= greedy * (1 + EPS), (path, cost)  # the MIP start bounds it
            if greedy > exact * (1 + EPS):
                worse[f"{Path(path).stem}/{cost}"] = greedy / exact - 1
    # measured: greedy + local search is exact on every example but the GRU cell, where each
    # gate's sum fusion (X.Wz + H.Uz over one K) competes with fusing the three gates' products
    # on their shared X and H, two steps away: 1.0% dearer on gemmini, 91% on nnp, 15% on
    # vecdsp under latency, 19% on vecdsp under instructions (the exact extraction, the
    # default, finds the fused one)
    assert all(name.startswith("gru_cell/") for name in worse), worse
    assert all(gap < 1.0 for gap in worse.values()), worse


def test_default_extraction_is_exact_on_random_kernels(targets: dict[str, isamap.Target]) -> None:
    kernels = _random_kernels(6) + [decls + SHARED_RELU for decls in GREEDY_WORSE]
    worse: dict[str, float] = {}
    beyond: list[tuple[str, str, float]] = []
    for text, rotated in zip(kernels, itertools.cycle(TARGETS), strict=False):
        for target in TARGETS if text.endswith(SHARED_RELU) else (rotated,):
            sat = isamap.saturate(isamap.parse_kernel(text), targets[target])
            for cost, tolerance in GREEDY_TOLERANCE.items():
                greedy, exact, _, _, optimal = _greedy_and_exact(sat, cost)
                assert optimal
                assert exact <= greedy * (1 + EPS)
                # the default extraction is the exact one, whatever greedy's gap
                assert extract(sat, cost).cost == pytest.approx(exact, rel=EPS)
                if greedy > exact * (1 + tolerance + EPS):
                    beyond.append((target, cost, greedy / exact - 1))
                if greedy > exact * (1 + EPS):
                    worse[f"{target}/{cost}"] = max(
                        worse.get(f"{target}/{cost}", 0), greedy / exact
                    )
    # where greedy is worse (it is, on the shared-operand kernels), the figures say by how much
    assert worse, "greedy matched the oracle everywhere: tighten GREEDY_TOLERANCE"
    print({key: f"{ratio - 1:.1%}" for key, ratio in sorted(worse.items())})
    print("greedy beyond GREEDY_TOLERANCE (the warm start only):", beyond)


def test_extract_method_exact_matches_the_oracle(targets: dict[str, isamap.Target]) -> None:
    sat = isamap.saturate(isamap.load_kernel(KERNELS[0]), targets["gemmini"])
    exact = sat.extract(method="exact")
    assert exact.cost == pytest.approx(_greedy_and_exact(sat, "latency")[1], rel=EPS)
    assert extract(sat, "latency", method="exact").cost == exact.cost
    with pytest.raises(isamap.IsamapError, match="unknown extraction method 'best'"):
        sat.extract(method="best")


# --- a hand-built e-graph: sharing that greedy per-class costs cannot see, and a cycle ---


class OpCost:
    """Cost by op name, for the hand-built e-graphs below."""

    name = "by-op"

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table

    def node_cost(self, node: ENode, dump: EGraphDump) -> float:
        return self.table[node.op]


def _dump(classes: dict[str, list[tuple[str, tuple[str, ...]]]]) -> EGraphDump:
    dump = EGraphDump()
    for cid, nodes in classes.items():
        dump.classes[cid] = [ENode(op, tuple(Ref(r) for r in refs), cid) for op, refs in nodes]
    return dump


def _all_mappings(dump: EGraphDump, roots: list[str], costs: _Costs) -> list[tuple[float, Choice]]:
    """Every acyclic mapping from `roots` by brute force: each needed e-class tries each of its
    finite-cost e-nodes."""
    found: list[tuple[float, Choice]] = []

    def cyclic(choice: Choice) -> bool:
        def visit(cid: str, path: frozenset[str]) -> bool:
            if cid in path:
                return True
            return any(visit(r, path | {cid}) for r in choice[cid].refs())

        return any(visit(r, frozenset()) for r in roots)

    def rec(choice: Choice, pending: list[str]) -> None:
        if not pending:
            if not cyclic(choice):
                found.append((_dag_cost(roots, choice, costs), dict(choice)))
            return
        cid, rest = pending[0], pending[1:]
        if cid in choice:
            rec(choice, rest)
            return
        for node in dump.classes.get(cid, []):
            if cid in node.refs() or not math.isfinite(costs(node)):
                continue
            choice[cid] = node
            rec(choice, rest + [r for r in node.refs() if r not in choice])
            del choice[cid]

    rec({}, list(roots))
    return sorted(found, key=lambda t: t[0])


SHARING = {
    # three results; each can use the shared subterm s or a private one (cheaper alone)
    "r1": [("UseS", ("s",)), ("Own", ("x",))],
    "r2": [("UseS", ("s",)), ("Own", ("x",))],
    "r3": [("UseS", ("s",)), ("Own", ("x",))],
    "s": [("Shared", ("x",)), ("Back", ("r1",))],  # Back closes a cycle s -> r1 -> s
    "x": [("Leaf", ())],
}
SHARING_COSTS = {"UseS": 1.0, "Own": 6.0, "Shared": 10.0, "Back": 0.0, "Leaf": 1.0}


def test_exact_pays_shared_subterm_once_and_avoids_cycles() -> None:
    dump = _dump(SHARING)
    costs = _Costs(dump, OpCost(SHARING_COSTS))
    roots = ["r1", "r2", "r3"]
    (best,) = exact_choices(dump, roots, costs).solutions
    # all UseS with s = Back(r1) would cost 3 but is a cycle; r1 = Own(x) breaks it and lets s be
    # the free Back(r1): 6 + 1 + 0 + 1 + 1 = 9 (sharing Shared costs 14, no sharing 19)
    assert best.cost == 9.0
    ops = {cid: n.op for cid, n in best.choice.items()}
    assert ops == {"r1": "Own", "r2": "UseS", "r3": "UseS", "s": "Back", "x": "Leaf"}
    brute = _all_mappings(dump, roots, costs)
    assert best.cost == brute[0][0]


def test_k_best_equals_brute_force_on_a_hand_built_egraph() -> None:
    dump = _dump(SHARING)
    costs = _Costs(dump, OpCost(SHARING_COSTS))
    roots = ["r1", "r2", "r3"]
    brute = _all_mappings(dump, roots, costs)
    result = exact_choices(dump, roots, costs, k=len(brute) + 5)
    assert not result.timed_out
    assert [s.cost for s in result.solutions] == [c for c, _ in brute]
    assert {s.key() for s in result.solutions} == {frozenset(c.items()) for _, c in brute}


#: A product read through either of two free view chains, or a dearer host fallback.
VIEWS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "r": [("Call", ("v",)), ("Host", ("a",))],
    "v": [("View1", ("a",)), ("View2", ("w",))],
    "w": [("View3", ("a",))],
    "a": [("Leaf", ())],
}
VIEWS_COSTS = {"Call": 5.0, "Host": 7.0, "View1": 0.0, "View2": 0.0, "View3": 0.0, "Leaf": 1.0}


def test_k_best_distinct_in_costed_work() -> None:
    """With `costly`, two mappings doing the same costed work through other free views are one;
    on SHARING (whose Back is free), what remains is brute force's cheapest of each costed
    choice not containing an earlier one's."""
    dump = _dump(VIEWS)
    costs = _Costs(dump, OpCost(VIEWS_COSTS))
    every = exact_choices(dump, ["r"], costs, k=10).solutions
    assert [s.cost for s in every] == [6.0, 6.0, 8.0]
    distinct = exact_choices(dump, ["r"], costs, k=10, costly=True).solutions
    assert [s.cost for s in distinct] == [6.0, 8.0]

    dump = _dump(SHARING)
    costs = _Costs(dump, OpCost(SHARING_COSTS))
    roots = ["r1", "r2", "r3"]

    def costed(choice: Choice) -> frozenset[tuple[str, str]]:
        return frozenset((c, n.op) for c, n in choice.items() if costs(n) > 0)

    kept: list[tuple[float, frozenset[tuple[str, str]]]] = []
    for cost, choice in _all_mappings(dump, roots, costs):
        if not any(k <= costed(choice) for _, k in kept):
            kept.append((cost, costed(choice)))
    got = exact_choices(dump, roots, costs, k=20, costly=True).solutions
    assert [s.cost for s in got] == [c for c, _ in kept]
    assert {costed(s.choice) for s in got} == {k for _, k in kept}


def test_k_best_takes_ties_past_k_and_stops_at_the_band() -> None:
    dump = _dump(SHARING)
    costs = _Costs(dump, OpCost(SHARING_COSTS))
    roots = ["r1", "r2", "r3"]
    brute = [c for c, _ in _all_mappings(dump, roots, costs)]  # 9, 14 x3, 19 x4, 24 x3

    def found(
        k: int, close: float, at_least: int = 1, tie: float = 0.0, tied: int = 0
    ) -> list[float]:
        result = exact_choices(dump, roots, costs, k, 60.0, None, close, at_least, tie, tied)
        return [s.cost for s in result.solutions]

    # k=2 alone: two; with mappings within 60% of the best taken up to 6 in all: 9 and 14 x3
    assert found(k=2, close=math.inf) == brute[:2]
    assert found(k=2, close=math.inf, tie=0.6, tied=6) == brute[:4]
    # the tie band holds up to `tied` mappings, and `close` still rules the first k
    assert found(k=1, close=0.0, tie=1.2, tied=6) == brute[:6]
    assert found(k=6, close=0.6, tie=0.0, tied=3) == brute[:4]
    assert found(k=1, close=0.0, at_least=3, tie=0.0, tied=8) == brute[:3]


@pytest.mark.parametrize(
    ("kernel", "target"),
    [("gemm", "gemmini"), ("gemm_relu", "gemmini"), ("conv2d", "nnp"), ("gemm_relu", "vecdsp")],
)
def test_k_best_equals_brute_force(
    targets: dict[str, isamap.Target], kernel: str, target: str
) -> None:
    k = isamap.load_kernel(f"examples/kernels/{kernel}.kernel")
    sat = isamap.saturate(k, targets[target])
    costs = _Costs(sat.dump, cost_model("latency", sat.target, k))
    roots = _roots(sat)
    brute = _all_mappings(sat.dump, roots, costs)
    assert len(brute) >= 5
    n = min(len(brute), 12)
    result = exact_choices(sat.dump, roots, costs, k=n)
    got = result.solutions
    assert len(got) == n and not result.timed_out
    assert [s.cost for s in got] == pytest.approx([c for c, _ in brute[:n]], rel=EPS)
    everything = {frozenset(c.items()): cost for cost, c in brute}
    for s in got:  # each is a real mapping, at its brute-force cost
        assert everything[s.key()] == pytest.approx(s.cost, rel=EPS)
    assert len({s.key() for s in got}) == n


def test_variants_are_the_k_best(targets: dict[str, isamap.Target]) -> None:
    sat = isamap.saturate(isamap.load_kernel("examples/kernels/gemm_relu.kernel"), targets["nnp"])
    variants = sat.variants(8)
    assert len(variants) == 8
    costs = [v.cost for v in variants]
    assert costs == sorted(costs)
    assert costs[0] == pytest.approx(sat.extract(method="exact").cost)
    texts = {"\n".join(str(v).splitlines()[1:]) for v in variants}
    assert len(texts) == len(variants)  # distinct e-node sets are distinct listings too
    # the greedy neighbourhood is kept (fast) but misses mappings the k-best finds
    neighbourhood = extract_variants(sat, 8, method="greedy")
    assert [v.cost for v in neighbourhood] != costs
    assert all(v.cost >= c - 1e-9 for v, c in zip(neighbourhood, costs, strict=False))


def test_time_limit_returns_a_mapping_and_says_so(targets: dict[str, isamap.Target]) -> None:
    sat = isamap.saturate(isamap.load_kernel("examples/kernels/gru_cell.kernel"), targets["nnp"])
    with pytest.warns(ExtractionTimeLimit, match="time limit|no ILP solution"):
        mapping = sat.extract(method="exact", seconds=1e-6)
    # the greedy start, cut short by the same limit, stands in: a whole mapping, not a better one
    assert set(mapping.outputs) == set(sat.extract().outputs)
    assert mapping.cost >= sat.extract().cost - 1e-9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sat.extract(method="exact")  # in time: no warning


def compile_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """How often `isamap.compile` calls its module's function `name` from now on (a one-element
    list, counting)."""
    calls = [0]
    real = getattr(compile_module, name)

    def counting(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(compile_module, name, counting)
    return calls


@pytest.mark.parametrize("target", ["gemmini", "nnp"])
def test_compile_simulates_every_close_candidate(
    targets: dict[str, isamap.Target], monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """As many candidates as the k-best (distinct in costed work) has within CLOSE of the best
    (at least 3, at most MAX_CANDIDATES), and past those within TIE (at most MAX_TIED), are
    scheduled and simulated."""
    kernel = typed_for(isamap.load_kernel("examples/kernels/dw_separable.kernel"), targets[target])
    sat = isamap.saturate(kernel, targets[target])
    c = compile_module
    found = candidate_mappings(sat, "latency", "exact", 3, c.MAX_CANDIDATES, c.CLOSE, None, c.TIE,
                               c.MAX_TIED)  # fmt: skip
    best = [m for m, _ in found]
    for i, m in enumerate(best):  # each one the band admits, and each doing other costed work
        ratio = m.cost / best[0].cost
        close = i < c.MAX_CANDIDATES and ratio <= 1 + c.CLOSE + EPS
        assert i < 3 or close or (i < c.MAX_TIED and ratio <= 1 + c.TIE + EPS)
    work = [sorted(n.describe() for n in m.nodes if n.cost > 0) for m in best]
    assert all(a != b for a, b in itertools.combinations(work, 2))
    expected = len(best)
    calls = compile_calls(monkeypatch, "_scheduled")
    result = isamap.compile(kernel, targets[target], extract="exact")
    baseline = 0 if targets[target].baseline_schedule == "heuristic" else 1
    assert calls[0] - baseline == expected
    # the fastest candidate is kept: never slower than the cost model's own best, scheduled
    optimum = result.saturation.extract(method="exact")
    program = schedule_mapping(optimum, targets[target], "heuristic")
    assert result.report.cycles <= simulate_timing(program, optimum, targets[target], kernel).cycles
    if target == "nnp":  # there the cost model's best is also the fastest
        assert result.mapping.cost == pytest.approx(optimum.cost)


def test_compile_judges_mappings_the_cost_model_cannot_tell_apart(
    targets: dict[str, isamap.Target],
) -> None:
    """A GRU step on gemmini: the cost model sums each operation's cost and puts two dozen
    groupings of the three products within 1%, while the simulator overlaps the host's gates
    with the products still to come. compile keeps the fastest of all the tied ones."""
    from isamap.bench.suites import gru_step_text

    kernel = isamap.parse_kernel(gru_step_text(2, 512, "i8"), name="gru_step")
    gemmini = targets["gemmini"]
    result = isamap.compile(kernel, gemmini)
    tied = [
        m
        for m in result.saturation.variants(compile_module.MAX_TIED)
        if m.cost <= result.saturation.extract().cost * (1 + compile_module.TIE)
    ]
    assert len(tied) > compile_module.MAX_CANDIDATES
    simulated = [
        simulate_timing(schedule_mapping(m, gemmini, "heuristic"), m, gemmini, kernel).cycles
        for m in tied
    ]
    assert result.report.cycles == pytest.approx(min(simulated))
    inputs = isamap.random_inputs(kernel, seed=3)
    check_outputs(result.run(inputs), kernel, inputs)


def test_cli_extract_exact() -> None:
    from click.testing import CliRunner

    from isamap.cli import cli

    runner = CliRunner()
    kernel = "examples/kernels/gemm_relu.kernel"
    out = runner.invoke(cli, ["extract", kernel, "--target", "nnp", "--extract", "exact", "--json"])
    assert out.exit_code == 0, out.output
    sat = isamap.saturate(isamap.load_kernel(kernel), isamap.load_target("nnp"))
    assert json.loads(out.stdout)["mapping"]["cost"] == pytest.approx(sat.extract().cost)
    slow = runner.invoke(
        cli, ["extract", kernel, "--quantize", "--extract", "exact", "--max-seconds", "1e-7"]
    )
    assert slow.exit_code == 0
    assert "isamap: warning: no ILP solution within " in slow.stderr
    bad = runner.invoke(cli, ["extract", kernel, "--extract", "best"])
    assert bad.exit_code == 2
