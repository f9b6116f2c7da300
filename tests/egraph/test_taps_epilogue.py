"""A tap accumulation read out through its store's epilogue (`InstrTapsEpi`, `InstrTapsBias`):
a quantized depthwise layer's bias, ReLU6 and int8 cast fused into its packed taps on gemmini
by the derived rules, bit exact against numpy on the functional and the call machine, costed as
the simulator times it; and the rules gemmini derives for it (a CPU target derives none)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import isamap
from isamap.egraph.target_rules import derive_rules
from isamap.egraph.vocabulary import IllShapedError, shape_of
from isamap.hardware.functional import run_mapping
from isamap.hardware.machine import trace_program
from isamap.ir.kernel import Affine
from isamap.ir.mapping import Mapping
from isamap.ir.taps import TapGeometry

#: MobileNet's depthwise layer as the quantizer writes it: int8 in, an int32 bias, ReLU6 and
#: the requantizing cast (127/6 in f32, so the int8 saturation is ReLU6's clip).
SCALE = 21.16666603088379
DW = (
    "tensor X[1, 32, {hw}, {hw}] i8 pad(0:0, 0:0, 1:1, 1:1)\ntensor F[32, 3, 3] i8\n"
    "tensor B[32] i32\ntensor Yq[1, 32, {hw}, {hw}] i8\n"
    "O[n, c, h, w] += X[n, c, h + r - 1, w + s - 1] * F[c, r, s]\n"
    "Y[n, c, h, w] = O[n, c, h, w] + B[c]\n"
    "Y2[n, c, h, w] = min(relu(Y[n, c, h, w]), 6)\n"
    f"Yq[n, c, h, w] = {SCALE} * Y2[n, c, h, w]\n"
)


@pytest.fixture(scope="module")
def gemmini() -> isamap.Target:
    return isamap.load_target("gemmini")


@pytest.fixture(scope="module")
def kernel() -> isamap.Kernel:
    return isamap.parse_kernel(DW.format(hw=16), name="dw_epilogue")


@pytest.fixture(scope="module")
def compiled(gemmini: isamap.Target, kernel: isamap.Kernel) -> isamap.CompileResult:
    return isamap.compile(kernel, gemmini)


@pytest.fixture(scope="module")
def inputs(kernel: isamap.Kernel) -> dict[str, np.ndarray]:
    """Small integers, so that the bias-added sums fall inside ReLU6's range as often as
    outside it: every part of the epilogue changes some output."""
    rng = np.random.default_rng(7)
    return {
        "X": rng.integers(-1, 2, kernel.shapes["X"]),
        "F": rng.integers(-1, 2, kernel.shapes["F"]),
        "B": rng.integers(-3, 4, kernel.shapes["B"]),
    }


def test_gemmini_derives_the_taps_epilogue_rules_a_cpu_target_none(
    gemmini: isamap.Target,
) -> None:
    names = {r.name for r in derive_rules(gemmini)}
    assert {
        "taps-bias-into-compute_preloaded-via-mvin_bias",
        "taps-batch-bias-into-compute_preloaded-via-mvin_bias",
        "fuse-relu-into-compute_preloaded-taps",
        "fuse-relu-into-compute_preloaded-taps-bias",
        "requant-relu6-instrtapsbias-compute_preloaded-via-mvout-i8",
        "requant-plain-instrtapsepi-compute_preloaded-via-mvout-i8",
    } <= names
    host = isamap.load_target("host")  # its C emitter writes no tap sums
    assert not [r.name for r in derive_rules(host) if "taps" in r.name]


def test_a_quantized_depthwise_layer_runs_as_taps_with_its_epilogue(
    compiled: isamap.CompileResult, kernel: isamap.Kernel, inputs: dict[str, np.ndarray]
) -> None:
    (call,) = compiled.mapping.instruction_calls()
    a = call.attrs
    assert a["taps"] == 9 and a["bias"] and a["narrow"] == "i8" and a["epilogue"] == "relu"
    assert float(str(a["scale"])) == SCALE
    assert not [n for n in compiled.mapping.nodes if n.unit == "host"]  # nothing left over
    want = isamap.evaluate(kernel, inputs)["Yq"]
    assert 0 < np.mean((want > 0) & (want < 127)) < 1  # inside the clip and outside it
    assert np.array_equal(run_mapping(compiled.mapping, kernel, compiled.target, inputs)["Yq"],
                          want)  # fmt: skip
    assert np.array_equal(compiled.run(inputs)["Yq"], want)  # the program, call by call
    run = trace_program(compiled.program, compiled.mapping, kernel, compiled.target, inputs)
    assert np.array_equal(run.outputs["Yq"], want)
    blocks = compiled.program.calls[0].call.blocks
    assert run.counts["mvin_bias"] == blocks[0] * blocks[1] * call.shape[0]  # a row per C tile


def test_without_its_epilogue_the_call_computes_something_else(
    compiled: isamap.CompileResult, kernel: isamap.Kernel, inputs: dict[str, np.ndarray]
) -> None:
    """The same mapping with the fused bias, scale and ReLU dropped from the tap call (each
    alone, then all) no longer computes the layer: the check above is not vacuous."""
    (call,) = compiled.mapping.instruction_calls()
    want = isamap.evaluate(kernel, inputs)["Yq"]
    for drop in (("bias",), ("narrow", "scale"), ("epilogue",), ("bias", "narrow", "epilogue")):
        attrs = {k: v for k, v in call.attrs.items() if k not in drop}
        args = call.args[:2] if "bias" in drop else call.args
        nodes = [replace(n, attrs=attrs, args=args) if n.id == call.id else n
                 for n in compiled.mapping.nodes]  # fmt: skip
        stripped = Mapping(compiled.mapping.kernel, compiled.mapping.target, "", 0.0, nodes,
                           dict(compiled.mapping.outputs))  # fmt: skip
        got = run_mapping(stripped, kernel, compiled.target, inputs)["Yq"]
        assert not np.array_equal(got, want), drop


def test_the_fused_taps_cost_what_they_simulate_and_beat_im2col(
    compiled: isamap.CompileResult, gemmini: isamap.Target, kernel: isamap.Kernel
) -> None:
    """The cost model charges the fused tap call what the simulator times (its bias rows and
    its int8 store included), and it is the cheaper of the two fused mappings here: im2col
    (`einsum-to-taps` off) reads every input pixel nine times."""
    (call,) = compiled.mapping.instruction_calls()
    assert call.cost == pytest.approx(compiled.sim.calls[call.id].cycles, rel=1e-9)
    im2col = isamap.compile(kernel, gemmini, disabled_rules=("einsum-to-taps",))
    (other,) = im2col.mapping.instruction_calls()
    assert not other.attrs.get("taps") and other.attrs["bias"] and other.attrs["narrow"] == "i8"
    assert compiled.sim.cycles < im2col.sim.cycles
    assert compiled.sim.bytes["dram"] < im2col.sim.bytes["dram"]


@pytest.mark.parametrize(
    ("lits", "why"),
    [
        (("relu", "", 2.0), "without a narrowing"),
        (("gelu6", "i8", 2.0), "no function"),
        (("", "f32", 2.0), "no integer type"),
        (("", "i8", 0.0), "not a positive number"),
    ],
)
def test_an_ill_formed_taps_epilogue_is_ill_shaped(lits: tuple[str, str, float], why: str) -> None:
    read = Affine((("p", 1), ("r", 1)), -1)
    geometry = TapGeometry("A", 2, (("p", 4),), (("r", 3),), (read,), (4,)).to_string()
    args = ("compute_preloaded", geometry, *lits, 3, 1, 4, 5, 2)
    with pytest.raises(IllShapedError, match=why):
        shape_of("InstrTapsEpi", args, [(1, 3, 4, 2), (1, 3, 2, 5)])
    good = ("compute_preloaded", geometry, "relu", "i8", 2.0, 3, 1, 4, 5, 2)
    assert shape_of("InstrTapsBias", good, [(1, 3, 4, 2), (1, 3, 2, 5), (5,)]) == (1, 4, 5)
