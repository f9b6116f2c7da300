"""`ew-through-layout`: a bias or clip bound written in the kernel's layout meets the product in
the product's own layout, whatever transposes and reshapes lie between."""

from __future__ import annotations

import numpy as np
import pytest

import isamap
from isamap.egraph.saturate import saturate
from isamap.soundness import check_eclasses

NCHW = (
    "tensor X[1, 6, 4, 5] i8\ntensor W[10, 6] i8\ntensor B[10] i32\n"
    "O[n, k, h, w] += X[n, c, h, w] * W[k, c]\nY[n, k, h, w] = O[n, k, h, w] + B[k]\n"
    "Z[n, k, h, w] = min(relu(Y[n, k, h, w]), 6)\n"
)
NHWC = (
    "tensor X[1, 4, 5, 6] i8\ntensor W[6, 10] i8\ntensor B[10] i32\n"
    "O[n, h, w, k] += X[n, h, w, c] * W[c, k]\nZ[n, h, w, k] = relu(O[n, h, w, k] + B[k])\n"
)
ROW = (  # a bias per row of a transposed product: per column of the product as written
    "tensor A[20, 24] i8\ntensor B[9, 20] i8\ntensor r[24] i32\n"
    "T[j, i] += B[j, k] * A[k, i]\nY[j, i] = relu(T[j, i] + r[i])\n"
)


@pytest.fixture(scope="module")
def gemmini() -> isamap.Target:
    return isamap.load_target("gemmini")


def _bias_over_bmm(sat: object) -> list[str]:
    """The broadcast maps of the bias operands of `Ew +` e-nodes over a Bmm's e-class."""
    dump = sat.dump  # type: ignore[attr-defined]
    bmm = {cid for cid, nodes in dump.classes.items() if any(n.op == "Bmm" for n in nodes)}
    maps = []
    for nodes in dump.classes.values():
        for n in nodes:
            if n.op == "Ew" and n.args[0] == "+" and n.args[1].eclass in bmm:
                maps += [b.args[2] for b in dump.classes[n.args[2].eclass] if b.op == "Broadcast"]
    return maps


@pytest.mark.parametrize("text", [NCHW, NHWC, ROW], ids=["nchw", "nhwc", "transposed"])
def test_the_bias_reaches_the_product_and_is_fused(gemmini: isamap.Target, text: str) -> None:
    kernel = isamap.parse_kernel(text)
    sat = saturate(kernel, gemmini)
    assert "2" in _bias_over_bmm(sat)  # one value per column of [b, m, n]
    assert sat.report.matches_per_rule["ew-through-layout"] > 0
    assert check_eclasses(sat) is None  # every e-node of every class agrees
    result = isamap.compile(kernel, gemmini)
    calls = [n for n in result.mapping.nodes if n.op == "instr"]
    assert calls and all(n.attrs.get("bias") for n in calls)
    x = isamap.random_inputs(kernel)
    out = kernel.outputs()[-1]
    assert np.allclose(result.run(x)[out], isamap.evaluate(kernel, x)[out])


def test_a_tensor_operand_is_not_carried(gemmini: isamap.Target) -> None:
    # a residual add of a full tensor is not a per-channel operand: it stays in the kernel's layout
    kernel = isamap.parse_kernel(
        "tensor A[8, 6] f32\ntensor B[6, 5] f32\ntensor R[8, 5] f32\n"
        "T[i, j] += A[i, k] * B[k, j]\nY[i, j] = T[i, j] + R[i, j]\n"
    )
    sat = saturate(kernel, gemmini)
    assert sat.report.matches_per_rule["ew-through-layout"] == 0


def test_reshape_groups_pair_merged_and_split_axes() -> None:
    from isamap.egraph.epilogue_rules import _blocks

    assert _blocks((1, 12544, 96), (1, 112, 112, 96)) == [([1], [1, 2]), ([2], [3])]
    assert _blocks((12, 5), (3, 4, 5)) == [([0], [0, 1]), ([1], [2])]
    assert _blocks((6, 4), (4, 6)) == [([0, 1], [0, 1])]  # no finer grouping: varied whole
    assert _blocks((6, 4), (5, 5)) is None
