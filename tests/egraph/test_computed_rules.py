"""Soundness of the computed rules: each, with the ones before it as background, on the corpus.

Every e-node of every e-class is evaluated with numpy (`check_eclasses`); a rule that never
matches on the corpus is not verified, so each must match somewhere.
"""

from __future__ import annotations

import pytest

import isamap
from isamap.egraph.computed_rules import COMPUTED_RULES
from isamap.egraph.saturate import saturate_with
from isamap.ir import builders
from isamap.soundness import check_eclasses, corpus


def _kernels() -> list[isamap.Kernel]:
    extra = [
        # windows under transposes: a strided, dilated conv and a depthwise one
        builders.conv2d(2, 3, 7, 6, 4, 3, 2, stride=2, dilation=1, padding="same"),
        builders.depthwise(1, 5, 6, 6, 3, 3),
        isamap.parse_kernel(
            "tensor A[3, 4, 5] f32\ntensor B[5, 4, 2] f32\nC[j, i, l] += A[l, j, k] * B[k, j, i]\n"
        ),
        isamap.parse_kernel(  # a summed index in one operand only, and a transposed result
            "tensor A[3, 4, 6] f32\ntensor B[6, 5] f32\nC[j, i] += A[i, q, k] * B[k, j]\n"
        ),
    ]
    return corpus(seed=3) + extra


@pytest.mark.parametrize("index", range(len(COMPUTED_RULES)))
def test_computed_rule_is_sound_and_exercised(index: int) -> None:
    target = isamap.load_target("gemmini")
    rules = COMPUTED_RULES[: index + 1]
    name = COMPUTED_RULES[index].name
    matches = 0
    for n, kernel in enumerate(_kernels()):
        sat = saturate_with(kernel, target, [], computed_rules=rules)
        matches += sat.report.matches_per_rule[name]
        found = check_eclasses(sat, seed=n)
        assert found is None, f"{name} is unsound:\n{found}"
    assert matches > 0, f"{name} never matched on the corpus"


def test_transposed_window_is_a_view() -> None:
    """A convolution's window is gathered straight into the layout the product wants."""
    target = isamap.load_target("gemmini")
    kernel = builders.conv2d(1, 3, 6, 6, 4, 3, 3)
    sat = saturate_with(kernel, target, [])
    ops = [n.op for nodes in sat.dump.classes.values() for n in nodes]
    windows = ops.count("Window")
    assert windows >= 2, "the window in another axis order is in the e-graph"
    assert sat.report.matches_per_rule["transpose-of-window"] >= 1


@pytest.mark.parametrize("target_name", ["gemmini", "vecdsp", "nnp"])
def test_unit_extents_saturate_small(target_name: str) -> None:
    """Extents of 1 make many layouts equal; the fusion rules must still terminate quickly
    (only operand layouts get creation numbers, so the sets they build stay finite)."""
    target = isamap.load_target(target_name)
    kernel = builders.conv2d(1, 1, 3, 3, 1, 1, 1)
    sat = isamap.saturate(kernel, target)
    assert sat.report.stop_reason == "saturated"
    assert sat.report.enodes < 200
