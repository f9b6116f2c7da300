"""Every examples/kernels/*.kernel parses; those with a builder equal the builder's kernel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from isamap.ir import (
    Kernel,
    conv2d,
    dw_separable,
    evaluate,
    gru_cell,
    load_kernel,
    matmul,
    random_inputs,
)

KERNELS = Path(__file__).resolve().parents[2] / "examples" / "kernels"

BUILDERS: dict[str, Callable[[], Kernel]] = {
    "gemm": lambda: matmul(60, 40, 72),
    "conv2d": lambda: conv2d(1, 8, 12, 12, 16, 3, 3, padding="same"),
    "dw_separable": lambda: dw_separable(1, 16, 10, 10, 32, padding="same"),
    "gru_cell": lambda: gru_cell(4, 24, 32),
}


def test_all_expected_examples_exist() -> None:
    names = {p.stem for p in KERNELS.glob("*.kernel")}
    assert {"gemm", "gemm_relu", "conv2d", "dw_separable", "gru_cell", "attention_scores"} <= names


@pytest.mark.parametrize("path", sorted(KERNELS.glob("*.kernel")), ids=lambda p: p.stem)
def test_example_parses_and_runs(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("#"), "each example opens with a comment saying what it is"
    k = load_kernel(path)
    out = evaluate(k, random_inputs(k))
    assert all(np.isfinite(v).all() for v in out.values())
    if k.name in BUILDERS:
        built = BUILDERS[k.name]()
        assert dict(k.tensors) == dict(built.tensors)
        assert k.statements == built.statements
        assert k.extents == built.extents
        assert dict(k.shapes) == dict(built.shapes)
