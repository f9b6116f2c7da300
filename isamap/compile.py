"""`compile()`: kernel + target -> saturated e-graph -> extracted Mapping, a report, `run()`.

Also `load_target`, the public loader: a target file is checked on its own by `hardware`, and here
against the scheduler, whose baseline strategy must be able to serve it (the scheduler sits above
`hardware`, so only this layer can ask).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Collection
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field

import numpy as np

from isamap.codegen import NativeProgram, emit_c, load_native
from isamap.egraph import Limits, RunReport
from isamap.egraph.dump import EGraphDump
from isamap.egraph.target_rules import matrix_instructions
from isamap.extract import extract as extract_mapping
from isamap.extract.cost import CostModel, cost_model
from isamap.extract.exact import candidate_mappings
from isamap.extract.extractor import Choice
from isamap.extract.lower import build_mapping
from isamap.extract.reuse import EGraphShape, egraph_shape, same_up_to_floats, transport
from isamap.hardware import target_file
from isamap.hardware.functional import run_mapping
from isamap.hardware.machine import run_program
from isamap.hardware.matrix_form import contraction_dtypes, matrix_form, types_fit
from isamap.hardware.sim import SimResult, simulate_timing
from isamap.hardware.target import Target
from isamap.hardware.timing import ArrayModel
from isamap.ir.errors import IsamapError, SourceLoc
from isamap.ir.kernel import Kernel
from isamap.ir.mapping import Mapping
from isamap.ir.model import kernel_macs
from isamap.ir.program import Program
from isamap.ir.reference import check_inputs
from isamap.quantize import Quantization, check_types, needs_quantization, quantize_kernel
from isamap.saturation import Saturation, check_cost, check_kernel_arg, saturate
from isamap.schedule.baseline import own_mapping
from isamap.schedule.registry import strategy
from isamap.schedule.scheduler import best_call, schedule_mapping

__all__ = [
    "CLOSE",
    "MAX_CANDIDATES",
    "MAX_TIED",
    "TIE",
    "CompileReport",
    "CompileResult",
    "CycleRatios",
    "ExtractionMemo",
    "check_schedule",
    "compile",
    "compile_reusing",
    "kernel_macs",
    "load_target",
    "roofline_cycles",
]


#: Beyond its `candidates`, `compile` also schedules and simulates every next-best mapping whose
#: extraction cost is within this fraction of the best one, up to MAX_CANDIDATES in all.
CLOSE = 0.05
MAX_CANDIDATES = 8
#: And every one within TIE of the best, up to MAX_TIED in all. Estimates that close cannot tell
#: the mappings apart: the cost model sums each operation's cost, while the simulator overlaps
#: host work with the accelerator's where the dependencies allow. A GRU step's gates, for one,
#: start under the next product when the three products are separate calls, which the sum
#: cannot see (gemmini b2 h512: 24 mappings within 0.9%, simulated 87k to 122k cycles).
TIE = 0.01
MAX_TIED = 24


def roofline_cycles(kernel: Kernel, target: Target) -> float:
    """The larger of compute-bound (MACs / peak MACs per cycle) and bandwidth-bound cycles
    (every input read and every output written once, over DRAM bandwidth, each at its own
    element type: an int8 kernel's int32 result at 4 bytes, an f32 tensor at 4; an output no
    wider than the target's matrix stores write, which may narrow an f32 result to f16)."""
    peak = max(u.macs_per_cycle for u in target.units.values())
    stores = [ArrayModel.for_instruction(target, n).out_bytes for n in matrix_instructions(target)]
    widest = max(stores, default=None)  # a matrix unit's result leaves at most this wide

    def size(t: str, output: bool) -> int:
        own = target.dtype_bytes(kernel.dtype(t))
        return min(own, widest) if output and widest is not None else own

    nbytes = sum(math.prod(kernel.shapes[t]) * size(t, False) for t in kernel.inputs())
    nbytes += sum(math.prod(kernel.shapes[t]) * size(t, True) for t in kernel.outputs())
    return max(kernel_macs(kernel) / peak, nbytes / target.dram().bandwidth_bytes_per_cycle)


class CycleRatios:
    """Speedup over a baseline and share of the roofline, for anything with those cycles."""

    cycles: float
    baseline_cycles: float
    roofline_cycles: float

    @property
    def speedup(self) -> float:
        """Baseline cycles over ours (1.0 when they are the same strategy)."""
        return self.baseline_cycles / self.cycles if self.cycles else 0.0

    @property
    def percent_of_roofline(self) -> float:
        return 100.0 * self.roofline_cycles / self.cycles if self.cycles else 0.0


@dataclass
class CompileReport(CycleRatios):
    """Cycles (scheduled, simulated in time), the roofline bound, the baseline, instruction issues,
    utilisation, bytes per memory level, energy, e-graph size and stage times."""

    cycles: float
    roofline_cycles: float
    instruction_counts: dict[str, int]
    macs: int
    egraph: RunReport
    schedule: str = "heuristic"
    baseline_schedule: str = "heuristic"
    baseline_cycles: float = 0.0
    utilisation: dict[str, float] = field(default_factory=dict)
    bytes: dict[str, float] = field(default_factory=dict)
    energy_pj: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    numbers: str = "in the declared types"  # or the quantization's scales and error

    @property
    def enodes(self) -> int:
        return self.egraph.enodes

    @property
    def eclasses(self) -> int:
        return self.egraph.eclasses

    def to_dict(self) -> dict[str, object]:
        return {
            "cycles": self.cycles,
            "roofline_cycles": self.roofline_cycles,
            "percent_of_roofline": self.percent_of_roofline,
            "schedule": self.schedule,
            "baseline_schedule": self.baseline_schedule,
            "baseline_cycles": self.baseline_cycles,
            "speedup": self.speedup,
            "instruction_counts": self.instruction_counts,
            "utilisation": self.utilisation,
            "bytes": self.bytes,
            "energy_pj": self.energy_pj,
            "macs": self.macs,
            "egraph": self.egraph.to_dict(),
            "stage_seconds": self.stage_seconds,
            "numbers": self.numbers,
        }

    def __str__(self) -> str:
        counts = ", ".join(f"{k} {v:,}" for k, v in self.instruction_counts.items())
        stages = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in self.stage_seconds.items())
        util = ", ".join(f"{u} {100 * v:.1f}%" for u, v in self.utilisation.items())
        moved = ", ".join(f"{lvl} {b:,.0f} B" for lvl, b in self.bytes.items())
        return "\n".join(
            [
                f"cycles: {self.cycles:,.0f} (schedule {self.schedule}); roofline "
                f"{self.roofline_cycles:,.0f} ({self.percent_of_roofline:.1f}% of roofline)",
                f"baseline {self.baseline_schedule}: {self.baseline_cycles:,.0f} cycles; "
                f"speedup {self.speedup:.2f}x",
                f"utilisation: {util}",
                f"bytes moved: {moved}",
                f"energy: {self.energy_pj / 1e6:,.3f} uJ; MACs: {self.macs:,}",
                f"instructions: {counts}",
                f"numbers: {self.numbers}",
                f"e-graph: {self.egraph.summary()}",
                f"stages: {stages}",
            ]
        )


@dataclass
class CompileResult:
    """What `compile` returns: the mapping, its program and report, and the e-graph behind them."""

    kernel: Kernel
    target: Target
    mapping: Mapping
    program: Program
    report: CompileReport
    saturation: Saturation
    sim: SimResult
    quantization: Quantization | None = None  # compiled for the integer kernel it made
    threads: int = 1  # OpenMP threads of the native code on a CPU target
    _native: NativeProgram | None = field(default=None, repr=False, compare=False)

    def run(self, inputs: MappingABC[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the scheduled program: natively on a CPU target (the emitted C, compiled and
        cached; float32 results), else as `simulate` does. Every tensor the mapping computes,
        by name."""
        if self.target.codegen is not None and self.quantization is None:
            return self.native().run(check_inputs(self.kernel, inputs))
        return self.simulate(inputs)

    def simulate(self, inputs: MappingABC[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the scheduled program functionally, on any target (a CPU target's too, through
        its modelled memories instead of natively): every matrix call instruction by
        instruction through a scratchpad and accumulator of the target's size (a missing load
        or an overrun fails loudly), everything else as mapped. Every tensor the mapping
        computes, by name; quantized: the float inputs quantized with the compile-time scales,
        outputs dequantized."""
        q = self.quantization
        if q is not None:
            ints = q.quantize_inputs(inputs)
            return q.dequantize(
                run_program(self.program, self.mapping, q.kernel, self.target, ints)
            )
        arrays = check_inputs(self.kernel, inputs)
        return run_program(self.program, self.mapping, self.kernel, self.target, arrays)

    def c_source(self) -> str:
        """The C isamap emits for this program (CPU targets only), for a person to read."""
        return emit_c(self.program, self.mapping, self.kernel, self.target, self.threads).text

    def native(self) -> NativeProgram:
        """The compiled program (CPU targets): built once, then from the per-user cache."""
        if self._native is None:
            source = emit_c(self.program, self.mapping, self.kernel, self.target, self.threads)
            self._native = load_native(source, self.target)
        return self._native

    def run_mapping(self, inputs: MappingABC[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the mapping alone (no schedule): each call tile by tile on its instruction."""
        q = self.quantization
        if q is not None:
            ints = q.quantize_inputs(inputs)
            return q.dequantize(run_mapping(self.mapping, q.kernel, self.target, ints))
        arrays = check_inputs(self.kernel, inputs)
        return run_mapping(self.mapping, self.kernel, self.target, arrays)


def load_target(name_or_path: str | os.PathLike[str]) -> Target:
    """Load and validate a target: a shipped name (`"gemmini"`) or a path to a `.toml` file.

    Raises IsamapError, located at the offending file and line, on any problem — including a
    `baseline_schedule` that cannot schedule the target's own matrix instructions — and never
    returns a partly loaded target.
    """
    target = target_file.load_target(name_or_path)
    check_schedule(target, target.baseline_schedule, baseline=True)
    return target


def check_schedule(target: Target, name: str, baseline: bool = False) -> None:
    """IsamapError unless strategy `name` exists and can schedule one block of every matrix
    instruction of `target` (Gemmini's library tiling, say, needs a square array, a scratchpad,
    an accumulator and DIM^3 blocks). `baseline`: the name is the target's own baseline, and the
    error is located at its `baseline_schedule` line."""
    where = (target.baseline_loc or SourceLoc(target.path)) if baseline else None
    key = "baseline_schedule: " if baseline else ""
    if not isinstance(name, str):
        raise IsamapError(f"schedule must be a strategy name, not {type(name).__name__}")
    try:
        strategy(name)
        for ins in matrix_instructions(target):
            b, m, n, k = 1, *ArrayModel.for_instruction(target, ins).block
            best_call(target, ins, b, m, n, k, name)
    except (IsamapError, ValueError) as err:  # the strategies say ValueError for "not for this"
        message = err.message if isinstance(err, IsamapError) else str(err)
        if not message.startswith("unknown"):
            message = f"schedule strategy '{name}' cannot serve target '{target.name}': {message}"
        raise IsamapError(f"{key}{message}", where) from None


@dataclass(frozen=True)
class _Extracted:
    """An extraction `compile_reusing` can carry over: the e-graph's shape, the chosen e-nodes,
    the e-graph they are of, the mapping's cost and how the extraction stopped."""

    shape: EGraphShape
    choice: Choice
    dump: EGraphDump
    total: float
    stop_reason: str


#: Extractions by the shape of their e-graph (`extract.reuse.EGraphShape.key`); one per
#: `compile_model` call, whose options every kernel shares.
ExtractionMemo = dict[tuple[object, ...], _Extracted]


def _scheduled(
    mapping: Mapping, target: Target, schedule: str, kernel: Kernel
) -> tuple[Program, SimResult]:
    program = schedule_mapping(mapping, target, schedule)
    return program, simulate_timing(program, mapping, target, kernel)


def compile(
    kernel: Kernel,
    target: Target | str | os.PathLike[str],
    cost: str | CostModel = "latency",
    schedule: str = "heuristic",
    limits: Limits | None = None,
    candidates: int = 3,
    extract: str = "exact",
    disabled_rules: Collection[str] = (),
    allow_unchecked_rules: bool = False,
    quantize: bool | None = None,
    calibration: MappingABC[str, object] | None = None,
    threads: int = 1,
) -> CompileResult:
    """Map `kernel` onto `target`: saturate, extract, schedule with strategy `schedule`, simulate.

    `extract` is the extraction method ("greedy" or "exact", the ILP). With the `latency`
    (`energy`) cost model its mapping and the next best (the exact k-best: the `candidates`
    best, and more while within CLOSE of the best cost, up to MAX_CANDIDATES, and within TIE up
    to MAX_TIED) are scheduled and simulated and the fastest (least energy) is kept; with any
    other model its mapping is.
    The ILP's time limit is `limits.seconds`. The report states cycles against the target's
    baseline schedule and the roofline.
    `disabled_rules` names rewrite rules to leave out of saturation (`isamap.saturate`). A
    target whose own rule file has a rule `isamap check-rules` does not pass is refused unless
    `allow_unchecked_rules`.
    `quantize=True` compiles a float kernel for an integer-only target as an integer kernel
    (`isamap.quantize`: symmetric per-tensor scales from `calibration`, default random inputs;
    the report states them and the error against the float reference; `run` dequantizes; a kernel
    the target runs as declared is compiled as it is);
    `quantize=False` (or the default, None) refuses such a kernel in one line: the hardware would
    compute other numbers.
    On a CPU target (one with a `codegen` family) `run` executes native code using `threads`
    OpenMP threads (1: single-threaded, the default).
    """
    return compile_reusing(
        kernel, target, cost, schedule, limits, candidates, extract, disabled_rules,
        allow_unchecked_rules, quantize, calibration, threads, None,
    )  # fmt: skip


def compile_reusing(
    kernel: Kernel,
    target: Target | str | os.PathLike[str],
    cost: str | CostModel,
    schedule: str,
    limits: Limits | None,
    candidates: int,
    extract: str,
    disabled_rules: Collection[str],
    allow_unchecked_rules: bool,
    quantize: bool | None,
    calibration: MappingABC[str, object] | None,
    threads: int,
    memo: ExtractionMemo | None,
) -> CompileResult:
    """`compile`, carrying the extraction over from an earlier kernel of `memo` whose saturated
    e-graph was this one's but for its floats' values (`extract.reuse`): a quantized network's
    layers differ in their scales only. What is carried is the choice of e-nodes, lowered from
    this kernel's own e-graph, scheduled and simulated again."""
    check_kernel_arg(kernel, "compile")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise IsamapError(f"compile: threads must be an integer >= 1, not {threads!r}"[:100])
    if isinstance(target, str | os.PathLike):
        target = load_target(target)
    elif not isinstance(target, Target):
        raise IsamapError(
            "compile: expected a Target, a shipped target name or a .toml path, "
            f"not {type(target).__name__}"
        )
    cost = check_cost(cost)
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise IsamapError(f"compile: candidates must be an integer >= 1, not {candidates!r}"[:100])
    check_schedule(target, schedule)  # unknown or unfit strategies fail before any work
    if quantize is not None and not isinstance(quantize, bool):
        raise IsamapError(f"compile: quantize must be True, False or None, not {quantize!r}"[:100])
    if calibration is not None and not quantize:
        raise IsamapError("compile: calibration inputs are for quantize=True")
    source, quantization = kernel, None
    if quantize and needs_quantization(kernel, target) is not None:
        quantization = quantize_kernel(kernel, target, calibration)
        kernel = quantization.kernel
    else:
        check_types(kernel, target)
    check_schedule(target, target.baseline_schedule, baseline=True)
    limits = limits or Limits()
    started = time.perf_counter()  # limits.seconds bounds saturation and extraction together
    sat = saturate(kernel, target, limits, disabled_rules, allow_unchecked_rules)
    t0 = time.perf_counter()
    # the latency and energy models are re-judged end to end; any other model's choice stands
    judged = cost in ("latency", "energy")
    seconds = max(limits.seconds - (time.perf_counter() - started), 0.05 * limits.seconds)
    shape = egraph_shape(sat.dump, kernel) if memo is not None and judged else None
    earlier = memo.get(shape.key) if memo is not None and shape is not None else None
    found: list[tuple[Mapping, Choice | None]]
    if earlier is not None and shape is not None and same_up_to_floats(earlier.shape, shape):
        choice = transport(earlier.choice, earlier.dump, sat.dump)
        model = cost_model(cost, target, kernel)
        found = [(build_mapping(sat, choice, model, earlier.total), choice)]
        sat.report.extract_stop_reason = earlier.stop_reason
    elif judged and candidates > 1:
        found = [*candidate_mappings(
            sat, cost, extract, candidates, MAX_CANDIDATES, CLOSE, seconds, TIE, MAX_TIED
        )]  # fmt: skip
    else:
        found = [(extract_mapping(sat, cost, extract, seconds), None)]
    extract_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    scored = [(m, c, *_scheduled(m, target, schedule, kernel)) for m, c in found]
    if cost == "energy":
        mapping, chosen, program, sim = min(scored, key=lambda t: t[3].energy_pj)
    else:
        mapping, chosen, program, sim = min(scored, key=lambda t: t[3].cycles)
    if memo is not None and shape is not None and chosen is not None and earlier is None:
        memo[shape.key] = _Extracted(
            shape, chosen, sat.dump, mapping.cost, sat.report.extract_stop_reason
        )
    schedule_seconds = time.perf_counter() - t0
    baseline = target.baseline_schedule
    baseline_cycles = sim.cycles
    if baseline != schedule:  # the library's calls as it issues them (schedule/baseline.py)
        own = own_mapping(mapping, target)
        baseline_cycles = _scheduled(own, target, baseline, kernel)[1].cycles
    stages = dict(sat.report.stage_seconds)
    stages["extract"] = extract_seconds
    stages["schedule_and_simulate"] = schedule_seconds
    report = CompileReport(
        cycles=sim.cycles,
        roofline_cycles=roofline_cycles(kernel, target),
        instruction_counts={k: v for k, v in sorted(sim.counts.items()) if v > 0},
        macs=kernel_macs(kernel),
        egraph=sat.report,
        schedule=schedule,
        baseline_schedule=baseline,
        baseline_cycles=baseline_cycles,
        utilisation=sim.utilisation(),
        bytes=dict(sim.bytes),
        energy_pj=sim.energy_pj,
        stage_seconds=stages,
    )
    report.numbers = _numbers(source if quantization is None else kernel, program, target,
                              quantization)  # fmt: skip
    return CompileResult(kernel, target, mapping, program, report, sat, sim, quantization, threads)


def _numbers(kernel: Kernel, program: Program, target: Target, q: Quantization | None) -> str:
    """The report's line on the numbers the program computes in."""
    if q is not None:
        return q.summary()
    for name in dict.fromkeys(c.call.instruction for c in program.calls):
        ins = target.instruction(name)
        if not types_fit(ins.semantics, kernel):
            form = matrix_form(ins.semantics)
            assert form is not None
            a, b = ins.semantics.dtype(form.lhs), ins.semantics.dtype(form.rhs)
            ours = ", ".join(sorted({t for pair in contraction_dtypes(kernel) for t in pair}))
            return (
                f"computed in float64, not in the hardware's types: {name} takes {a} x {b}, "
                f"the kernel multiplies {ours}"
            )
    return "in the declared types"
