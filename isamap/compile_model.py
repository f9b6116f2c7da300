"""Whole-network compilation: a Model's layers fused, each distinct kernel compiled once by the
per-kernel pipeline (`isamap.compile`), a report per layer and in total, and `run` for the network.

Layers with the same kernel (the same shapes: MobileNet's repeated blocks, every GRU time step)
share one compilation; their weights differ, but weights are kernel inputs. Views (reshapes,
flattens, time-step slices) cost nothing: the data stays where it is.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Collection
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import overload

import numpy as np

from isamap.codegen import CSource, NativeProgram, emit_c, load_native
from isamap.codegen.network import NativeNetwork, layer_constants
from isamap.compile import CompileResult, CycleRatios, ExtractionMemo, compile_reusing, load_target
from isamap.compile import compile as compile_kernel
from isamap.egraph import Limits
from isamap.extract.cost import CostModel
from isamap.frontend.fuse import fuse
from isamap.hardware.target import Target
from isamap.ir.errors import IsamapError
from isamap.ir.kernel import Kernel
from isamap.ir.model import Layer, Model, kernel_macs
from isamap.ir.reference import evaluate

__all__ = ["LayerReport", "ModelReport", "ModelResult", "compile", "compile_model"]


@dataclass
class LayerReport(CycleRatios):
    """One layer: what it computes, how it maps, its cycles, bytes and energy."""

    name: str
    op: str
    nodes: tuple[str, ...]
    kernel: str  # the kernel's key: layers with the same key share one compilation
    macs: int
    cycles: float
    roofline_cycles: float
    baseline_cycles: float
    mapping: str
    instruction_counts: dict[str, int]
    bytes: dict[str, float]
    energy_pj: float
    compile_seconds: float  # 0 for a layer that reused an earlier layer's compilation
    shares: str = ""  # the earlier layer whose compilation it reuses

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "op": self.op,
            "nodes": list(self.nodes),
            "macs": self.macs,
            "cycles": self.cycles,
            "roofline_cycles": self.roofline_cycles,
            "percent_of_roofline": self.percent_of_roofline,
            "baseline_cycles": self.baseline_cycles,
            "speedup": self.speedup,
            "mapping": self.mapping,
            "instruction_counts": self.instruction_counts,
            "bytes": self.bytes,
            "energy_pj": self.energy_pj,
            "compile_seconds": self.compile_seconds,
            "shares": self.shares,
        }


@dataclass
class ModelReport(CycleRatios):
    """The network: every layer's report and their totals (cycles, roofline, baseline, MACs,
    bytes per memory level, energy), compile stage times summed over the distinct kernels."""

    model: str
    target: str
    schedule: str
    baseline_schedule: str
    layers: list[LayerReport]
    cycles: float = 0.0
    roofline_cycles: float = 0.0
    baseline_cycles: float = 0.0
    macs: int = 0
    bytes: dict[str, float] = field(default_factory=dict)
    energy_pj: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    compile_seconds: float = 0.0
    kernels: int = 0  # distinct kernels compiled
    instruction_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "target": self.target,
            "schedule": self.schedule,
            "baseline_schedule": self.baseline_schedule,
            "cycles": self.cycles,
            "roofline_cycles": self.roofline_cycles,
            "percent_of_roofline": self.percent_of_roofline,
            "baseline_cycles": self.baseline_cycles,
            "speedup": self.speedup,
            "macs": self.macs,
            "bytes": self.bytes,
            "energy_pj": self.energy_pj,
            "instruction_counts": self.instruction_counts,
            "stage_seconds": self.stage_seconds,
            "compile_seconds": self.compile_seconds,
            "kernels": self.kernels,
            "layers": [r.to_dict() for r in self.layers],
        }

    def summary(self) -> str:
        moved = ", ".join(f"{lvl} {b:,.0f} B" for lvl, b in self.bytes.items())
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in self.stage_seconds.items())
        return "\n".join(
            [
                f"model {self.model} on {self.target}: {len(self.layers)} layers, "
                f"{self.kernels} distinct kernels compiled in {self.compile_seconds:.1f} s",
                f"cycles: {self.cycles:,.0f} (schedule {self.schedule}); roofline "
                f"{self.roofline_cycles:,.0f} ({self.percent_of_roofline:.1f}% of roofline)",
                f"baseline {self.baseline_schedule}: {self.baseline_cycles:,.0f} cycles; "
                f"speedup {self.speedup:.2f}x",
                f"MACs: {self.macs:,}; energy: {self.energy_pj / 1e6:,.3f} uJ",
                f"bytes moved: {moved}",
                f"stages: {stages}",
            ]
        )

    def table(self) -> str:
        """The per-layer table, in markdown."""
        rows = [
            "| layer | op | mapping | MACs | cycles | % roofline | speedup | DRAM bytes "
            "| energy (uJ) | compile (s) |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.layers:
            compiled = f"{r.compile_seconds:.2f}" if not r.shares else f"= {r.shares}"
            rows.append(
                f"| {r.name} | {r.op} | {r.mapping} | {r.macs:,} | {r.cycles:,.0f} | "
                f"{r.percent_of_roofline:.1f}% | {r.speedup:.2f}x | "
                f"{r.bytes.get('dram', 0.0):,.0f} | {r.energy_pj / 1e6:,.3f} | {compiled} |"
            )
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.summary() + "\n\n" + self.table()


@dataclass
class ModelResult:
    """What `compile(model, target)` returns: the fused model, each layer's compilation (shared
    by layers with the same kernel), the report; `run` computes the network."""

    model: Model
    target: Target
    compiled: list[CompileResult]  # one per layer of `model.layers()`, shared when equal
    report: ModelReport

    _network: NativeNetwork | None = field(default=None, repr=False, compare=False)

    def run(self, inputs: MappingABC[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the network; the model's outputs by their ONNX names. On a CPU target, natively
        in float32 (`native`: the inputs converted once, each layer's weights bound once,
        float32 values between layers; float32 results); elsewhere every layer's scheduled
        program functionally (the simulated machine), in order."""
        if self.runs_natively():
            return dict(self.native().run(self.model.check_inputs(inputs, np.float32)))
        compiled = {
            id(layer): c for layer, c in zip(self.model.layers(), self.compiled, strict=True)
        }

        def run_layer(layer: Layer, args: MappingABC[str, np.ndarray]) -> dict[str, np.ndarray]:
            return compiled[id(layer)].run(args)

        values = self.model.run_steps(inputs, run_layer)
        return {name: values[name] for name in self.model.outputs}

    def runs_natively(self) -> bool:
        """Whether `run` runs native code: a CPU target, no layer quantized."""
        return self.target.codegen is not None and all(
            c.quantization is None for c in self.compiled
        )

    def native(self) -> NativeNetwork:
        """The network's native programs, built once (each distinct kernel's C emitted with
        the weights it reads as bound constants, then from the per-user cache)."""
        if self._network is None:
            self._network = NativeNetwork(self.model, self.native_programs())
        return self._network

    def native_programs(
        self, load: Callable[[CSource, Target], NativeProgram] = load_native
    ) -> dict[int, NativeProgram]:
        """Each layer's (by `id`) native program: one per distinct compilation and set of
        bound weights, built by `load` (default `load_native`)."""
        if self.target.codegen is None:
            raise IsamapError(f"target '{self.target.name}' has no native code (not a CPU)")
        built: dict[tuple[int, tuple[str, ...]], NativeProgram] = {}
        programs: dict[int, NativeProgram] = {}
        for layer, c in zip(self.model.layers(), self.compiled, strict=True):
            key = (id(c), layer_constants(self.model, layer))
            if key not in built:
                source = emit_c(c.program, c.mapping, c.kernel, c.target, constants=key[1])
                built[key] = load(source, c.target)
            programs[id(layer)] = built[key]
        return programs

    def reference(self, inputs: MappingABC[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's numpy reference outputs (the check on `run`)."""
        return self.model.evaluate(inputs)


@overload
def compile(
    kernel: Kernel,
    target: Target | str | os.PathLike[str],
    cost: str | CostModel = ...,
    schedule: str = ...,
    limits: Limits | None = ...,
    candidates: int = ...,
    extract: str = ...,
    disabled_rules: Collection[str] = ...,
    allow_unchecked_rules: bool = ...,
    quantize: bool | None = ...,
    calibration: MappingABC[str, object] | None = ...,
    threads: int = ...,
) -> CompileResult: ...


@overload
def compile(
    kernel: Model,
    target: Target | str | os.PathLike[str],
    cost: str | CostModel = ...,
    schedule: str = ...,
    limits: Limits | None = ...,
    candidates: int = ...,
    extract: str = ...,
    disabled_rules: Collection[str] = ...,
    allow_unchecked_rules: bool = ...,
    quantize: bool | None = ...,
    calibration: MappingABC[str, object] | None = ...,
    threads: int = ...,
) -> ModelResult: ...


def compile(
    kernel: Kernel | Model,
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
) -> CompileResult | ModelResult:
    """`isamap.compile`: a Kernel through the per-kernel pipeline (`isamap.compile.compile`), a
    Model layer by layer (`compile_model`); the same arguments either way (`threads`, the
    OpenMP threads of a CPU target's native code, for a Kernel only)."""
    args = (
        cost,
        schedule,
        limits,
        candidates,
        extract,
        disabled_rules,
        allow_unchecked_rules,
        quantize,
        calibration,
    )
    if type(kernel).__name__ == "ModelProto":  # an onnx.ModelProto: the frontend reads it
        raise IsamapError(
            "compile: expected a Kernel or a Model, not an onnx.ModelProto "
            "(read it with isamap.frontend.model_from_proto, or a file with isamap.load_onnx)"
        )
    if isinstance(kernel, Model):
        if threads != 1:
            raise IsamapError("compile: threads applies to a Kernel, not to a Model")
        return compile_model(kernel, target, *args)
    return compile_kernel(kernel, target, *args, threads=threads)


def _mapping_summary(result: CompileResult) -> str:
    calls = result.mapping.instruction_calls()
    used = list(dict.fromkeys(str(n.attrs["instruction"]) for n in calls))
    if result.mapping.host_ops():
        used.append("host")
    return ", ".join(used) or "views only"


def compile_model(
    model: Model,
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
    fusion: bool = True,
) -> ModelResult:
    """Compile every layer of `model` for `target` (see `isamap.compile`; the arguments are its
    own, applied to each kernel). With `fusion`, adjacent layers are fused first
    (`isamap.frontend.fuse`). With `quantize=True` each layer is quantized with scales from the
    values it really sees: the model's reference run on `calibration` (the model's inputs by
    name; default: random inputs)."""
    if not isinstance(model, Model):
        raise IsamapError(f"compile_model: expected a Model, not {type(model).__name__}")
    if isinstance(target, str | os.PathLike):
        target = load_target(target)
    fused = fuse(model) if fusion else model
    if calibration is not None and not quantize:
        raise IsamapError("compile: calibration inputs are for quantize=True")
    seen: dict[int, dict[str, np.ndarray]] = {}
    if quantize:  # each layer's calibration: what it reads when the model runs on the inputs

        def record(layer: Layer, args: MappingABC[str, np.ndarray]) -> dict[str, np.ndarray]:
            seen[id(layer)] = dict(args)
            return evaluate(layer.kernel, args)

        fused.run_steps(calibration if calibration is not None else fused.random_inputs(), record)
    started = time.perf_counter()
    by_key: dict[str, tuple[str, CompileResult, float]] = {}
    extractions: ExtractionMemo = {}  # layers that differ in their constants only (scales)
    compiled: list[CompileResult] = []
    rows: list[LayerReport] = []
    stages: Counter[str] = Counter()
    for layer in fused.layers():
        key = str(layer.kernel)
        calib = seen.get(id(layer))
        if calib is not None:  # a quantized layer's scales depend on its values too
            key += "\n# calibration " + _digest(calib)
        shares = ""
        seconds = 0.0
        if key in by_key:
            shares, result, _ = by_key[key]
        else:
            t0 = time.perf_counter()
            try:
                result = compile_reusing(
                    layer.kernel,
                    target,
                    cost,
                    schedule,
                    limits,
                    candidates,
                    extract,
                    disabled_rules,
                    allow_unchecked_rules,
                    quantize,
                    calib,
                    1,
                    extractions,
                )
            except IsamapError as err:
                raise IsamapError(
                    f"{model.source}: layer {layer.name} ({layer.op}): {err}"
                ) from None
            seconds = time.perf_counter() - t0
            by_key[key] = (layer.name, result, seconds)
            stages.update(result.report.stage_seconds)
        compiled.append(result)
        rep = result.report
        rows.append(
            LayerReport(
                name=layer.name,
                op=layer.op,
                nodes=layer.nodes,
                kernel=key,
                macs=kernel_macs(layer.kernel),
                cycles=rep.cycles,
                roofline_cycles=rep.roofline_cycles,
                baseline_cycles=rep.baseline_cycles,
                mapping=_mapping_summary(result),
                instruction_counts=dict(rep.instruction_counts),
                bytes=dict(rep.bytes),
                energy_pj=rep.energy_pj,
                compile_seconds=seconds,
                shares=shares,
            )
        )
    report = _totals(fused, target, schedule, rows)
    report.stage_seconds = dict(stages)
    report.compile_seconds = time.perf_counter() - started
    report.kernels = len(by_key)
    return ModelResult(fused, target, compiled, report)


def _digest(values: MappingABC[str, np.ndarray]) -> str:
    h = hashlib.sha1()
    for name in sorted(values):
        h.update(name.encode())
        h.update(np.ascontiguousarray(values[name], dtype=np.float64).tobytes())
    return h.hexdigest()[:12]


def _totals(model: Model, target: Target, schedule: str, rows: list[LayerReport]) -> ModelReport:
    report = ModelReport(model.name, target.name, schedule, target.baseline_schedule, rows)
    moved: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for r in rows:
        report.cycles += r.cycles
        report.roofline_cycles += r.roofline_cycles
        report.baseline_cycles += r.baseline_cycles
        report.macs += r.macs
        report.energy_pj += r.energy_pj
        moved.update(r.bytes)
        counts.update(r.instruction_counts)
    report.bytes = dict(moved)
    report.instruction_counts = dict(sorted(counts.items()))
    return report
