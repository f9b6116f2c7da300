"""`load_onnx`: an ONNX file -> a `Model` (kernels in index notation, weights as constants).

The file is read with the `onnx` package (the optional extra `isamap[onnx]`), checked, and its
graph converted node by node in order (`isamap/frontend/ops.py`); shapes are static and inferred
as each node's kernel is checked. Nodes whose inputs are all constants are evaluated at load time.
Every problem is one `IsamapError` line naming the file and, for a node, its name and op type.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from isamap.frontend.graph import GraphBuilder, NodeError
from isamap.frontend.ops import CONVERTERS, Node
from isamap.ir.errors import IsamapError
from isamap.ir.model import Model, Step, View
from isamap.ir.reference import evaluate

__all__ = ["load_onnx", "model_from_proto"]

#: ONNX element types a graph input may have (isamap computes float32 models).
_FLOAT = 1


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:  # pragma: no cover - the extra is installed with the tests
        raise IsamapError("load_onnx needs the onnx package: pip install 'isamap[onnx]'") from None
    return onnx


def load_onnx(
    path: str | os.PathLike[str], input_shapes: Mapping[str, tuple[int, ...]] | None = None
) -> Model:
    """Read an ONNX model file as a Model.

    `input_shapes` fixes the shape of inputs whose dimensions are symbolic (a batch `N`, say).
    Raises IsamapError, one line naming the file, for a missing, truncated or non-ONNX file, and
    naming the node, its op type and the attribute for anything isamap cannot compile.
    """
    if not isinstance(path, str | os.PathLike):
        raise IsamapError(f"load_onnx: expected a path, not {type(path).__name__}")
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise IsamapError(f"{p}: cannot read the ONNX file: {exc.strerror}") from None
    onnx = _onnx()
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning... for bad bytes
        reason = str(exc).split("\n", 1)[0][:80] or type(exc).__name__
        raise IsamapError(
            f"{p}: not an ONNX model (truncated or another format: {reason})"
        ) from None
    return model_from_proto(proto, str(p), input_shapes)


def model_from_proto(
    proto: Any, source: str = "<onnx>", input_shapes: Mapping[str, tuple[int, ...]] | None = None
) -> Model:
    """A Model from an `onnx.ModelProto` already in memory (`load_onnx` reads the file)."""
    onnx = _onnx()
    if not isinstance(proto, onnx.ModelProto):
        raise IsamapError(f"{source}: expected an onnx.ModelProto, not {type(proto).__name__}")
    graph = proto.graph
    if proto.ir_version <= 0 or not graph.node or not graph.output:
        raise IsamapError(f"{source}: not an ONNX model (no graph: truncated or another format)")
    with contextlib.suppress(Exception):  # the checker below says what is wrong
        proto = onnx.shape_inference.infer_shapes(proto)  # output types may be left to inference
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        reason = str(exc).strip().split("\n", 1)[0][:160]
        raise IsamapError(f"{source}: invalid ONNX model: {reason}") from None
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 7:
        raise IsamapError(f"{source}: opset {opset} is too old; isamap reads opset 7 and newer")
    g = GraphBuilder(source)
    for init in graph.initializer:
        g.add_constant(init.name, _array(onnx, init, source))
    inputs: dict[str, tuple[int, ...]] = {}
    shapes = dict(input_shapes or {})
    for vi in graph.input:
        if vi.name in g.constants:
            continue
        inputs[vi.name] = _input_shape(vi, shapes.pop(vi.name, None), source)
        g.shapes[vi.name] = inputs[vi.name]
        g.names.add(vi.name)
    if shapes:
        raise IsamapError(f"{source}: input_shapes names no graph input: {', '.join(shapes)}")
    nodes = [_node(onnx, n, i, opset, source) for i, n in enumerate(graph.node)]
    for n in nodes:
        for v in n.inputs:
            if v:
                g.consumers[v] = g.consumers.get(v, 0) + 1
    outputs = tuple(o.name for o in graph.output)
    g.graph_outputs = set(outputs)
    for n in nodes:
        _convert(g, n, source)
    for out in outputs:
        if out not in g.shapes:
            raise IsamapError(f"{source}: graph output {out} is computed by no node")
    steps = _live_steps(g.steps, outputs)
    used = {v for s in steps for v in _reads(s)} | set(outputs)
    constants = {k: np.asarray(v, dtype=np.float64) for k, v in g.constants.items() if k in used}
    name = graph.name or Path(source).stem
    model = Model(
        name,
        inputs,
        outputs,
        constants,
        tuple(steps),
        dict(g.shapes),
        source,
        {"opset": str(opset), "producer": proto.producer_name},
    )
    model.check()
    return model


def _array(onnx: Any, tensor: Any, source: str) -> np.ndarray:
    try:
        arr = onnx.numpy_helper.to_array(tensor)
    except Exception as exc:
        raise IsamapError(
            f"{source}: initializer {tensor.name} cannot be read: {exc}"[:200]
        ) from None
    if arr.dtype.kind not in "biuf":
        raise IsamapError(
            f"{source}: initializer {tensor.name} has element type {arr.dtype}; "
            "isamap reads numeric tensors"
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise IsamapError(f"{source}: initializer {tensor.name} holds a non-finite value")
    return np.asarray(arr)


def _input_shape(vi: Any, given: tuple[int, ...] | None, source: str) -> tuple[int, ...]:
    t = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise IsamapError(f"{source}: input {vi.name} is not a tensor")
    if t.elem_type != _FLOAT:
        raise IsamapError(
            f"{source}: input {vi.name} has ONNX element type {t.elem_type}; "
            "isamap compiles float32 models"
        )
    dims: list[int] = []
    for d in t.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            dims.append(-1)
    if given is not None:
        given = tuple(int(x) for x in given)
        if len(given) != len(dims) or any(
            d not in (-1, x) for d, x in zip(dims, given, strict=True)
        ):
            raise IsamapError(
                f"{source}: input_shapes gives {vi.name} {list(given)}, the model declares {dims}"
            )
        return given
    if not t.HasField("shape") or -1 in dims:
        raise IsamapError(
            f"{source}: input {vi.name} has a symbolic or unknown dimension ({dims}); "
            "pass input_shapes={...} to fix it"
        )
    if any(d <= 0 for d in dims) or math.prod(dims) == 0:
        raise IsamapError(f"{source}: input {vi.name} has an empty shape {dims}")
    return tuple(dims)


def _attr(onnx: Any, a: Any) -> object:
    t = onnx.AttributeProto
    if a.type == t.INT:
        return int(a.i)
    if a.type == t.FLOAT:
        return float(a.f)
    if a.type == t.STRING:
        return a.s.decode("utf-8", "replace")
    if a.type == t.INTS:
        return [int(x) for x in a.ints]
    if a.type == t.FLOATS:
        return [float(x) for x in a.floats]
    if a.type == t.STRINGS:
        return [s.decode("utf-8", "replace") for s in a.strings]
    if a.type == t.TENSOR:
        return onnx.numpy_helper.to_array(a.t)
    return f"<{onnx.AttributeProto.AttributeType.Name(a.type).lower()}>"


def _node(onnx: Any, n: Any, index: int, opset: int, source: str) -> Node:
    name = n.name or f"{n.op_type}_{index}"
    if n.domain not in ("", "ai.onnx"):
        raise IsamapError(
            f"{source}: node {name} ({n.op_type}): operators of domain "
            f"{n.domain!r} are not supported"
        )
    try:
        attrs = {a.name: _attr(onnx, a) for a in n.attribute}
    except Exception as exc:
        raise IsamapError(
            f"{source}: node {name} ({n.op_type}): bad attribute: {exc}"[:200]
        ) from None
    return Node(name, n.op_type, tuple(n.input), tuple(n.output), attrs, opset)


def _convert(g: GraphBuilder, n: Node, source: str) -> None:
    where = f"{source}: node {n.name} ({n.op})"
    entry = CONVERTERS.get(n.op)
    if entry is None:
        raise IsamapError(f"{where}: unsupported op type {n.op}")
    convert, known = entry
    for key in n.attrs:
        if key not in known:
            raise IsamapError(f"{where}: unsupported attribute {key}")
    before = len(g.steps)
    try:
        for v in n.inputs:
            if v:
                g.shape(v)
        convert(g, n)
        if n.op != "Constant" and all(v in g.constants for v in n.inputs if v):
            _fold(g, before)
    except NodeError as err:
        raise IsamapError(f"{where}: {err}") from None
    except IsamapError as err:
        raise IsamapError(f"{where}: {err.message}") from None


def _fold(g: GraphBuilder, before: int) -> None:
    """Evaluate the steps a node added (its inputs all constant) into constants."""
    values: dict[str, Any] = dict(g.constants)
    for step in g.steps[before:]:
        if isinstance(step, View):
            values[step.name] = step.apply(values)
            g.add_constant(step.name, values[step.name])
            continue
        result = evaluate(step.kernel, {t: values[v] for t, v in step.inputs().items()})
        for tensor, value in step.outputs().items():
            values[value] = result[tensor]
            g.add_constant(value, result[tensor])
    del g.steps[before:]


def _reads(step: Step) -> tuple[str, ...]:
    if isinstance(step, View):
        return step.sources
    return tuple(step.inputs().values())


def _writes(step: Step) -> tuple[str, ...]:
    if isinstance(step, View):
        return (step.name,)
    return tuple(step.outputs().values())


def _live_steps(steps: list[Step], outputs: tuple[str, ...]) -> list[Step]:
    """The steps some output depends on (a Conv's BatchNormalization leftovers dropped)."""
    needed = set(outputs)
    live: list[Step] = []
    for step in reversed(steps):
        if any(v in needed for v in _writes(step)):
            live.append(step)
            needed.update(_reads(step))
    live.reverse()
    return live
