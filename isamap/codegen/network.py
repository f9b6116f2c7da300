"""A whole model run natively in float32: each layer's native program with its weights bound.

What a deployed network does between its kernels: every layer's weights (the model's constants
it reads) are bound to its program once (`PreparedProgram`: fused products pack them once), every
layer's output buffers are allocated once, views are reshapes of float32 data (a copy only for a
stack of several values), and values pass from layer to layer as float32 -- no float64 round
trip. Layers that run the same program on the same weights (a GRU's time steps) share one bound
copy of them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from isamap.codegen.native import NativeProgram, PreparedProgram
from isamap.ir.errors import IsamapError
from isamap.ir.model import Layer, Model, View

__all__ = ["NativeNetwork", "layer_constants"]

F32 = NDArray[np.float32]


def layer_constants(model: Model, layer: Layer) -> tuple[str, ...]:
    """The layer's kernel inputs bound to model constants (its weights), in kernel order."""
    return tuple(t for t, v in layer.inputs().items() if v in model.constants)


@dataclass(frozen=True)
class _Call:
    """One layer's call: its bound program, the model values it reads (in ABI order) and the
    buffers it writes, each with the model value it becomes ("" when the model never reads it)."""

    program: PreparedProgram
    reads: tuple[str, ...]
    writes: tuple[tuple[str, F32], ...]


class NativeNetwork:
    """`model` run natively: `programs` maps each layer (by `id`) to its native program, emitted
    with `layer_constants(model, layer)` as its constants. `run` is serialised by a lock: the
    layers' output buffers are the network's own, reused on every call."""

    def __init__(self, model: Model, programs: Mapping[int, NativeProgram]) -> None:
        self.model = model
        consts = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in model.constants.items()}
        self._constants: dict[str, F32] = consts
        self._steps: list[View | _Call] = []
        bound: dict[tuple[int, tuple[tuple[str, str], ...]], PreparedProgram] = {}
        for step in model.steps:
            if isinstance(step, View):
                self._steps.append(step)
                continue
            program = programs.get(id(step))
            if program is None:
                raise IsamapError(f"native network: no program for layer {step.name}")
            names = layer_constants(model, step)
            if set(program.source.constants) != set(names):
                raise IsamapError(
                    f"native network: layer {step.name}'s program binds "
                    f"{list(program.source.constants)}, its weights are {list(names)}"
                )
            key = (id(program), tuple((t, step.bindings[t]) for t in names))
            if key not in bound:
                bound[key] = program.prepare({t: consts[step.bindings[t]] for t in names})
            outputs = step.outputs()
            writes = tuple(
                (outputs.get(name, ""), np.empty(shape, np.float32))
                for name, shape in program.source.outputs
            )
            reads = tuple(step.bindings[t] for t in program.source.inputs)
            self._steps.append(_Call(bound[key], reads, writes))
        self._lock = threading.Lock()

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, F32]:
        """The model's outputs by name (fresh float32 arrays) for `inputs`, the model's inputs
        by name, already checked (`Model.check_inputs`)."""
        with self._lock:
            values: dict[str, F32] = dict(self._constants)
            for name in self.model.inputs:
                values[name] = np.ascontiguousarray(inputs[name], dtype=np.float32)
            for step in self._steps:
                if isinstance(step, View):
                    values[step.name] = _view(step, values)
                    continue
                step.program.call([values[v] for v in step.reads], [a for _, a in step.writes])
                for name, arr in step.writes:
                    if name:
                        values[name] = arr
            return {name: values[name].copy() for name in self.model.outputs}


def _view(view: View, values: Mapping[str, F32]) -> F32:
    """`view` on float32 values: a reshape of its source in place, a copy for a stack."""
    parts = [values[s].reshape(-1) for s in view.sources]
    flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
    size = math.prod(view.shape)
    return flat[view.offset : view.offset + size].reshape(view.shape)
