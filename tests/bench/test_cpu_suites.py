"""The CPU suites' contents and reports (timing itself is benchmarks/, not a unit test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isamap.bench.cpu_suites import (
    CPU_SUITES,
    MAX_GEMM_FLOPS,
    NAMED_GEMMS,
    CaseResult,
    CpuRun,
    cpu_gemm,
    cpu_gru,
    cpu_mobilenet,
    readme_section,
    run_cpu_suite,
    write_cpu_report,
)
from isamap.ir.errors import IsamapError


def test_the_suites_hold_the_issue_shapes() -> None:
    gemms = cpu_gemm()
    assert len(gemms) == 13
    assert [c.name for c in gemms[:3]] == [f"gemm {m}x{n}x{k}" for m, n, k in NAMED_GEMMS]
    assert all(c.flops <= MAX_GEMM_FLOPS for c in gemms[3:])
    assert len({c.name for c in gemms}) == 13
    blocks = [c.name for c in cpu_mobilenet()]
    assert "dw3x3+pw 112x112x32 -> 16" in blocks and "dw3x3+pw 14x14x384 -> 64" in blocks
    (gru,) = cpu_gru()
    assert gru.info == {"hidden": 512, "batch": 32, "timesteps": 50}
    assert set(CPU_SUITES) == {"cpu-gemm", "cpu-gru", "cpu-mobilenet", "cpu-mobilenet-v2"}


def test_an_unknown_suite_is_an_error() -> None:
    with pytest.raises(IsamapError, match="unknown CPU suite"):
        run_cpu_suite("cpu-nope")


def _run() -> CpuRun:
    case = CaseResult(
        name="gemm 8x8x8",
        flops=1024,
        isamap_ms=1.0,
        anchor_ms=2.0,
        ratio=2.0,
        isamap_gflops=1.0,
        anchor_gflops=0.5,
        max_rel_error=1e-7,
        samples=3,
        compile={"pipeline_s": 1.0, "emit_s": 0.01, "cc_s": 0.4, "cached_load_s": 0.0003},
        info={},
    )
    env = {
        "cpu_features": ["avx2", "fma"],
        "cpus": 2,
        "blas": [{"internal_api": "openblas", "version": "0.3", "architecture": "Haswell"}],
        "versions": {"numpy": "2"},
        "load_average_before": (1.0, 1.0, 1.0),
        "load_average_after": (1.5, 1.0, 1.0),
    }
    return CpuRun("cpu-gemm", "host-avx2", "numpy BLAS", "cmd", [case, case], env)


def test_reports_and_the_readme_section(tmp_path: Path) -> None:
    run = _run()
    assert run.geomean_ratio == pytest.approx(2.0)
    write_cpu_report(run, tmp_path)
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["geomean_ratio"] == pytest.approx(2.0) and len(doc["cases"]) == 2
    assert "**Geomean ratio: 2.000x**" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "ratios.png").read_bytes()[:4] == b"\x89PNG"
    section = readme_section([doc])
    assert "| **2.00x** | 1.0x |" in section and "cpu-gemm/ratios.png" in section


def test_a_network_runs_natively_with_its_weights_bound() -> None:
    """The whole-network suite's runner on a small ONNX GRU (projection, steps, views):
    float32 native layers with bound weights match onnxruntime."""
    import numpy as np

    import isamap
    from isamap.bench.cpu_suites import _ort_session, native_network
    from isamap.frontend import model_from_proto, models

    proto = models.gru_model(steps=3, batch=2, input_size=8, hidden=8)
    model = model_from_proto(proto)
    result = isamap.compile(model, "host")
    times: dict[str, float] = {}
    net = native_network(result, times)
    assert times["cc_s"] > 0 and times["cached_load_s"] >= 0
    feed = {k: v.astype(np.float32) for k, v in model.random_inputs(seed=1).items()}
    want = _ort_session(proto).run(list(model.outputs), feed)
    got = net.run(feed)
    for name, value in zip(model.outputs, want, strict=True):
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


def test_the_timed_calls_compute_what_is_checked() -> None:
    """The block and GEMM cases time bound calls (isamap's `bind`, onnxruntime's I/O binding
    into a preallocated output): each timed call, run again, leaves outputs that the case's
    check finds equal to the anchor's."""
    from isamap.bench.cpu_suites import _block_case, _gemm_case

    for case in (_block_case(8, 10, 8, 2), _gemm_case(20, 9, 24)):
        ours, theirs, check, times = case.setup("host")
        assert times["cc_s"] > 0
        ours()
        theirs()
        assert check() < 1e-5


def test_the_anchors_bound_output_lives_as_long_as_its_call() -> None:
    """onnxruntime's I/O binding keeps the output's address, not the array: the bound call
    holds it, so the suite's rounds (which keep only the calls) never let onnxruntime write
    into freed memory."""
    import gc
    import weakref

    import numpy as np
    from onnx import TensorProto, helper

    from isamap.bench.cpu_suites import _ort_bound, _ort_session

    graph = helper.make_graph(
        [helper.make_node("Relu", ["X"], ["Y"])],
        "relu",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    out = np.empty(4, np.float32)
    x = np.array([-1.0, 2.0, -3.0, 4.0], np.float32)
    alive, alive_x = weakref.ref(out), weakref.ref(x)
    run = _ort_bound(_ort_session(model), {"X": x}, "Y", out)
    del out, x
    gc.collect()
    run()
    got = alive()
    assert got is not None and alive_x() is not None
    np.testing.assert_array_equal(got, [0.0, 2.0, 0.0, 4.0])
