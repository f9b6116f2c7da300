"""Soundness checking of rewrite rules: every rule, alone, on a corpus of small random kernels.

For each rule (the algebra, the rules derived from the target's instructions, the target's own
rule file) an e-graph is saturated with that rule under test and the rules already found sound as
background.
Then every e-node is evaluated with numpy on random inputs — instructions by their declared
semantics, tile by tile — and all e-nodes of an e-class must agree. A rule that puts a node in
the wrong e-class is reported with the kernel, the two e-nodes and how far apart they are.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isamap.egraph import Saturation
from isamap.egraph.rule_file import parse_rule_file
from isamap.egraph.saturate import RULES_DIR, Limits, RuleSource, saturate_with, target_rule_file
from isamap.egraph.target_rules import derive_rules
from isamap.extract.lower import enode_operation, tensor_args
from isamap.hardware.functional import run_node
from isamap.hardware.target import Target
from isamap.ir import builders
from isamap.ir.errors import IsamapError, SourceLoc
from isamap.ir.kernel import Kernel
from isamap.ir.mapping import MapNode
from isamap.ir.parser import parse_kernel
from isamap.ir.reference import random_inputs

__all__ = ["Counterexample", "Rule", "RuleCheck", "check_eclasses", "check_rules", "corpus"]


@dataclass(frozen=True)
class Rule:
    """One rewrite rule: a name, its egglog text, and where it is written."""

    name: str
    text: str
    loc: SourceLoc


@dataclass(frozen=True)
class Counterexample:
    """Two e-nodes of one e-class that compute different tensors."""

    kernel: str
    eclass: str
    first: str
    second: str
    max_abs_diff: float

    def __str__(self) -> str:
        return (
            f"in kernel\n{self.kernel}\n  e-class {self.eclass}: {self.first} and {self.second} "
            f"differ by up to {self.max_abs_diff:.3g}"
        )


@dataclass
class RuleCheck:
    """The verdict on one rule: how often it fired on the corpus, and a counterexample if any."""

    rule: Rule
    matches: int = 0
    kernels: int = 0
    counterexample: Counterexample | None = None

    @property
    def sound(self) -> bool:
        return self.counterexample is None


def _rename(text: str, ruleset: str) -> str:
    return re.sub(r":ruleset\s+[^\s()]+", f":ruleset {ruleset}", text)


def _shown(path: str) -> str:
    """A shipped rule file as `isamap/rules/...` (the same on every machine); others as given."""
    package = RULES_DIR.parent
    try:
        return str(Path(path).resolve().relative_to(package.parent))
    except ValueError:
        return path


def rules_of(target: Target) -> list[Rule]:
    """Every rewrite rule that applies to `target`, in load order."""
    rules: list[Rule] = []
    algebra = RULES_DIR / "algebra.egg"
    for form in parse_rule_file(algebra.read_text(), _shown(str(algebra))):
        if form.head != "ruleset":
            rules.append(Rule(form.name or str(form.loc), form.text, form.loc))
    for derived in derive_rules(target):
        rules.append(Rule(derived.name, derived.text, SourceLoc(f"<derived from {target.path}>")))
    extra = target_rule_file(target)
    if extra is not None:
        for form in parse_rule_file(extra.read_text(), str(extra)):
            if form.head != "ruleset":
                rules.append(Rule(form.name or str(form.loc), form.text, form.loc))
    return rules


def corpus(seed: int = 0) -> list[Kernel]:
    """Small kernels with random shapes that exercise every kind of rule."""
    rng = random.Random(seed)

    def d(lo: int = 1, hi: int = 40) -> int:
        return rng.randint(lo, hi)

    m, n, k = d(), d(), d()
    texts = [
        f"tensor A[{m}, {k}] f32\ntensor B[{k}, {n}] f32\nT[i, j] += A[i, k] * B[k, j]\n"
        "C[i, j] = relu(T[i, j])\nS[i, j] = sigmoid(T[i, j]) * 2\n",
        f"tensor A[{k}, {m}] f32\ntensor B[{n}, {k}] f32\nC[i, j] += A[k, i] * B[j, k]\n",
        f"tensor X[{m}, {k}] f32\ntensor W1[{k}, {n}] f32\ntensor W2[{k}, {d()}] f32\n"
        f"tensor V[{d()}, {k}] f32\n"
        "P[i, j] += X[i, k] * W1[k, j]\nQ[i, j] += X[i, k] * W2[k, j]\n"
        "R[i, j] += V[i, k] * W1[k, j]\n",
        f"tensor A[{d(1, 3)}, {m}, {k}] f32\ntensor B[{k}, {n}] f32\n"
        "C[b, i, j] += A[b, i, k] * B[k, j]\n",
        f"tensor A[{m}, {k}] f32\ntensor x[{k}] f32\ny[i] += A[i, k] * x[k]\nz[i] = tanh(y[i])\n",
        f"tensor A[{m}, {k}] f32\ntensor B[{k}, {n}] f32\ntensor D[{n}, {d()}] f32\n"
        "T[i, j] += A[i, k] * B[k, j]\nE[i, l] += T[i, j] * D[j, l]\n",
        # three products sharing X: fused slices at non-zero offsets, functions of slices
        f"tensor X[{m}, {k}] f32\ntensor W1[{k}, {d()}] f32\ntensor W2[{k}, {d()}] f32\n"
        f"tensor W3[{k}, {d()}] f32\n"
        "P[i, j] += X[i, k] * W1[k, j]\nQ[i, j] += X[i, k] * W2[k, j]\n"
        "R[i, j] += X[i, k] * W3[k, j]\nS[i, j] = relu(Q[i, j])\nU[i, j] = exp(R[i, j])\n",
    ]
    kernels = [parse_kernel(t, name=f"corpus{i}") for i, t in enumerate(texts)]
    kernels.append(
        builders.conv2d(1, d(1, 4), d(4, 9), d(4, 9), d(1, 6), 3, 3, stride=d(1, 2), padding="same")
    )
    kernels.append(builders.dw_separable(1, d(2, 6), d(4, 8), d(4, 8), d(2, 10)))
    kernels.append(builders.gru_cell(d(1, 4), d(2, 12), d(2, 12)))
    return kernels


def check_eclasses(sat: Saturation, seed: int = 0) -> Counterexample | None:
    """Evaluate every e-node; the first e-class whose e-nodes disagree, or None."""
    kernel, dump = sat.kernel, sat.dump
    inputs = random_inputs(kernel, seed=seed)
    values: dict[str, np.ndarray] = {}
    first_node: dict[str, str] = {}
    choice = {cid: nodes[0] for cid, nodes in dump.classes.items()}
    done: set[int] = set()
    progress = True
    while progress:
        progress = False
        for cid, nodes in dump.classes.items():
            for node in nodes:
                if id(node) in done or node.op in ("TNil", "TCons"):
                    continue
                args = tensor_args(node, dump, choice)
                if any(a not in values for a in args):
                    continue
                done.add(id(node))
                progress = True
                op, unit, attrs = enode_operation(node)
                if op == "input":
                    value = np.asarray(inputs[str(attrs["name"])], dtype=np.float64)
                else:
                    if op == "instr":
                        attrs.setdefault("epilogue", None)
                    probe = MapNode(0, op, (), attrs, dump.shapes[cid], unit)
                    value = run_node(probe, [values[a] for a in args], kernel, sat.target)
                described = f"{node.op}{node.literals()}"
                if cid not in values:
                    values[cid], first_node[cid] = value, described
                    continue
                if value.shape != values[cid].shape or not np.allclose(
                    value, values[cid], rtol=1e-7, atol=1e-7
                ):
                    diff = (
                        float(np.max(np.abs(value - values[cid])))
                        if value.shape == values[cid].shape
                        else float("inf")
                    )
                    return Counterexample(str(kernel), cid, first_node[cid], described, diff)
    return None


def check_rules(target: Target, seed: int = 0, iterations: int = 6) -> list[RuleCheck]:
    """Check every rule of `target` on `corpus(seed)`; one RuleCheck per rule.

    Rules are checked in load order (algebra, derived, the target's file); the background of
    each is the rules before it that passed, so a wrong rule is blamed alone and never taints the
    verdict on the others.
    """
    rules = rules_of(target)
    kernels = corpus(seed)
    checks: list[RuleCheck] = []
    for rule in rules:
        trusted = [c.rule for c in checks if c.sound]
        background = "(ruleset background)\n" + "\n".join(
            _rename(r.text, "background") for r in trusted
        )
        under_test = "(ruleset under_test)\n" + _rename(rule.text, "under_test")
        background_names = {r.name for r in trusted}
        sources = [
            RuleSource(background, "<background rules>", ("background",)),
            RuleSource(under_test, rule.loc.file, ("under_test",)),
        ]
        check = RuleCheck(rule)
        for n, kernel in enumerate(kernels):
            try:
                sat = saturate_with(kernel, target, sources, Limits(iterations, 20_000, 20.0))
            except IsamapError as err:
                raise IsamapError(f"rule {rule.name}: {err.message}", rule.loc) from None
            check.kernels += 1
            check.matches += sum(
                c for name, c in sat.report.matches_per_rule.items() if name not in background_names
            )
            found = check_eclasses(sat, seed=seed + n)
            if found is not None:
                check.counterexample = found
                break
        checks.append(check)
    return checks
