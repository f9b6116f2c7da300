"""Numpy reference semantics of any Kernel: what every compiled program is checked against.

Each statement is evaluated over its whole iteration space with broadcasting (reduced axes last) and
summed over the reduced axes; large spaces are evaluated in chunks so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import NDArray

from isamap.ir.errors import IsamapError
from isamap.ir.kernel import Access, Const, Expr, Kernel, Statement, Unary

__all__ = ["evaluate", "random_inputs"]

Array = NDArray[np.float64]

#: Iteration-space elements evaluated at once; larger statements are chunked.
_CHUNK_ELEMENTS = 20_000_000


def random_inputs(kernel: Kernel, seed: int = 0) -> dict[str, Array]:
    """Small random values (standard normal times 0.5) for every input of `kernel`."""
    rng = np.random.default_rng(seed)
    return {n: 0.5 * rng.standard_normal(kernel.shapes[n]) for n in kernel.inputs()}


def evaluate(kernel: Kernel, inputs: Mapping[str, NDArray[np.generic]]) -> dict[str, Array]:
    """Run `kernel` with numpy; return every written tensor (float64) by name.

    Raises IsamapError if an input is missing, has the wrong shape, or names no kernel tensor.
    """
    values: dict[str, Array] = {}
    for name in kernel.inputs():
        if name not in inputs:
            raise IsamapError(f"kernel {kernel.name}: missing input {name}")
        arr = np.asarray(inputs[name], dtype=np.float64)
        if arr.shape != tuple(kernel.shapes[name]):
            raise IsamapError(
                f"kernel {kernel.name}: input {name} has shape {arr.shape}, "
                f"expected {tuple(kernel.shapes[name])}"
            )
        values[name] = arr
    unknown = sorted(set(inputs) - set(kernel.shapes))
    if unknown:
        raise IsamapError(f"kernel {kernel.name}: no tensor named {unknown[0]}")
    written: dict[str, Array] = {}
    for stmt, extents in zip(kernel.statements, kernel.extents, strict=True):
        result = _statement(kernel, stmt, extents, values)
        if stmt.accumulate and stmt.target in written:
            result = written[stmt.target] + result
        written[stmt.target] = result
        values[stmt.target] = result
    return written


def _statement(
    kernel: Kernel, stmt: Statement, extents: Mapping[str, int], values: Mapping[str, Array]
) -> Array:
    """The value of one statement's right side, summed over its reduced indices."""
    axes = list(stmt.indices) + [i for i in stmt.reduced_indices() if i not in stmt.indices]
    full = tuple(extents[a] for a in axes)
    n_out = len(stmt.indices)
    padded = {a.tensor: _padded(kernel, a.tensor, values) for a in stmt.accesses()}
    total = int(np.prod(full, dtype=np.int64))
    # Chunk over the first reduced axis (summing) or else the first axis (concatenating).
    chunk_axis = n_out if len(axes) > n_out else 0
    if total <= _CHUNK_ELEMENTS or not axes:
        ranges = {a: (0, extents[a]) for a in axes}
        return _evaluate_block(stmt.expr, axes, ranges, padded, n_out)
    per_step = total // full[chunk_axis]
    step = max(1, _CHUNK_ELEMENTS // max(per_step, 1))
    parts: list[Array] = []
    for start in range(0, full[chunk_axis], step):
        ranges = {a: (0, extents[a]) for a in axes}
        ranges[axes[chunk_axis]] = (start, min(start + step, full[chunk_axis]))
        parts.append(_evaluate_block(stmt.expr, axes, ranges, padded, n_out))
    if chunk_axis == n_out:
        total_sum: Array = np.sum(parts, axis=0)
        return total_sum
    joined: Array = np.concatenate(parts, axis=0)
    return joined


def _padded(kernel: Kernel, name: str, values: Mapping[str, Array]) -> tuple[Array, list[int]]:
    """The tensor with its declared zero padding applied, and the low padding per dim."""
    arr = values[name]
    decl = kernel.tensors.get(name)
    if decl is None or not decl.padding or all(p == (0, 0) for p in decl.padding):
        return arr, [0] * arr.ndim
    return np.pad(arr, decl.padding), [lo for lo, _ in decl.padding]


def _evaluate_block(
    expr: Expr,
    axes: list[str],
    ranges: Mapping[str, tuple[int, int]],
    padded: Mapping[str, tuple[Array, list[int]]],
    n_out: int,
) -> Array:
    """Evaluate `expr` over the box `ranges` (axes in `axes` order) and sum the reduced axes."""
    grids: dict[str, NDArray[np.int64]] = {}
    for pos, a in enumerate(axes):
        shape = [1] * len(axes)
        lo, hi = ranges[a]
        shape[pos] = hi - lo
        grids[a] = np.arange(lo, hi, dtype=np.int64).reshape(shape)
    box = tuple(ranges[a][1] - ranges[a][0] for a in axes)
    value = np.broadcast_to(_eval(expr, grids, padded, len(axes)), box)
    if len(axes) > n_out:
        return np.asarray(value.sum(axis=tuple(range(n_out, len(axes)))), dtype=np.float64)
    return np.array(value, dtype=np.float64)


def _eval(
    expr: Expr,
    grids: Mapping[str, NDArray[np.int64]],
    padded: Mapping[str, tuple[Array, list[int]]],
    rank: int,
) -> Array:
    if isinstance(expr, Const):
        return np.full((1,) * rank, float(expr.value))
    if isinstance(expr, Access):
        return _gather(expr, grids, padded, rank)
    if isinstance(expr, Unary):
        arg = _eval(expr.arg, grids, padded, rank)
        return _UNARY[expr.fn](arg)
    lhs = _eval(expr.lhs, grids, padded, rank)
    rhs = _eval(expr.rhs, grids, padded, rank)
    return _BINARY[expr.op](lhs, rhs)


def _gather(
    acc: Access,
    grids: Mapping[str, NDArray[np.int64]],
    padded: Mapping[str, tuple[Array, list[int]]],
    rank: int,
) -> Array:
    arr, offsets = padded[acc.tensor]
    if not acc.indices:
        return np.full((1,) * rank, float(arr))
    index: list[NDArray[np.int64]] = []
    for aff, off in zip(acc.indices, offsets, strict=True):
        pos = np.full((1,) * rank, aff.const + off, dtype=np.int64)
        for name, c in aff.terms:
            pos = pos + c * grids[name]
        index.append(pos)
    return np.asarray(arr[tuple(index)], dtype=np.float64)


def _sigmoid(x: Array) -> Array:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)), dtype=np.float64)


def _relu(x: Array) -> Array:
    return np.maximum(x, 0.0)


def _tanh(x: Array) -> Array:
    return np.tanh(x)


def _exp(x: Array) -> Array:
    return np.exp(x)


def _neg(x: Array) -> Array:
    return np.negative(x)


_UNARY: dict[str, Callable[[Array], Array]] = {
    "relu": _relu,
    "sigmoid": _sigmoid,
    "tanh": _tanh,
    "exp": _exp,
    "neg": _neg,
}

_BINARY: dict[str, Callable[[Array, Array], Array]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
}
