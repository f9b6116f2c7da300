"""The Model data type: views, the reference evaluation, consistency checks, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from isamap.ir.errors import IsamapError
from isamap.ir.model import Layer, Model, View, kernel_macs
from isamap.ir.parser import parse_kernel

GEMM = parse_kernel("tensor A[2, 3] f32\ntensor B[3, 4] f32\nC[i, j] += A[i, k] * B[k, j]\n")


def _model(**kw: object) -> Model:
    b = np.arange(12.0).reshape(3, 4)
    args: dict[str, object] = {
        "name": "m",
        "inputs": {"x": (6,)},
        "outputs": ("y", "flat"),
        "constants": {"w": b},
        "steps": (
            View("x2", ("x",), (2, 3)),
            Layer("mm", "MatMul", GEMM, {"A": "x2", "B": "w", "C": "y"}),
            View("flat", ("y", "x"), (3, 4), offset=2),
        ),
        "shapes": {"x": (6,), "x2": (2, 3), "w": (3, 4), "y": (2, 4), "flat": (3, 4)},
    }
    args.update(kw)
    return Model(**args)  # type: ignore[arg-type]


def test_views_and_layers_evaluate_in_order() -> None:
    m = _model()
    m.check()
    x = np.arange(6.0)
    out = m.evaluate({"x": x})
    want = x.reshape(2, 3) @ np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(out["y"], want)
    np.testing.assert_array_equal(
        out["flat"], np.concatenate([want.ravel(), x])[2:14].reshape(3, 4)
    )
    assert m.macs() == kernel_macs(GEMM) == 24


def test_check_finds_a_read_before_its_write() -> None:
    m = _model(steps=(Layer("mm", "MatMul", GEMM, {"A": "x2", "B": "w", "C": "y"}),))
    with pytest.raises(IsamapError, match="layer mm reads x2 before it is computed"):
        m.check()


def test_check_finds_a_view_past_its_source() -> None:
    with pytest.raises(IsamapError, match="view x2 reads past its sources"):
        _model(steps=(View("x2", ("x",), (2, 3), offset=1),)).check()


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "missing input x"),
        ({"x": np.zeros(5)}, "has shape"),
        ({"x": np.zeros(6), "z": 1}, "no input named"),
        ({"x": np.full(6, np.nan)}, "non-finite"),
        ([1, 2], "must be a dict"),
    ],
)
def test_bad_inputs_are_one_error(inputs: object, message: str) -> None:
    with pytest.raises(IsamapError, match=message):
        _model().evaluate(inputs)  # type: ignore[arg-type]


def test_json_names_every_step_and_no_weights() -> None:
    import json

    doc = json.loads(_model().to_json())
    assert [s.get("layer") or s.get("view") for s in doc["steps"]] == ["x2", "mm", "flat"]
    assert doc["constants"] == {"w": [3, 4]} and doc["macs"] == 24
    assert "C[i, j] += (A[i, k] * B[k, j])" in doc["steps"][1]["kernel"]
