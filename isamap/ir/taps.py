"""Tap accumulation: a convolution as one product per filter tap on shifted views of its input.

`out[m, n] = sum over taps t of X_t[m, :] . W_t[:, n]`, where `X_t` is the input shifted by tap
`t` (a strided slice: every output pixel reads one input pixel per tap, no copy) and `W_t` the
tap's weights. The products accumulate in the accumulator across the taps; each tap's depth (the
channels) is zero-padded to the instruction's K extent on its own.

`TapGeometry` says which input pixels each row of the views reads at each tap. Timing counts an
operand tile of the views as the distinct in-range input pixels its rows read at its taps, times
the channels it holds: the input tile with its halo is loaded once (in stride phases when the
convolution is strided, so each tap's view is a dense run of rows) and every tap reads its own
shifted rows of it where it lies. Out-of-range reads are the declared zero padding and move no
bytes. The text form is what the e-graph stores (`InstrTaps`' geometry literal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from isamap.ir.kernel import Affine
from isamap.ir.window import WindowSpec

__all__ = ["TapGeometry", "stack_taps", "tap_depth"]


@dataclass(frozen=True)
class TapGeometry:
    """The pixels the views of a tap accumulation read.

    `operand` is the matrix operand holding the views ("A": rows are output pixels; "B":
    columns are); `channels` each tap's real depth (K); `rows` the axes (name, extent) of the
    output pixels in their flattened order, `taps` the tap axes in theirs; `exprs` per pixel
    dimension of the input (the dimensions that are not channels) the affine expression of
    those axes reading it; `bounds` those dimensions' extents."""

    operand: str
    channels: int
    rows: tuple[tuple[str, int], ...]
    taps: tuple[tuple[str, int], ...]
    exprs: tuple[Affine, ...]
    bounds: tuple[int, ...]

    @property
    def tap_count(self) -> int:
        return math.prod(e for _, e in self.taps)

    @property
    def row_count(self) -> int:
        return math.prod(e for _, e in self.rows)

    def to_string(self) -> str:
        spec = WindowSpec(self.rows + self.taps, self.exprs).to_string()
        bounds = ",".join(str(b) for b in self.bounds)
        return f"{self.operand}#{self.channels}#{len(self.rows)}#{spec}#{bounds}"

    @staticmethod
    def parse(text: str) -> TapGeometry:
        """The geometry of `to_string`'s text; ValueError if it is not one."""
        try:
            operand, channels, nrows, spec_text, bounds = text.split("#")
            spec = WindowSpec.parse(spec_text)
            split = int(nrows)
            geometry = TapGeometry(
                operand,
                int(channels),
                spec.axes[:split],
                spec.axes[split:],
                spec.exprs,
                tuple(int(b) for b in bounds.split(",")) if bounds else (),
            )
        except (ValueError, IndexError):
            raise ValueError(f"bad tap geometry '{text}'") from None
        ok = (
            operand in ("A", "B")
            and geometry.channels >= 1
            and len(geometry.exprs) == len(geometry.bounds)
            and all(e >= 1 for _, e in spec.axes)
        )
        if not ok:
            raise ValueError(f"bad tap geometry '{text}'")
        return geometry

    def pixels(self, start: int, length: int, tap_lo: int, tap_hi: int) -> int:
        """Distinct in-range input pixels that rows [start, start + length) of the views read at
        taps [tap_lo, tap_hi) (memoised)."""
        return _pixels(self, start, length, tap_lo, tap_hi)

    def pixel_ids(self, start: int, length: int, tap_lo: int, tap_hi: int) -> np.ndarray:
        """The input pixel (row-major over `bounds`) that each row [start, start + length) of
        the views reads at each tap [tap_lo, tap_hi), -1 where it reads the zero padding."""
        rows = np.arange(start, min(start + length, self.row_count))
        taps = np.arange(tap_lo, min(tap_hi, self.tap_count))
        env: dict[str, np.ndarray] = {}
        for names, flat, shape in (
            (self.rows, rows[:, None], (len(rows), 1)),
            (self.taps, taps[None, :], (1, len(taps))),
        ):
            extents = [e for _, e in names]
            if not extents or not flat.size:
                continue
            parts = np.unravel_index(np.broadcast_to(flat, shape), extents)
            for (name, _), part in zip(names, parts, strict=True):
                env[name] = part
        grid = (len(rows), len(taps))
        valid = np.ones(grid, dtype=bool)
        linear = np.zeros(grid, dtype=np.int64)
        for expr, bound in zip(self.exprs, self.bounds, strict=True):
            pos = np.full(grid, expr.const, dtype=np.int64)
            for name, coef in expr.terms:
                pos = pos + coef * env[name]
            valid &= (pos >= 0) & (pos < bound)
            linear = linear * bound + np.clip(pos, 0, bound - 1)
        return np.where(valid, linear, -1)

    def tile_parts(self, k0: int, kt: int, depth: int) -> list[tuple[int, int, tuple[int, ...]]]:
        """The parts of a views tile at depth columns [k0, k0 + kt) of the stacked taps (tap `t`
        at columns [t * depth, t * depth + channels), the rest zero padding): (first channel,
        channel stop, taps) for each channel range some of its taps hold whole."""
        parts: dict[tuple[int, int], list[int]] = {}
        first, last = k0 // depth, (k0 + kt - 1) // depth
        for t in range(first, min(last, self.tap_count - 1) + 1):
            lo = max(k0, t * depth) - t * depth
            hi = min(k0 + kt, t * depth + self.channels) - t * depth
            if hi > lo:
                parts.setdefault((lo, hi), []).append(t)
        return [(lo, hi, tuple(taps)) for (lo, hi), taps in parts.items()]

    def tile_reads(
        self, start: int, length: int, k0: int, kt: int, depth: int
    ) -> list[tuple[int, int]]:
        """(distinct pixels, channels) of each part of a views tile (`tile_parts`) whose rows
        are [start, start + length)."""
        return [
            (self.pixels(start, length, taps[0], taps[-1] + 1), hi - lo)
            for lo, hi, taps in self.tile_parts(k0, kt, depth)
        ]


@lru_cache(maxsize=65_536)
def _pixels(g: TapGeometry, start: int, length: int, tap_lo: int, tap_hi: int) -> int:
    ids = g.pixel_ids(start, length, tap_lo, tap_hi)
    return int(np.unique(ids[ids >= 0]).size)


def tap_depth(channels: int, k_extent: int) -> int:
    """Columns one tap takes in the stacked depth: its channels padded to the instruction's K."""
    return -(-channels // k_extent) * k_extent


def stack_taps(x: np.ndarray, y: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """`x[b, t, m, k]` and `y[b, t, k, n]` as one product `[b, m, t * depth] . [b, t * depth, n]`:
    each tap's k zero-padded to `depth`, taps one after another along the depth."""
    b, t, m, k = x.shape
    n = y.shape[3]
    xs = np.zeros((b, m, t, depth))
    xs[..., :k] = np.transpose(x, (0, 2, 1, 3))
    ys = np.zeros((b, t, depth, n))
    ys[:, :, :k, :] = y
    return xs.reshape(b, m, t * depth), ys.reshape(b, t * depth, n)
