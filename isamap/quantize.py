"""Quantization of a float kernel for an integer target, and the check that asks for it.

A float kernel's products cannot run on integer instructions as they are (the hardware would
compute other numbers). `check_types` says so in one line; `quantize_kernel` makes the integer
kernel that can: symmetric per-tensor scales chosen from calibration inputs (`scale = max|x| /
qmax`), inputs rounded to nearest even and saturated to the target's integer input type, each
product accumulated in the accumulator type, outputs dequantized by the product of their
factors' scales. The error against the float reference on the calibration inputs is measured
and reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from isamap.egraph.target_rules import matrix_instructions
from isamap.hardware.matrix_form import contraction_dtypes, integer_only, matrix_form, types_fit
from isamap.hardware.target import Target
from isamap.ir.dtypes import DType, dtype
from isamap.ir.errors import IsamapError
from isamap.ir.kernel import (
    Access,
    Affine,
    Binary,
    Const,
    Expr,
    Kernel,
    Statement,
    TensorDecl,
    Unary,
)
from isamap.ir.reference import check_inputs, evaluate, random_inputs
from isamap.ir.shapes import check_kernel

__all__ = [
    "Quantization",
    "check_types",
    "hardware_kernel",
    "hardware_types",
    "integer_kernel",
    "integer_only_target",
    "integer_types",
    "needs_quantization",
    "quantize_kernel",
]


def integer_only_target(target: Target) -> bool:
    """True when every matrix instruction of `target` (at least one) multiplies integers only."""
    names = matrix_instructions(target)
    return bool(names) and all(integer_only(target.instructions[n].semantics) for n in names)


def needs_quantization(kernel: Kernel, target: Target) -> str | None:
    """Why `kernel` cannot run on `target` without quantization (None if it can): it has a float
    contraction (a `+=` product of float tensors) and every matrix instruction of the target
    multiplies integers only. A kernel without one (a transpose, an activation, a pooling sum)
    runs as declared."""
    names = matrix_instructions(target)
    if not integer_only_target(target):
        return None
    if all(types_fit(target.instructions[n].semantics, kernel) for n in names[:1]):
        return None
    if not any(_contraction(s) for s in kernel.statements):
        return None  # nothing multiplied: layout, elementwise and reduction work, any type
    for x, y in contraction_dtypes(kernel):
        for t in (x, y):
            if not dtype(t).is_integer:
                ins = target.instructions[names[0]]
                form = matrix_form(ins.semantics)
                assert form is not None
                a, b = ins.semantics.dtype(form.lhs), ins.semantics.dtype(form.rhs)
                return (
                    f"kernel {kernel.name} multiplies {t} tensors, but target '{target.name}' "
                    f"multiplies integers only ({ins.name}: {a} x {b}); declare integer tensors "
                    "or quantize (--quantize, compile(..., quantize=True))"
                )
    return None


def _contraction(s: Statement) -> bool:
    """True when statement `s` multiplies tensors and sums the products (`+=` over two or more
    tensors): what a matrix instruction computes."""
    return s.accumulate and len({a.tensor for a in s.accesses()}) >= 2


def check_types(kernel: Kernel, target: Target) -> None:
    """IsamapError (one line) when `kernel` needs quantization to run on `target`."""
    why = needs_quantization(kernel, target)
    if why is not None:  # located at the first contraction, so the message names the file
        loc = next((s.loc for s in kernel.statements if _contraction(s) and s.loc), None)
        raise IsamapError(why, loc)


@dataclass(frozen=True)
class Quantization:
    """A float kernel, the integer kernel compiled for it, the scales, and the measured error."""

    source: Kernel
    kernel: Kernel
    scales: dict[str, float]  # input or requantized tensor -> scale (real = scale * integer)
    output_scales: dict[str, float]  # output tensor -> product of its factors' scales
    max_abs_error: float
    relative_error: float  # ||quantized - reference|| / ||reference|| over all outputs

    def quantize_inputs(self, inputs: Mapping[str, object]) -> dict[str, np.ndarray]:
        """Float inputs of the source kernel as the integer kernel's inputs."""
        values = check_inputs(self.source, inputs)
        return {
            name: dtype(self.kernel.dtype(name)).hold(values[name] / self.scales.get(name, 1.0))
            for name in self.source.inputs()
        }

    def dequantize(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The integer kernel's outputs as the source kernel's (float) values."""
        return {n: np.asarray(v) * self.output_scales.get(n, 1.0) for n, v in outputs.items()}

    def to_dict(self) -> dict[str, object]:
        return {
            "input_dtype": self.kernel.dtype(self.source.inputs()[0]),
            "scales": self.scales,
            "output_scales": self.output_scales,
            "max_abs_error": self.max_abs_error,
            "relative_error": self.relative_error,
        }

    def summary(self) -> str:
        scales = ", ".join(f"{n} {s:.4g}" for n, s in self.scales.items())
        return (
            f"quantized to {self.kernel.dtype(self.source.inputs()[0])} (symmetric, per tensor): "
            f"scales {scales}; error against the f32 reference: max {self.max_abs_error:.3g}, "
            f"relative {100 * self.relative_error:.2f}%"
        )


def _check_quantizable(kernel: Kernel) -> list[str]:
    """The products of `kernel` (targets of plain `T += A * B` statements), in order; IsamapError
    if a contraction is not a plain product or a tensor is the sum of several products (one
    per-tensor scale cannot serve products whose factors have different scales)."""
    products: list[str] = []
    for s in kernel.statements:
        if _contraction(s) and _factors_of(s) is None:
            raise IsamapError(
                f"quantize: kernel {kernel.name}: {s.target} is not one product of two tensors "
                "(quantize serves contractions written `C[...] += A[...] * B[...]`)",
                s.loc,
            )
        if _factors_of(s) is not None:
            if s.target in products:
                raise IsamapError(
                    f"quantize: kernel {kernel.name}: {s.target} sums several products; "
                    "per-tensor scales cannot serve it (declare integer tensors instead)",
                    s.loc,
                )
            products.append(s.target)
    return products


def _relu_of(s: Statement) -> str | None:
    """T when statement `s` is `Y[...] = relu(T[...])`, else None."""
    e = s.expr
    relu = not s.accumulate and isinstance(e, Unary) and e.fn == "relu"
    return e.arg.tensor if relu and isinstance(e, Unary) and isinstance(e.arg, Access) else None


def _clip_of(s: Statement) -> tuple[Access, float] | None:
    """(T's access, c) when statement `s` is `Y[...] = min(relu(T[...]), c)` (either operand
    order) or `relu6(T[...])` (c = 6) with c > 0, else None: a ReLU clipped at a bound."""
    e = s.expr
    if s.accumulate:
        return None
    if isinstance(e, Unary) and e.fn == "relu6" and isinstance(e.arg, Access):
        return e.arg, 6.0
    if not isinstance(e, Binary) or e.op != "min":
        return None
    for relu, bound in ((e.lhs, e.rhs), (e.rhs, e.lhs)):
        positive = isinstance(bound, Const) and bound.value > 0
        if (
            isinstance(relu, Unary)
            and relu.fn == "relu"
            and isinstance(relu.arg, Access)
            and positive
        ):
            assert isinstance(bound, Const)
            return relu.arg, float(bound.value)
    return None


def _f32(x: float) -> float:
    """`x` rounded to f32: the scale a store's f32 scale register holds (Gemmini's
    acc_scale_t), so the store multiplies by exactly the kernel's constant."""
    return float(np.float32(x))


def _bias_add_of(
    s: Statement, kernel: Kernel, products: set[str], multiplied: set[str]
) -> tuple[str, str] | None:
    """(T, b) when statement `s` is `Y[...] = T[...] + b[...]` (either order) with T a product
    and b an input read nowhere else, which may then be held at T's scale; else None."""
    e = s.expr
    if s.accumulate or not isinstance(e, Binary) or e.op != "+":
        return None
    for t, b in ((e.lhs, e.rhs), (e.rhs, e.lhs)):
        if not (isinstance(t, Access) and isinstance(b, Access)) or t.tensor not in products:
            continue
        if b.tensor not in kernel.inputs() or b.tensor in multiplied:
            continue
        reads = sum(a.tensor == b.tensor for st in kernel.statements for a in st.accesses())
        if reads == 1:
            return t.tensor, b.tensor
    return None


def _dequantized(e: Expr, scales: Mapping[str, float]) -> Expr:
    """`e` with every access to a tensor of scale s != 1 read as `s * T`."""
    if isinstance(e, Access):
        scale = scales.get(e.tensor, 1.0)
        return e if scale == 1.0 else Binary("*", Const(scale), e)
    if isinstance(e, Unary):
        return Unary(e.fn, _dequantized(e.arg, scales))
    if isinstance(e, Binary):
        return Binary(e.op, _dequantized(e.lhs, scales), _dequantized(e.rhs, scales))
    return e


def _cast_name(kernel: Kernel, tensor: str) -> str:
    name = f"{tensor}_q"
    while name in kernel.shapes:
        name += "q"
    return name


def integer_types(target: Target) -> tuple[DType, str]:
    """The integer input type and the accumulator type of `target`'s matrix instructions;
    IsamapError unless the input type is a signed integer (symmetric quantization)."""
    in_type, acc_type = hardware_types(target, "quantize: ")
    if not in_type.is_integer or not in_type.signed:
        ins = matrix_instructions(target)[0]
        raise IsamapError(
            f"quantize: {ins} of target '{target.name}' takes {in_type.name}; symmetric "
            "quantization needs a signed integer input type"
        )
    return in_type, acc_type


def _factors_of(s: Statement) -> tuple[Access, Access] | None:
    """The two factors of a plain product statement `T[...] += A[...] * B[...]` of two tensors
    (a contraction), else None (a sum of squares is not one)."""
    e = s.expr
    if not _contraction(s):
        return None
    product = s.accumulate and isinstance(e, Binary) and e.op == "*"
    if (
        product
        and isinstance(e, Binary)
        and isinstance(e.lhs, Access)
        and isinstance(e.rhs, Access)
    ):
        return e.lhs, e.rhs
    return None


def hardware_types(target: Target, context: str = "") -> tuple[DType, str]:
    """The operand and accumulator types of `target`'s first matrix instruction."""
    names = matrix_instructions(target)
    if not names:
        raise IsamapError(f"{context}target '{target.name}' has no matrix instruction")
    sem = target.instructions[names[0]].semantics
    form = matrix_form(sem)
    assert form is not None
    return dtype(sem.dtype(form.lhs)), sem.dtype(form.out)


def hardware_kernel(kernel: Kernel, target: Target) -> Kernel:
    """`kernel` declared in the types `target`'s matrix instruction computes in, as its vendor
    library's users declare their tensors (int8 on gemmini, bf16 on a bf16 array): its
    contractions' inputs in the operand type, products at accumulator width, a computed factor
    cast to the operand type first (`integer_kernel`, with unit scales). A kernel the
    instruction already serves is returned as it is."""
    names = matrix_instructions(target)
    if not names or types_fit(target.instructions[names[0]].semantics, kernel):
        return kernel
    if integer_only_target(target):
        return _narrowed_outputs(integer_kernel(kernel, target)[0], target)
    return integer_kernel(kernel, target, types=hardware_types(target))[0]


def _narrowed_outputs(kernel: Kernel, target: Target) -> Kernel:
    """`kernel` with each output an epilogue computes (a bias, an activation, a clip: an `=`
    statement, undeclared) cast to the input type, `Y_q = r * Y`, as an integer
    library's next layer reads it (Gemmini's default `full_C = false`: mvout scales and narrows).
    A clipped ReLU's scale fills the type with its range (`r = max / bound`), so the clip is
    the narrowing's saturation; other outputs are cast at unit scale (rounded and saturated)."""
    in_type, _ = integer_types(target)
    decls = dict(kernel.tensors)
    statements = list(kernel.statements)
    writers = {s.target: s for s in kernel.statements}
    for name in kernel.outputs():
        t = dtype(kernel.dtype(name))
        w = writers[name]
        clip = _clip_of(w)
        if w.accumulate or name in decls or (t.is_integer and t.bits <= in_type.bits):
            continue
        if not t.is_integer and clip is None:
            continue  # a float result (an average, a gate): not an integer layer's output
        ratio = _f32(in_type.hi / clip[1]) if clip is not None else 1.0
        q = _cast_name(kernel, name)
        at = Access(name, tuple(Affine.index(i) for i in w.indices))
        statements.append(Statement(q, w.indices, False, Binary("*", Const(ratio), at)))
        decls[q] = TensorDecl(q, tuple(kernel.shapes[name]), in_type.name)
    if len(statements) == len(kernel.statements):
        return kernel
    return check_kernel(kernel.name, decls, statements, kernel.source)


def integer_kernel(
    kernel: Kernel,
    target: Target,
    scales: Mapping[str, float] | None = None,
    types: tuple[DType, str] | None = None,
) -> tuple[Kernel, dict[str, float], dict[str, float]]:
    """`kernel` declared in `target`'s integer types, as a user of its integer library writes it:
    every input a contraction reads in the input type, products at accumulator width (a
    declared output so, the rest as inferred), and every computed tensor a product multiplies
    cast into the input type first by a statement `T_q = (s_acc / s_T) * T` (the product then
    reads `T_q`): a depthwise result feeding a pointwise product, a normalised activation feeding
    the next convolution. A ReLU of a product keeps its scale; a bias added to a product (an
    input read nowhere else) is declared in the accumulator type at the product's scale, so the
    sum stays integer and can be preloaded into the accumulator; every other statement (a gate,
    a clip) computes in float on dequantized values, each access to a scaled tensor read as
    `scale * T`.

    `scales` gives each input's and each cast tensor's scale by its source name (default 1: the
    integers as they are, a cast then only rounds and saturates). Returns the kernel, the scales
    by its tensor names (inputs and casts) and each product's and cast's scale. `types`: the
    operand and accumulator types to declare instead of the target's integer ones."""
    in_type, acc_type = types or integer_types(target)
    given = dict(scales or {})
    inputs = kernel.inputs()
    multiplied = {  # every tensor a contraction reads (`0.5 * A * B` too)
        a.tensor for s in kernel.statements if _contraction(s) for a in s.accesses()
    }
    out_scales = {n: given.get(n, 1.0) if n in multiplied else 1.0 for n in inputs}
    products = {s.target for s in kernel.statements if _factors_of(s) is not None}
    decls = {}
    for name, decl in kernel.tensors.items():
        t = decl.dtype
        if name in inputs and name in multiplied:
            t = in_type.name
        elif name in products:
            t = acc_type
        decls[name] = TensorDecl(name, decl.shape, t, decl.padding, decl.loc)
    writer: dict[str, Statement] = {}
    cast: dict[str, str] = {}  # computed tensor a product multiplies -> its cast
    bound: dict[str, float] = {}  # a clipped ReLU -> its bound, in its own integers
    input_scales = {n: v for n, v in out_scales.items() if n in multiplied}
    statements: list[Statement] = []
    for s in kernel.statements:
        factors = _factors_of(s)
        if factors is not None:
            for a in factors:
                t = a.tensor
                declared = decls.get(t)
                if (
                    t in writer
                    and t not in cast
                    and (declared is None or declared.dtype != in_type.name)
                ):
                    q = _cast_name(kernel, t)
                    cast[t] = q
                    # a clipped ReLU without a given scale: its range [0, bound] fills an
                    # integer type; a float type (bf16) holds the values as they are
                    fills = t in bound and in_type.is_integer
                    default = bound[t] * out_scales[t] / in_type.hi if fills else 1.0
                    ratio = _f32(out_scales.get(t, 1.0) / given.get(t, default))
                    out_scales[q] = input_scales[q] = out_scales.get(t, 1.0) / ratio
                    w = writer[t]
                    at = Access(t, tuple(Affine.index(i) for i in w.indices))
                    # into a float type at unit scale: a plain cast, the store rounds
                    plain = ratio == 1.0 and not in_type.is_integer
                    cast_expr = at if plain else Binary("*", Const(ratio), at)
                    statements.append(Statement(q, w.indices, False, cast_expr))
                    decls[q] = TensorDecl(q, tuple(kernel.shapes[t]), in_type.name)
            lhs, rhs = (Access(cast.get(a.tensor, a.tensor), a.indices, a.loc) for a in factors)
            s = replace(s, expr=Binary("*", lhs, rhs))
            out_scales[s.target] = out_scales.get(lhs.tensor, 1.0) * out_scales.get(rhs.tensor, 1.0)
        elif (src := _relu_of(s)) is not None and src in out_scales:
            out_scales[s.target] = out_scales[src]  # relu commutes with a positive scale
        elif (clip := _clip_of(s)) is not None and clip[0].tensor in out_scales:
            # min(relu(s P), c) = s min(relu(P), c / s) for s > 0: the clip stays in P's
            # integers, so a cast of it is the product's requantization (the clip in its
            # saturation where the bound is past it: egraph/requant_rules.py)
            access, c = clip
            out_scales[s.target] = out_scales[access.tensor]
            bound[s.target] = c / out_scales[access.tensor]
            s = replace(s, expr=Binary("min", Unary("relu", access), Const(bound[s.target])))
        elif (pair := _bias_add_of(s, kernel, products, multiplied)) is not None:
            # a per-channel bias on a product: the bias at the product's scale in the
            # accumulator type, so the sum stays integer (a bias the accumulator preloads)
            product, bias = pair
            out_scales[s.target] = out_scales[bias] = input_scales[bias] = out_scales[product]
            old = decls[bias]
            decls[bias] = TensorDecl(bias, old.shape, acc_type, old.padding, old.loc)
        else:  # anything else computes in real numbers: it reads `scale * T`
            s = replace(s, expr=_dequantized(s.expr, out_scales))
            out_scales[s.target] = 1.0
        statements.append(s)
        writer.setdefault(s.target, s)
    integer = check_kernel(kernel.name, decls, statements, kernel.source)
    computed = {n: v for n, v in out_scales.items() if n not in inputs}
    return integer, input_scales, computed


def quantize_kernel(
    kernel: Kernel, target: Target, calibration: Mapping[str, object] | None = None
) -> Quantization:
    """The integer kernel for float `kernel` on `target`, with scales from `calibration` (default:
    `random_inputs(kernel)`) and its error against the float reference on them.

    Each input a contraction reads is scaled by `max|x| / qmax` on the calibration inputs; each
    product accumulates at scale `s_A * s_B`; a computed tensor a later product reads (a
    depthwise result, a normalised activation) is cast back to the integer type with the scale
    of its own float values; a bias on a product is held at the product's scale in the
    accumulator type; every other statement (gates, blend, clips) computes in float on the
    dequantized values (`integer_kernel`). The casts are ordinary kernel statements, so the
    functional machine and the numpy reference round and saturate them alike. The error is
    measured over every output and every product.
    """
    products = _check_quantizable(kernel)
    in_type, _ = integer_types(target)
    calib = check_inputs(kernel, calibration if calibration is not None else random_inputs(kernel))
    want = evaluate(kernel, calib)
    qmax = in_type.hi

    def scale_of(values: np.ndarray) -> float:
        top = float(np.max(np.abs(values))) if values.size else 0.0
        return top / qmax if top > 0 else 1.0

    scales = {name: scale_of(values) for name, values in calib.items()}
    scales |= {name: scale_of(values) for name, values in want.items()}
    integer, input_scales, output_scales = integer_kernel(kernel, target, scales)
    q = Quantization(kernel, integer, input_scales, output_scales, 0.0, 0.0)
    got = q.dequantize(evaluate(integer, q.quantize_inputs(calib)))
    measured = list(dict.fromkeys([*products, *kernel.outputs()]))
    diff = np.concatenate([(got[n] - want[n]).ravel() for n in measured])
    ref = np.concatenate([want[n].ravel() for n in measured])
    max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
    norm = float(np.linalg.norm(ref))
    rel = float(np.linalg.norm(diff)) / norm if norm > 0 else 0.0
    return Quantization(kernel, integer, input_scales, output_scales, max_abs, rel)
