"""Equality saturation under limits: load rules, encode a kernel, run, report why it stopped.

Saturation runs one iteration at a time — the computed rules (isamap.egraph.computed_rules, on a
serialised snapshot), then the egglog rulesets (algebra, target rules, the target's file) —
checking e-node count and wall time in between: egglog 13.2 has no node or time limit of its own.
Near the e-node limit an iteration runs inside a push, so one that goes past it is undone; a Rust
call in progress cannot be interrupted, so the time limit can be overshot by one iteration.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from egglog import bindings

from isamap.egraph.computed_rules import (
    COMPUTED_RULES,
    ComputedRule,
    ComputedRunner,
    packing_widths,
    tap_capable,
)
from isamap.egraph.dump import TENSOR_OPS, EGraphDump
from isamap.egraph.encode import encode_kernel
from isamap.egraph.phases import PHASES, PhaseStats, phase_of_ruleset
from isamap.egraph.rule_file import RuleForm, parse_rule_file, read_rule_file
from isamap.egraph.target_rules import (
    conv_rules,
    derive_rules,
    eligible_instructions,
    matrix_instructions,
    rules_program,
)
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
    "check_rule_names",
    "load_rule_text",
    "rule_sources",
    "saturate",
    "saturate_with",
]

#: The folder of the hardware-independent rule files (sorts.egg, algebra.egg).
RULES_DIR = Path(__file__).resolve().parent.parent / "rules"

#: The shape analysis's rules (`sorts.egg`, ruleset `shapes`): they set `shape`, never rewrite, so
#: reports leave them out of the matches per rule and rule files may not reuse their names.
SHAPE_RULES = frozenset(re.findall(r':name "([^"]+)"', (RULES_DIR / "sorts.egg").read_text()))

_EGG_ERROR = re.compile(r"In (\d+):(\d+)(?:-\S*)? of ([^:]+): (.*)", re.S)


@dataclass(frozen=True)
class Limits:
    """When the search stops early: saturation iterations, e-nodes (never exceeded: an iteration
    that would is undone), and seconds for saturation and extraction together."""

    iterations: int = 30
    enodes: int = 50_000
    seconds: float = 60.0

    def __post_init__(self) -> None:
        for name in ("iterations", "enodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise IsamapError(f"Limits: {name} must be a positive integer, got {value!r}")
        seconds = self.seconds
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds <= 0
        ):
            raise IsamapError(f"Limits: seconds must be a positive finite number, got {seconds!r}")


@dataclass
class RunReport:
    """What a saturation did: why it stopped, how big the e-graph got, which rules matched; and
    whether extraction from it finished or stopped at the time limit."""

    stop_reason: str = "saturated"  # saturated | iteration-limit | enode-limit | time-limit
    iterations: int = 0
    enodes: int = 0
    eclasses: int = 0
    matches_per_rule: Counter[str] = field(default_factory=Counter)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    phases: dict[str, PhaseStats] = field(default_factory=dict)  # by phase, in run order
    engine_seconds: dict[str, float] = field(default_factory=dict)  # computed rules, egglog
    undone_iteration: bool = False  # the last iteration went past the e-node limit and was undone
    extract_stop_reason: str = "complete"  # complete | time-limit (set by extraction)

    @property
    def hit_limit(self) -> bool:
        return self.stop_reason != "saturated" or self.extract_stop_reason != "complete"

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in self.stage_seconds.items())
        note = ""
        if self.stop_reason != "saturated":
            note = " (best result so far: a limit was hit"
            note += "; the iteration past it was undone)" if self.undone_iteration else ")"
        if self.extract_stop_reason != "complete":
            note += f"; extraction stopped at its {self.extract_stop_reason} (best mapping so far)"
        phases = ", ".join(
            f"{name} {st.iterations} it {st.seconds * 1000:.1f} ms -> {st.enodes}"
            for name, st in self.phases.items()
            if st.iterations
        )
        return (
            f"{self.stop_reason}{note} after {self.iterations} iterations: "
            f"{self.enodes} e-nodes, {self.eclasses} e-classes; {stages}"
            + (f"; phases (iterations, time -> e-nodes): {phases}" if phases else "")
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "stop_reason": self.stop_reason,
            "undone_iteration": self.undone_iteration,
            "extract_stop_reason": self.extract_stop_reason,
            "iterations": self.iterations,
            "enodes": self.enodes,
            "eclasses": self.eclasses,
            "matches_per_rule": dict(sorted(self.matches_per_rule.items())),
            "stage_seconds": self.stage_seconds,
            "phases": {name: stats.to_dict() for name, stats in self.phases.items()},
            "engine_seconds": self.engine_seconds,
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
    except BaseException as err:  # a Rust panic (pyo3's PanicException derives from BaseException)
        if type(err).__name__ != "PanicException":
            raise
        raise egglog_error(RuntimeError(str(err).splitlines()[0]), filename) from None


#: Commands per egglog program when loading an encoding: egglog 13.2 parses and runs one program
#: in time and memory quadratic in its length (a 1,000-statement kernel's 5,000 commands took
#: 19 s and 4.6 GB in one program, 1.2 s and 76 MB in programs of 200).
_CHUNK = 200


def _load_in_chunks(egraph: bindings.EGraph, commands: list[str], filename: str) -> None:
    for start in range(0, len(commands), _CHUNK):
        load_rule_text(egraph, "\n".join(commands[start : start + _CHUNK]) + "\n", filename)


def target_rule_file(target: Target) -> Path | None:
    """Hand-written rules of a target: the `<stem>.egg` beside its file, if there is one (a
    shipped target's is `isamap/targets/<name>/<name>.egg`)."""
    beside = Path(target.path).with_suffix(".egg")
    return beside if beside.is_file() else None


class Saturation:
    """A saturated e-graph for one kernel on one target: inspect it, dump it. (`isamap.saturate`
    returns a subclass that also extracts: extraction sits above this package.)"""

    def __init__(
        self,
        kernel: Kernel,
        target: Target,
        dump: EGraphDump,
        report: RunReport,
        limits: Limits | None = None,
    ) -> None:
        self.kernel = kernel
        self.target = target
        self.dump = dump
        self.report = report
        self.limits = limits or Limits()  # extraction's time budget is `limits.seconds`

    def to_json(self) -> str:
        return self.dump.to_json()

    def to_dot(self) -> str:
        return self.dump.to_dot()


def _instruction_tiles(target: Target, names: Sequence[str]) -> tuple[tuple[int, int, int], ...]:
    """The (m, n, k) extents of matrix instructions `names` of `target`."""
    tiles = []
    for name in names:
        form = matrix_form(target.instructions[name].semantics)
        if form is not None:
            tiles.append((form.tile("m"), form.tile("n"), form.tile("k")))
    return tuple(tiles)


def _packing_widths(target: Target) -> tuple[int, ...]:
    """The widths the computed packing rules may use: the target's matrix instruction extents."""
    return packing_widths(_instruction_tiles(target, matrix_instructions(target)))


class _SerializeRate:
    """Seconds per e-node that serialising an e-graph into an EGraphDump takes, as last measured
    (30 us on the machine this was written on): saturation keeps that much of its time limit
    for the final serialisation, which is one uninterruptible call."""

    seconds_per_enode = 30e-6

    @classmethod
    def estimate(cls, enodes: int) -> float:
        return enodes * cls.seconds_per_enode


def _dump(egraph: bindings.EGraph, kernel: Kernel) -> EGraphDump:
    t0 = time.perf_counter()
    serialized = egraph.serialize([], max_functions=None, max_calls_per_function=None)
    dump = EGraphDump.from_json(serialized.to_json(), kernel)
    if dump.enodes >= 1000:  # small ones are all overhead
        _SerializeRate.seconds_per_enode = (time.perf_counter() - t0) / dump.enodes
    return dump


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


def rule_sources(target: Target, kernel: Kernel | None = None) -> list[RuleSource]:
    """Every rule a saturation for `target` loads: algebra, derived (for `kernel`: from the
    instructions its types fit), the target's rule file."""
    algebra = RULES_DIR / "algebra.egg"
    derived = rules_program(target, kernel)
    sources = [
        RuleSource(algebra.read_text(), str(algebra), ("layout", "fusion")),
        RuleSource(derived, f"<rules derived from {target.path}>", ("target",)),
    ]
    extra = target_rule_file(target)
    if extra is not None:
        text, forms = read_rule_file(extra)
        check_rule_names(forms, target)
        names = tuple(dict.fromkeys(f.ruleset for f in forms if f.head == "ruleset" and f.ruleset))
        sources.append(RuleSource(text, str(extra), names))
    return sources


def check_rule_names(forms: list[RuleForm], target: Target) -> None:
    """A hand-written rule may not take the name of an algebra or derived rule: reports count
    matches by name."""
    shipped = {f.name for f in read_rule_file(RULES_DIR / "algebra.egg", trusted=True)[1]}
    shipped |= SHAPE_RULES
    shipped |= {r.name for r in derive_rules(target)}
    for form in forms:
        if form.name is not None and form.name in shipped:
            raise IsamapError(f"rule name '{form.name}' is already a rule of isamap's", form.loc)


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
    sources = rule_sources(target, kernel)
    computed: Sequence[ComputedRule] = (*COMPUTED_RULES, *conv_rules(target, kernel))
    if disabled_rules:
        sources, computed = _without(sources, set(disabled_rules), computed)
    return saturate_with(kernel, target, sources, limits, computed_rules=computed)


def _without(
    sources: list[RuleSource], names: set[str], computed: Sequence[ComputedRule] = COMPUTED_RULES
) -> tuple[list[RuleSource], tuple[ComputedRule, ...]]:
    """`sources` and the `computed` rules without the rules called `names` (all must exist)."""
    known = {r.name for r in computed}
    kept: list[RuleSource] = []
    for source in sources:
        forms = parse_rule_file(source.text, source.filename, trusted=True)  # read once already
        known.update(f.name for f in forms if f.name)
        text = "\n".join(f.text for f in forms if f.name not in names)
        kept.append(RuleSource(text + "\n", source.filename, source.rulesets))
    unknown = sorted(names - known)
    if unknown:
        raise IsamapError(
            f"no rule named {', '.join(repr(n) for n in unknown)} "
            f"(rules: {', '.join(sorted(known))})"
        )
    return kept, tuple(r for r in computed if r.name not in names)


def saturate_with(
    kernel: Kernel,
    target: Target,
    sources: list[RuleSource],
    limits: Limits | None = None,
    terms: str | None = None,
    computed_rules: Sequence[ComputedRule] = COMPUTED_RULES,
) -> Saturation:
    """Saturate `kernel` with exactly the rules of `sources` (their rulesets run in order, after
    the `computed_rules` in each iteration).

    `terms` (egglog commands over `kernel`'s inputs) replaces the kernel's own encoding: the
    soundness checker inserts terms built from a rule's left-hand side this way."""
    limits = limits or Limits()
    report = RunReport()
    stages = report.stage_seconds
    start = time.perf_counter()
    egraph, numbered = _load(kernel, sources, terms, stages)
    widths = _packing_widths(target)
    contraction = tuple(n for n in eligible_instructions(target, kernel) if tap_capable(target, n))
    # batching into block-diagonal calls is for accelerators (a CPU target's C emitter tiles
    # each product itself)
    accelerator = target.codegen is None
    tiles = _instruction_tiles(target, eligible_instructions(target, kernel)) if accelerator else ()

    def iteration(egraph: bindings.EGraph) -> _Iteration:
        runner = ComputedRunner(numbered, computed_rules, widths, contraction, tiles)
        return _Iteration(egraph, kernel, sources, runner, report)

    t0 = time.perf_counter()
    replay = _run_within_limits(egraph, iteration(egraph), limits, report, start + limits.seconds)
    if replay is not None:  # past the e-node limit with no snapshot to undo: rebuild, replay
        egraph, _ = _load(kernel, sources, terms, {})
        report.phases = {}
        again = iteration(egraph)
        for _ in range(replay):
            again.run()
    stages["saturate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    dump = _dump(egraph, kernel)
    stages["serialize"] = time.perf_counter() - t0
    report.enodes = dump.enodes
    report.eclasses = len(dump.classes)
    return Saturation(kernel, target, dump, report, limits)


def _load(
    kernel: Kernel, sources: list[RuleSource], terms: str | None, stages: dict[str, float]
) -> tuple[bindings.EGraph, int]:
    """A fresh e-graph with the sorts, `sources` and the kernel's encoding (or `terms`), the
    how many terms the encoding numbered."""
    t0 = time.perf_counter()
    egraph = bindings.EGraph()
    sorts = RULES_DIR / "sorts.egg"
    load_rule_text(egraph, sorts.read_text(), str(sorts))
    for source in sources:
        load_rule_text(egraph, source.text, source.filename)
    stages["load_rules"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    encoding = encode_kernel(kernel) if terms is None else None
    commands = encoding.commands if encoding is not None else [terms or ""]
    _load_in_chunks(egraph, commands, f"<encoding of {kernel.name}>")
    stages["encode"] = time.perf_counter() - t0
    # terms given as text number their own operands; rules' numbers start clear above them
    return egraph, encoding.terms if encoding is not None else 1_000_000


class _Iteration:
    """One iteration of saturation: every phase once, in the order of `PHASES` — its computed
    rules, then its egglog rulesets — so each phase works on what the phases before it made in
    the same iteration, and any iteration limit still leaves mappings onto instructions.

    The computed rules keep state (the e-nodes they have seen, the creation numbers they gave),
    and so do the phase statistics, which a pop of the e-graph does not undo: `save` and
    `restore` keep them with the snapshot."""

    def __init__(
        self,
        egraph: bindings.EGraph,
        kernel: Kernel,
        sources: list[RuleSource],
        runner: ComputedRunner,
        report: RunReport,
    ) -> None:
        self.egraph, self.kernel, self.sources = egraph, kernel, sources
        rulesets: dict[str, list[str]] = {p: [] for p in PHASES}
        for source in sources:
            for name in source.rulesets:
                rulesets[phase_of_ruleset(name)].append(name)
        # each phase's rules, then the shape analysis of what they built (rules/sorts.egg)
        self.steps = {
            p: egraph.parse_program(
                f"(run-schedule{''.join(f' (run {r})' for r in names)} (saturate (run shapes)))"
            )
            for p, names in rulesets.items()
            if names
        }
        self.computed = runner.phases()  # the phases with a computed rule
        self.active = [p for p in PHASES if p in self.steps or p in self.computed]
        self.runner, self.report = runner, report
        for p in self.active:
            report.phases.setdefault(p, PhaseStats())
        self.snapshot: EGraphDump | None = None  # of the e-graph as it is now, if taken
        self.saved: _Saved | None = None

    def run(self) -> tuple[bool, Counter[str]]:
        """Run every phase once; whether any changed the e-graph, and matches per rule."""
        changed, matches = False, Counter[str]()
        for phase in self.active:
            phase_changed, phase_matches = self._run_phase(phase)
            changed = changed or phase_changed
            matches.update(phase_matches)
        return changed, matches

    def _run_phase(self, phase: str) -> tuple[bool, Counter[str]]:
        stats, engine = self.report.phases[phase], self.report.engine_seconds
        t1 = time.perf_counter()
        program, matches = "", Counter[str]()
        if phase in self.computed:
            if self.snapshot is None:
                self.snapshot = _dump(self.egraph, self.kernel)
            program, matches = self.runner.round(self.snapshot, phase)
        if program:
            load_rule_text(self.egraph, program, "<computed rules>")
        t2 = time.perf_counter()
        engine["computed"] = engine.get("computed", 0.0) + t2 - t1
        updated = False
        step = self.steps.get(phase)
        if step is not None:
            out = _run_step(self.egraph, step, self.sources)
            matches.update(
                {r: n for r, n in out.report.num_matches_per_rule.items() if r not in SHAPE_RULES}
            )
            updated = out.report.updated
        t3 = time.perf_counter()
        engine["egglog"] = engine.get("egglog", 0.0) + t3 - t2
        stats.seconds += t3 - t1
        changed = bool(updated or program)
        if changed:
            self.snapshot = None
            stats.iterations += 1
            stats.matches += sum(matches.values())
            stats.enodes = _enodes(self.egraph)
        return changed, matches

    def save(self) -> None:
        r = self.runner
        stats = {p: replace(st) for p, st in self.report.phases.items()}
        self.saved = _Saved(set(r.applied), r.number, r.rounds, stats)

    def restore(self) -> None:
        saved, r = self.saved, self.runner
        assert saved is not None
        r.applied, r.number, r.rounds = set(saved.applied), saved.number, saved.rounds
        self.report.phases = {p: replace(st) for p, st in saved.stats.items()}
        self.snapshot = None


@dataclass
class _Saved:
    """The state of an `_Iteration` that a pop of the e-graph does not undo."""

    applied: set[tuple[object, ...]]
    number: int
    rounds: int
    stats: dict[str, PhaseStats]


def _run_within_limits(
    egraph: bindings.EGraph,
    iteration: _Iteration,
    limits: Limits,
    report: RunReport,
    deadline: float,
) -> int | None:
    """Run `schedule` one iteration at a time until saturated or a limit is reached.

    Near the e-node limit (when an iteration growing the e-graph as fast as any before, and at
    least 4x, could pass it) an iteration runs inside a push: one that passes the limit is undone
    by a pop; one that does not is popped and run again, so snapshots never pile up. Far from
    it, an iteration that passes the limit anyway cannot be undone: then the number of iterations
    to replay on a fresh e-graph is returned (else None). A Rust call cannot be interrupted, so
    the time limit is checked between iterations, and an iteration is not started when the last
    one and the final serialisation of the e-graph (estimated from the last one measured) would
    not fit in the time left."""
    push, pop = egraph.parse_program("(push)"), egraph.parse_program("(pop)")
    report.stop_reason = "iteration-limit"
    size = _enodes(egraph)
    if size >= limits.enodes:  # the kernel alone fills the budget
        report.stop_reason = "enode-limit"
        return None
    growth, last = 4.0, 0.0
    for _ in range(limits.iterations):
        now = time.perf_counter()
        if now + last + _SerializeRate.estimate(size) > deadline:
            report.stop_reason = "time-limit"
            return None
        snapshot = size * growth >= limits.enodes
        if snapshot:
            egraph.run_program(*push)
            iteration.save()
        changed, matches = iteration.run()
        new = _enodes(egraph)
        if snapshot and new <= limits.enodes:  # keep it, without keeping the snapshot
            egraph.run_program(*pop)
            iteration.restore()
            snapshot = False
            changed, matches = iteration.run()
            new = _enodes(egraph)
        last = time.perf_counter() - now
        if new > limits.enodes:
            report.stop_reason, report.undone_iteration = "enode-limit", True
            if not snapshot:
                return report.iterations
            egraph.run_program(*pop)
            iteration.restore()
            return None
        report.iterations += 1
        report.matches_per_rule.update(matches)
        if not changed:
            report.stop_reason = "saturated"
            return None
        if new >= limits.enodes:
            report.stop_reason = "enode-limit"
            return None
        growth, size = max(growth, 2.0 * new / max(size, 1)), new
    if time.perf_counter() >= deadline:
        report.stop_reason = "time-limit"
    return None


def _run_step(
    egraph: bindings.EGraph, step: list[bindings._Command], sources: list[RuleSource]
) -> bindings.RunScheduleOutput:
    """One iteration; a rule that fails while it runs (a primitive that fails, an illegal
    merge) is an IsamapError at the place egglog names, in the last rule file if it names none."""
    try:
        (out,) = egraph.run_program(*step)
    except bindings.EggSmolError as err:
        text = str(err).strip().removeprefix("Panic: ")  # "Panic: In 2:39-63 of x.egg: ..."
        where = sources[-1].filename if sources else "<rules>"
        raise egglog_error(RuntimeError(text), where) from None
    except BaseException as err:  # a Rust panic (pyo3's PanicException derives from BaseException)
        if type(err).__name__ != "PanicException":
            raise
        raise IsamapError(f"a rule failed while running: {str(err).splitlines()[0]}") from None
    assert isinstance(out, bindings.RunScheduleOutput)
    return out
