"""Soundness checking of rewrite rules: each rule on terms built from its own left-hand side,
and in context on a corpus of small random kernels.

For each rule (the algebra, the rules derived from the target's instructions, the target's own
rule file) terms matching its left-hand side are built from the pattern at several small shapes
(`isamap.egraph.rule_terms`) and the rule alone is run on them; then an e-graph is saturated for
every corpus kernel with that rule and the rules already found sound as background. Every e-node
is evaluated with numpy on random inputs — instructions by their declared semantics, tile by tile
— and checked for well-typedness; all e-nodes of an e-class must agree. A rule that puts a node
in the wrong e-class, or builds an ill-shaped one, is reported with the terms, the e-nodes and
how far apart they are. A rule that fired nowhere is not verified, and fails the check.

`compile` and `saturate` refuse a target whose own rule file has a rule that fails
(`require_checked_rules`); verdicts are cached by the hash of everything they depend on.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from isamap.egraph import Saturation
from isamap.egraph.computed_rules import COMPUTED_RULES, ComputedRule
from isamap.egraph.dump import ENode
from isamap.egraph.rule_file import SList, parse_rule_file, parse_sexprs, read_rule_file
from isamap.egraph.rule_terms import Instance, instantiate, lhs_alternatives
from isamap.egraph.saturate import (
    RULES_DIR,
    Limits,
    RuleSource,
    check_rule_names,
    saturate_with,
    target_rule_file,
)
from isamap.egraph.target_rules import conv_rules, derive_rules, rules_program
from isamap.egraph.tensor_types import IllShapedError, tensor_shape
from isamap.extract.lower import enode_operation, tensor_args
from isamap.hardware.functional import run_node
from isamap.hardware.target import Target, is_shipped
from isamap.ir import builders
from isamap.ir.errors import IsamapError, SourceLoc
from isamap.ir.kernel import Kernel, TensorDecl
from isamap.ir.mapping import MapNode
from isamap.ir.parser import parse_kernel
from isamap.ir.reference import random_inputs

__all__ = [
    "Counterexample",
    "Rule",
    "RuleCheck",
    "check_computed_rules",
    "check_eclasses",
    "check_rule_file",
    "check_rules",
    "corpus",
    "require_checked_rules",
    "rules_of",
]


@dataclass(frozen=True)
class Rule:
    """One rewrite rule: a name, its egglog text, where it is written, and its s-expression."""

    name: str
    text: str
    loc: SourceLoc
    body: SList | None = None


@dataclass(frozen=True)
class Counterexample:
    """Two e-nodes of one e-class that compute different tensors, or one that cannot be right."""

    kernel: str
    eclass: str
    first: str
    second: str
    max_abs_diff: float
    problem: str = ""  # set when an e-node is ill-shaped or cannot be evaluated

    def __str__(self) -> str:
        if self.problem:
            return f"in {self.kernel}\n  e-class {self.eclass}: {self.second} {self.problem}"
        return (
            f"in {self.kernel}\n  e-class {self.eclass}: {self.first} and {self.second} "
            f"differ by up to {self.max_abs_diff:.3g}"
        )


@dataclass
class RuleCheck:
    """The verdict on one rule: how often it fired on terms built from its left-hand side and
    on the corpus, and a counterexample if any. Sound means exercised and never contradicted."""

    rule: Rule
    matches: int = 0
    kernels: int = 0
    counterexample: Counterexample | None = None
    pattern_matches: int = 0
    instances: int = 0

    @property
    def exercised(self) -> bool:
        return self.matches + self.pattern_matches > 0

    @property
    def sound(self) -> bool:
        return self.counterexample is None and self.exercised

    @property
    def verdict(self) -> str:
        """`ok`, `UNSOUND` (a counterexample) or `UNCHECKED` (it never fired)."""
        if self.counterexample is not None:
            return "UNSOUND"
        return "ok" if self.exercised else "UNCHECKED"

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule.name,
            "where": str(self.rule.loc),
            "verdict": self.verdict,
            "sound": self.sound,
            "matches": self.matches,
            "kernels": self.kernels,
            "pattern_matches": self.pattern_matches,
            "instances": self.instances,
            "counterexample": str(self.counterexample) if self.counterexample else None,
        }


def _rename(text: str, ruleset: str) -> str:
    return re.sub(r":ruleset\s+[^\s()]+", f":ruleset {ruleset}", text)


def _shown(path: str) -> str:
    """A shipped rule file as `isamap/rules/...` (the same on every machine); others as given."""
    package = RULES_DIR.parent
    try:
        return str(Path(path).resolve().relative_to(package.parent))
    except ValueError:
        return path


def _shipped_rules(target: Target) -> list[Rule]:
    """The algebra and the rules derived from `target`'s instructions, in load order."""
    rules: list[Rule] = []
    algebra = RULES_DIR / "algebra.egg"
    for form in parse_rule_file(algebra.read_text(), _shown(str(algebra)), trusted=True):
        if form.head != "ruleset":
            rules.append(Rule(form.name or str(form.loc), form.text, form.loc, form.body))
    where = f"<derived from {target.path}>"
    for derived in derive_rules(target):
        ((body, _),) = parse_sexprs(derived.text, where)
        rules.append(Rule(derived.name, derived.text, SourceLoc(where), body))
    return rules


def _file_rules(target: Target) -> list[Rule]:
    """The rules of `target`'s own rule file, if it has one (checked as it is read)."""
    extra = target_rule_file(target)
    if extra is None:
        return []
    _, forms = read_rule_file(extra)
    check_rule_names(forms, target)
    return [Rule(f.name or str(f.loc), f.text, f.loc, f.body) for f in forms if f.head != "ruleset"]


def rules_of(target: Target) -> list[Rule]:
    """Every rewrite rule that applies to `target`, in load order."""
    return _shipped_rules(target) + _file_rules(target)


def corpus(seed: int = 0, casts: bool = True) -> list[Kernel]:
    """Small kernels with random shapes that exercise every kind of rule; `casts`: with the
    kernel of casts into int8 tensors (the requantization rules' corpus)."""
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
        # per-column biases (either operand order; one row, or one per batch), an activation
        # and a clip on top
        f"tensor A[{m}, {k}] f32\ntensor B[{k}, {n}] f32\ntensor c[{n}] f32\n"
        f"tensor A3[2, {m}, {k}] f32\ntensor B3[2, {k}, {n}] f32\ntensor c3[2, {n}] f32\n"
        "T[i, j] += A[i, k] * B[k, j]\nU[i, j] = T[i, j] + c[j]\nV[i, j] = c[j] + T[i, j]\n"
        "Y[i, j] = min(relu(U[i, j]), 6)\n"
        "T3[b, i, j] += A3[b, i, k] * B3[b, k, j]\nY3[b, i, j] = relu(T3[b, i, j] + c3[b, j])\n"
        "V3[b, i, j] = c3[b, j] + T3[b, i, j]\n",
    ]
    # casts into int8 tensors (requantization: egraph/requant_rules.py): a scaled product
    # (either operand order), onto a bias, through relu, and clips whose bound the saturation
    # covers (21.25 * 6 >= 127) or does not (0.25 * 6)
    quantized = {
        "P": "24.5 * T[i, j]", "P2": "T[i, j] * 0.5", "B": "0.5 * U[i, j]",
        "A": "40.0 * relu(T[i, j])", "R": "relu(U[i, j]) * 40.0", "S": "21.25 * V[i, j]",
        "Q": "0.25 * V[i, j]", "C": "21.25 * W[i, j]", "X": "255.0 * Z[i, j]",
    }  # fmt: skip
    if casts:
        texts.append(
            f"tensor A[{m}, {k}] f32\ntensor B[{k}, {n}] f32\ntensor c[{n}] f32\n"
            + "".join(f"tensor {q}_q[{m}, {n}] i8\n" for q in quantized)
            + "T[i, j] += A[i, k] * B[k, j]\nU[i, j] = T[i, j] + c[j]\n"
            "V[i, j] = min(relu(U[i, j]), 6)\nW[i, j] = min(relu(T[i, j]), 6)\n"
            "Z[i, j] = min(relu(T[i, j]), 0.5)\n"
            + "".join(f"{q}_q[i, j] = {e}\n" for q, e in quantized.items())
        )
        texts.append(_quantized_convs(3))
    kernels = [parse_kernel(t, name=f"corpus{i}") for i, t in enumerate(texts)]
    c, h, w, k = d(1, 4), d(4, 9), d(4, 9), d(1, 6)
    conv = builders.conv2d(1, c, h, w, k, 3, 3, stride=d(1, 2), padding="same")
    kernels.append(_with_bias_relu(conv))
    kernels.append(builders.dw_separable(1, d(2, 6), d(4, 8), d(4, 8), d(2, 10)))
    kernels.append(builders.gru_cell(d(1, 4), d(2, 12), d(2, 12)))
    # a batched sum of two products (one output accumulated twice)
    b, m, n, k, k2 = d(2, 3), d(1, 12), d(1, 12), d(1, 12), d(1, 12)
    kernels.append(
        parse_kernel(
            f"tensor A[{b}, {m}, {k}] f32\ntensor B[{b}, {k}, {n}] f32\n"
            f"tensor D[{b}, {m}, {k2}] f32\ntensor E[{b}, {k2}, {n}] f32\n"
            "C[g, i, j] += A[g, i, k] * B[g, k, j]\nC[g, i, j] += D[g, i, l] * E[g, l, j]\n",
            name="corpus_batched_sum",
        )
    )
    # two independent small products (no input in common), same M and N: batched into one call
    # (int8, so that a target's int8 instruction is the one eligible, as for a quantized model)
    bm, bn, bk1, bk2 = d(1, 6), d(1, 4), d(1, 2), d(1, 2)
    kernels.append(
        parse_kernel(
            f"tensor A1[{bm}, {bk1}] i8\ntensor B1[{bk1}, {bn}] i8\n"
            f"tensor A2[{bm}, {bk2}] i8\ntensor B2[{bk2}, {bn}] i8\n"
            "P[i, j] += A1[i, k] * B1[k, j]\nQ[i, j] += A2[i, k] * B2[k, j]\n",
            name="corpus_independent",
        )
    )
    return kernels


def _quantized_convs(pixels: int) -> str:
    """Casts into int8 of convolutions (the requantization of a tap accumulation): a depthwise
    one (its channels packed: a bias per batch and column) and a full one, onto a bias in
    either operand order, through relu and clips the saturation covers."""
    casts = {
        "A": "24.5 * O[n, k, h, w]", "R": "40.0 * relu(O[n, k, h, w])",
        "W": "21.25 * min(relu(O[n, k, h, w]), 6)", "V": "21.25 * min(relu(Q[n, k, h, w]), 6)",
        "S": "relu(Q[n, k, h, w]) * 40.0",
    }  # fmt: skip
    dw = {"B": "0.5 * U2[n, c, h, w]"}
    return (
        f"tensor X[1, 32, {pixels}, {pixels}] f32 pad(0:0, 0:0, 1:1, 1:1)\n"
        "tensor F[32, 3, 3] f32\ntensor G[5, 32, 3, 3] f32\ntensor e[32] f32\ntensor f[5] f32\n"
        + "".join(f"tensor {q}_q[1, 5, {pixels}, {pixels}] i8\n" for q in casts)
        + "".join(f"tensor {q}_q[1, 32, {pixels}, {pixels}] i8\n" for q in dw)
        + "D[n, c, h, w] += X[n, c, h + r - 1, w + s - 1] * F[c, r, s]\n"
        "U[n, c, h, w] = D[n, c, h, w] + e[c]\nU2[n, c, h, w] = e[c] + D[n, c, h, w]\n"
        "O[n, k, h, w] += X[n, c, h + r - 1, w + s - 1] * G[k, c, r, s]\n"
        "Q[n, k, h, w] = f[k] + O[n, k, h, w]\n"
        + "".join(f"{q}_q[n, k, h, w] = {e}\n" for q, e in casts.items())
        + "".join(f"{q}_q[n, c, h, w] = {e}\n" for q, e in dw.items())
    )


def _with_bias_relu(conv: Kernel) -> Kernel:
    """`conv` (O[n, k, h, w]) with a per-output-channel bias and a ReLU on top (the direct
    convolution's bias epilogue)."""
    lines = str(conv).splitlines()
    decls = [line for line in lines if line.startswith("tensor ")]
    body = [line for line in lines if not line.startswith("tensor ")]
    k = conv.shapes["O"][1]
    extra = [f"tensor bias[{k}] f32", *body, "Y[n, k, h, w] = relu(O[n, k, h, w] + bias[k])"]
    return parse_kernel("\n".join([*decls, *extra]) + "\n", name=conv.name + "_bias_relu")


def _evaluate(
    node: ENode, cid: str, args: list[np.ndarray], sat: Saturation, inputs: dict[str, np.ndarray]
) -> np.ndarray | str:
    """The value of one e-node, or why it has none (ill-shaped, or numpy refuses it)."""
    op, unit, attrs = enode_operation(node)
    if op == "input":
        return np.asarray(inputs[str(attrs["name"])], dtype=np.float64)
    if node.op != "HostStmt":
        try:
            tensor_shape(node.op, node.literals(), [a.shape for a in args], sat.target)
        except IllShapedError as err:
            return f"is ill-shaped: {err}"
    if op == "instr":
        attrs.setdefault("epilogue", None)
    probe = MapNode(0, op, (), attrs, sat.dump.shapes.get(cid, ()), unit)
    try:
        return run_node(probe, args, sat.kernel, sat.target)
    except (ValueError, IndexError, KeyError, TypeError, IsamapError) as err:
        return f"cannot be evaluated: {type(err).__name__}: {err}"


def check_eclasses(sat: Saturation, seed: int = 0, where: str = "") -> Counterexample | None:
    """Evaluate every e-node; the first e-class whose e-nodes disagree (or that holds an
    ill-shaped e-node), or None. `where` describes the terms (default: the kernel)."""
    kernel, dump = sat.kernel, sat.dump
    where = where or f"kernel\n{kernel}"
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
                value = _evaluate(node, cid, [values[a] for a in args], sat, inputs)
                described = f"{node.op}{node.literals()} of {', '.join(node.refs()) or '()'}"
                if isinstance(value, str):
                    return Counterexample(where, cid, described, described, math.inf, value)
                if cid not in values:
                    values[cid], first_node[cid] = value, described
                    continue
                if value.shape != values[cid].shape:
                    problem = f"has shape {list(value.shape)}, {first_node[cid]} has " + str(
                        list(values[cid].shape)
                    )
                    return Counterexample(where, cid, first_node[cid], described, math.inf, problem)
                # nan where both sides are nan (sqrt below 0, 0 / 0) is agreement, as IEEE says
                if not np.allclose(value, values[cid], rtol=1e-7, atol=1e-7, equal_nan=True):
                    diff = float(np.max(np.abs(value - values[cid])))
                    return Counterexample(where, cid, first_node[cid], described, diff)
    return None


#: Extents of the terms built from a left-hand side: several small shapes, one with 1s.
_PATTERN_DIMS = ((2, 4), (3, 6), (1, 3), (2, 5), (4, 7), (3, 5))


def _under_test(rule: Rule) -> RuleSource:
    text = "(ruleset under_test)\n" + _rename(rule.text, "under_test")
    return RuleSource(text, rule.loc.file, ("under_test",))


def _check_patterns(rule: Rule, target: Target, seed: int, check: RuleCheck) -> None:
    """Run `rule` alone on terms built from its left-hand side at several shapes."""
    if rule.body is None:
        return
    rng = random.Random(f"{seed}:{rule.name}")
    counter = [0]
    built = []
    for n, dims in enumerate(_PATTERN_DIMS):
        for a, alternative in enumerate(lhs_alternatives(rule.body)):
            instance = instantiate(alternative, target, rng, dims, f"_{n}{'ab'[a % 2]}", counter)
            if instance is not None:
                built.append(instance)
    check.instances = len(built)
    if not built:
        return
    found = _run_instances(rule, target, built, seed, check)
    if found is not None and len(built) > 1:  # blame the one instance that shows it
        for instance in built:
            alone = _run_instances(rule, target, [instance], seed, None)
            if alone is not None:
                found = alone
                break
    check.counterexample = found


def _run_instances(
    rule: Rule, target: Target, built: list[Instance], seed: int, check: RuleCheck | None
) -> Counterexample | None:
    tensors = {name: shape for inst in built for name, shape in inst.tensors.items()}
    decls = {name: TensorDecl(name, shape) for name, shape in tensors.items()}
    kernel = Kernel(f"terms for {rule.name}", decls, (), (), tensors)
    terms = "\n".join(cmd for inst in built for cmd in inst.commands) + "\n"
    try:
        sat = saturate_with(
            kernel, target, [_under_test(rule)], Limits(2, 5_000, 10.0), terms, computed_rules=()
        )
    except IsamapError as err:
        raise IsamapError(f"rule {rule.name}: {err.message}", rule.loc) from None
    if check is not None:
        check.pattern_matches += sum(sat.report.matches_per_rule.values())
    where = "terms " + " and ".join(inst.describe() for inst in built)
    return check_eclasses(sat, seed=seed, where=where)


def _corpus_run(
    rules: list[Rule], trusted: list[Rule], target: Target, seed: int, iterations: int
) -> tuple[Counterexample | None, Counter[str], int]:
    """Saturate every corpus kernel with `rules` together and the `trusted` rules as background:
    the first counterexample (the run stops there), the matches per rule, the kernels run."""
    background = "(ruleset background)\n" + "\n".join(
        _rename(r.text, "background") for r in trusted
    )
    under_test = "(ruleset under_test)\n" + "\n".join(_rename(r.text, "under_test") for r in rules)
    filename = rules[0].loc.file if len(rules) == 1 else "<rules under test>"
    # the computed rules run too (they lay the corpus's products out), and are not the rules
    sources = [
        RuleSource(background, "<background rules>", ("background",)),
        RuleSource(under_test, filename, ("under_test",)),
    ]
    names = {r.name for r in rules}
    matches: Counter[str] = Counter()
    for n, kernel in enumerate(corpus(seed, _requantizes(target))):
        sat = saturate_with(kernel, target, sources, Limits(iterations, 20_000, 20.0))
        matches.update({k: c for k, c in sat.report.matches_per_rule.items() if k in names})
        found = check_eclasses(sat, seed=seed + n)
        if found is not None:
            return found, matches, n + 1
    return None, matches, len(corpus(seed, _requantizes(target)))


def _check_corpus(
    checks: list[RuleCheck], trusted: list[Rule], target: Target, seed: int, iterations: int
) -> None:
    """Verdicts on the corpus for `checks` in order, each with the `trusted` rules and the sound
    ones before it as background, as if checked one by one: all together first, since an
    e-graph whose every e-class agrees shows every union in it sound; a group that fails is
    halved, so a wrong rule is blamed alone and never taints the verdict on the others."""
    if not checks:
        return
    rules = [c.rule for c in checks]
    try:
        found, matches, kernels = _corpus_run(rules, trusted, target, seed, iterations)
    except IsamapError as err:
        if len(checks) == 1:
            raise IsamapError(f"rule {rules[0].name}: {err.message}", rules[0].loc) from None
        found, matches, kernels = None, Counter(), -1  # halve it to find the rule
    if len(checks) == 1 or (found is None and kernels >= 0):
        for check in checks:
            check.matches, check.kernels = matches[check.rule.name], kernels
        if found is not None:
            checks[0].counterexample = found
        return
    half = len(checks) // 2
    _check_corpus(checks[:half], trusted, target, seed, iterations)
    sound = [c.rule for c in checks[:half] if c.sound]
    _check_corpus(checks[half:], trusted + sound, target, seed, iterations)


#: Verdicts already reached in this process, by `_memo_key`: rules are checked once per process
#: however often they are asked for (a rule file's target whose shipped rules are another's).
_CHECKED: dict[str, list[RuleCheck]] = {}


def _target_bytes(target: Target) -> bytes:
    """What a check depends on of `target`: its file's content (not its path)."""
    path = Path(target.path)
    return path.read_bytes() if path.is_file() else repr(target).encode()


def _memo_key(target: Target, *parts: object) -> str:
    digest = hashlib.sha256(_target_bytes(target))
    for part in parts:
        digest.update(f"\0{part}".encode())
    return digest.hexdigest()


def _requantizes(target: Target) -> bool:
    """Whether `target` has requantization rules (a store that scales and narrows a matrix
    instruction's output): only then does its corpus hold the kernel of casts."""
    return any(r.name.startswith("requant-") for r in derive_rules(target))


def _check(
    rules: list[Rule], trusted: list[Rule], target: Target, seed: int, iterations: int
) -> list[RuleCheck]:
    """Each rule alone on terms built from its left-hand side, then on the corpus with the
    `trusted` rules and the sound ones before it as background."""
    key = _memo_key(
        target,
        seed,
        iterations,
        *(f"{r.name}\0{r.text}" for r in rules),
        "trusted",
        *(r.text for r in trusted),
    )
    seen = _CHECKED.get(key)
    if seen is not None:  # the same rules, perhaps read at other places
        return [replace(c, rule=r) for c, r in zip(seen, rules, strict=True)]
    checks = [RuleCheck(rule) for rule in rules]
    for check in checks:
        _check_patterns(check.rule, target, seed, check)
    candidates = [c for c in checks if c.counterexample is None]
    _check_corpus(candidates, trusted, target, seed, iterations)
    _CHECKED[key] = [replace(c) for c in checks]
    return checks


def check_rules(
    target: Target, seed: int = 0, iterations: int = 6, only: Collection[str] | None = None
) -> list[RuleCheck]:
    """Check every rule of `target` (or only the egglog rules named in `only`, with the rules
    loaded before them as trusted background); one RuleCheck per rule.

    The computed rules come first (each on the corpus with the ones before it, since they lay
    out the literal products every other rule works on); then the egglog rules in load order
    (algebra, derived, the target's file): first alone on terms built from the rule's
    left-hand side, then on `corpus(seed)` with the rules before it that passed as background,
    so a wrong rule is blamed alone and never taints the verdict on the others.
    """
    if only is not None:
        rules = rules_of(target)
        first = min((i for i, r in enumerate(rules) if r.name in only), default=len(rules))
        picked = [r for r in rules if r.name in only]
        return _check(picked, rules[:first], target, seed, iterations)
    shipped = _check(_shipped_rules(target), [], target, seed, iterations)
    trusted = [c.rule for c in shipped if c.sound]
    own = _check(_file_rules(target), trusted, target, seed, iterations)
    return check_computed_rules(target, seed, iterations) + shipped + own


def _computed_run(
    rules: Sequence[ComputedRule], target: Target, seed: int, iterations: int
) -> tuple[Counterexample | None, Counter[str], int]:
    """Saturate every corpus kernel with the computed `rules` alone: the first counterexample,
    the matches per rule, the kernels run."""
    matches: Counter[str] = Counter()
    for n, kernel in enumerate(corpus(seed, _requantizes(target))):
        sat = saturate_with(kernel, target, [], Limits(iterations, 20_000, 20.0), None, rules)
        matches.update(sat.report.matches_per_rule)
        found = check_eclasses(sat, seed=seed + n)
        if found is not None:
            return found, matches, n + 1
    return None, matches, len(corpus(seed, _requantizes(target)))


def check_computed_rules(target: Target, seed: int = 0, iterations: int = 6) -> list[RuleCheck]:
    """Each computed rule (isamap.egraph.computed_rules) with the ones before it, no egglog rule,
    on `corpus(seed)`: every e-node evaluated; a rule that never matches is not verified.

    All of them run together first; only if that e-graph holds a counterexample is each run
    with the ones before it, to blame the first that is wrong."""
    here = SourceLoc(_shown(str(Path(__file__).resolve().parent / "egraph" / "computed_rules.py")))
    derived = SourceLoc(f"<derived from {target.path}>")
    every = (*COMPUTED_RULES, *conv_rules(target))
    picked = [
        (index, computed) for index, computed in enumerate(every) if computed.applies(target)
    ]  # the others cannot fire on this target (a tap sum on a CPU target)
    rules = [
        Rule(c.name, c.doc, here if index < len(COMPUTED_RULES) else derived) for index, c in picked
    ]
    key = _memo_key(target, seed, iterations, "computed", *(c.name for c in every))
    seen = _CHECKED.get(key)
    if seen is not None:
        return [replace(c, rule=r) for c, r in zip(seen, rules, strict=True)]
    checks = [RuleCheck(rule) for rule in rules]
    found, matches, kernels = _computed_run(every, target, seed, iterations)
    for check in checks:
        check.matches, check.kernels = matches[check.rule.name], kernels
    if found is not None:  # blame the first rule whose run with the ones before it is wrong
        for check, (index, _) in zip(checks, picked, strict=True):
            found, matches, kernels = _computed_run(every[: index + 1], target, seed, iterations)
            check.matches, check.kernels, check.counterexample = (
                matches[check.rule.name],
                kernels,
                found,
            )
    _CHECKED[key] = [replace(c) for c in checks]
    return checks


def check_rule_file(target: Target, seed: int = 0) -> list[RuleCheck]:
    """Check the rules of `target`'s own rule file (the shipped rules as trusted background)."""
    return _check(_file_rules(target), _shipped_rules(target), target, seed, 6)


# -- the gate in front of compile and saturate -------------------------------------------------

_VERDICTS: dict[str, list[dict[str, str]]] = {}


def _cache_dir() -> Path:
    base = os.environ.get("ISAMAP_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return (root if os.environ.get("ISAMAP_CACHE_DIR") else root / "isamap") / "rule-checks"


def _verdict_key(target: Target) -> str:
    """A hash of everything a verdict depends on: the checker, the sorts, the algebra, the
    target file and its derived rules, and the rules of the rule file (with their locations,
    which the verdict names)."""
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for part in (
        Path(__file__),
        here / "egraph" / "rule_terms.py",
        here / "egraph" / "tensor_types.py",
        RULES_DIR / "sorts.egg",
        RULES_DIR / "algebra.egg",
        Path(target.path),
    ):
        digest.update(part.read_bytes() if part.is_file() else str(part).encode())
        digest.update(b"\0")
    digest.update(rules_program(target).encode())
    for rule in _file_rules(target):  # the rules as parsed: comments and layout do not count
        digest.update(f"\0{rule.loc}\0{rule.body}".encode())
    return digest.hexdigest()


def _file_verdicts(target: Target) -> list[dict[str, str]]:
    """(rule, where, verdict, detail) per rule of the rule file: memoised, then cached on disk."""
    key = _verdict_key(target)
    if key in _VERDICTS:
        return _VERDICTS[key]
    path = _cache_dir() / f"{key}.json"
    try:
        verdicts: list[dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        verdicts = [
            {
                "rule": c.rule.name,
                "where": str(c.rule.loc),
                "verdict": c.verdict,
                "detail": " ".join(str(c.counterexample).split())
                if c.counterexample
                else "it never fired on terms built from its left-hand side or on the corpus",
            }
            for c in check_rule_file(target)
        ]
        try:  # the cache only saves time: an unwritable cache directory is no error
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(verdicts), encoding="utf-8")
            partial.replace(path)  # atomic: a concurrent reader sees all of it or nothing
        except OSError:
            pass
    _VERDICTS[key] = verdicts
    return verdicts


def require_checked_rules(target: Target) -> None:
    """IsamapError (at the rule) if a rule of `target`'s own rule file is unsound or could not
    be exercised by `isamap check-rules`; the shipped rules are checked by isamap's tests."""
    rule_file = target_rule_file(target)
    if rule_file is None or is_shipped(rule_file):
        return
    for v in _file_verdicts(target):
        if v["verdict"] != "ok":
            what = "unsound" if v["verdict"] == "UNSOUND" else "unchecked"
            raise IsamapError(
                f"rule '{v['rule']}' is {what} ({v['detail']}); see `isamap check-rules "
                f"--target {target.path}`, or allow unchecked rules "
                "(--allow-unchecked-rules, allow_unchecked_rules=True)",
                _loc(v["where"]),
            )


def _loc(text: str) -> SourceLoc:
    file, _, rest = text.partition(":")
    parts = rest.split(":")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return SourceLoc(file, int(parts[0]), int(parts[1]))
    return SourceLoc(text)
