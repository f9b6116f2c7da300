"""`isamap bench cpu-gemm | cpu-gru | cpu-mobilenet`: native code on the host CPU against libraries.

Each case compiles a kernel for a CPU target (`host` by default), runs the native program and the
anchor (numpy's BLAS for GEMMs, onnxruntime for the GRU layer and the depthwise-separable
blocks) interleaved in this one process, single-threaded (threadpoolctl pins the BLAS, ORT gets
one intra-op thread), and reports medians, GFLOP/s and the ratio anchor time / isamap time. The
outputs are compared with the anchor's before any timing. The load average is recorded before
and after; the report says which BLAS kernel numpy used.

The optional dependencies (threadpoolctl, onnx, onnxruntime) are in the `bench` extra.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import isamap
from isamap.bench.suites import _rows, gru_projection_text, gru_step_text
from isamap.codegen import CSource, emit_c, load_native
from isamap.codegen.families import family
from isamap.codegen.native import NativeProgram
from isamap.codegen.network import NativeNetwork
from isamap.codegen.toolchain import precompile_prelude
from isamap.hardware.host_cpu import cpu_features
from isamap.ir.builders import dw_separable
from isamap.ir.errors import IsamapError

__all__ = [
    "CPU_SUITES",
    "CaseResult",
    "CpuRun",
    "readme_section",
    "run_cpu_suite",
    "write_cpu_report",
]

Fn = Callable[[], object]

#: The three GEMMs the issue names, then ten more spread over DeepBench's N,N rows of at most
#: MAX_GEMM_FLOPS (a second or two each on one core).
NAMED_GEMMS = ((1760, 128, 1760), (2560, 64, 2560), (35, 8457, 2560))
EXTRA_GEMMS = 10
MAX_GEMM_FLOPS = 4 * 10**9


@dataclass
class Case:
    """One benchmark row: how to build both sides (compiling happens in `setup`)."""

    name: str
    flops: int
    setup: Callable[[str], tuple[Fn, Fn, Callable[[], float], dict[str, float]]]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class CaseResult:
    name: str
    flops: int
    isamap_ms: float
    anchor_ms: float
    ratio: float  # anchor time / isamap time: > 1 means isamap is faster
    isamap_gflops: float
    anchor_gflops: float
    max_rel_error: float
    samples: int
    compile: dict[str, float]
    info: dict[str, Any]


@dataclass
class CpuRun:
    suite: str
    target: str
    anchor: str
    command: str
    cases: list[CaseResult]
    environment: dict[str, Any]

    @property
    def geomean_ratio(self) -> float:
        return math.exp(statistics.fmean(math.log(c.ratio) for c in self.cases))

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "target": self.target,
            "anchor": self.anchor,
            "command": self.command,
            "geomean_ratio": self.geomean_ratio,
            "environment": self.environment,
            "cases": [asdict(c) for c in self.cases],
        }


def _need(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise IsamapError(
            f"the CPU benchmarks need {module}: pip install 'isamap[bench]'"
        ) from None


def _native(
    kernel: isamap.Kernel, target: str, constants: tuple[str, ...] = ()
) -> tuple[NativeProgram, dict[str, float]]:
    """Compile `kernel` for `target` (`constants`: the weights, packed once when bound, as
    onnxruntime's initializers are); build its C in an empty cache (the cold compile time),
    then load it again (the cached time)."""
    t0 = time.perf_counter()
    result = isamap.compile(kernel, target)
    pipeline = time.perf_counter() - t0
    t0 = time.perf_counter()
    source = emit_c(result.program, result.mapping, kernel, result.target, constants=constants)
    emit = time.perf_counter() - t0
    saved = os.environ.get("ISAMAP_CACHE_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ISAMAP_CACHE_DIR"] = tmp
        try:  # the prelude first: compiled once per compiler and options, not per kernel
            prelude = precompile_prelude(family(source.family).prelude, source.flags,
                                         source.threads > 1)  # fmt: skip
            cold = load_native(source, result.target)
            warm = load_native(source, result.target)
        finally:
            if saved is None:
                os.environ.pop("ISAMAP_CACHE_DIR", None)
            else:
                os.environ["ISAMAP_CACHE_DIR"] = saved
    assert warm.built.cached
    times = {
        "pipeline_s": pipeline,
        "emit_s": emit,
        "cc_s": cold.built.seconds,
        "cc_cpu_s": cold.built.cpu_seconds,
        "prelude_s": prelude,
        "cached_load_s": warm.built.seconds,
    }
    return cold, times


def _rel_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))


# --- GEMM vs numpy's BLAS --------------------------------------------------------------------


def _gemm_shapes() -> list[tuple[int, int, int]]:
    rows = [
        r
        for r in _rows("deepbench", "gemm.csv")
        if (r["a_transpose"], r["b_transpose"]) == ("N", "N")
    ]
    shapes = list(dict.fromkeys((int(r["M"]), int(r["N"]), int(r["K"])) for r in rows))
    others = [s for s in shapes if s not in NAMED_GEMMS and 2 * math.prod(s) <= MAX_GEMM_FLOPS]
    step = max(1, len(others) // EXTRA_GEMMS)
    return [*NAMED_GEMMS, *others[::step][:EXTRA_GEMMS]]


def _gemm_case(m: int, n: int, k: int) -> Case:
    def setup(target: str) -> tuple[Fn, Fn, Callable[[], float], dict[str, float]]:
        text = f"tensor A[{m}, {k}] f32\ntensor B[{k}, {n}] f32\nC[i, j] += A[i, k] * B[k, j]\n"
        native, times = _native(isamap.parse_kernel(text, f"gemm{m}x{n}x{k}"), target)
        rng = np.random.default_rng(0)
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        ours = np.empty((m, n), np.float32)
        theirs = np.empty((m, n), np.float32)
        assert [name for name, _ in native.source.outputs] == ["C"]

        run = native.bind([a, b], [ours])

        def check() -> float:
            run()
            np.matmul(a, b, out=theirs)
            return _rel_error(ours, theirs)

        return run, (lambda: np.matmul(a, b, out=theirs)), check, times

    return Case(f"gemm {m}x{n}x{k}", 2 * m * n * k, setup, {"M": m, "N": n, "K": k})


def cpu_gemm() -> list[Case]:
    return [_gemm_case(*s) for s in _gemm_shapes()]


# --- depthwise-separable blocks vs onnxruntime -----------------------------------------------

#: (channels, size, out channels, stride) of MobileNetV2 blocks (dw 3x3 + linear 1x1, batch 1).
BLOCKS = ((32, 112, 16, 1), (96, 112, 24, 2), (384, 14, 64, 1), (384, 14, 96, 1), (960, 7, 320, 1))


def _ort_session(model: Any) -> Any:
    ort = _need("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _ort_bound(session: Any, feed: dict[str, np.ndarray], name: str, out: np.ndarray) -> Fn:
    """`session` run on `feed` into the preallocated `out` through onnxruntime's I/O binding:
    the anchor's own call with its arrays bound once, as isamap's programs are timed through
    `bind` (no per-call argument conversion on either side)."""
    binding = session.io_binding()
    for key, value in feed.items():
        binding.bind_cpu_input(key, value)
    binding.bind_output(name, "cpu", 0, out.dtype, out.shape, out.ctypes.data)
    held = (out, dict(feed))  # onnxruntime keeps their addresses, not the arrays

    def run(_held: object = held) -> None:
        session.run_with_iobinding(binding)

    return run


def _block_case(c: int, size: int, k: int, stride: int) -> Case:
    out = (size + 2 - 3) // stride + 1
    flops = 2 * (c * out * out * 9 + k * c * out * out)

    def setup(target: str) -> tuple[Fn, Fn, Callable[[], float], dict[str, float]]:
        onnx = _need("onnx")
        from onnx import TensorProto, helper, numpy_helper

        kernel = dw_separable(1, c, size, size, k, stride=stride, padding=1)
        loaded, times = _native(kernel, target, ("F", "P"))
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, c, size, size), dtype=np.float32)
        f = rng.standard_normal((c, 3, 3), dtype=np.float32)
        p = rng.standard_normal((k, c), dtype=np.float32)
        graph = helper.make_graph(
            [
                helper.make_node(
                    "Conv", ["X", "F"], ["D"], group=c, pads=[1, 1, 1, 1], strides=[stride, stride]
                ),
                helper.make_node("Conv", ["D", "P"], ["Y"]),
            ],
            "dw_separable",
            [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, c, size, size])],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, k, out, out])],
            [
                numpy_helper.from_array(f.reshape(c, 1, 3, 3), "F"),
                numpy_helper.from_array(p.reshape(k, c, 1, 1), "P"),
            ],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.checker.check_model(model)
        session = _ort_session(model)
        native = loaded.prepare({"F": f, "P": p})
        arrays = {"X": x, "F": f, "P": p}
        ins = [arrays[name] for name in loaded.source.inputs]
        outs = [np.empty(shape, np.float32) for _, shape in loaded.source.outputs]
        y = [name for name, _ in loaded.source.outputs].index("Y")
        feed = {"X": x}

        run = native.bind(ins, outs)
        theirs = np.empty((1, k, out, out), np.float32)
        run_theirs = _ort_bound(session, feed, "Y", theirs)

        def check() -> float:
            run()
            run_theirs()
            return _rel_error(outs[y], theirs)

        return run, run_theirs, check, times

    name = f"dw3x3+pw {size}x{size}x{c} -> {k}" + (f" s{stride}" if stride > 1 else "")
    return Case(name, flops, setup, {"C": c, "H": size, "K": k, "stride": stride})


def cpu_mobilenet() -> list[Case]:
    return [_block_case(*b) for b in BLOCKS]


# --- a GRU layer vs onnxruntime --------------------------------------------------------------

GRUS = ((512, 32, 50),)  # hidden, batch, timesteps


def _gru_case(hidden: int, batch: int, steps: int) -> Case:
    flops = 2 * 2 * 3 * hidden * hidden * batch * steps

    def setup(target: str) -> tuple[Fn, Fn, Callable[[], float], dict[str, float]]:
        onnx = _need("onnx")
        from onnx import TensorProto, helper, numpy_helper

        rows = steps * batch
        proj, ptimes = _native(
            isamap.parse_kernel(gru_projection_text(rows, hidden), "gru_proj"), target
        )
        step_program, stimes = _native(
            isamap.parse_kernel(gru_step_text(batch, hidden), "gru_step"),
            target,
            ("Uz", "Ur", "Uh"),
        )
        times = {key: ptimes[key] + stimes[key] for key in ptimes}
        rng = np.random.default_rng(0)
        scale = 1.0 / math.sqrt(hidden)
        x = rng.standard_normal((rows, hidden), dtype=np.float32)
        h0 = rng.standard_normal((batch, hidden), dtype=np.float32)
        w = {g: (scale * rng.standard_normal((hidden, hidden))).astype(np.float32) for g in "zrh"}
        u = {g: (scale * rng.standard_normal((hidden, hidden))).astype(np.float32) for g in "zrh"}
        # isamap side: the projection once, then each step on its rows of the projections; the
        # recurrent weights are bound to the step once, so they are packed once for all steps
        step = step_program.prepare({f"U{g}": u[g] for g in "zrh"})
        p_names = [name for name, _ in proj.source.outputs]
        p_out = [np.empty(shape, np.float32) for _, shape in proj.source.outputs]
        p_in = [{"X": x, "Wz": w["z"], "Wr": w["r"], "Wh": w["h"]}[n] for n in proj.source.inputs]
        s_names = [name for name, _ in step_program.source.outputs]
        s_out = [np.empty(shape, np.float32) for _, shape in step_program.source.outputs]
        hn = s_names.index("Hn")
        states = [h0.copy(), np.empty_like(h0)]

        pz, pr, ph = (p_out[p_names.index(f"P{g}")] for g in "zrh")
        # each step on its own rows of the projections and its pair of state buffers: the
        # calls are bound once (their pointers built at setup), as onnxruntime's step loop is
        # compiled code
        steps_bound = []
        for t in range(steps):
            rows_t = slice(t * batch, (t + 1) * batch)
            arrays = {
                "H": states[t % 2],
                "Uz": u["z"],
                "Ur": u["r"],
                "Uh": u["h"],
                "Pz": pz[rows_t],
                "Pr": pr[rows_t],
                "Ph": ph[rows_t],
            }
            outs_t = list(s_out)
            outs_t[hn] = states[(t + 1) % 2]
            steps_bound.append(step.bind([arrays[n] for n in step_program.source.inputs], outs_t))
        project = proj.bind(p_in, p_out)

        def ours() -> np.ndarray:
            project()
            states[0][...] = h0
            for run_step in steps_bound:
                run_step()
            return states[steps % 2]

        # ONNX GRU: gates z, r, h; W[1, 3H, I] and R[1, 3H, H] hold the transposes
        big_w = np.concatenate([w[g].T for g in "zrh"])[None]
        big_r = np.concatenate([u[g].T for g in "zrh"])[None]
        graph = helper.make_graph(
            [
                helper.make_node(
                    "GRU",
                    ["X", "W", "R", "", "", "H0"],
                    ["", "Yh"],
                    hidden_size=hidden,
                    linear_before_reset=1,
                )
            ],
            "gru",
            [helper.make_tensor_value_info("X", TensorProto.FLOAT, [steps, batch, hidden])],
            [helper.make_tensor_value_info("Yh", TensorProto.FLOAT, [1, batch, hidden])],
            [
                numpy_helper.from_array(big_w, "W"),
                numpy_helper.from_array(big_r, "R"),
                numpy_helper.from_array(h0[None], "H0"),
            ],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.checker.check_model(model)
        session = _ort_session(model)
        feed = {"X": x.reshape(steps, batch, hidden)}

        theirs = np.empty((1, batch, hidden), np.float32)
        run_theirs = _ort_bound(session, feed, "Yh", theirs)

        def check() -> float:
            ours_h = ours()
            run_theirs()
            return _rel_error(ours_h, theirs[0])

        def run_ours() -> None:
            ours()

        return run_ours, run_theirs, check, times

    return Case(
        f"gru h{hidden} b{batch} t{steps}",
        flops,
        setup,
        {"hidden": hidden, "batch": batch, "timesteps": steps},
    )


def cpu_gru() -> list[Case]:
    return [_gru_case(*g) for g in GRUS]


# --- the whole MobileNetV2 vs onnxruntime (issue 12) -----------------------------------------


def _network_case(resolution: int) -> Case:
    from isamap.frontend import model_from_proto, models

    proto = models.mobilenet_v2(resolution)
    model = model_from_proto(proto, f"<mobilenet_v2 {resolution}>")

    def setup(target: str) -> tuple[Fn, Fn, Callable[[], float], dict[str, float]]:
        t0 = time.perf_counter()
        result = isamap.compile(model, target)
        pipeline = time.perf_counter() - t0
        times = {
            "pipeline_s": pipeline,
            "emit_s": 0.0,
            "cc_s": 0.0,
            "cc_cpu_s": 0.0,
            "cached_load_s": 0.0,
        }
        net = native_network(result, times)
        session = _ort_session(proto)
        feed = {k: v.astype(np.float32) for k, v in model.random_inputs(seed=0).items()}
        (out,) = model.outputs

        def check() -> float:
            return _rel_error(net.run(feed)[out], session.run([out], feed)[0])

        return (lambda: net.run(feed)), (lambda: session.run([out], feed)), check, times

    return Case(
        f"mobilenet_v2 {resolution}x{resolution} (whole network)",
        2 * model.macs(),
        setup,
        {"resolution": resolution, "macs": model.macs(), "layers": len(model.layers())},
    )


def native_network(result: Any, times: dict[str, float] | None = None) -> NativeNetwork:
    """A compiled model (`isamap.compile(model, cpu_target)`) ready to run natively, as
    `ModelResult.run` runs it (`ModelResult.native`), its C built in an empty cache: `times`
    accumulates the emission, compiler and cached-load times."""
    times = {} if times is None else times
    for field_name in ("emit_s", "cc_s", "cc_cpu_s", "cached_load_s"):
        times.setdefault(field_name, 0.0)

    def load(source: CSource, target: Any) -> NativeProgram:
        cold = load_native(source, target)
        times["cc_s"] += cold.built.seconds
        times["cc_cpu_s"] += cold.built.cpu_seconds
        times["cached_load_s"] += load_native(source, target).built.seconds
        return cold

    saved = os.environ.get("ISAMAP_CACHE_DIR")
    with tempfile.TemporaryDirectory() as tmp:  # every layer's C built in an empty cache
        os.environ["ISAMAP_CACHE_DIR"] = tmp
        try:
            t0 = time.perf_counter()
            before = times["cc_s"] + times["cached_load_s"]
            programs = result.native_programs(load)
            loading = times["cc_s"] + times["cached_load_s"] - before
            times["emit_s"] += time.perf_counter() - t0 - loading
        finally:
            if saved is None:
                os.environ.pop("ISAMAP_CACHE_DIR", None)
            else:
                os.environ["ISAMAP_CACHE_DIR"] = saved
    return NativeNetwork(result.model, programs)


def cpu_network() -> list[Case]:
    return [_network_case(224)]


#: The ratio each suite aims at (issue 11): geomean over its rows (the whole network: a figure
#: issue 12 asks for, without a goal).
GOALS = {"cpu-gemm": 1.0, "cpu-gru": 1.0, "cpu-mobilenet": 1.2, "cpu-mobilenet-v2": 0.0}

CPU_SUITES: dict[str, tuple[str, Callable[[], list[Case]]]] = {
    "cpu-gemm": ("numpy BLAS", cpu_gemm),
    "cpu-gru": ("onnxruntime", cpu_gru),
    "cpu-mobilenet": ("onnxruntime", cpu_mobilenet),
    "cpu-mobilenet-v2": ("onnxruntime", cpu_network),
}


# --- running ---------------------------------------------------------------------------------


def _sample(fn: Fn, inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def _environment(threadpoolctl: Any) -> dict[str, Any]:
    blas = [
        {k: info.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
        for info in threadpoolctl.threadpool_info()
        if info.get("user_api") == "blas"
    ]
    env = {
        k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "CC") if k in os.environ
    }
    versions = {"numpy": np.__version__}
    with contextlib.suppress(ImportError):
        versions["onnxruntime"] = str(importlib.import_module("onnxruntime").__version__)
    features = sorted(f for f in cpu_features() if f.startswith(("avx", "fma")))
    return {
        "machine": platform.machine(),
        "cpu_features": features,
        "cpus": os.cpu_count(),
        "blas": blas,
        "environment_variables": env,
        "versions": versions,
    }


@dataclass
class _Timed:
    """A case set up and checked, with the samples of both sides taken so far."""

    case: Case
    ours: Fn
    theirs: Fn
    inner: int  # calls per sample
    error: float
    times: dict[str, float]
    mine: list[float] = field(default_factory=list)
    anchor_times: list[float] = field(default_factory=list)


def run_cpu_suite(
    suite: str,
    target: str = "host",
    repeats: int = 11,
    limit: int | None = None,
    command: str = "",
    progress: Callable[[str], None] | None = None,
) -> CpuRun:
    """Run one CPU suite: every case compiled and checked against its anchor, then timed
    interleaved: `repeats` rounds, each taking one sample of isamap and one of the anchor (in
    alternating order) of every case in turn, so a burst of another job's work lands on one
    round of several cases rather than on every sample of one; medians per case."""
    if suite not in CPU_SUITES:
        raise IsamapError(f"unknown CPU suite '{suite}' (known: {', '.join(CPU_SUITES)})")
    threadpoolctl = _need("threadpoolctl")
    anchor, cases_of = CPU_SUITES[suite]
    cases = cases_of()[:limit] if limit is not None else cases_of()
    loaded = isamap.load_target(target)
    if loaded.codegen is None:
        raise IsamapError(f"the CPU suites need a CPU target, not '{loaded.name}'")
    load_before = os.getloadavg()
    with threadpoolctl.threadpool_limits(limits=1):
        environment = _environment(threadpoolctl)
        timed = []
        for case in cases:
            if progress is not None:
                progress(case.name)
            ours, theirs, check, times = case.setup(target)
            error = check()
            if not error < 1e-3:
                raise IsamapError(
                    f"{case.name}: isamap's output differs from {anchor}'s ({error:.2e})"
                )
            ours()
            theirs()
            once = max(min(_sample(ours, 1), _sample(theirs, 1)), 1e-6)
            inner = max(1, int(0.05 / once))  # samples of about 50 ms
            timed.append(_Timed(case, ours, theirs, inner, error, times))
        for r in range(repeats):
            for t in timed:
                pair = [(t.mine, t.ours), (t.anchor_times, t.theirs)]
                for bucket, fn in pair if r % 2 == 0 else pair[::-1]:
                    bucket.append(_sample(fn, t.inner))
        results = []
        for t in timed:
            a, b = statistics.median(t.mine), statistics.median(t.anchor_times)
            results.append(
                CaseResult(
                    name=t.case.name,
                    flops=t.case.flops,
                    isamap_ms=1e3 * a,
                    anchor_ms=1e3 * b,
                    ratio=b / a,
                    isamap_gflops=t.case.flops / a / 1e9,
                    anchor_gflops=t.case.flops / b / 1e9,
                    max_rel_error=t.error,
                    samples=repeats,
                    compile=t.times,
                    info=t.case.info,
                )
            )
    environment["load_average_before"] = load_before
    environment["load_average_after"] = os.getloadavg()
    environment["threads"] = 1
    return CpuRun(suite, loaded.name, anchor, command, results, environment)


def _prelude_seconds(run: CpuRun) -> float:
    """The longest precompile of the prelude among the run's cases (one per kernel built in
    an empty cache; 0 for a report saved before the prelude was precompiled)."""
    return max((c.compile.get("prelude_s", 0.0) for c in run.cases), default=0.0)


def write_cpu_report(run: CpuRun, out: Path) -> None:
    """report.json, report.md and ratios.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(run.to_dict(), indent=1) + "\n")
    env = run.environment
    samples = run.cases[0].samples if run.cases else 0
    blas = ", ".join(
        f"{b['internal_api']} {b['version']} ({b['architecture']})" for b in env["blas"]
    )
    lines = [
        f"# {run.suite} on {run.target}: isamap native code vs {run.anchor}",
        "",
        f"Command: `{run.command}`. Single thread; isamap and the anchor interleaved in one "
        f"process, {samples} samples each of about 50 ms taken in rounds over the suite's "
        "cases, medians. "
        "Ratio = anchor time / isamap time (above 1: isamap is faster).",
        "",
        f"CPU features: {', '.join(env['cpu_features']) or 'none'}; {env['cpus']} CPUs; "
        f"BLAS: {blas or 'none found'}; versions: "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + f"; load average before {env['load_average_before'][0]:.2f}, after "
        f"{env['load_average_after'][0]:.2f}.",
        "",
        "Compile columns: the pipeline (saturation, extraction, scheduling); C emission plus "
        "the C compiler in an empty cache but for the family's precompiled prelude (built once "
        "per compiler and options, before the first kernel: "
        f"{_prelude_seconds(run):.2f} s here), wall seconds (a loaded machine stretches them) "
        "with the compiler's own CPU seconds in brackets; loading the cached object, ms.",
        "",
        f"**Geomean ratio: {run.geomean_ratio:.3f}x**",
        "",
        "| case | isamap ms | isamap GFLOP/s | anchor ms | anchor GFLOP/s | ratio | max rel. error "
        "| pipeline s | C emit + compile s (compiler CPU s) | cached load ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in run.cases:
        t = c.compile
        cc, cached = t["emit_s"] + t["cc_s"], 1e3 * t["cached_load_s"]
        lines.append(
            f"| {c.name} | {c.isamap_ms:.3f} | {c.isamap_gflops:.1f} | {c.anchor_ms:.3f} | "
            f"{c.anchor_gflops:.1f} | {c.ratio:.3f} | {c.max_rel_error:.1e} | "
            f"{t['pipeline_s']:.2f} | {cc:.2f} ({t.get('cc_cpu_s', 0.0):.2f}) | {cached:.2f} |"
        )
    (out / "report.md").write_text("\n".join(lines) + "\n")
    _plot(run, out / "ratios.png")


def _plot(run: CpuRun, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.45 * len(run.cases) + 1.5))
    names = [c.name for c in run.cases]
    ratios = [c.ratio for c in run.cases]
    ax.barh(names, ratios, color=["tab:green" if r >= 1 else "tab:orange" for r in ratios])
    ax.axvline(1.0, color="black", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel(f"speed vs {run.anchor} (anchor time / isamap time), single thread")
    ax.set_title(f"{run.suite} on {run.target}: geomean {run.geomean_ratio:.2f}x")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def readme_section(reports: list[dict[str, Any]]) -> str:
    """The README's CPU results (markdown) from saved report.json documents."""
    if not reports:
        return "No CPU benchmark report saved yet (run benchmarks/cpu_bench.py).\n"
    env = reports[0]["environment"]
    lines = [
        f"Single thread on this machine ({', '.join(env['cpu_features'])}; target "
        f"{reports[0]['target']}), isamap's native code and the library interleaved in one "
        "process (in rounds over each suite's cases), medians; ratio = library time / isamap "
        "time. Generated by "
        "`benchmarks/cpu_bench.py` from `benchmarks/reports/cpu-*/report.json`; the load "
        "average (1 minute, before the run) says how busy the shared machine was.",
        "",
        "| suite | anchor | rows | geomean ratio | goal | best | worst | load average |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        ratios = [c["ratio"] for c in r["cases"]]
        load = r["environment"]["load_average_before"][0]
        lines.append(
            f"| [{r['suite']}](benchmarks/reports/{r['suite']}/report.md) | {r['anchor']} | "
            f"{len(ratios)} | **{r['geomean_ratio']:.2f}x** | "
            f"{f'{goal:.1f}x' if (goal := GOALS.get(r['suite'], 1.0)) else '-'} | "
            f"{max(ratios):.2f}x | "
            f"{min(ratios):.2f}x | {load:.1f} |"
        )
    lines.append("")
    for r in reports:
        lines.append(f"![{r['suite']}](benchmarks/reports/{r['suite']}/ratios.png)")
    return "\n".join(lines) + "\n"
