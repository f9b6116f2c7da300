"""Random kernel text on every shipped target: compile, `result.run` through the modelled machine,
and compare with the numpy reference (`isamap.evaluate`).

test_random_convs.py draws from the builders (GEMM, conv2d, depthwise-separable); this draws
kernels as a user writes them: any contraction of two tensors over random index sets, in any
layout, sometimes with a window access (`2*i + r`), then elementwise epilogues with constants
and a second input, and sometimes a second contraction of the result.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import isamap
from tests.typed import typed_for

TARGETS = {name: isamap.load_target(name) for name in isamap.list_targets()}
INDICES = "abcde"
FUNCTIONS = ["relu", "sigmoid", "tanh", "exp"]


@st.composite
def contraction(
    draw: st.DrawFn, name: str, extents: dict[str, int]
) -> tuple[list[str], str, list[str]]:
    """Declarations of X and Y, `name[out] += X[...] * Y[...]` over random index sets, and out."""
    used = draw(st.lists(st.sampled_from(INDICES), min_size=1, max_size=4, unique=True))
    for i in used:
        extents.setdefault(i, draw(st.integers(1, 9)))
    x_idx = draw(st.permutations(used).map(lambda p: p[: max(1, len(p) - 1)]))
    rest = [i for i in used if i not in x_idx]
    y_idx = draw(st.permutations(rest + draw(st.lists(st.sampled_from(x_idx), unique=True))))
    y_idx = y_idx or [x_idx[0]]
    window = draw(st.booleans())
    if window and x_idx[0] not in y_idx:  # the window's index needs a plain access for its extent
        y_idx = [*y_idx, x_idx[0]]
    out = draw(st.permutations([*dict.fromkeys(x_idx + y_idx)]))
    out = out[: draw(st.integers(1, len(out)))]
    x_access = list(x_idx)
    x_shape = [extents[i] for i in x_idx]
    if window:  # X read at stride*i + r: a convolution-like window along its first axis
        stride, taps = draw(st.integers(1, 2)), draw(st.integers(1, 3))
        x_access[0] = f"{stride}*{x_idx[0]} + r"
        x_shape[0] = stride * (extents[x_idx[0]] - 1) + taps
        extents["r"] = taps
    tag = name.lower()
    decls = [
        f"tensor X{tag}[{', '.join(map(str, x_shape))}] f32",
        f"tensor Y{tag}[{', '.join(str(extents[i]) for i in y_idx)}] f32",
    ]
    stmt = f"{name}[{', '.join(out)}] += X{tag}[{', '.join(x_access)}] * Y{tag}[{', '.join(y_idx)}]"
    return decls, stmt, out


@st.composite
def kernels(draw: st.DrawFn) -> str:
    extents: dict[str, int] = {}
    decls, first, out = draw(contraction("T", extents))
    lines = [*decls, first]
    term = f"T[{', '.join(out)}]"
    if draw(st.booleans()):  # elementwise epilogue, maybe with a second input
        fn = draw(st.sampled_from(FUNCTIONS))
        scale = draw(st.sampled_from(["0.5", "2", "-1.25"]))
        expr = f"{fn}({term}) * {scale}"
        if draw(st.booleans()):
            lines.insert(0, f"tensor Z[{', '.join(str(extents[i]) for i in out)}] f32")
            expr += f" + Z[{', '.join(out)}]"
        elif draw(st.booleans()):
            expr += f" - {term}"
        lines.append(f"U[{', '.join(out)}] = {expr}")
        term = f"U[{', '.join(out)}]"
    if draw(st.booleans()) and out:  # a second contraction of the result, over its first index
        j = out[0]
        extents.setdefault("q", draw(st.integers(1, 9)))
        lines.insert(0, f"tensor W[{extents[j]}, {extents['q']}] f32")
        rest = [i for i in out if i != j]
        lines.append(f"V[{', '.join([*rest, 'q'])}] += {term} * W[{j}, q]")
    return "\n".join(lines) + "\n"


@settings(max_examples=30, deadline=None)
@given(text=kernels(), target=st.sampled_from(sorted(TARGETS)), seed=st.integers(0, 3))
def test_random_kernel_text_runs_as_numpy_says(text: str, target: str, seed: int) -> None:
    kernel = typed_for(isamap.parse_kernel(text), TARGETS[target])  # int8 on gemmini
    result = isamap.compile(kernel, TARGETS[target])
    assert result.report.cycles > 0
    inputs = isamap.random_inputs(kernel, seed=seed)
    outputs = result.simulate(inputs)  # the CPU targets run natively in tests/codegen
    reference = isamap.evaluate(kernel, inputs)
    for name in kernel.outputs():
        np.testing.assert_allclose(outputs[name], reference[name], rtol=1e-7, atol=1e-9)
