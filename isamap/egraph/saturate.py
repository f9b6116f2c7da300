"""Equality saturation under limits: load rules, encode a kernel, run, report why it stopped.

Saturation runs one iteration at a time — the computed rules (isamap.egraph.computed_rules, on a
serialised snapshot), then the egglog rulesets (algebra, target rules, the target's file) —
checking e-node count and wall time in between: egglog 13.2 has no node or time limit of its own,
and a Rust call in progress cannot be interrupted, so a limit can be overshot by one iteration.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from egglog import bindings

from isamap.egraph.computed_rules import (
    COMPUTED_RULES,
    ComputedRule,
    ComputedRunner,
    packing_widths,
)
from isamap.egraph.dump import TENSOR_OPS, EGraphDump
from isamap.egraph.encode import encode_kernel
from isamap.egraph.rule_file import parse_rule_file, read_rule_file
from isamap.egraph.target_rules import matrix_instructions, rules_program
from isamap.hardware.matrix_form import matrix_form
from isamap.hardware.target import Target
from isamap.ir.errors import IsamapError, SourceLoc
from isamap.ir.kernel import Kernel

__all__ = [
    "RULES_DIR",
    "Limits",
    "RuleSource",
    "RunReport",
    "Saturation",
    "load_rule_text",
    "rule_sources",
    "saturate",
    "saturate_with",
]

#: The folder of shipped rule files (sorts.egg, algebra.egg, <target>.egg).
RULES_DIR = Path(__file__).resolve().parent.parent / "rules"

_EGG_ERROR = re.compile(r"In (\d+):(\d+)(?:-\S*)? of ([^:]+): (.*)", re.S)


@dataclass(frozen=True)
class Limits:
    """When saturation stops early: iterations, e-nodes (checked between iterations), seconds."""

    iterations: int = 30
    enodes: int = 50_000
    seconds: float = 60.0


@dataclass
class RunReport:
    """What a saturation did: why it stopped, how big the e-graph got, which rules matched."""

    stop_reason: str = "saturated"  # saturated | iteration-limit | enode-limit | time-limit
    iterations: int = 0
    enodes: int = 0
    eclasses: int = 0
    matches_per_rule: Counter[str] = field(default_factory=Counter)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # computed rules, egglog

    @property
    def hit_limit(self) -> bool:
        return self.stop_reason != "saturated"

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in self.stage_seconds.items())
        note = "" if not self.hit_limit else " (best result so far: a limit was hit)"
        return (
            f"{self.stop_reason}{note} after {self.iterations} iterations: "
            f"{self.enodes} e-nodes, {self.eclasses} e-classes; {stages}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "stop_reason": self.stop_reason,
            "iterations": self.iterations,
            "enodes": self.enodes,
            "eclasses": self.eclasses,
            "matches_per_rule": dict(sorted(self.matches_per_rule.items())),
            "stage_seconds": self.stage_seconds,
            "phase_seconds": self.phase_seconds,
        }


def egglog_error(err: Exception, default_file: str) -> IsamapError:
    """An egglog error as an IsamapError at the file:line:col egglog names."""
    text = str(err).strip()
    match = _EGG_ERROR.match(text)
    if match is None:
        return IsamapError(" ".join(text.split()), SourceLoc(default_file))
    line, col, file, message = match.groups()
    if Path(default_file).name == file:  # egglog names the file without its folder
        file = default_file
    excerpt, _, problem = message.partition("\n")
    excerpt = " ".join(excerpt.split())
    if len(excerpt) > 60:
        excerpt = excerpt[:57] + "..."
    text = " ".join(problem.split()) or excerpt
    if problem and excerpt:
        text += f" (in `{excerpt}`)"
    return IsamapError(text, SourceLoc(file, int(line), int(col)))


def load_rule_text(egraph: bindings.EGraph, text: str, filename: str) -> None:
    """Parse and run egglog `text` (a rule file); errors become IsamapError at file:line:col."""
    try:
        commands = egraph.parse_program(text, filename=filename)
        egraph.run_program(*commands)
    except bindings.EggSmolError as err:
        raise egglog_error(err, filename) from None


def target_rule_file(target: Target) -> Path | None:
    """Hand-written rules of a target: `rules/<name>.egg`, or `<stem>.egg` beside its file."""
    beside = Path(target.path).with_suffix(".egg")
    shipped = RULES_DIR / f"{target.name}.egg"
    for path in (beside, shipped):
        if path.is_file():
            return path
    return None


class Saturation:
    """A saturated e-graph for one kernel on one target: inspect it, dump it. (`isamap.saturate`
    returns a subclass that also extracts: extraction sits above this package.)"""

    def __init__(self, kernel: Kernel, target: Target, dump: EGraphDump, report: RunReport) -> None:
        self.kernel = kernel
        self.target = target
        self.dump = dump
        self.report = report

    def to_json(self) -> str:
        return self.dump.to_json()

    def to_dot(self) -> str:
        return self.dump.to_dot()


def _packing_widths(target: Target) -> tuple[int, ...]:
    """The widths the computed packing rules may use: the target's matrix instruction extents."""
    tiles = []
    for name in matrix_instructions(target):
        form = matrix_form(target.instructions[name].semantics)
        if form is not None:
            tiles.append((form.tile("m"), form.tile("n"), form.tile("k")))
    return packing_widths(tiles)


def _dump(egraph: bindings.EGraph, kernel: Kernel) -> EGraphDump:
    serialized = egraph.serialize([], max_functions=None, max_calls_per_function=None)
    return EGraphDump.from_json(serialized.to_json(), kernel)


def _enodes(egraph: bindings.EGraph) -> int:
    (out,) = egraph.run_program(*egraph.parse_program("(print-size)"))
    assert isinstance(out, bindings.PrintAllFunctionsSize)
    return sum(count for name, count in out.sizes if name in TENSOR_OPS)


@dataclass(frozen=True)
class RuleSource:
    """Rule text to load, the file it came from, and the rulesets it declares (run in order)."""

    text: str
    filename: str
    rulesets: tuple[str, ...]


def rule_sources(target: Target) -> list[RuleSource]:
    """Every rule a saturation for `target` loads: algebra, derived, the target's rule file."""
    algebra = RULES_DIR / "algebra.egg"
    sources = [
        RuleSource(algebra.read_text(), str(algebra), ("algebra",)),
        RuleSource(rules_program(target), f"<rules derived from {target.path}>", ("target",)),
    ]
    extra = target_rule_file(target)
    if extra is not None:
        text, forms = read_rule_file(extra)
        names = tuple(dict.fromkeys(f.ruleset for f in forms if f.head == "ruleset" and f.ruleset))
        sources.append(RuleSource(text, str(extra), names))
    return sources


def saturate(
    kernel: Kernel,
    target: Target,
    limits: Limits | None = None,
    disabled_rules: Collection[str] = (),
) -> Saturation:
    """Encode `kernel`, load the algebra and `target`'s rules, and saturate within `limits`.

    `disabled_rules` names rules to leave out (any rule of `isamap check-rules` or a computed
    rule): to see which alternatives a rule contributes, or to compare mappings without it.
    """
    sources = rule_sources(target)
    computed: Sequence[ComputedRule] = COMPUTED_RULES
    if disabled_rules:
        sources, computed = _without(sources, set(disabled_rules))
    return saturate_with(kernel, target, sources, limits, computed)


def _without(
    sources: list[RuleSource], names: set[str]
) -> tuple[list[RuleSource], tuple[ComputedRule, ...]]:
    """`sources` and the computed rules without the rules called `names` (all must exist)."""
    known = {r.name for r in COMPUTED_RULES}
    kept: list[RuleSource] = []
    for source in sources:
        forms = parse_rule_file(source.text, source.filename)
        known.update(f.name for f in forms if f.name)
        text = "\n".join(f.text for f in forms if f.name not in names)
        kept.append(RuleSource(text + "\n", source.filename, source.rulesets))
    unknown = sorted(names - known)
    if unknown:
        raise IsamapError(
            f"no rule named {', '.join(repr(n) for n in unknown)} "
            f"(rules: {', '.join(sorted(known))})"
        )
    return kept, tuple(r for r in COMPUTED_RULES if r.name not in names)


def saturate_with(
    kernel: Kernel,
    target: Target,
    sources: list[RuleSource],
    limits: Limits | None = None,
    computed_rules: Sequence[ComputedRule] = COMPUTED_RULES,
) -> Saturation:
    """Saturate `kernel` with exactly the rules of `sources` (their rulesets run in order, after
    the `computed_rules` in each iteration)."""
    limits = limits or Limits()
    report = RunReport()
    stages = report.stage_seconds
    t0 = time.perf_counter()
    egraph = bindings.EGraph()
    sorts = RULES_DIR / "sorts.egg"
    load_rule_text(egraph, sorts.read_text(), str(sorts))
    schedule = ""
    for source in sources:
        load_rule_text(egraph, source.text, source.filename)
        schedule += "".join(f" (run {name})" for name in source.rulesets)
    stages["load_rules"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    encoding = encode_kernel(kernel)
    load_rule_text(egraph, encoding.program(), f"<encoding of {kernel.name}>")
    stages["encode"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    computed = ComputedRunner(encoding.terms, computed_rules, widths=_packing_widths(target))
    phases = report.phase_seconds
    step = egraph.parse_program(f"(run-schedule{schedule})")
    report.stop_reason = "iteration-limit"
    for _ in range(limits.iterations):
        t1 = time.perf_counter()
        program, matches = computed.round(_dump(egraph, kernel))
        if program:
            load_rule_text(egraph, program, "<computed rules>")
        report.matches_per_rule.update(matches)
        t2 = time.perf_counter()
        phases["computed"] = phases.get("computed", 0.0) + t2 - t1
        (out,) = egraph.run_program(*step)
        assert isinstance(out, bindings.RunScheduleOutput)
        phases["egglog"] = phases.get("egglog", 0.0) + time.perf_counter() - t2
        report.iterations += 1
        run = out.report
        report.matches_per_rule.update(run.num_matches_per_rule)
        if not run.updated and not program:
            report.stop_reason = "saturated"
            break
        if _enodes(egraph) >= limits.enodes:
            report.stop_reason = "enode-limit"
            break
        if time.perf_counter() - t0 >= limits.seconds:
            report.stop_reason = "time-limit"
            break
    stages["saturate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    dump = _dump(egraph, kernel)
    stages["serialize"] = time.perf_counter() - t0
    report.enodes = dump.enodes
    report.eclasses = len(dump.classes)
    return Saturation(kernel, target, dump, report)
