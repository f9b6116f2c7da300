"""Whole networks from ONNX graphs (random weights, built with onnx.helper): MobileNetV2, a GRU
layer and a transformer encoder block import, compile on every shipped target and run; their
outputs match onnxruntime's within fp32 tolerance.

Running a network functionally on the simulated machine is slow (every instruction moves real
tiles), so the run checks use small sizes: MobileNetV2 at 16x16 (gemmini, quantized, and nnp; on
vecdsp, whose per-lane simulation of the convolutions takes a minute at 16x16, it is compiled but
not run), a GRU of hidden 16 over 6 steps, an encoder block of sequence 16 and width 32. The full
sizes of the GRU (hidden 512 over 50 steps on nnp) and the block (128 x 256 with 4 heads on
gemmini, quantized) are compiled and their reports checked; MobileNetV2's report is checked on
the 16x16 compile the run check uses (its MAC total at 224x224 on the 224 model). On gemmini,
which multiplies int8, the networks are quantized: every layer's integer program is checked bit
for bit against numpy and the outputs against onnxruntime within int8's error.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import isamap
from isamap.frontend import model_from_proto, models
from isamap.hardware.machine import run_program
from isamap.ir.reference import random_inputs
from isamap.model_report import write_model_report
from isamap.quantize import integer_only_target
from tests.frontend.onnx_helpers import ort_outputs, random_feed
from tests.typed import check_outputs

TARGETS = ["gemmini", "nnp", "vecdsp"]
#: fp32 against float64: onnxruntime computes in float32, isamap's simulation in float64
TOL = 1e-4


#: int8 per-tensor quantization through a network, against onnxruntime's fp32 (relative L2):
#: a few layers (a GRU) stay within 10%; MobileNetV2's 52 layers of random weights lose about 19%
#: (a broken layer gives 100% or more)
INT8_TOL = 0.1
#: quantized layers whose integer programs are checked bit for bit (each a machine run)
EXACT_LAYERS = 4
#: one mapping simulated per kernel: these tests check whole networks, not the choice among
#: close candidates (tests/extract/test_exact.py does), and it halves their compile time
CANDIDATES = 1


@cache
def _mobilenet_v2_16_on_nnp() -> tuple[Any, isamap.ModelResult]:
    """MobileNetV2 at 16x16 and its compile on nnp (the float model as declared), made once:
    the run check and the report check read the same compile (it is most of their time)."""
    proto = models.mobilenet_v2(16)
    return proto, isamap.compile(model_from_proto(proto), "nnp", candidates=CANDIDATES)


def _run_matches_onnxruntime(
    proto: Any,
    target: str,
    int8_tol: float = INT8_TOL,
    compiled: isamap.ModelResult | None = None,
) -> isamap.ModelResult:
    """The network's outputs against onnxruntime's: within fp32 tolerance on a float target; on
    an integer-only one (gemmini) quantized, the first EXACT_LAYERS layers' integer programs bit
    for bit against numpy on their integer kernels, and the network within `int8_tol` of
    onnxruntime. `compiled`: the float target's compile of `proto`, if made already."""
    model = model_from_proto(proto)
    feed = random_feed(model)
    integer = integer_only_target(isamap.load_target(target))
    if integer:
        result = isamap.compile(
            model, target, quantize=True, calibration=feed, candidates=CANDIDATES
        )
        quantized = [c for c in {id(c): c for c in result.compiled}.values() if c.quantization]
        for layer in quantized[:EXACT_LAYERS]:
            q = layer.quantization
            assert q is not None
            ints = q.quantize_inputs(random_inputs(q.source, seed=2))
            machine = run_program(layer.program, layer.mapping, q.kernel, layer.target, ints)
            check_outputs(machine, q.kernel, ints)  # bit for bit where integer
    elif compiled is not None:
        assert compiled.target.name == target
        result = compiled
    else:
        result = isamap.compile(model, target, candidates=CANDIDATES)
    got = result.run(feed)
    want = ort_outputs(proto, feed)
    assert set(got) == set(want) == set(model.outputs)
    for name, value in want.items():
        if integer:
            error = np.linalg.norm(got[name] - value) / np.linalg.norm(value)
            assert error < int8_tol, (name, error)
            continue
        scale = max(1.0, float(np.abs(value).max()))
        np.testing.assert_allclose(got[name], value, rtol=TOL, atol=TOL * scale, err_msg=name)
    assert result.report.macs == model.macs()
    return result


def test_mobilenet_v2_report_and_the_224_models_macs(tmp_path: Path) -> None:
    """The network's report: every layer, repeated blocks compiled once, the tables written.

    Checked on the 16x16 compile that test_mobilenet_v2_runs_like_onnxruntime runs (on nnp,
    which runs the float model as declared, so repeated blocks are one kernel; on gemmini it is
    quantized, each layer with its own scales). What is asserted does not depend on the
    resolution: the 16x16 network has the same 37 fused layers of the same kinds (stem, expand,
    depthwise at strides 1 and 2, project, residual add, head, pool, FC), and the same repeated
    blocks; the report's MACs are the model's at 16x16, and the model's at 224x224 are the
    published table's total. A 224x224 compile took 40 s of the suite for no other check; the
    timing model's long tile loops are tested in tests/hardware/test_timing.py, and every
    224x224 layer is compiled by `isamap bench mobilenet-v2` (one workload per table row)."""
    assert model_from_proto(models.mobilenet_v2(224)).macs() == 300_836_992  # the CSV's total
    proto, result = _mobilenet_v2_16_on_nnp()
    model = model_from_proto(proto)
    report = result.report
    assert report.macs == model.macs()
    assert len(report.layers) == 37 and report.kernels < 37  # repeated blocks compile once
    for row in report.layers:
        assert row.cycles >= row.roofline_cycles > 0, row.name
        assert row.mapping
    assert "matmul" in report.instruction_counts
    assert report.cycles == pytest.approx(sum(r.cycles for r in report.layers))
    assert set(report.stage_seconds) >= {"saturate", "extract"}
    written = write_model_report(result, tmp_path, "test")
    assert all(p.stat().st_size > 0 for p in written)
    assert "| Conv | Conv+BatchNormalization+Clip |" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(("target", "resolution"), [("gemmini", 16), ("nnp", 16)])
def test_mobilenet_v2_runs_like_onnxruntime(target: str, resolution: int) -> None:
    if target == "nnp" and resolution == 16:  # the compile test_mobilenet_v2_report... reads
        proto, compiled = _mobilenet_v2_16_on_nnp()
        result = _run_matches_onnxruntime(proto, target, compiled=compiled)
    else:
        result = _run_matches_onnxruntime(models.mobilenet_v2(resolution), target, int8_tol=0.3)
    assert any(r.mapping != "host" for r in result.report.layers)
    # every convolution's bias is moved into the accumulator, not added on the host
    bias_move = {"gemmini": "mvin_bias", "nnp": "load_bias"}[target]
    assert result.report.instruction_counts.get(bias_move, 0) > 0


def test_mobilenet_v2_compiles_for_vecdsp() -> None:
    model = model_from_proto(models.mobilenet_v2(16))
    result = isamap.compile(model, "vecdsp", candidates=CANDIDATES)
    assert result.report.macs == model.macs()
    assert result.report.cycles >= result.report.roofline_cycles


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("lbr", [0, 1])
def test_gru_runs_like_onnxruntime(target: str, lbr: int) -> None:
    proto = models.gru_model(
        steps=6, batch=2, input_size=24, hidden=16, linear_before_reset=lbr, initial_h=lbr == 1
    )
    result = _run_matches_onnxruntime(proto, target)
    # the projection, and one step kernel for all 6 steps; quantized (gemmini), each step has
    # the scales of its own values, so each is a kernel of its own
    assert result.report.kernels == (1 + 6 if target == "gemmini" else 2)


def test_gru_h512_50_steps_fuses_the_gate_gemms() -> None:
    # on nnp, which runs the float model as declared: one step kernel for the 50 steps (on
    # gemmini each quantized step is a kernel of its own, 50 saturations sharing one extraction)
    model = model_from_proto(models.gru_model())
    result = isamap.compile(model, "nnp")
    assert result.report.macs == 2 * 3 * 512 * 512 * 50
    projection, step = result.compiled[0], result.compiled[1]
    # the step's gate GEMMs are fused: z and r always (one call, N = 1024); h joins them, or runs
    # as its own call onto its bias Bh (mvin_bias), whichever the cost model finds faster
    calls = step.mapping.instruction_calls()
    assert len(calls) <= 2
    assert sum(int(str(c.attrs["n"])) * int(str(c.attrs["m"])) for c in calls) == 3 * 512
    assert max(int(str(c.attrs["n"])) for c in calls) >= 2 * 512
    # the input projection's gate GEMMs may stay apart where the cost model finds that no
    # slower (50 rows: each call keeps the array as busy); every gate is on the array either way
    calls = projection.mapping.instruction_calls()
    sizes = [int(str(c.attrs["n"])) * int(str(c.attrs["m"])) for c in calls]
    assert sum(sizes) == 3 * 512 * 50


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_transformer_block_runs_like_onnxruntime(target: str, activation: str) -> None:
    _run_matches_onnxruntime(models.transformer_encoder(16, 32, 4, 64, activation), target)


def test_transformer_block_full_size_compiles() -> None:
    model = model_from_proto(models.transformer_encoder())
    result = isamap.compile(model, "gemmini", quantize=True)
    seq, width, heads, ffn = 128, 256, 4, 1024
    contractions = 4 * seq * width * width + 2 * seq * seq * width + 2 * seq * width * ffn
    sums = 2 * 2 * seq * width + heads * seq * seq  # LayerNorm mean and variance; softmax
    assert result.report.macs == model.macs() == contractions + sums
    softmax = next(r for r in result.report.layers if r.op == "Softmax")
    assert softmax.mapping == "host"  # exp and the max-reduction run on the host


def test_quantize_calibrates_each_layer_on_what_it_reads() -> None:
    from onnx import TensorProto, helper, numpy_helper

    from tests.frontend.onnx_helpers import model_of, out, rand

    nodes = [
        helper.make_node("MatMul", ["X", "W1"], ["h"], name="mm1"),
        helper.make_node("MatMul", ["h", "W2"], ["Y"], name="mm2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [16, 32])],
        [out("Y")],
        [numpy_helper.from_array(rand(32, 24), "W1"), numpy_helper.from_array(rand(24, 8), "W2")],
    )
    model = model_from_proto(model_of(graph, 13))
    feed = model.random_inputs(3)
    result = isamap.compile(model, "gemmini", quantize=True, calibration=feed)
    got, want = result.run(feed)["Y"], model.evaluate(feed)["Y"]
    assert 0 < np.abs(got - want).max() < 0.1 * np.abs(want).max()  # int8, not float64
    # a bias and a ReLU6 after the product compute in float on its dequantized values; each
    # layer's report states its scales and error
    conv = model_from_proto(models.mobilenet_v2(32)).layers()[0]  # Conv+BatchNormalization+Clip
    first = isamap.compile(conv.kernel, "gemmini", quantize=True).quantization
    assert first is not None and first.kernel.dtype("X") == "i8"
    assert 0 < first.relative_error < 0.05
