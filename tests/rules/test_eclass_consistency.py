"""Soundness of every rule that fires: after saturation, all e-nodes of an e-class compute the
same tensor. Each e-node is evaluated with numpy (instructions by their declared semantics, tile
by tile) from its children's values, on random inputs, for many kernels and random GEMM shapes.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import isamap
from isamap.egraph import Saturation
from isamap.extract.lower import enode_operation, tensor_args
from isamap.hardware.functional import run_node
from isamap.ir.mapping import MapNode
from tests.e2e.test_map_kernels import KERNELS

GEMMINI = isamap.load_target("gemmini")


def check_eclasses(sat: Saturation, seed: int = 0) -> int:
    """Evaluate every e-node; assert the nodes of each e-class agree. Returns nodes checked."""
    kernel, dump = sat.kernel, sat.dump
    inputs = isamap.random_inputs(kernel, seed=seed)
    values: dict[str, np.ndarray] = {}
    # TensorLists resolve through their first e-node (they have one); inputs by name
    choice = {cid: nodes[0] for cid, nodes in dump.classes.items()}
    checked: set[int] = set()
    progress = True
    while progress:
        progress = False
        for cid, nodes in dump.classes.items():
            for node in nodes:
                if id(node) in checked or node.op in ("TNil", "TCons"):
                    continue
                args = tensor_args(node, dump, choice)
                if any(a not in values for a in args):
                    continue
                op, unit, attrs = enode_operation(node)
                if op == "input":
                    value = np.asarray(inputs[str(attrs["name"])], dtype=np.float64)
                else:
                    if op == "instr":
                        attrs.setdefault("epilogue", None)
                    fake = MapNode(0, op, (), attrs, dump.shapes[cid], unit)
                    value = run_node(fake, [values[a] for a in args], kernel, sat.target)
                assert value.shape == dump.shapes[cid], (node, value.shape)
                if cid in values:
                    np.testing.assert_allclose(
                        value, values[cid], rtol=1e-9, atol=1e-9, err_msg=f"{node} in {cid}"
                    )
                else:
                    values[cid] = value
                checked.add(id(node))
                progress = True
    total = sum(len(n) for c, n in dump.classes.items() if n[0].op not in ("TNil", "TCons"))
    assert len(checked) == total, "some e-nodes could not be evaluated"
    return total


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_all_enodes_of_an_eclass_agree(name: str) -> None:
    sat = isamap.saturate(KERNELS[name], GEMMINI)
    assert check_eclasses(sat) > 0


@settings(max_examples=15, deadline=None)
@given(
    m=st.integers(1, 40),
    n=st.integers(1, 40),
    k=st.integers(1, 40),
    ta=st.booleans(),
    tb=st.booleans(),
    relu=st.booleans(),
)
def test_random_gemms(m: int, n: int, k: int, ta: bool, tb: bool, relu: bool) -> None:
    a = f"A[{k}, {m}]" if ta else f"A[{m}, {k}]"
    b = f"B[{n}, {k}]" if tb else f"B[{k}, {n}]"
    ia = "A[k, i]" if ta else "A[i, k]"
    ib = "B[j, k]" if tb else "B[k, j]"
    text = f"tensor {a} f32\ntensor {b} f32\nT[i, j] += {ia} * {ib}\n"
    text += "C[i, j] = relu(T[i, j])\n" if relu else "C[i, j] = T[i, j] * 2\n"
    sat = isamap.saturate(isamap.parse_kernel(text), GEMMINI)
    check_eclasses(sat, seed=m * n * k)
