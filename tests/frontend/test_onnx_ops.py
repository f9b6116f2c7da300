"""Every supported ONNX operator, one node at a time: the Model's numpy reference (the kernels in
index notation) agrees with onnxruntime, attribute by attribute."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from isamap.frontend import model_from_proto
from isamap.ir.model import Layer, View
from tests.frontend.onnx_helpers import model_of, ort_outputs, out, rand, random_feed, single_node

X4 = (1, 4, 7, 6)


def _agree(model: Any, tol: float = 1e-5) -> Any:
    m = model_from_proto(model, "<test>")
    feed = random_feed(m)
    got = m.evaluate(feed)
    want = ort_outputs(model, feed)
    for name, value in want.items():
        assert got[name].shape == value.shape, name
        np.testing.assert_allclose(got[name], value, rtol=tol, atol=tol, err_msg=name)
    return m


CONVS = [
    {},
    {"strides": [2, 2]},
    {"pads": [1, 1, 1, 1]},
    {"pads": [0, 2, 1, 0], "strides": [2, 1]},
    {"dilations": [2, 2], "pads": [2, 2, 2, 2]},
    {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
    {"auto_pad": "VALID"},
]


@pytest.mark.parametrize(
    "attrs", CONVS, ids=lambda a: ",".join(f"{k}={v}" for k, v in a.items()) or "plain"
)
@pytest.mark.parametrize("bias", [False, True])
def test_conv(attrs: dict[str, Any], bias: bool) -> None:
    consts = {"W": rand(5, 4, 3, 3)}
    if bias:
        consts["B"] = rand(5, seed=2)
    _agree(single_node("Conv", {"X": X4}, constants=consts, kernel_shape=[3, 3], **attrs))


@pytest.mark.parametrize(
    ("group", "k"), [(2, 6), (4, 4), (4, 8)], ids=["grouped", "depthwise", "multiplier"]
)
def test_grouped_and_depthwise_conv(group: int, k: int) -> None:
    consts = {"W": rand(k, 4 // group, 3, 3), "B": rand(k, seed=2)}
    m = _agree(single_node("Conv", {"X": X4}, constants=consts, group=group, pads=[1, 1, 1, 1]))
    if group == 4 and k == 4:
        assert m.layers()[0].kind == "depthwise"


def test_pointwise_conv_is_a_channel_gemm() -> None:
    m = _agree(single_node("Conv", {"X": X4}, constants={"W": rand(3, 4, 1, 1)}))
    assert m.layers()[0].kind == "pointwise"


@pytest.mark.parametrize(
    ("ta", "tb", "alpha", "beta", "c_shape"),
    [
        (0, 0, 1.0, 1.0, None),
        (1, 0, 0.5, 1.0, (6,)),
        (0, 1, 1.0, 2.0, (1, 6)),
        (1, 1, 2.0, 0.5, (5, 1)),
        (0, 0, 1.0, 1.0, (5, 6)),
        (0, 0, 1.0, 0.0, (5, 6)),
    ],
)
def test_gemm(ta: int, tb: int, alpha: float, beta: float, c_shape: tuple[int, ...] | None) -> None:
    a = (3, 5) if ta else (5, 3)
    consts = {"B": rand(*((6, 3) if tb else (3, 6)))}
    if c_shape:
        consts["C"] = rand(*c_shape, seed=3)
    _agree(
        single_node(
            "Gemm", {"A": a}, constants=consts, transA=ta, transB=tb, alpha=alpha, beta=beta
        )
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ((4, 3), (3, 5)),
        ((2, 4, 3), (3, 5)),
        ((2, 1, 4, 3), (3, 3, 5)),
        ((3,), (3, 5)),
        ((4, 3), (3,)),
        ((1, 2, 4, 3), (1, 2, 3, 4)),
    ],
)
def test_matmul(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    _agree(single_node("MatMul", {"A": a, "B": b}))


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize(
    ("a", "b"),
    [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1, 3, 1, 1), (2, 3, 5, 5))],
)
def test_broadcasting_binary(op: str, a: tuple[int, ...], b: tuple[int, ...]) -> None:
    model = single_node(op, {"A": a, "B": b})
    m = model_from_proto(model)
    feed = random_feed(m)
    if op == "Div":
        feed["B"] = np.abs(feed["B"]) + 0.5
    np.testing.assert_allclose(
        m.evaluate(feed)["Y"], ort_outputs(model, feed)["Y"], rtol=1e-5, atol=1e-5
    )


def test_binary_with_a_constant_scalar_is_a_literal() -> None:
    m = _agree(single_node("Div", {"A": (3, 4)}, constants={"s": np.array(8.0, np.float32)}))
    assert "0.125" in str(m.layers()[0].kernel)


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "Erf", "Sqrt", "Exp"])
def test_unary(op: str) -> None:
    model = single_node(op, {"X": (3, 4, 5)})
    m = model_from_proto(model)
    feed = random_feed(m)
    if op == "Sqrt":
        feed["X"] = np.abs(feed["X"])
    np.testing.assert_allclose(
        m.evaluate(feed)["Y"], ort_outputs(model, feed)["Y"], rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate: str) -> None:
    _agree(single_node("Gelu", {"X": (4, 6)}, opset=20, approximate=approximate))


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 6.0), (-0.5, None), (None, 0.3)])
def test_clip_bounds_as_inputs(lo: float | None, hi: float | None) -> None:
    consts = {}
    names = ["X", "", ""]
    if lo is not None:
        consts["lo"] = np.array(lo, np.float32)
        names[1] = "lo"
    if hi is not None:
        consts["hi"] = np.array(hi, np.float32)
        names[2] = "hi"
    _agree(single_node("Clip", {"X": (3, 8)}, constants=consts, input_names=names, opset=13))


def test_clip_bounds_as_attributes() -> None:
    _agree(single_node("Clip", {"X": (3, 8)}, opset=10, min=0.0, max=6.0))


@pytest.mark.parametrize(("axis", "opset"), [(-1, 13), (1, 13), (0, 13), (1, 11)])
def test_softmax(axis: int, opset: int) -> None:
    m = _agree(single_node("Softmax", {"X": (3, 4, 5)}, axis=axis, opset=opset))
    assert any(s.reduce == "max" for s in m.layers()[0].kernel.statements)


def test_softmax_is_stable_for_large_logits() -> None:
    model = single_node("Softmax", {"X": (2, 5)}, axis=-1)
    m = model_from_proto(model)
    feed = {"X": np.array([[1000.0, 999.0, 0.0, -5.0, 1000.0]] * 2)}
    got = m.evaluate(feed)["Y"]
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ort_outputs(model, feed)["Y"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_layer_normalization(axis: int) -> None:
    consts = {
        "G": rand(*((3, 8)[axis:] if axis >= 0 else (8,)), seed=4),
        "B": rand(*((3, 8)[axis:] if axis >= 0 else (8,)), seed=5),
    }
    _agree(
        single_node(
            "LayerNormalization",
            {"X": (2, 3, 8)[1:] if axis == 0 else (2, 3, 8)},
            constants=consts,
            axis=axis,
            epsilon=1e-3,
        ),
        tol=1e-4,
    )


def _bn_constants(c: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "gamma": rng.uniform(0.5, 1.5, c).astype(np.float32),
        "beta": rng.standard_normal(c).astype(np.float32),
        "mean": rng.standard_normal(c).astype(np.float32),
        "var": rng.uniform(0.5, 1.5, c).astype(np.float32),
    }


def test_batch_normalization_alone() -> None:
    _agree(single_node("BatchNormalization", {"X": X4}, constants=_bn_constants(4), epsilon=1e-3))


def test_batch_normalization_folds_into_the_conv_before_it() -> None:
    from onnx import TensorProto, helper, numpy_helper

    consts = {"W": rand(5, 4, 3, 3), "B": rand(5, seed=2), **_bn_constants(5)}
    nodes = [
        helper.make_node("Conv", ["X", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["Y"], name="bn"
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(X4))],
        [out("Y")],
        [numpy_helper.from_array(v, n) for n, v in consts.items()],
    )
    m = _agree(model_of(graph, 13), tol=1e-4)
    (layer,) = m.layers()
    assert layer.nodes == ("conv", "bn")
    assert layer.op == "Conv+BatchNormalization"


def test_global_average_pool() -> None:
    _agree(single_node("GlobalAveragePool", {"X": X4}))


@pytest.mark.parametrize(
    ("axes", "keepdims", "opset"),
    [([1], 1, 13), ([-1, 2], 0, 13), (None, 1, 13), ([1, 3], 0, 18), (None, 0, 18)],
)
def test_reduce_mean(axes: list[int] | None, keepdims: int, opset: int) -> None:
    if opset >= 18:
        consts = {"axes": np.array(axes, np.int64)} if axes else {}
        names = ["X", "axes"] if axes else ["X"]
        _agree(
            single_node(
                "ReduceMean",
                {"X": X4},
                constants=consts,
                input_names=names,
                opset=18,
                keepdims=keepdims,
            )
        )
    else:
        kw: dict[str, Any] = {"keepdims": keepdims}
        if axes:
            kw["axes"] = axes
        _agree(single_node("ReduceMean", {"X": X4}, opset=13, **kw))


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_flatten(axis: int) -> None:
    m = _agree(single_node("Flatten", {"X": X4}, axis=axis))
    assert all(isinstance(s, View) for s in m.steps)


@pytest.mark.parametrize("shape", [[4, -1], [0, 2, 14, -1], [-1]])
def test_reshape(shape: list[int]) -> None:
    _agree(single_node("Reshape", {"X": X4}, constants={"s": np.array(shape, np.int64)}))


@pytest.mark.parametrize("perm", [[0, 2, 3, 1], [3, 2, 1, 0], None, [1, 0, 2, 3]])
def test_transpose(perm: list[int] | None) -> None:
    kw = {"perm": perm} if perm else {}
    m = _agree(single_node("Transpose", {"X": X4}, **kw))
    if perm == [1, 0, 2, 3]:  # only a size-1 axis moves: a view
        assert isinstance(m.steps[0], View)


@pytest.mark.parametrize("axis", [0, 1, 3])
def test_concat(axis: int) -> None:
    shapes = {"A": (1, 2, 3, 4), "B": (1, 2, 3, 4)}
    shapes["B"] = tuple(5 if d == axis else s for d, s in enumerate(shapes["B"]))  # type: ignore[assignment]
    m = _agree(single_node("Concat", shapes, constants={"C": rand(*shapes["A"])}, axis=axis))
    if axis == 3:
        assert isinstance(m.steps[0], Layer)


def test_identity_constant_squeeze_unsqueeze() -> None:
    from onnx import TensorProto, helper

    value = helper.make_tensor("v", TensorProto.FLOAT, [1, 3], [1.0, 2.0, 3.0])
    nodes = [
        helper.make_node("Constant", [], ["k"], name="k", value=value),
        helper.make_node("Identity", ["X"], ["i"], name="id"),
        helper.make_node("Add", ["i", "k"], ["s"], name="add"),
        helper.make_node("Unsqueeze", ["s", "ax"], ["u"], name="unsq"),
        helper.make_node("Squeeze", ["u", "ax"], ["Y"], name="sq"),
        helper.make_node("Constant", [], ["ax"], name="axes", value_ints=[0]),
    ]
    nodes = [nodes[0], nodes[5], *nodes[1:5]]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 3])], [out("Y")]
    )
    _agree(model_of(graph, 13))


def test_constant_subgraphs_are_evaluated_at_load_time() -> None:
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Mul", ["w", "two"], ["w2"], name="scale_weights"),
        helper.make_node("MatMul", ["X", "w2"], ["Y"], name="mm"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 3])],
        [out("Y")],
        [
            numpy_helper.from_array(rand(3, 4), "w"),
            numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        ],
    )
    m = _agree(model_of(graph, 13))
    assert [layer.name for layer in m.layers()] == ["mm"]
    assert "w2" in m.constants


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize(("bias", "initial_h"), [(True, True), (False, False), (True, False)])
def test_gru(lbr: int, bias: bool, initial_h: bool) -> None:
    from isamap.frontend.models import gru_model

    m = _agree(
        gru_model(
            steps=4,
            batch=2,
            input_size=5,
            hidden=3,
            linear_before_reset=lbr,
            bias=bias,
            initial_h=initial_h,
        )
    )
    steps = [layer for layer in m.layers() if layer.op == "GRU step"]
    assert len(steps) == 4 and len({str(s.kernel) for s in steps}) == 1  # one kernel, 4 times
    projection = m.layers()[0]
    assert sum(s.accumulate for s in projection.kernel.statements) == 3  # the three gate GEMMs


def test_gru_with_sequence_lens_equal_to_the_sequence() -> None:
    from onnx import TensorProto, helper, numpy_helper

    h, i, t, b = 3, 2, 4, 2
    consts = {
        "W": rand(1, 3 * h, i),
        "R": rand(1, 3 * h, h, seed=2),
        "lens": np.full(b, t, np.int32),
    }
    node = helper.make_node(
        "GRU", ["X", "W", "R", "", "lens"], ["", "Yh"], name="gru", hidden_size=h
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [t, b, i])],
        [out("Yh")],
        [numpy_helper.from_array(v, n) for n, v in consts.items()],
    )
    _agree(model_of(graph, 14))


def test_macs_count_the_contractions() -> None:
    m = model_from_proto(single_node("Conv", {"X": X4}, constants={"W": rand(5, 4, 3, 3)}))
    assert m.macs() == 5 * 4 * 9 * 5 * 4  # outputs 5 x 5x4, 36 taps each
    assert math.prod(m.shapes["Y"]) == 100
