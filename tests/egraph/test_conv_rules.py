"""The derived direct-convolution rule (`einsum-window-to-<instruction>`) is sound and fires.

Like the computed rules (`test_computed_rules.py`): every e-node of every e-class is evaluated
with numpy on small convolutions and must agree, the InstrConv terms included.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import isamap
from isamap.egraph.computed_rules import COMPUTED_RULES
from isamap.egraph.saturate import saturate_with
from isamap.egraph.target_rules import conv_rules
from isamap.ir import builders
from isamap.soundness import check_eclasses

NVDLA = Path(__file__).resolve().parents[2] / "examples" / "isa" / "nvdla.toml"


@pytest.mark.parametrize(
    "kernel",
    [
        builders.conv2d(1, 3, 7, 6, 4, 3, 2, stride=2, padding="same"),
        builders.conv2d(2, 4, 8, 8, 4, 3, 3, dilation=2, groups=2),
        builders.depthwise(1, 4, 6, 6, 3, 3),  # packed by einsum-pack-channels, then matched
        isamap.parse_kernel(  # relu fused on the way out (the SDP store's epilogue)
            "tensor X[1, 3, 7, 7] f32\ntensor W[4, 3, 3, 3] f32\n"
            "O[n, k, h, w] += X[n, c, h + r, w + s] * W[k, c, r, s]\n"
            "Y[n, k, h, w] = relu(O[n, k, h, w])\n"
        ),
    ],
    ids=["strided-same", "dilated-grouped", "depthwise", "relu"],
)
def test_conv_rule_is_sound_and_fires(kernel: isamap.Kernel) -> None:
    target = isamap.load_target(str(NVDLA))
    rules = (*COMPUTED_RULES, *conv_rules(target))
    sat = saturate_with(kernel, target, [], computed_rules=rules)
    assert sat.report.matches_per_rule["einsum-window-to-conv"] > 0
    convs = [n for nodes in sat.dump.classes.values() for n in nodes if n.op == "InstrConv"]
    assert convs
    if "Y" in kernel.shapes:  # the fused reading is there too
        assert {n.str_arg(2) for n in convs} == {"", "relu"}
    found = check_eclasses(sat, seed=1)
    assert found is None, f"einsum-window-to-conv is unsound:\n{found}"


def test_unsupported_convolution_gets_no_direct_call() -> None:
    """Stride 9 is past NVDLA's CDMA (1..8): the product stays an Einsum and an im2col GEMM."""
    target = isamap.load_target(str(NVDLA))
    kernel = builders.conv2d(1, 2, 20, 20, 2, 3, 3, stride=9)
    sat = saturate_with(kernel, target, [], computed_rules=(*COMPUTED_RULES, *conv_rules(target)))
    ops = {n.op for nodes in sat.dump.classes.values() for n in nodes}
    assert "InstrConv" not in ops and "Bmm" in ops


@pytest.mark.parametrize(
    ("text", "bias_shape"),
    [
        (  # a per-output-channel bias, then relu: both onto the call (NVDLA's SDP)
            "tensor X[1, 3, 7, 7] f32\ntensor W[4, 3, 3, 3] f32\ntensor bias[4] f32\n"
            "O[n, k, h, w] += X[n, c, h + r, w + s] * W[k, c, r, s]\n"
            "Y[n, k, h, w] = relu(bias[k] + O[n, k, h, w])\n",
            (4,),
        ),
        (  # grouped: one bias row per group (the call's batch)
            "tensor X[1, 2, 3, 6, 6] f32\ntensor W[2, 4, 3, 3, 3] f32\ntensor bias[2, 4] f32\n"
            "O[n, g, k, h, w] += X[n, g, c, h + r, w + s] * W[g, k, c, r, s]\n"
            "Y[n, g, k, h, w] = relu(O[n, g, k, h, w] + bias[g, k])\n",
            (2, 4),
        ),
    ],
    ids=["bias-relu", "grouped-bias"],
)
def test_conv_bias_rule_is_sound_and_fires(text: str, bias_shape: tuple[int, ...]) -> None:
    target = isamap.load_target(str(NVDLA))
    kernel = isamap.parse_kernel(text)
    sat = saturate_with(kernel, target, [], computed_rules=(*COMPUTED_RULES, *conv_rules(target)))
    fused = [n for nodes in sat.dump.classes.values() for n in nodes if n.op == "InstrConvBias"]
    assert {n.str_arg(2) for n in fused} == {"", "relu"}
    assert {sat.dump.shapes[n.refs()[2]] for n in fused} == {bias_shape}
    found = check_eclasses(sat, seed=3)
    assert found is None, f"einsum-window-to-conv (bias) is unsound:\n{found}"


def test_a_bias_along_a_pixel_is_not_a_channel_bias() -> None:
    """`+ P[h]` varies along an output row, not a channel: no call accumulates onto it."""
    target = isamap.load_target(str(NVDLA))
    kernel = isamap.parse_kernel(
        "tensor X[1, 3, 7, 7] f32\ntensor W[4, 3, 3, 3] f32\ntensor P[5] f32\n"
        "O[n, k, h, w] += X[n, c, h + r, w + s] * W[k, c, r, s]\n"
        "Y[n, k, h, w] = O[n, k, h, w] + P[h]\n"
    )
    sat = saturate_with(kernel, target, [], computed_rules=(*COMPUTED_RULES, *conv_rules(target)))
    ops = {n.op for nodes in sat.dump.classes.values() for n in nodes}
    assert "InstrConv" in ops and "InstrConvBias" not in ops
