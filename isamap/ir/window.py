"""Window (im2col) specs: an affine access of a tensor gathered into a dense tensor.

A spec names the gathered tensor's axes with their extents and, per dimension of the source,
the affine expression that reads it. Its text form (`h=4,r=3|1*h+1*r+-1;...`) is what the e-graph
stores, so it round-trips exactly and never needs a general parser.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isamap.ir.kernel import Affine

__all__ = ["WindowSpec"]


@dataclass(frozen=True)
class WindowSpec:
    """`out[axes...] = src[exprs...]`, zero where an expression falls outside `src`."""

    axes: tuple[tuple[str, int], ...]
    exprs: tuple[Affine, ...]

    def shape(self) -> tuple[int, ...]:
        return tuple(e for _, e in self.axes)

    def to_string(self) -> str:
        axes = ",".join(f"{n}={e}" for n, e in self.axes)
        exprs = ";".join(
            "+".join([f"{c}*{n}" for n, c in a.terms] + [str(a.const)]) for a in self.exprs
        )
        return f"{axes}|{exprs}"

    @staticmethod
    def parse(text: str) -> WindowSpec:
        axes_text, exprs_text = text.split("|")
        axes = tuple((n, int(e)) for n, e in (part.split("=") for part in axes_text.split(",")))
        exprs: list[Affine] = []
        for expr in exprs_text.split(";"):
            *terms, const = expr.split("+")
            exprs.append(
                Affine(tuple((t.split("*")[1], int(t.split("*")[0])) for t in terms), int(const))
            )
        return WindowSpec(axes, tuple(exprs))

    def gather(self, src: np.ndarray) -> np.ndarray:
        """Apply the window to `src` with numpy (zero outside its bounds)."""
        names = [n for n, _ in self.axes]
        grids = np.indices(self.shape(), sparse=True)
        by_name = dict(zip(names, grids, strict=True))
        positions = []
        valid = np.ones(self.shape(), dtype=bool)
        for dim, a in enumerate(self.exprs):
            pos = np.full((1,) * len(names), a.const, dtype=np.int64)
            for n, c in a.terms:
                pos = pos + c * by_name[n]
            pos = np.broadcast_to(pos, self.shape())
            valid &= (pos >= 0) & (pos < src.shape[dim])
            positions.append(np.clip(pos, 0, src.shape[dim] - 1))
        out = src[tuple(positions)] if positions else np.broadcast_to(src, self.shape())
        return np.where(valid, out, 0.0)
