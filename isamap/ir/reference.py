"""Numpy reference semantics of any Kernel: what every compiled program is checked against.

Each statement is evaluated over its whole iteration space with broadcasting (reduced axes last) and
summed over the reduced axes; large spaces are evaluated in chunks so memory stays bounded.
Numbers are in the declared element types (isamap/ir/dtypes.py): inputs are values of their types
(a float input is rounded to its type; an integer input must hold integers in range), a
statement's right side is computed exactly (float64: integer arithmetic is exact below 2**53) and
its result stored in the written tensor's type, rounded to nearest even and saturated. f32 is
carried in float64 (`DType.carried_exactly`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from isamap.ir.dtypes import dtype
from isamap.ir.errors import IsamapError
from isamap.ir.kernel import Access, Const, Expr, Kernel, Statement, Unary
from isamap.ir.ops import BINARY, UNARY

__all__ = ["MAX_ARRAY_BYTES", "check_inputs", "evaluate", "random_inputs", "store"]

Array = NDArray[np.float64]

#: Iteration-space elements evaluated at once; larger statements are chunked.
_CHUNK_ELEMENTS = 20_000_000

#: Random integer inputs lie in this range (clipped to their type's): products stay small enough
#: that an 8-bit output is not saturated everywhere.
RANDOM_INT_RANGE = (-16, 16)

#: The most memory random_inputs and evaluate allocate for the arrays they return: larger kernels
#: are refused with the size they would need (a raw MemoryError, or the OOM killer, otherwise).
MAX_ARRAY_BYTES = 4 * 2**30


def random_inputs(kernel: Kernel, seed: int = 0) -> dict[str, Array]:
    """Small random values (standard normal times 0.5) for every input of `kernel`.

    Raises IsamapError, saying the size needed, when the inputs would take more than
    MAX_ARRAY_BYTES.
    """
    _check_kernel_arg(kernel, "random_inputs")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise IsamapError(f"random_inputs: seed must be an integer >= 0, not {seed!r}"[:120])
    _check_size(kernel, kernel.inputs(), "random_inputs: the inputs")
    rng = np.random.default_rng(seed)
    out: dict[str, Array] = {}
    for n in kernel.inputs():
        t = dtype(kernel.dtype(n))
        if t.is_integer:
            lo, hi = max(t.lo, RANDOM_INT_RANGE[0]), min(t.hi, RANDOM_INT_RANGE[1])
            out[n] = rng.integers(int(lo), int(hi) + 1, kernel.shapes[n]).astype(np.float64)
        else:
            out[n] = t.hold(0.5 * rng.standard_normal(kernel.shapes[n]))
    return out


def store(kernel: Kernel, name: str, value: Array) -> Array:
    """`value` as tensor `name` holds it: in the tensor's element type, rounded to nearest even
    and saturated."""
    return dtype(kernel.dtype(name)).hold(value, "saturate")


def check_inputs(kernel: Kernel, inputs: object, finite: bool = True) -> dict[str, Array]:
    """`inputs` checked against `kernel` and converted to float64 arrays, one per input tensor.

    Raises IsamapError, naming the tensor, unless `inputs` maps exactly the kernel's input
    tensors to real arrays of their declared shapes (numpy arrays, nested lists, scalars),
    finite unless `finite` is False (values computed on the way, not a user's inputs).
    """
    _check_kernel_arg(kernel, "inputs")
    expected = kernel.inputs()
    listed = ", ".join(expected) or "none"
    if not isinstance(inputs, Mapping):
        raise IsamapError(
            f"kernel {kernel.name}: inputs must be a dict from tensor name to array "
            f"(inputs: {listed}), not {type(inputs).__name__}"
        )
    for key in inputs:
        if not isinstance(key, str):
            raise IsamapError(
                f"kernel {kernel.name}: input names are strings, not {type(key).__name__} {key!r}"[
                    :120
                ]
            )
        if key not in kernel.shapes:
            raise IsamapError(f"kernel {kernel.name}: no tensor named {key} (inputs: {listed})")
        if key not in expected:
            raise IsamapError(
                f"kernel {kernel.name}: {key} is computed by the kernel, not an input "
                f"(inputs: {listed})"
            )
    missing = [n for n in expected if n not in inputs]
    if missing:
        name = missing[0]
        raise IsamapError(
            f"kernel {kernel.name}: missing input {name} (shape {tuple(kernel.shapes[name])})"
        )
    return {name: _real_array(kernel, name, inputs[name], finite) for name in expected}


def _real_array(kernel: Kernel, name: str, value: object, finite: bool = True) -> Array:
    """Input `name` as a float64 array of its declared shape; IsamapError naming it if not."""
    where = f"kernel {kernel.name}: input {name}"
    try:
        arr = np.asarray(value)
        if arr.dtype.kind == "O":  # a list of Python numbers mixed with None, say
            arr = arr.astype(np.float64)
    except (TypeError, ValueError) as err:
        reason = str(err).split("\n", 1)[0][:80]
        raise IsamapError(f"{where} is not an array of real numbers ({reason})") from None
    if arr.dtype.kind not in "biuf":
        kind = "complex" if arr.dtype.kind == "c" else str(arr.dtype)
        raise IsamapError(f"{where} must hold real numbers, not {kind} values")
    shape = tuple(kernel.shapes[name])
    if arr.shape != shape:
        raise IsamapError(f"{where} has shape {arr.shape}, expected {shape}")
    out = np.asarray(arr, dtype=np.float64)
    if finite and not np.isfinite(out).all():
        at = tuple(int(i) for i in np.argwhere(~np.isfinite(out))[0])
        raise IsamapError(f"{where} holds {out[at]} at index {at}: inputs must be finite")
    return _typed(kernel, name, out, where, finite)


def _typed(kernel: Kernel, name: str, values: Array, where: str, finite: bool = True) -> Array:
    """Input `name` as values of its declared type: a float type rounds (to nearest even; past
    its range, IsamapError unless not `finite`: then infinity, as the hardware's arithmetic
    overflows); an integer type takes only integers in its range."""
    t = dtype(kernel.dtype(name))
    got = t.hold(values, "ieee" if not t.is_integer else "saturate")
    if t.is_integer:
        bad = got != values
        what = f"not a {t.name} value (integers {int(t.lo)}..{int(t.hi)})"
    else:
        bad = ~np.isfinite(got)
        what = f"out of the range of {t.name} (largest {t.hi:g})"
    if bad.any() and (finite or t.is_integer):
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise IsamapError(f"{where} holds {values[at]} at index {at}, {what}")
    return got


def _check_kernel_arg(kernel: object, what: str) -> None:
    if not isinstance(kernel, Kernel):
        raise IsamapError(
            f"{what}: expected a Kernel (parse text with isamap.parse_kernel), "
            f"not {type(kernel).__name__}"
        )


def _check_size(kernel: Kernel, names: tuple[str, ...], what: str) -> None:
    """IsamapError if float64 arrays for `names` would take more than MAX_ARRAY_BYTES."""
    elements = sum(math.prod(kernel.shapes[n]) for n in names)
    if elements * 8 > MAX_ARRAY_BYTES:
        raise IsamapError(
            f"{what} of kernel {kernel.name} need {_bytes(elements * 8)} "
            f"({elements:,} float64 elements), more than the {_bytes(MAX_ARRAY_BYTES)} "
            "isamap allocates for numpy arrays"
        )


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    raise AssertionError("unreachable")


def evaluate(
    kernel: Kernel, inputs: Mapping[str, NDArray[np.generic]], finite: bool = True
) -> dict[str, Array]:
    """Run `kernel` with numpy; return every written tensor (float64) by name.

    Raises IsamapError, naming the tensor, if an input is missing, not a real array, of the
    wrong shape, not finite (unless `finite` is False: a piece of a kernel run on values an
    earlier piece computed, which propagate infinities as the whole kernel would), or names no
    input of the kernel (see `check_inputs`), or if the written tensors would take more than
    MAX_ARRAY_BYTES.
    """
    values = check_inputs(kernel, inputs, finite)
    _check_size(kernel, kernel.written(), "evaluate: the computed tensors")
    written: dict[str, Array] = {}
    for stmt, extents in zip(kernel.statements, kernel.extents, strict=True):
        result = _statement(kernel, stmt, extents, values)
        if stmt.accumulate and stmt.target in written:
            result = written[stmt.target] + result
        result = store(kernel, stmt.target, result)
        written[stmt.target] = result
        values[stmt.target] = result
    return written


def _statement(
    kernel: Kernel, stmt: Statement, extents: Mapping[str, int], values: Mapping[str, Array]
) -> Array:
    """The value of one statement's right side, summed (`max=`: maximised) over its reduced
    indices."""
    axes = list(stmt.indices) + [i for i in stmt.reduced_indices() if i not in stmt.indices]
    full = tuple(extents[a] for a in axes)
    n_out = len(stmt.indices)
    padded = {a.tensor: _padded(kernel, a.tensor, values) for a in stmt.accesses()}
    total = math.prod(full)
    # Chunk over the first reduced axis (summing) or else the first axis (concatenating).
    chunk_axis = n_out if len(axes) > n_out else 0
    if total <= _CHUNK_ELEMENTS or not axes:
        ranges = {a: (0, extents[a]) for a in axes}
        return _evaluate_block(stmt.expr, axes, ranges, padded, n_out, stmt.reduce)
    per_step = total // full[chunk_axis]
    step = max(1, _CHUNK_ELEMENTS // max(per_step, 1))
    parts: list[Array] = []
    for start in range(0, full[chunk_axis], step):
        ranges = {a: (0, extents[a]) for a in axes}
        ranges[axes[chunk_axis]] = (start, min(start + step, full[chunk_axis]))
        parts.append(_evaluate_block(stmt.expr, axes, ranges, padded, n_out, stmt.reduce))
    if chunk_axis == n_out:
        if stmt.reduce == "max":
            return np.asarray(np.max(parts, axis=0), dtype=np.float64)
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
    reduce: str = "+",
) -> Array:
    """Evaluate `expr` over the box `ranges` (axes in `axes` order) and sum (or, with `reduce`
    "max", maximise) over the reduced axes."""
    grids: dict[str, NDArray[np.int64]] = {}
    for pos, a in enumerate(axes):
        shape = [1] * len(axes)
        lo, hi = ranges[a]
        shape[pos] = hi - lo
        grids[a] = np.arange(lo, hi, dtype=np.int64).reshape(shape)
    box = tuple(ranges[a][1] - ranges[a][0] for a in axes)
    value = np.broadcast_to(_eval(expr, grids, padded, len(axes)), box)
    if len(axes) > n_out:
        reduced = tuple(range(n_out, len(axes)))
        if reduce == "max":
            return np.asarray(value.max(axis=reduced), dtype=np.float64)
        return np.asarray(value.sum(axis=reduced), dtype=np.float64)
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
        return UNARY[expr.fn].numpy(arg)
    lhs = _eval(expr.lhs, grids, padded, rank)
    rhs = _eval(expr.rhs, grids, padded, rank)
    return BINARY[expr.op].numpy(lhs, rhs)


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
