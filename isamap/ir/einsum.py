"""The `Einsum` spec: a two-operand contraction's axes as text ("i,k;k,j;i,j").

One definition of the format, shared by the encoder that writes it, the rules and shape code
that read it, and the numpy runner that evaluates it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["einsum_extents", "einsum_spec", "einsum_subscripts", "parse_einsum"]

Axes = tuple[str, ...]


def einsum_spec(lhs: Sequence[str], rhs: Sequence[str], out: Sequence[str]) -> str:
    """The spec literal: axes of the first operand, the second, the result."""
    return ";".join(",".join(axes) for axes in (lhs, rhs, out))


def parse_einsum(spec: str) -> tuple[Axes, Axes, Axes]:
    """The three axis lists of a spec."""
    lhs, rhs, out = (tuple(p.split(",")) if p else () for p in spec.split(";"))
    return lhs, rhs, out


def einsum_extents(
    spec: str, x: Sequence[int], y: Sequence[int]
) -> tuple[dict[str, int], tuple[int, ...]] | None:
    """Every index's extent and the result's shape for operand shapes `x` and `y`; None when
    the shapes do not fit the spec (a rank, or one index at two extents)."""
    lhs, rhs, out = parse_einsum(spec)
    if len(lhs) != len(x) or len(rhs) != len(y):
        return None
    ext: dict[str, int] = {}
    for names, shape in ((lhs, x), (rhs, y)):
        for name, extent in zip(names, shape, strict=True):
            if ext.setdefault(name, extent) != extent:
                return None
    if any(name not in ext for name in out):
        return None
    return ext, tuple(ext[name] for name in out)


def einsum_subscripts(spec: str) -> str:
    """The spec as numpy einsum subscripts ("ab,bc->ac")."""
    lhs, rhs, out = parse_einsum(spec)
    letters: dict[str, str] = {}
    for name in lhs + rhs:
        letters.setdefault(name, chr(ord("a") + len(letters)))
    return f"{''.join(letters[a] for a in lhs)},{''.join(letters[a] for a in rhs)}->" + "".join(
        letters[a] for a in out
    )
