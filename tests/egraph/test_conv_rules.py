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
