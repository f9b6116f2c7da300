"""Soundness of every rule that fires: after saturation, all e-nodes of an e-class compute the
same tensor (isamap.soundness.check_eclasses evaluates each e-node with numpy, instructions by
their declared semantics), for many kernels, every target, and random GEMM shapes.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import isamap
from isamap.soundness import check_eclasses
from tests.e2e.test_map_kernels import KERNELS, saturated

TARGETS = {name: isamap.load_target(name) for name in isamap.list_targets()}


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_all_enodes_of_an_eclass_agree(name: str, target: str) -> None:
    sat = saturated(name, target)  # the e-graph test_map_kernels's variants run
    assert sat.dump.enodes > 0
    assert check_eclasses(sat) is None


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
    sat = isamap.saturate(isamap.parse_kernel(text), TARGETS["gemmini"])
    assert check_eclasses(sat, seed=m * n * k) is None


def test_a_wrong_union_is_caught() -> None:
    # relu(T) put in T's e-class by hand: the checker must notice
    from isamap.egraph.saturate import RuleSource, saturate_with

    wrong = RuleSource(
        '(ruleset wrong)\n(rewrite (Fn "relu" x) x :ruleset wrong :name "wrong")\n',
        "<wrong>",
        ("wrong",),
    )
    kernel = isamap.load_kernel("examples/kernels/gemm_relu.kernel")
    sat = saturate_with(kernel, TARGETS["gemmini"], [wrong])
    found = check_eclasses(sat)
    assert found is not None and found.max_abs_diff > 0
