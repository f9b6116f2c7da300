"""Small ONNX models built with onnx.helper, and the onnxruntime reference they are checked with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def single_node(
    op: str,
    inputs: dict[str, tuple[int, ...]],
    output_shape: Sequence[int] | None = None,
    constants: dict[str, np.ndarray] | None = None,
    opset: int = 17,
    outputs: Sequence[str] = ("Y",),
    input_names: Sequence[str] | None = None,
    **attrs: Any,
) -> onnx.ModelProto:
    """A model of one node: graph inputs `inputs` (float32), initializers `constants`; the node
    reads `input_names` (default: inputs then constants, in order)."""
    constants = constants or {}
    names = list(input_names) if input_names is not None else [*inputs, *constants]
    node = helper.make_node(op, names, list(outputs), name=f"the_{op.lower()}", **attrs)
    graph = helper.make_graph(
        [node],
        f"{op.lower()}_test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs.items()],
        [
            out(o)
            if output_shape is None
            else helper.make_tensor_value_info(o, TensorProto.FLOAT, list(output_shape))
            for o in outputs
        ],
        [numpy_helper.from_array(v, n) for n, v in constants.items()],
    )
    return model_of(graph, opset)


def out(name: str) -> onnx.ValueInfoProto:
    """A graph output whose type shape inference fills in (`model_of`)."""
    return helper.make_empty_tensor_value_info(name)


def model_of(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    """The model of `graph`, its output types inferred (the checker wants them)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def ort_outputs(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What onnxruntime computes (float32), by output name."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {k: np.asarray(v, dtype=np.float32) for k, v in inputs.items()}
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feed), strict=True))


def random_feed(model: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """float32 values (as float64) for every input of an isamap Model."""
    rng = np.random.default_rng(seed)
    return {
        n: rng.standard_normal(s).astype(np.float32).astype(np.float64)
        for n, s in model.inputs.items()
    }


def rand(*shape: int, seed: int = 1, scale: float = 1.0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)
