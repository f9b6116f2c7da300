"""Element types: the one definition of every type a kernel or a target may name.

Each `DType` knows its size, whether it is an integer or a floating-point type, its finite range,
and how a real number becomes one of its values (`DType.convert`): round to nearest, ties to
even, then saturate or wrap (integers) or overflow to infinity, NaN or the largest finite value
(floats). Values are carried as float64 arrays holding exactly the representable numbers, so the
reference, the functional machine and the scheduler's byte counts agree on one table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from isamap.ir.errors import IsamapError, SourceLoc

__all__ = [
    "ALIASES",
    "DTYPES",
    "KERNEL_DTYPES",
    "OVERFLOW",
    "DType",
    "canonical_dtype",
    "dtype",
    "fits",
    "is_float",
    "is_integer",
]

Array = NDArray[np.float64]

#: How a value past a type's range is stored: `saturate` clamps to the range; `wrap` keeps the low
#: bits (two's complement, integers only); `ieee` overflows to infinity, or NaN for a float type
#: without infinities (fp8 e4m3).
OVERFLOW: tuple[str, ...] = ("saturate", "wrap", "ieee")


@dataclass(frozen=True)
class DType:
    """One element type.

    Integers: `bits` wide, `signed` or not, range `lo..hi`. Floats: `mantissa_bits` explicit
    fraction bits, smallest normal exponent `min_exp` (subnormals below it), largest finite value
    `hi` (`lo == -hi`), and whether infinities exist.
    """

    name: str
    bytes: int
    kind: str  # "int" | "float"
    lo: float
    hi: float
    bits: int = 0
    signed: bool = True
    mantissa_bits: int = 0
    min_exp: int = 0
    has_inf: bool = True
    doc: str = ""

    @property
    def is_integer(self) -> bool:
        return self.kind == "int"

    @property
    def carried_exactly(self) -> bool:
        """f32 and f64 values are carried in float64 by the reference and the machine: what an
        f32 tensor holds is the exact result, within f32's precision of what f32 hardware
        rounds to. Every narrower type is rounded (`hold`)."""
        return self.name in ("f32", "f64")

    def hold(self, x: object, overflow: str | None = None) -> Array:
        """`x` as a tensor of this type holds it in isamap's numbers: `convert`, except that f32
        and f64 keep float64 precision (`carried_exactly`)."""
        if self.carried_exactly:
            return np.asarray(x, dtype=np.float64)
        return self.convert(x, overflow)

    def convert(self, x: object, overflow: str | None = None) -> Array:
        """`x` as values of this type (float64 array): rounded to nearest, ties to even.

        `overflow` (see OVERFLOW) says what a value past the range becomes; the default is
        `saturate` for integers and `ieee` for floats (what numpy's float16 cast does).
        """
        v = np.asarray(x, dtype=np.float64)
        if self.is_integer:
            return self._convert_int(v, overflow or "saturate")
        return self._convert_float(v, overflow or "ieee")

    def _convert_int(self, v: Array, overflow: str) -> Array:
        if np.isnan(v).any() or (overflow != "saturate" and not np.isfinite(v).all()):
            raise IsamapError(f"cannot convert a non-finite value to {self.name}")
        # numpy rounds half to even; an overflowed float (+-inf) saturates to the bound below
        r = np.rint(v)
        if overflow == "wrap":
            span = 2.0**self.bits
            return np.asarray(np.mod(r - self.lo, span) + self.lo, dtype=np.float64)
        if overflow == "saturate":
            return np.asarray(np.clip(r, self.lo, self.hi), dtype=np.float64)
        raise IsamapError(f"integer type {self.name} overflows by saturate or wrap, not {overflow}")

    def _convert_float(self, v: Array, overflow: str) -> Array:
        if overflow == "wrap":
            raise IsamapError(f"float type {self.name} overflows by saturate or ieee, not wrap")
        if self.name == "f64":
            out = v.copy()
        elif self.name == "f32":
            with np.errstate(over="ignore"):
                out = v.astype(np.float32).astype(np.float64)
        elif self.name == "f16":
            with np.errstate(over="ignore"):
                out = v.astype(np.float16).astype(np.float64)
        else:
            out = _round_binary(v, self.mantissa_bits, self.min_exp)
        finite = np.isfinite(v)
        big = finite & (np.abs(out) > self.hi)
        if overflow == "saturate":
            out = np.where(big | (~finite & ~np.isnan(v)), np.copysign(self.hi, v), out)
        elif not self.has_inf:
            out = np.where(big | np.isinf(v), np.nan, out)
        else:
            out = np.where(big, np.copysign(np.inf, v), out)
        return np.asarray(out, dtype=np.float64)

    def contains(self, other: DType) -> bool:
        """True when every value of `other` is a value of this type (a lossless widening)."""
        if self.name == other.name:
            return True
        if other.is_integer:
            if self.is_integer:
                return self.lo <= other.lo and other.hi <= self.hi
            # an integer fits a float type when its magnitudes are exact there
            top = max(abs(other.lo), other.hi)
            return top <= 2.0 ** (self.mantissa_bits + 1) and top <= self.hi
        if self.is_integer:
            return False
        return (
            self.mantissa_bits >= other.mantissa_bits
            and self.min_exp <= other.min_exp
            and self.hi >= other.hi
        )


def _round_binary(v: Array, mantissa_bits: int, min_exp: int) -> Array:
    """`v` rounded to a binary float format with `mantissa_bits` fraction bits and smallest
    normal exponent `min_exp`, to nearest with ties to even; no range limit (the caller applies
    overflow). Exact in float64: dividing by a power of two and `np.round` (half to even) are."""
    with np.errstate(invalid="ignore"):
        _, e = np.frexp(v)  # v = m * 2**e with 0.5 <= |m| < 1: the leading bit is 2**(e - 1)
        exp = np.maximum(e.astype(np.int64) - 1, min_exp)
        quantum = np.ldexp(1.0, exp - mantissa_bits)
        rounded = np.round(v / quantum) * quantum
    return np.asarray(np.where(np.isfinite(v), rounded, v), dtype=np.float64)


def _int(name: str, bits: int, signed: bool, doc: str) -> DType:
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return DType(name, bits // 8, "int", float(lo), float(hi), bits=bits, signed=signed, doc=doc)


def _float(
    name: str, nbytes: int, mantissa: int, min_exp: int, hi: float, has_inf: bool, doc: str
) -> DType:
    return DType(
        name, nbytes, "float", -hi, hi, mantissa_bits=mantissa, min_exp=min_exp,
        has_inf=has_inf, doc=doc,
    )  # fmt: skip


_TYPES: tuple[DType, ...] = (
    _int("u8", 8, False, "unsigned 8-bit integer (0..255)"),
    _int("i8", 8, True, "signed 8-bit integer (-128..127)"),
    _int("i16", 16, True, "signed 16-bit integer"),
    _int("i32", 32, True, "signed 32-bit integer"),
    _int("i64", 64, True, "signed 64-bit integer"),
    _float("fp8_e4m3", 1, 3, -6, 448.0, False, "OCP FP8 E4M3 (max 448, no infinities)"),
    _float("fp8_e5m2", 1, 2, -14, 57344.0, True, "OCP FP8 E5M2 (max 57344, IEEE-like)"),
    _float("bf16", 2, 7, -126, (2 - 2.0**-7) * 2.0**127, True, "bfloat16: f32's range, 8 bits"),
    _float("f16", 2, 10, -14, 65504.0, True, "IEEE binary16"),
    _float("f32", 4, 23, -126, float(np.finfo(np.float32).max), True, "IEEE binary32"),
    _float("f64", 8, 52, -1022, float(np.finfo(np.float64).max), True, "IEEE binary64"),
)

#: Every element type by name.
DTYPES: dict[str, DType] = {t.name: t for t in _TYPES}

#: The types a kernel's tensors may declare (f64 and i64 are for targets' wide accumulators).
KERNEL_DTYPES: tuple[str, ...] = tuple(n for n in DTYPES if n not in ("f64", "i64"))

#: Other spellings a target file may use, and the type each loads as.
ALIASES: dict[str, str] = {
    "uint8": "u8",
    "int8": "i8",
    "int16": "i16",
    "int32": "i32",
    "int64": "i64",
    "float16": "f16",
    "float32": "f32",
    "float64": "f64",
    "bfloat16": "bf16",
}


def canonical_dtype(name: str, loc: SourceLoc | None = None) -> str:
    """The canonical name of type `name` (an alias resolved); IsamapError listing the types."""
    name = ALIASES.get(name, name)
    if name not in DTYPES:
        known = ", ".join(DTYPES)
        raise IsamapError(f"unknown element type '{name}' (known: {known})", loc)
    return name


def dtype(name: str) -> DType:
    """The element type called `name` (or an alias); IsamapError if there is none."""
    return DTYPES[canonical_dtype(name)]


def is_integer(name: str) -> bool:
    return dtype(name).is_integer


def is_float(name: str) -> bool:
    return not dtype(name).is_integer


def fits(value_type: str, storage_type: str) -> bool:
    """True when every value of `value_type` is exactly a value of `storage_type`."""
    return dtype(storage_type).contains(dtype(value_type))


def _check_table() -> None:
    """The table's own invariants (run at import: a wrong entry should fail loudly, once)."""
    for t in _TYPES:
        if t.is_integer:
            assert t.bytes * 8 == t.bits, t.name
        else:
            assert math.isfinite(t.hi) and t.lo == -t.hi, t.name


_check_table()
