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
from dataclasses import dataclass

import numpy as np

from isamap.egraph.target_rules import matrix_instructions
from isamap.hardware.matrix_form import contraction_dtypes, integer_only, matrix_form, types_fit
from isamap.hardware.target import Target
from isamap.ir.dtypes import dtype
from isamap.ir.errors import IsamapError
from isamap.ir.kernel import Access, Binary, Kernel, TensorDecl
from isamap.ir.reference import check_inputs, evaluate, random_inputs
from isamap.ir.shapes import check_kernel

__all__ = ["Quantization", "check_types", "needs_quantization", "quantize_kernel"]


def needs_quantization(kernel: Kernel, target: Target) -> str | None:
    """Why `kernel` cannot run on `target` without quantization (None if it can): it has a float
    product and every matrix instruction of the target multiplies integers only."""
    names = matrix_instructions(target)
    if not names or not all(integer_only(target.instructions[n].semantics) for n in names):
        return None
    if all(types_fit(target.instructions[n].semantics, kernel) for n in names[:1]):
        return None
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


def check_types(kernel: Kernel, target: Target) -> None:
    """IsamapError (one line) when `kernel` needs quantization to run on `target`."""
    why = needs_quantization(kernel, target)
    if why is not None:
        raise IsamapError(why)


@dataclass(frozen=True)
class Quantization:
    """A float kernel, the integer kernel compiled for it, the scales, and the measured error."""

    source: Kernel
    kernel: Kernel
    scales: dict[str, float]  # input tensor -> scale (real value = scale * integer)
    output_scales: dict[str, float]  # output tensor -> product of its factors' scales
    max_abs_error: float
    relative_error: float  # ||quantized - reference|| / ||reference|| over all outputs

    def quantize_inputs(self, inputs: Mapping[str, object]) -> dict[str, np.ndarray]:
        """Float inputs of the source kernel as the integer kernel's inputs."""
        values = check_inputs(self.source, inputs)
        return {
            name: dtype(self.kernel.dtype(name)).convert(values[name] / self.scales[name])
            for name in self.source.inputs()
        }

    def dequantize(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The integer kernel's outputs as the source kernel's (float) values."""
        return {n: np.asarray(v) * self.output_scales[n] for n, v in outputs.items()}

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


def _factors(kernel: Kernel) -> dict[str, tuple[str, str]]:
    """Each output -> the two input tensors its one statement multiplies; IsamapError if the
    kernel is not a set of such products (the kernels per-tensor quantization serves exactly)."""
    inputs = set(kernel.inputs())
    out: dict[str, tuple[str, str]] = {}
    for s in kernel.statements:
        e = s.expr
        ok = isinstance(e, Binary) and e.op == "*"
        ok = (
            ok and isinstance(e, Binary) and isinstance(e.lhs, Access) and isinstance(e.rhs, Access)
        )
        if not ok or s.target in out:
            raise IsamapError(
                f"quantize: kernel {kernel.name}: {s.target} is not one product of two input "
                "tensors (quantize serves GEMMs and convolutions: `C[...] += A[...] * B[...]`)",
                s.loc,
            )
        assert isinstance(e, Binary) and isinstance(e.lhs, Access) and isinstance(e.rhs, Access)
        if not {e.lhs.tensor, e.rhs.tensor} <= inputs:
            raise IsamapError(
                f"quantize: kernel {kernel.name}: {s.target} multiplies a computed tensor; "
                "quantize serves products of input tensors only",
                s.loc,
            )
        out[s.target] = (e.lhs.tensor, e.rhs.tensor)
    return out


def quantize_kernel(
    kernel: Kernel, target: Target, calibration: Mapping[str, object] | None = None
) -> Quantization:
    """The integer kernel for float `kernel` on `target`, with scales from `calibration` (default:
    `random_inputs(kernel)`) and its error against the float reference on them."""
    factors = _factors(kernel)
    names = matrix_instructions(target)
    if not names:
        raise IsamapError(f"quantize: target '{target.name}' has no matrix instruction")
    ins = target.instructions[names[0]]
    form = matrix_form(ins.semantics)
    assert form is not None
    in_type = dtype(ins.semantics.dtype(form.lhs))
    acc_type = ins.semantics.dtype(form.out)
    if not in_type.is_integer or not in_type.signed:
        raise IsamapError(
            f"quantize: {ins.name} of target '{target.name}' takes {in_type.name}; symmetric "
            "quantization needs a signed integer input type"
        )
    calib = check_inputs(kernel, calibration if calibration is not None else random_inputs(kernel))
    qmax = in_type.hi
    scales = {}
    for name, values in calib.items():
        top = float(np.max(np.abs(values))) if values.size else 0.0
        scales[name] = top / qmax if top > 0 else 1.0
    decls = {}
    for name, decl in kernel.tensors.items():
        t = in_type.name if name in scales else acc_type
        decls[name] = TensorDecl(name, decl.shape, t, decl.padding, decl.loc)
    for name in factors:
        if name not in decls:
            decls[name] = TensorDecl(name, tuple(kernel.shapes[name]), acc_type)
    integer = check_kernel(kernel.name, decls, list(kernel.statements), kernel.source)
    output_scales = {n: scales[a] * scales[b] for n, (a, b) in factors.items()}
    q = Quantization(kernel, integer, scales, output_scales, 0.0, 0.0)
    got = q.dequantize(evaluate(integer, q.quantize_inputs(calib)))
    want = evaluate(kernel, calib)
    diff = np.concatenate([(got[n] - want[n]).ravel() for n in factors])
    ref = np.concatenate([want[n].ravel() for n in factors])
    max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
    norm = float(np.linalg.norm(ref))
    rel = float(np.linalg.norm(diff)) / norm if norm > 0 else 0.0
    return Quantization(kernel, integer, scales, output_scales, max_abs, rel)
