"""The model under construction: values, constants and steps, and a builder for one layer's kernel.

The ONNX converters (`isamap/frontend/ops.py`) call these; nothing here knows ONNX. A layer's
kernel is written as kernel text with local tensor names (`X`, `W`, `Y`...) bound to the model's
value names, so two layers of the same shape have the same kernel and are compiled once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from isamap.ir.errors import IsamapError
from isamap.ir.model import Layer, Step, View
from isamap.ir.parser import parse_kernel

__all__ = ["GraphBuilder", "KernelText", "NodeError", "fmt_float"]

Array = NDArray[np.float64]


class NodeError(Exception):
    """A problem with one node; the loader prefixes the file, node name and op type."""


def fmt_float(value: float) -> str:
    """A float literal the kernel parser reads back exactly."""
    v = float(value)
    if not math.isfinite(v):
        raise NodeError(f"constant {v} is not a finite number")
    text = repr(v)
    return f"({text})" if v < 0 else text


@dataclass
class KernelText:
    """One layer's kernel as text, with its local tensors bound to model values."""

    name: str
    decls: list[str] = field(default_factory=list)
    stmts: list[str] = field(default_factory=list)
    bindings: dict[str, str] = field(default_factory=dict)
    _declared: dict[str, str] = field(default_factory=dict)  # value -> local name

    def tensor(
        self,
        value: str,
        shape: tuple[int, ...],
        local: str,
        pad: tuple[tuple[int, int], ...] = (),
    ) -> str:
        """Declare input `value` as local tensor `local` (the same value twice: one tensor)."""
        if value in self._declared and not pad:
            return self._declared[value]
        name = local
        n = 1
        while name in self.bindings:
            n += 1
            name = f"{local}{n}"
        dims = ", ".join(str(d) for d in shape)
        text = f"tensor {name}[{dims}] f32"
        if pad and any(p != (0, 0) for p in pad):
            text += " pad(" + ", ".join(f"{lo}:{hi}" for lo, hi in pad) + ")"
        self.decls.append(text)
        self.bindings[name] = value
        if not pad:
            self._declared[value] = name
        return name

    def local(self, base: str) -> str:
        """A fresh local name for an intermediate tensor."""
        name, n = base, 1
        while name in self.bindings or any(s.startswith(f"{name}[") for s in self.stmts):
            n += 1
            name = f"{base}{n}"
        self.bindings[name] = ""  # reserved; dropped unless bound by `output`
        return name

    def stmt(self, text: str) -> None:
        self.stmts.append(text)

    def output(self, local: str, value: str) -> None:
        self.bindings[local] = value

    def text(self) -> str:
        return "\n".join([*self.decls, *self.stmts]) + "\n"


class GraphBuilder:
    """Values (shapes, constants) and steps of the model being built, in execution order."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.constants: dict[str, NDArray[np.generic]] = {}
        self.steps: list[Step] = []
        self.names: set[str] = set()
        self.consumers: dict[str, int] = {}  # value -> how many node inputs read it
        self.graph_outputs: set[str] = set()
        self.convs: dict[str, Any] = {}  # value -> the ConvRecord of the Conv computing it

    def shape(self, value: str) -> tuple[int, ...]:
        if value not in self.shapes:
            raise NodeError(f"reads {value!r}, which no earlier node or input defines"[:200])
        return self.shapes[value]

    def constant(self, value: str) -> NDArray[np.generic] | None:
        return self.constants.get(value)

    def add_constant(self, name: str, array: NDArray[np.generic]) -> None:
        self.constants[name] = np.asarray(array)
        self.shapes[name] = tuple(int(d) for d in np.shape(array))
        self.names.add(name)

    def fresh(self, base: str) -> str:
        """A value name no ONNX value or earlier fresh name uses."""
        name, n = base, 0
        while name in self.names or name in self.shapes:
            n += 1
            name = f"{base}_{n}"
        self.names.add(name)
        return name

    def view(
        self,
        name: str,
        sources: tuple[str, ...],
        shape: tuple[int, ...],
        node: str,
        offset: int = 0,
        op: str = "View",
    ) -> str:
        """Value `name` as a view of `sources` (folded at once when they are all constants)."""
        shape = tuple(int(d) for d in shape)
        total = sum(math.prod(self.shape(s)) for s in sources)
        if offset + math.prod(shape) > total:
            raise NodeError(f"a view of {math.prod(shape)} elements of {total} at {offset}")
        if all(s in self.constants for s in sources):
            flat = np.concatenate([np.asarray(self.constants[s]).ravel() for s in sources])
            self.add_constant(name, flat[offset : offset + math.prod(shape)].reshape(shape))
            return name
        self.shapes[name] = shape
        self.names.add(name)
        self.steps.append(View(name, sources, shape, offset, node, op))
        return name

    def layer(self, kt: KernelText, node: str, op: str, kind: str, nodes: tuple[str, ...]) -> Layer:
        """Parse and check the layer's kernel and append it; its outputs become values."""
        try:
            kernel = parse_kernel(kt.text(), filename=f"<{op} {node}>", name=kt.name)
        except IsamapError as err:
            raise NodeError(f"cannot express it as a kernel: {err.message}") from None
        bindings = {t: v for t, v in kt.bindings.items() if v}
        layer = Layer(node, op, kernel, bindings, nodes, kind)
        for tensor, value in layer.outputs().items():
            self.shapes[value] = tuple(kernel.shapes[tensor])
            self.names.add(value)
        self.steps.append(layer)
        return layer
