"""Builders: shapes and structure of the kernels they return."""

from __future__ import annotations

import pytest

from isamap.ir import (
    Access,
    IsamapError,
    batched_matmul,
    conv2d,
    depthwise,
    dw_separable,
    gru_cell,
    matmul,
    pointwise,
)


def test_matmul_shapes_and_transposes() -> None:
    k = matmul(5, 7, 3)
    assert k.shapes == {"A": (5, 3), "B": (3, 7), "C": (5, 7)}
    assert k.inputs() == ("A", "B") and k.outputs() == ("C",)
    kt = matmul(5, 7, 3, transpose_a=True, transpose_b=True, dtype="bf16")
    assert kt.shapes["A"] == (3, 5) and kt.shapes["B"] == (7, 3) and kt.shapes["C"] == (5, 7)
    assert kt.dtype("A") == "bf16"
    assert kt.statements[0].reduced_indices() == ("k",)


def test_batched_matmul() -> None:
    k = batched_matmul(2, 5, 7, 3)
    assert k.shapes["C"] == (2, 5, 7)
    assert k.extents[0] == {"b": 2, "i": 5, "j": 7, "k": 3}


@pytest.mark.parametrize(
    ("h", "stride", "dilation", "padding", "expected"),
    [
        (12, 1, 1, 0, 10),
        (12, 1, 1, 1, 12),
        (12, 2, 1, "same", 6),
        (13, 2, 2, "same", 7),
        (12, 3, 1, 0, 4),
        (9, 2, 2, (2, 2), 5),
    ],
)
def test_conv2d_output_size(
    h: int, stride: int, dilation: int, padding: int | str | tuple[int, int], expected: int
) -> None:
    k = conv2d(1, 2, h, h, 4, 3, 3, stride=stride, dilation=dilation, padding=padding)
    assert k.shapes["O"] == (1, 4, expected, expected)
    assert k.shapes["W"] == (4, 2, 3, 3)


def test_conv2d_groups_layout() -> None:
    k = conv2d(1, 6, 8, 8, 9, 3, 3, padding="same", groups=3)
    assert k.shapes["X"] == (1, 3, 2, 8, 8)
    assert k.shapes["W"] == (3, 3, 2, 3, 3)
    assert k.shapes["O"] == (1, 3, 3, 8, 8)
    with pytest.raises(IsamapError, match="must divide"):
        conv2d(1, 6, 8, 8, 8, 3, 3, groups=4)


def test_bad_arguments() -> None:
    with pytest.raises(IsamapError, match="positive"):
        matmul(0, 3, 3)
    with pytest.raises(IsamapError, match="padding"):
        conv2d(1, 2, 8, 8, 2, 3, 3, padding="valid")


def test_depthwise_pointwise_separable() -> None:
    assert depthwise(1, 4, 9, 9, 3, 3, stride=2, padding="same").shapes["D"] == (1, 4, 5, 5)
    assert pointwise(2, 4, 5, 6, 8).shapes["Y"] == (2, 8, 5, 6)
    k = dw_separable(1, 4, 9, 9, 8)
    assert k.shapes["D"] == (1, 4, 9, 9) and k.shapes["Y"] == (1, 8, 9, 9)
    assert k.written() == ("D", "Y") and k.outputs() == ("Y",)


def test_gru_cell_structure() -> None:
    k = gru_cell(4, 24, 32)
    assert k.inputs() == ("X", "H", "Wz", "Wr", "Wh", "Uz", "Ur", "Uh")
    assert k.outputs() == ("Hn",)
    assert all(k.shapes[t] == (4, 32) for t in ("Gz", "Gr", "Xh", "Hh", "Z", "R", "N", "Hn"))
    gemms = [s for s in k.statements if s.accumulate]
    assert len(gemms) == 6
    firsts = [s.accesses()[0] for s in gemms]
    assert all(isinstance(a, Access) for a in firsts)
    assert sorted(a.tensor for a in firsts) == ["H", "H", "H", "X", "X", "X"]
