"""Reference networks built as ONNX graphs with `onnx.helper` and random weights (no downloads).

MobileNet v1 and v2 (node names follow the TF-slim layer names of
`isamap/data/mobilenet_v*_layers.csv`,
so the CSV checks their shapes and MAC counts), a single-layer GRU and a transformer encoder block.
The tests, the MobileNet bench suites and `examples/models/` build their models here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from isamap.frontend.onnx import _onnx

__all__ = ["gru_model", "mobilenet_v1", "mobilenet_v2", "transformer_encoder"]

_V2_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)  # expansion t, channels c, repeats n, stride s
_V1_LAYERS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)  # pointwise channels, stride


class _Net:
    """A graph under construction: nodes, initializers with random weights."""

    def __init__(self, seed: int) -> None:
        self.onnx = _onnx()
        self.h = self.onnx.helper
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def weight(self, name: str, shape: tuple[int, ...], scale: float) -> str:
        arr = (scale * self.rng.standard_normal(shape)).astype(np.float32)
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def const(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, inputs: list[str], name: str, outputs: int = 1, **attrs: Any) -> str:
        outs = [name if i == 0 else f"{name}:{i}" for i in range(outputs)]
        self.nodes.append(self.h.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0]

    def conv_bn(
        self,
        x: str,
        name: str,
        cin: int,
        cout: int,
        k: int,
        stride: int,
        group: int = 1,
        act: bool = True,
    ) -> str:
        """Conv (no bias) + BatchNormalization (+ ReLU6 as Clip 0..6)."""
        fan_in = cin // group * k * k
        w = self.weight(f"{name}/weights", (cout, cin // group, k, k), math.sqrt(2.0 / fan_in))
        pad = k // 2
        y = self.node(
            "Conv",
            [x, w],
            name,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
            group=group,
        )
        bn = [
            self.const(f"{name}/bn/{p}", v.astype(np.float32))
            for p, v in (
                ("gamma", self.rng.uniform(0.5, 1.5, cout)),
                ("beta", 0.1 * self.rng.standard_normal(cout)),
                ("mean", 0.1 * self.rng.standard_normal(cout)),
                ("var", self.rng.uniform(0.5, 1.5, cout)),
            )
        ]
        y = self.node("BatchNormalization", [y, *bn], f"{name}/BatchNorm", epsilon=1e-3)
        if act:
            lo = self.const(f"{name}/relu6/min", np.array(0.0, np.float32))
            hi = self.const(f"{name}/relu6/max", np.array(6.0, np.float32))
            y = self.node("Clip", [y, lo, hi], f"{name}/Relu6")
        return y

    def model(self, name: str, inputs: list[Any], outputs: list[Any], opset: int) -> Any:
        graph = self.h.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = self.h.make_model(
            graph,
            opset_imports=[self.h.make_opsetid("", opset)],
            producer_name="isamap.frontend.models",
        )
        model.ir_version = 8
        self.onnx.checker.check_model(model)
        return model

    def tensor(self, name: str, shape: tuple[int, ...]) -> Any:
        return self.h.make_tensor_value_info(name, self.onnx.TensorProto.FLOAT, list(shape))


def _head(net: _Net, x: str, channels: int, classes: int, pool: str) -> str:
    y = net.node("GlobalAveragePool", [x], pool)
    y = net.node("Flatten", [y], "Flatten", axis=1)
    w = net.weight("Logits/weights", (channels, classes), 1.0 / math.sqrt(channels))
    b = net.weight("Logits/biases", (classes,), 0.01)
    return net.node("Gemm", [y, w, b], "Logits_fc")


def mobilenet_v2(resolution: int = 224, classes: int = 1000, seed: int = 0) -> Any:
    """MobileNetV2 (width 1.0): stem, 17 inverted-residual blocks, 1x1 conv to 1280, pool, FC."""
    net = _Net(seed)
    y = net.conv_bn("input", "Conv", 3, 32, 3, 2)
    cin, block = 32, 0
    for t, c, n, s in _V2_BLOCKS:
        for i in range(n):
            stride = s if i == 0 else 1
            name = "expanded_conv" if block == 0 else f"expanded_conv_{block}"
            x = y
            hidden = cin * t
            if t != 1:
                y = net.conv_bn(y, f"{name}/expand", cin, hidden, 1, 1)
            y = net.conv_bn(y, f"{name}/depthwise", hidden, hidden, 3, stride, group=hidden)
            y = net.conv_bn(y, f"{name}/project", hidden, c, 1, 1, act=False)
            if stride == 1 and cin == c:
                y = net.node("Add", [x, y], f"{name}/add")
            cin, block = c, block + 1
    y = net.conv_bn(y, "Conv_1", cin, 1280, 1, 1)
    out = _head(net, y, 1280, classes, "AvgPool")
    return net.model(
        "mobilenet_v2",
        [net.tensor("input", (1, 3, resolution, resolution))],
        [net.tensor(out, (1, classes))],
        13,
    )


def mobilenet_v1(resolution: int = 224, classes: int = 1000, seed: int = 0) -> Any:
    """MobileNetV1 (width 1.0): stem, 13 depthwise-separable layers, pool, FC."""
    net = _Net(seed)
    y = net.conv_bn("input", "Conv2d_0", 3, 32, 3, 2)
    cin = 32
    for i, (c, s) in enumerate(_V1_LAYERS, start=1):
        y = net.conv_bn(y, f"Conv2d_{i}_depthwise", cin, cin, 3, s, group=cin)
        y = net.conv_bn(y, f"Conv2d_{i}_pointwise", cin, c, 1, 1)
        cin = c
    out = _head(net, y, cin, classes, "AvgPool_1a")
    return net.model(
        "mobilenet_v1",
        [net.tensor("input", (1, 3, resolution, resolution))],
        [net.tensor(out, (1, classes))],
        13,
    )


def gru_model(
    steps: int = 50,
    batch: int = 1,
    input_size: int = 512,
    hidden: int = 512,
    linear_before_reset: int = 1,
    bias: bool = True,
    initial_h: bool = True,
    seed: int = 0,
) -> Any:
    """One forward GRU layer over `steps` time steps; outputs Y and Y_h."""
    net = _Net(seed)
    scale = 1.0 / math.sqrt(hidden)
    ins = [
        "X",
        net.weight("W", (1, 3 * hidden, input_size), scale),
        net.weight("R", (1, 3 * hidden, hidden), scale),
    ]
    ins.append(net.weight("B", (1, 6 * hidden), scale) if bias else "")
    ins.append("")  # sequence_lens: absent
    graph_inputs = [net.tensor("X", (steps, batch, input_size))]
    if initial_h:
        ins.append("h0")
        graph_inputs.append(net.tensor("h0", (1, batch, hidden)))
    net.nodes.append(
        net.h.make_node(
            "GRU",
            ins,
            ["Y", "Y_h"],
            name="gru",
            hidden_size=hidden,
            linear_before_reset=linear_before_reset,
        )
    )
    return net.model(
        "gru",
        graph_inputs,
        [net.tensor("Y", (steps, 1, batch, hidden)), net.tensor("Y_h", (1, batch, hidden))],
        14,
    )


def transformer_encoder(
    seq: int = 128,
    width: int = 256,
    heads: int = 4,
    ffn: int = 1024,
    activation: str = "gelu",
    seed: int = 0,
) -> Any:
    """A post-norm transformer encoder block: multi-head self-attention, residual, LayerNorm,
    a feed-forward network (GELU written with Erf, or ReLU), residual, LayerNorm (opset 17)."""
    net = _Net(seed)
    d = width // heads

    def linear(x: str, name: str, n_in: int, n_out: int) -> str:
        y = net.node(
            "MatMul",
            [x, net.weight(f"{name}/weight", (n_in, n_out), 1.0 / math.sqrt(n_in))],
            f"{name}/MatMul",
        )
        return net.node("Add", [y, net.weight(f"{name}/bias", (n_out,), 0.02)], f"{name}/Add")

    def shape(name: str, dims: list[int]) -> str:
        return net.const(name, np.array(dims, np.int64))

    def heads_of(x: str, name: str, perm: list[int]) -> str:
        y = net.node("Reshape", [x, shape(f"{name}/shape", [1, seq, heads, d])], f"{name}/Reshape")
        return net.node("Transpose", [y], f"{name}/Transpose", perm=perm)

    q = heads_of(linear("x", "q", width, width), "q", [0, 2, 1, 3])
    k = heads_of(linear("x", "k", width, width), "k", [0, 2, 3, 1])
    v = heads_of(linear("x", "v", width, width), "v", [0, 2, 1, 3])
    scores = net.node("MatMul", [q, k], "attention/scores")
    scale = net.const("attention/sqrt_d", np.array(math.sqrt(d), np.float32))
    scores = net.node("Div", [scores, scale], "attention/scale")
    probs = net.node("Softmax", [scores], "attention/softmax", axis=-1)
    ctx = net.node("MatMul", [probs, v], "attention/context")
    ctx = net.node("Transpose", [ctx], "attention/merge/Transpose", perm=[0, 2, 1, 3])
    ctx = net.node(
        "Reshape", [ctx, shape("attention/merge/shape", [1, seq, width])], "attention/merge/Reshape"
    )
    att = linear(ctx, "attention/out", width, width)
    y = net.node("Add", ["x", att], "attention/residual")

    def layer_norm(x: str, name: str) -> str:
        g = net.const(
            f"{name}/gamma", (1.0 + 0.1 * net.rng.standard_normal(width)).astype(np.float32)
        )
        b = net.const(f"{name}/beta", (0.1 * net.rng.standard_normal(width)).astype(np.float32))
        return net.node("LayerNormalization", [x, g, b], name, axis=-1, epsilon=1e-5)

    y = layer_norm(y, "norm1")
    hdn = linear(y, "ffn/in", width, ffn)
    if activation == "gelu":
        half = net.const("ffn/gelu/half", np.array(0.5, np.float32))
        one = net.const("ffn/gelu/one", np.array(1.0, np.float32))
        root2 = net.const("ffn/gelu/sqrt2", np.array(math.sqrt(2.0), np.float32))
        e = net.node("Erf", [net.node("Div", [hdn, root2], "ffn/gelu/Div")], "ffn/gelu/Erf")
        e = net.node("Add", [e, one], "ffn/gelu/Add")
        act = net.node("Mul", [net.node("Mul", [hdn, e], "ffn/gelu/Mul"), half], "ffn/gelu/Mul_1")
    elif activation == "relu":
        act = net.node("Relu", [hdn], "ffn/Relu")
    else:
        raise ValueError(f"activation must be gelu or relu, not {activation!r}")
    out = linear(act, "ffn/out", ffn, width)
    y = net.node("Add", [y, out], "ffn/residual")
    y = layer_norm(y, "norm2")
    return net.model(
        "transformer_encoder",
        [net.tensor("x", (1, seq, width))],
        [net.tensor(y, (1, seq, width))],
        17,
    )
