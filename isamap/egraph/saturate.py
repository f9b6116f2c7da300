"""Equality saturation under limits: load rules, encode a kernel, run, report why it stopped.

Saturation runs one iteration (algebra, then target rules) at a time, checking e-node count and
wall time in between: egglog 13.2 has no node or time limit of its own, and a Rust call in progress
cannot be interrupted, so a limit can be overshot by at most one iteration.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from egglog import bindings

from isamap.egraph.dump import TENSOR_OPS, EGraphDump
from isamap.egraph.encode import encode_kernel
from isamap.egraph.rule_file import read_rule_file
from isamap.egraph.target_rules import rules_program
from isamap.hardware.target import Target
from isamap.ir.errors import IsamapError, SourceLoc
from isamap.ir.kernel import Kernel

if TYPE_CHECKING:
    from isamap.ir.mapping import Mapping

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
    """A saturated e-graph for one kernel on one target: inspect it, extract from it, dump it."""

    def __init__(self, kernel: Kernel, target: Target, dump: EGraphDump, report: RunReport) -> None:
        self.kernel = kernel
        self.target = target
        self.dump = dump
        self.report = report

    def extract(
        self, cost: str | object = "latency", method: str = "greedy", seconds: float | None = None
    ) -> Mapping:
        """The cheapest mapping under `cost` (a model name or a CostModel object), by `method`
        "greedy" (greedy DAG + local search) or "exact" (ILP, at most `seconds`)."""
        from isamap.extract import extract  # extract sits above egraph: imported on use

        return extract(self, cost, method, seconds)

    def variants(
        self,
        n: int,
        cost: str | object = "latency",
        method: str = "exact",
        seconds: float | None = None,
    ) -> list[Mapping]:
        """Up to `n` distinct mappings, cheapest first: the n best ("exact", an ILP k-best) or
        the greedy mapping's neighbourhood ("greedy", fast, not a k-best)."""
        from isamap.extract import extract_variants

        return extract_variants(self, n, cost, method, seconds)

    def to_json(self) -> str:
        return self.dump.to_json()

    def to_dot(self) -> str:
        return self.dump.to_dot()


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


def saturate(kernel: Kernel, target: Target, limits: Limits | None = None) -> Saturation:
    """Encode `kernel`, load the algebra and `target`'s rules, and saturate within `limits`."""
    return saturate_with(kernel, target, rule_sources(target), limits)


def saturate_with(
    kernel: Kernel, target: Target, sources: list[RuleSource], limits: Limits | None = None
) -> Saturation:
    """Saturate `kernel` with exactly the rules of `sources`, their rulesets run in order."""
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
    load_rule_text(egraph, encode_kernel(kernel).program(), f"<encoding of {kernel.name}>")
    stages["encode"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    step = egraph.parse_program(f"(run-schedule{schedule})")
    report.stop_reason = "iteration-limit"
    for _ in range(limits.iterations):
        (out,) = egraph.run_program(*step)
        assert isinstance(out, bindings.RunScheduleOutput)
        report.iterations += 1
        run = out.report
        report.matches_per_rule.update(run.num_matches_per_rule)
        if not run.updated:
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
    serialized = egraph.serialize([], max_functions=None, max_calls_per_function=None)
    dump = EGraphDump.from_json(serialized.to_json(), kernel)
    stages["serialize"] = time.perf_counter() - t0
    report.enodes = dump.enodes
    report.eclasses = len(dump.classes)
    return Saturation(kernel, target, dump, report)
