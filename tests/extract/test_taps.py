"""Tap accumulation against im2col: both in the e-graph, the cost model choosing between them.

A convolution is an im2col product (`einsum-to-bmm` over its window: the K axis gathers every
tap's pixels, duplicates included) or a sum over its filter taps of products on shifted views of
its input (`einsum-to-taps`: the input tile loaded once with its halo, each tap's depth padded
to the instruction's K on its own). On gemmini (16 x 16, 16 bytes per cycle) a layer with three
input channels wastes 13/16 of every tap's depth, while a layer whose product is DMA-bound (few
output channels) saves most of im2col's A traffic. The layers are CIFAR ResNet's first
convolution and a stage-one convolution; which one wins is the cost model's call, not the test's.
"""

from __future__ import annotations

import numpy as np
import pytest

import isamap
from isamap.compile import CompileResult
from isamap.ir import builders
from isamap.ir.reference import evaluate, random_inputs
from tests.typed import typed_for

TAPS, IM2COL = "einsum-to-taps", "einsum-to-bmm"


def _nhwc(c: int, hw: int, k: int, stride: int = 1) -> isamap.Kernel:
    """A 3x3 "same" convolution, NHWC input and HWIO weights (no layout move on either side)."""
    return isamap.parse_kernel(
        f"tensor X[1, {hw}, {hw}, {c}] i8 pad(0, 1, 1, 0)\ntensor W[3, 3, {c}, {k}] i8\n"
        f"O[n, h, w, k] += X[n, {stride}*h + r - 1, {stride}*w + s - 1, c] * W[r, s, c, k]\n",
        name=f"conv3x3_c{c}_k{k}_{hw}",
    )


def _uses_taps(result: CompileResult) -> bool:
    return any(n.attrs.get("taps") for n in result.mapping.instruction_calls())


def _matches_numpy(kernel: isamap.Kernel, result: CompileResult) -> None:
    inputs = random_inputs(kernel, seed=2)
    got, want = result.simulate(inputs), evaluate(kernel, inputs)
    for name in kernel.outputs():
        np.testing.assert_allclose(got[name], want[name], atol=1e-6)


@pytest.fixture(scope="module")
def gemmini() -> isamap.Target:
    return isamap.load_target("gemmini")


@pytest.fixture(scope="module")
def layers(gemmini: isamap.Target) -> dict[str, dict[str, CompileResult]]:
    """Each layer compiled three ways: everything, without taps, without im2col."""
    kernels = {"conv1 3->16": _nhwc(3, 32, 16), "stage1 16->16": _nhwc(16, 32, 16)}
    return {
        label: {
            "both": isamap.compile(k, gemmini),
            "im2col": isamap.compile(k, gemmini, disabled_rules=(TAPS,)),
            "taps": isamap.compile(k, gemmini, disabled_rules=(IM2COL,)),
        }
        for label, k in kernels.items()
    }


def test_both_mappings_are_in_one_egraph(gemmini: isamap.Target) -> None:
    sat = isamap.saturate(_nhwc(16, 8, 16), gemmini)
    out = sat.dump.results["O"]
    ops = {n.op for nodes in sat.dump.classes.values() for n in nodes}
    assert {"InstrTaps", "Instr"} <= ops
    assert sat.report.matches_per_rule[TAPS] >= 1 and sat.report.matches_per_rule[IM2COL] >= 1
    assert out in sat.dump.classes


def test_the_cost_model_chooses_each_somewhere(
    layers: dict[str, dict[str, CompileResult]],
) -> None:
    winners = {}
    for label, runs in layers.items():
        assert not _uses_taps(runs["im2col"]) and _uses_taps(runs["taps"]), label
        best = min(runs["im2col"].report.cycles, runs["taps"].report.cycles)
        # the full e-graph's choice is the cheaper of the two, whichever it is
        assert runs["both"].report.cycles == pytest.approx(best), label
        winners[label] = "taps" if _uses_taps(runs["both"]) else "im2col"
    assert set(winners.values()) == {"taps", "im2col"}, winners


@pytest.mark.parametrize("way", ["both", "im2col", "taps"])
def test_every_mapping_runs_on_the_machine(
    layers: dict[str, dict[str, CompileResult]], way: str
) -> None:
    for runs in layers.values():
        _matches_numpy(runs[way].kernel, runs[way])


@pytest.mark.parametrize(
    "kernel",
    [
        builders.conv2d(1, 5, 9, 8, 6, 3, 3, stride=2, padding="same"),
        builders.conv2d(2, 4, 9, 9, 5, 3, 2, dilation=2, padding=(2, 1)),
        builders.conv2d(1, 6, 7, 7, 4, 2, 2, stride=2, dilation=2, padding=0),
        builders.conv2d(2, 8, 6, 6, 6, 3, 3, padding=1, groups=2),
    ],
    ids=["strided", "dilated-padded", "strided-dilated", "grouped-batched"],
)
def test_strided_dilated_padded_taps_equal_numpy(
    gemmini: isamap.Target, kernel: isamap.Kernel
) -> None:
    kernel = typed_for(kernel, gemmini)  # int8 on gemmini
    result = isamap.compile(kernel, gemmini, disabled_rules=(IM2COL,))
    assert _uses_taps(result)
    _matches_numpy(kernel, result)
    assert "filter taps" in result.program.listing()
