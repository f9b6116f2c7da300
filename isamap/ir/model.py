"""A whole network as data: a graph of Kernels over named values, with its constant weights.

`isamap.load_onnx` builds one; `isamap.compile(model, target)` compiles it layer by layer. A
model is a list of steps in execution order. Each step is a `Layer` (a Kernel whose tensors are
bound to model values) or a `View` (a value that is other values' row-major data read in place:
a reshape, a flatten, a slice of time steps, a stack of them; no data moves). Values keep the
names of the graph they came from; constants are the model's weights, inputs of its layers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from isamap.ir.errors import IsamapError
from isamap.ir.kernel import Kernel
from isamap.ir.reference import evaluate

__all__ = ["Layer", "LayerRunner", "Model", "Step", "View", "kernel_macs"]

Array = NDArray[np.float64]


def kernel_macs(kernel: Kernel) -> int:
    """Multiply-accumulates of the kernel's contractions (`+=` statements), one per iteration."""
    return sum(
        math.prod(kernel.extents[i].values())
        for i, s in enumerate(kernel.statements)
        if s.accumulate and s.reduce == "+" and s.reduced_indices()
    )


@dataclass(frozen=True)
class Layer:
    """One kernel of a model; `bindings` maps each of its input and output tensors to a value.

    `nodes` are the source graph's nodes it computes (several when fused), `op` their op types;
    `kind` says what its kernel does, for fusion: `contraction` (a `+=` product: Conv, Gemm,
    MatMul), `depthwise`, `pointwise`, `elementwise` (only `=` statements), `reduction`, `layout`.
    """

    name: str
    op: str
    kernel: Kernel
    bindings: Mapping[str, str]
    nodes: tuple[str, ...] = ()
    kind: str = "contraction"

    def inputs(self) -> dict[str, str]:
        """Kernel input tensor -> model value."""
        return {t: self.bindings[t] for t in self.kernel.inputs()}

    def outputs(self) -> dict[str, str]:
        """Kernel tensor -> model value, for every bound tensor the kernel writes."""
        written = set(self.kernel.written())
        return {t: v for t, v in self.bindings.items() if t in written}


@dataclass(frozen=True)
class View:
    """Value `name` of `shape`: the row-major data of `sources` laid end to end, from element
    `offset` on. A reshape is one source at offset 0; time step t of a sequence is one source at
    offset t * step size; a stack is several sources. Costs nothing: the data stays in place."""

    name: str
    sources: tuple[str, ...]
    shape: tuple[int, ...]
    offset: int = 0
    node: str = ""
    op: str = "View"

    def apply(self, values: Mapping[str, Array]) -> Array:
        flat = np.concatenate(
            [np.asarray(values[s], dtype=np.float64).ravel() for s in self.sources]
        )
        size = math.prod(self.shape)
        return flat[self.offset : self.offset + size].reshape(self.shape)


Step = Layer | View

#: Computes one layer: (layer, its kernel's inputs) -> at least its bound outputs, by tensor name.
LayerRunner = Callable[[Layer, Mapping[str, Array]], Mapping[str, NDArray[Any]]]


@dataclass(frozen=True)
class Model:
    """A network: its inputs (name -> shape), outputs, constants and steps in execution order.

    `shapes` holds every value's shape. Build one with `isamap.load_onnx`; `Model.check` says
    why a hand-built one is inconsistent.
    """

    name: str
    inputs: Mapping[str, tuple[int, ...]]
    outputs: tuple[str, ...]
    constants: Mapping[str, Array]
    steps: tuple[Step, ...]
    shapes: Mapping[str, tuple[int, ...]]
    source: str = "<model>"
    info: Mapping[str, str] = field(default_factory=dict)

    def layers(self) -> tuple[Layer, ...]:
        return tuple(s for s in self.steps if isinstance(s, Layer))

    def macs(self) -> int:
        """Multiply-accumulates of every layer's contractions."""
        return sum(kernel_macs(layer.kernel) for layer in self.layers())

    def check(self) -> None:
        """IsamapError unless every step reads values defined before it, at their shapes."""
        known = dict(self.inputs)
        for name, arr in self.constants.items():
            known[name] = tuple(arr.shape)
        for step in self.steps:
            if isinstance(step, View):
                missing = [s for s in step.sources if s not in known]
                total = sum(math.prod(known[s]) for s in step.sources if s in known)
                if missing or step.offset < 0 or step.offset + math.prod(step.shape) > total:
                    raise IsamapError(f"{self.source}: view {step.name} reads past its sources")
                known[step.name] = step.shape
                continue
            for tensor, value in step.inputs().items():
                if value not in known:
                    raise IsamapError(
                        f"{self.source}: layer {step.name} reads {value} before it is computed"
                    )
                if known[value] != tuple(step.kernel.shapes[tensor]):
                    raise IsamapError(
                        f"{self.source}: layer {step.name}: {value} has shape {known[value]}, "
                        f"its kernel expects {tuple(step.kernel.shapes[tensor])}"
                    )
            for tensor, value in step.outputs().items():
                known[value] = tuple(step.kernel.shapes[tensor])
        for out in self.outputs:
            if out not in known:
                raise IsamapError(f"{self.source}: output {out} is never computed")

    def check_inputs(
        self, inputs: object, dtype: type[np.floating[Any]] = np.float64
    ) -> dict[str, NDArray[Any]]:
        """`inputs` as arrays of `dtype` (float64: the reference's; float32: native code's), one
        per model input; IsamapError naming the input if not (a value past `dtype`'s range is
        non-finite)."""
        listed = ", ".join(self.inputs) or "none"
        if not isinstance(inputs, Mapping):
            raise IsamapError(
                f"model {self.name}: inputs must be a dict from input name to array "
                f"(inputs: {listed}), not {type(inputs).__name__}"
            )
        for key in inputs:
            if key not in self.inputs:
                raise IsamapError(
                    f"model {self.name}: no input named {key!r} (inputs: {listed})"[:200]
                )
        out: dict[str, NDArray[Any]] = {}
        for name, shape in self.inputs.items():
            if name not in inputs:
                raise IsamapError(f"model {self.name}: missing input {name} (shape {shape})")
            try:
                with np.errstate(over="ignore"):
                    arr = np.asarray(inputs[name], dtype=dtype)
            except (TypeError, ValueError):
                raise IsamapError(
                    f"model {self.name}: input {name} is not an array of real numbers"
                ) from None
            if arr.shape != tuple(shape):
                raise IsamapError(
                    f"model {self.name}: input {name} has shape {arr.shape}, "
                    f"expected {tuple(shape)}"
                )
            if not np.isfinite(arr).all():
                raise IsamapError(f"model {self.name}: input {name} holds a non-finite value")
            out[name] = arr
        return out

    def random_inputs(self, seed: int = 0) -> dict[str, Array]:
        """Standard normal values for every model input."""
        rng = np.random.default_rng(seed)
        return {n: rng.standard_normal(s) for n, s in self.inputs.items()}

    def evaluate(self, inputs: Mapping[str, object]) -> dict[str, Array]:
        """The model's numpy reference: every layer by `isamap.ir.evaluate`; outputs by name."""
        values = self.run_steps(inputs, lambda layer, args: evaluate(layer.kernel, args))
        return {name: values[name] for name in self.outputs}

    def run_steps(
        self,
        inputs: Mapping[str, object],
        run_layer: LayerRunner,
    ) -> dict[str, Array]:
        """Every value of the model, each layer computed by `run_layer(layer, kernel inputs)`."""
        values: dict[str, Array] = dict(self.check_inputs(inputs))
        values.update(self.constants)
        for step in self.steps:
            if isinstance(step, View):
                values[step.name] = step.apply(values)
                continue
            args = {t: values[v] for t, v in step.inputs().items()}
            result = run_layer(step, args)
            for tensor, value in step.outputs().items():
                values[value] = np.asarray(result[tensor], dtype=np.float64)
        return values

    def to_dict(self) -> dict[str, object]:
        """The model as JSON-able data: every step (a layer's kernel as its text), the constants'
        shapes (not their values: weights stay arrays)."""
        steps: list[dict[str, object]] = []
        for step in self.steps:
            if isinstance(step, View):
                steps.append(
                    {
                        "view": step.name,
                        "op": step.op,
                        "node": step.node,
                        "sources": list(step.sources),
                        "shape": list(step.shape),
                        "offset": step.offset,
                    }
                )
            else:
                steps.append(
                    {
                        "layer": step.name,
                        "op": step.op,
                        "kind": step.kind,
                        "nodes": list(step.nodes),
                        "kernel": str(step.kernel),
                        "bindings": dict(step.bindings),
                        "macs": kernel_macs(step.kernel),
                    }
                )
        return {
            "name": self.name,
            "source": self.source,
            "inputs": {n: list(s) for n, s in self.inputs.items()},
            "outputs": list(self.outputs),
            "constants": {n: list(a.shape) for n, a in self.constants.items()},
            "macs": self.macs(),
            "steps": steps,
            "info": dict(self.info),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def __str__(self) -> str:
        lines = [f"model {self.name} ({self.source})"]
        lines.append("  inputs: " + ", ".join(f"{n}{list(s)}" for n, s in self.inputs.items()))
        lines.append(
            f"  constants: {len(self.constants)} "
            f"({sum(a.size for a in self.constants.values()):,} values)"
        )
        for step in self.steps:
            if isinstance(step, View):
                lines.append(f"  {step.name}{list(step.shape)} = view of {', '.join(step.sources)}")
            else:
                outs = ", ".join(
                    f"{v}{list(step.kernel.shapes[t])}" for t, v in step.outputs().items()
                )
                lines.append(
                    f"  {outs} = {step.op} [{step.name}] ({kernel_macs(step.kernel):,} MACs)"
                )
        lines.append("  outputs: " + ", ".join(self.outputs))
        return "\n".join(lines)
