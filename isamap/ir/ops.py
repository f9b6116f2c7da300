"""The operator vocabulary of the kernel language: one table, every other spelling reads it.

Each elementwise operator has one row: its name (the string the parser, the e-graph's `Fn`/`Ew`
nodes, the target files and the cost models all use), its arity, how it is written, its numpy
semantics (the living definition: the reference evaluator, the functional machine and the rule
checker all call it) and its cost class on a host (`transcendental` ones — the transcendental
functions, division and square root — cost the host's `transcendental_cycles` per element, the
others one cycle). Adding an operator is adding a row
(and, for a new spelling, a parser rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BINARY",
    "BINARY_NAMES",
    "CALL_FUNCTIONS",
    "OPERATORS",
    "TRANSCENDENTAL",
    "UNARY",
    "UNARY_NAMES",
    "Operator",
    "apply",
]

Array = NDArray[np.float64]

#: How an operator is written in kernel text: `f(x)` / `f(x, y)`, `x op y`, or `-x`.
Spelling = Literal["call", "infix", "prefix"]


@dataclass(frozen=True)
class Operator:
    """One elementwise operator of the language."""

    name: str
    arity: int
    spelling: Spelling
    numpy: Callable[..., Array]
    transcendental: bool = False
    doc: str = ""


def _quiet(fn: Callable[..., Array]) -> Callable[..., Array]:
    """`fn` without numpy's floating-point warnings: x / 0 is inf and sqrt(-1) is nan, as in C."""

    def run(*args: Array) -> Array:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.asarray(fn(*args), dtype=np.float64)

    run.__name__ = getattr(fn, "__name__", "op")
    return run


def _sigmoid(x: Array) -> Array:
    # tanh form: no overflow in exp for large |x|
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)), dtype=np.float64)


def _relu(x: Array) -> Array:
    return np.maximum(x, 0.0)


def _relu6(x: Array) -> Array:
    return np.minimum(np.maximum(x, 0.0), 6.0)


_ERF = np.frompyfunc(math.erf, 1, 1)


def _erf(x: Array) -> Array:
    # the C library's erf, element by element: numpy has none, and an approximation would be a
    # second definition that disagrees in the last bits
    return np.asarray(_ERF(np.asarray(x, dtype=np.float64)), dtype=np.float64)


OPERATORS: tuple[Operator, ...] = (
    # unary functions, written f(x)
    Operator("relu", 1, "call", _relu, doc="max(x, 0)"),
    Operator("relu6", 1, "call", _relu6, doc="min(max(x, 0), 6): ReLU6, ONNX Clip(0, 6)"),
    Operator("sigmoid", 1, "call", _sigmoid, True, "1 / (1 + exp(-x))"),
    Operator("tanh", 1, "call", _quiet(np.tanh), True, "hyperbolic tangent"),
    Operator("exp", 1, "call", _quiet(np.exp), True, "e ** x"),
    Operator("sqrt", 1, "call", _quiet(np.sqrt), True, "square root (nan below 0)"),
    Operator("erf", 1, "call", _erf, True, "the error function (GELU)"),
    Operator("neg", 1, "prefix", _quiet(np.negative), doc="-x"),
    # binary operators
    Operator("+", 2, "infix", _quiet(np.add), doc="x + y"),
    Operator("-", 2, "infix", _quiet(np.subtract), doc="x - y"),
    Operator("*", 2, "infix", _quiet(np.multiply), doc="x * y"),
    Operator("/", 2, "infix", _quiet(np.divide), True, "x / y (inf or nan on 0, as IEEE says)"),
    Operator("max", 2, "call", _quiet(np.maximum), doc="the larger of x and y"),
    Operator("min", 2, "call", _quiet(np.minimum), doc="the smaller of x and y"),
)

UNARY: dict[str, Operator] = {op.name: op for op in OPERATORS if op.arity == 1}
BINARY: dict[str, Operator] = {op.name: op for op in OPERATORS if op.arity == 2}
UNARY_NAMES: tuple[str, ...] = tuple(UNARY)
BINARY_NAMES: tuple[str, ...] = tuple(BINARY)
#: Names written as calls, `relu(x)`, `max(x, y)`: the parser's function vocabulary.
CALL_FUNCTIONS: dict[str, Operator] = {op.name: op for op in OPERATORS if op.spelling == "call"}
#: Operators a host evaluates at `transcendental_cycles` per element.
TRANSCENDENTAL: frozenset[str] = frozenset(op.name for op in OPERATORS if op.transcendental)


def apply(name: str, *args: Array) -> Array:
    """`name` applied elementwise to `args` (numpy broadcasting), as the language defines it."""
    table = UNARY if len(args) == 1 else BINARY
    return table[name].numpy(*args)
