"""Runs benchmark suites: compiles each distinct kernel once (in parallel worker processes when
asked), then composes the results into report rows and suite summaries."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from functools import cache

import isamap
from isamap.bench.onnx_suites import workloads as suite_workloads
from isamap.bench.results import (
    BenchRun,
    KernelResult,
    SuiteResult,
    WorkloadResult,
    summarise_suite,
)
from isamap.bench.suites import KernelSpec, Workload
from isamap.compile import kernel_macs
from isamap.schedule.registry import strategy

__all__ = ["ALL", "compile_kernel", "peak_macs_per_cycle", "run_bench"]

#: The suite name that runs every suite.
ALL = "all"

#: Called after each kernel with (kernels done, kernels in all, the kernel's key).
Progress = Callable[[int, int, str], None]


@cache
def _target(name: str) -> isamap.Target:
    """A target loaded once per process (each worker loads its own)."""
    return isamap.load_target(name)


def peak_macs_per_cycle(target: isamap.Target) -> float:
    """The compute roof: the largest MACs per cycle of any unit."""
    return max(u.macs_per_cycle for u in target.units.values())


def compile_kernel(spec: KernelSpec, target_name: str, schedule: str) -> KernelResult:
    """Build, compile, schedule and simulate one kernel; what its report row needs."""
    t0 = time.perf_counter()
    target = _target(target_name)
    result = isamap.compile(spec.build(target), target, cost="latency", schedule=schedule)
    seconds = time.perf_counter() - t0
    rep = result.report
    calls = result.mapping.instruction_calls()
    names: list[str] = []
    for c in calls:
        name = str(c.attrs["instruction"])
        if c.attrs.get("epilogue"):
            name += f"+{c.attrs['epilogue']}"
        if name not in names:
            names.append(name)
    host = result.mapping.host_ops()
    return KernelResult(
        key=spec.key,
        kernel=result.kernel.name,
        cycles=rep.cycles,
        baseline_cycles=rep.baseline_cycles,
        roofline_cycles=rep.roofline_cycles,
        macs=rep.macs,
        # the simulator files off-chip traffic under "dram" whatever the memory's name
        dram_bytes=rep.bytes.get("dram", rep.bytes.get(target.dram().name, 0.0)),
        energy_pj=rep.energy_pj,
        utilisation=dict(rep.utilisation),
        instruction_calls=[c.describe() for c in calls],
        instructions=names if not host else [*names, "host"],
        host_ops=[h.describe() for h in host],
        instruction_counts=dict(rep.instruction_counts),
        enodes=rep.egraph.enodes,
        eclasses=rep.egraph.eclasses,
        iterations=rep.egraph.iterations,
        stop_reason=rep.egraph.stop_reason,
        stage_seconds=dict(rep.stage_seconds),
        compile_seconds=seconds,
    )


def _distinct_specs(workloads: Sequence[Workload]) -> list[KernelSpec]:
    """Each kernel once, the most MACs first so the longest compiles start early."""
    specs = {p.spec.key: p.spec for w in workloads for p in w.parts}
    work = {key: kernel_macs(spec.build()) for key, spec in specs.items()}
    return sorted(specs.values(), key=lambda s: (-work[s.key], s.key))


def _compile_all(
    specs: list[KernelSpec], target: str, schedule: str, jobs: int, progress: Progress | None
) -> dict[str, KernelResult]:
    done: dict[str, KernelResult] = {}

    def record(result: KernelResult) -> None:
        done[result.key] = result
        if progress is not None:
            progress(len(done), len(specs), result.key)

    if jobs <= 1:
        for spec in specs:
            record(compile_kernel(spec, target, schedule))
        return done
    # spawn, not fork: a forked child would inherit egglog's native threads mid-flight
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures: list[Future[KernelResult]] = [
            pool.submit(compile_kernel, spec, target, schedule) for spec in specs
        ]
        for future in as_completed(futures):
            record(future.result())
    return done


def run_bench(
    suites: Sequence[str],
    target: str,
    schedule: str = "heuristic",
    jobs: int = 1,
    limit: int | None = None,
    progress: Progress | None = None,
    command: str = "",
) -> BenchRun:
    """Compile every kernel of the named suites (`all` for every suite) on `target`.

    Args:
        limit: only the first `limit` workloads of each suite.
        progress: called after each compiled kernel.
        command: the command line, recorded in the report to reproduce it.
    """
    t0 = time.perf_counter()
    loaded = _target(target)
    strategy(schedule)  # an unknown strategy fails now, not in every worker
    per_suite = {name: suite_workloads(name, limit) for name in suites}
    specs = _distinct_specs([w for ws in per_suite.values() for w in ws])
    kernels = _compile_all(specs, target, schedule, jobs, progress)
    kernels = {key: kernels[key] for key in sorted(kernels)}
    peak = peak_macs_per_cycle(loaded)
    results: dict[str, SuiteResult] = {}
    for name, workloads in per_suite.items():
        rows = [WorkloadResult.compose(w, kernels) for w in workloads]
        results[name] = SuiteResult(name, rows, summarise_suite(name, rows, kernels, peak))
    return BenchRun(
        target=loaded.name,
        schedule=schedule,
        baseline_schedule=loaded.baseline_schedule,
        peak_macs_per_cycle=peak,
        dram_bytes_per_cycle=loaded.dram().bandwidth_bytes_per_cycle,
        jobs=jobs,
        wall_seconds=time.perf_counter() - t0,
        command=command,
        suites=results,
        kernels=kernels,
    )
