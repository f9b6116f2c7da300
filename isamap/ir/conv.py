"""A convolution read off a kernel's product: `Einsum(spec, Window(x, window), w)` as geometry.

The literal encoder writes a convolution as an `Einsum` whose first operand is a `Window` (an
affine view) of the input. A direct-convolution instruction computes exactly such a product
without materialising the window (no im2col copy), so the rule that maps one onto it, the
scheduler, the timing model and the machine all need the same facts: which indices are batch,
input channel, output channel, and, per spatial dimension, the output index, the filter tap, the
stride, the dilation and the zero padding. This module derives them from the two literals
(`spec`, `window`) and the operands' shapes; it is the one definition of that reading.

Canonical layouts (what the machine and the timing model work in):
x `[B, C, H_1, ..., H_d]`, w `[B, K, C, R_1, ..., R_d]`, result `[B, K, Ho_1, ..., Ho_d]`, where
B is every batch index (in the result's order) flattened; a missing channel, output channel or
tap is an axis of extent 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from isamap.ir.einsum import einsum_subscripts, parse_einsum
from isamap.ir.kernel import Affine
from isamap.ir.window import WindowSpec

__all__ = [
    "ConvGeometry",
    "Spatial",
    "conv_call_geometry",
    "conv_geometry",
    "conv_literal",
    "split_conv_literal",
]


@dataclass(frozen=True)
class Spatial:
    """One spatial dimension: input extent `size`, output index and extent, filter tap index and
    extent (None / 1 for a dimension without taps), stride, dilation, zero padding before."""

    out: str
    out_size: int
    tap: str | None
    taps: int
    size: int
    stride: int
    dilation: int
    pad: int

    @property
    def pad_after(self) -> int:
        """Zero rows read past the end of the input."""
        last = self.stride * (self.out_size - 1) + self.dilation * (self.taps - 1) - self.pad
        return max(0, last - (self.size - 1))

    def input_rows(self, first: int, count: int) -> tuple[int, int]:
        """The input rows [lo, hi) that output rows [first, first + count) read (the halo
        included), clipped to the input: rows outside it are padding, made on chip."""
        lo = self.stride * first - self.pad
        hi = self.stride * (first + count - 1) + self.dilation * (self.taps - 1) - self.pad + 1
        return max(lo, 0), min(hi, self.size)


@dataclass(frozen=True)
class ConvGeometry:
    """A convolution `out[b, k, o...] += x[b, c, stride*o + dilation*t - pad...] * w[b, k, c, t...]`
    read off an Einsum over a Window, with the permutations to and from its canonical layouts."""

    spec: str
    window: str
    batch: tuple[tuple[str, int], ...]
    channel: tuple[str, int] | None
    kernel: tuple[str, int] | None
    spatial: tuple[Spatial, ...]
    x_perm: tuple[int, ...]  # source axes (split) -> canonical order (batch, channel, spatial)
    w_axes: tuple[str, ...]  # the weight operand's axes as the Einsum names them
    out_axes: tuple[str, ...]
    #: The source's shape with a grouped channel dimension (`8*g + c`) split into (groups, c)
    x_split: tuple[int, ...] = ()

    @property
    def b(self) -> int:
        return math.prod(e for _, e in self.batch)

    @property
    def c(self) -> int:
        return self.channel[1] if self.channel else 1

    @property
    def k(self) -> int:
        return self.kernel[1] if self.kernel else 1

    @property
    def taps(self) -> int:
        return math.prod(s.taps for s in self.spatial)

    @property
    def pixels(self) -> int:
        return math.prod(s.out_size for s in self.spatial)

    @property
    def macs(self) -> int:
        return self.b * self.k * self.c * self.taps * self.pixels

    def literal(self) -> str:
        return conv_literal(self.spec, self.window)

    def out_shape(self) -> tuple[int, ...]:
        ext = dict(self.batch) | {s.out: s.out_size for s in self.spatial}
        if self.kernel:
            ext[self.kernel[0]] = self.kernel[1]
        return tuple(ext[a] for a in self.out_axes)

    def canonical_x(self, x: np.ndarray) -> np.ndarray:
        """The input as [B, C, H...]."""
        t = np.transpose(x.reshape(self.x_split) if self.x_split else x, self.x_perm)
        return t.reshape((self.b, self.c, *(s.size for s in self.spatial)))

    def canonical_w(self, w: np.ndarray) -> np.ndarray:
        """The weights as [B, K, C, R...]."""
        names = [a for a, _ in self.batch]
        names += [self.kernel[0]] if self.kernel else []
        names += [self.channel[0]] if self.channel else []
        names += [s.tap for s in self.spatial if s.tap]
        t = np.transpose(w, [self.w_axes.index(a) for a in names])
        return t.reshape((self.b, self.k, self.c, *(s.taps for s in self.spatial)))

    def from_canonical(self, out: np.ndarray) -> np.ndarray:
        """A canonical [B, K, Ho...] result in the Einsum's own axis order."""
        names = [a for a, _ in self.batch] + ([self.kernel[0]] if self.kernel else [])
        names += [s.out for s in self.spatial]
        ext = dict(self.batch) | {s.out: s.out_size for s in self.spatial}
        if self.kernel:
            ext[self.kernel[0]] = self.kernel[1]
        full = out.reshape([ext[a] for a in names])
        return np.transpose(full, [names.index(a) for a in self.out_axes])

    def reference(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """The product by its definition: the window gathered, then the einsum (numpy)."""
        gathered = WindowSpec.parse(self.window).gather(x)
        return np.asarray(np.einsum(einsum_subscripts(self.spec), gathered, w))


def conv_literal(spec: str, window: str) -> str:
    """The one literal an instruction call carries: the Einsum spec and the window spec."""
    return f"{spec}&{window}"


def split_conv_literal(text: str) -> tuple[str, str]:
    spec, _, window = text.partition("&")
    return spec, window


def conv_geometry(
    spec: str, window: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...]
) -> ConvGeometry | str:
    """The convolution `Einsum(spec, Window(x, window), w)` computes, or why it is not one a
    direct-convolution engine runs as such (then the product maps as a GEMM or not at all)."""
    lhs, rhs, out = parse_einsum(spec)
    try:
        ws = WindowSpec.parse(window)
    except (ValueError, IndexError):
        return f"bad window spec '{window}'"
    if tuple(n for n, _ in ws.axes) != lhs:
        return "the window's axes are not the product's first operand"
    if len(ws.exprs) != len(x_shape) or len(rhs) != len(w_shape):
        return "the operands' ranks do not fit the window and the product"
    ext = dict(ws.axes)
    for name, e in zip(rhs, w_shape, strict=True):
        if ext.setdefault(name, e) != e:
            return f"index '{name}' has two extents"
    used: list[str] = []
    batch: dict[str, int] = {}
    channel: list[tuple[str, int]] = []
    spatial: list[Spatial] = []
    roles: list[tuple[str, str]] = []  # per (split) source axis: (role, name)
    split: list[int] = []  # the source shape, a grouped channel dimension split in two
    for dim, a in enumerate(ws.exprs):
        used.extend(a.indices())
        plain = a.plain_index()
        if plain is not None and plain in rhs:
            split.append(x_shape[dim])
            if plain in out:
                batch[plain] = ext[plain]
                roles.append(("b", plain))
            else:
                channel.append((plain, ext[plain]))
                roles.append(("c", plain))
            continue
        grouped = _grouped_channel(a, rhs, out, ext, x_shape[dim])
        if grouped is not None:  # channels read in groups, `C*g + c`: a batch and a channel
            g_name, c_name = grouped
            batch[g_name] = ext[g_name]
            channel.append((c_name, ext[c_name]))
            roles.extend([("b", g_name), ("c", c_name)])
            split.extend([ext[g_name], ext[c_name]])
            continue
        split.append(x_shape[dim])
        outs = [(n, c) for n, c in a.terms if n in out and n not in rhs]
        taps = [(n, c) for n, c in a.terms if n not in out and n in rhs]
        if len(outs) != 1 or len(taps) + 1 != len(a.terms) or len(taps) > 1:
            return f"input dimension {dim} is read as {a}, not stride*out + dilation*tap - pad"
        (o, stride), tap = outs[0], (taps[0] if taps else None)
        if stride < 1 or (tap is not None and tap[1] < 1):
            return f"input dimension {dim} is read as {a}: a negative stride or dilation"
        if a.const > 0:
            return f"input dimension {dim} is read as {a}: an offset into the input, not padding"
        spatial.append(
            Spatial(
                out=o,
                out_size=ext[o],
                tap=tap[0] if tap else None,
                taps=ext[tap[0]] if tap else 1,
                size=x_shape[dim],
                stride=stride,
                dilation=tap[1] if tap else 1,
                pad=-a.const,
            )
        )
        roles.append(("s", o))
    if len(used) != len(set(used)) or set(used) != set(lhs):
        return "an index of the window reads more than one input dimension"
    if len(channel) > 1:
        return "more than one input-channel index"
    if not spatial:
        return "no spatial dimension (a plain product: a GEMM)"
    if all(s.taps == 1 and s.stride == 1 for s in spatial):
        return "a 1x1 convolution of stride 1 (a GEMM)"
    kernels = [i for i in rhs if i in out and i not in lhs]
    taps_named = {s.tap for s in spatial if s.tap}
    for i in rhs:
        if i not in batch and i not in taps_named and i not in kernels and i not in dict(channel):
            return f"weight index '{i}' is neither batch, channel, output channel nor tap"
    if len(kernels) > 1:
        return "more than one output-channel index"
    for i in out:
        if i not in batch and i not in kernels and i not in {s.out for s in spatial}:
            return f"result index '{i}' is neither batch, output channel nor spatial"
    order = [a for a in out if a in batch]
    perm = [roles.index(("b", a)) for a in order]
    perm += [d for d, (r, _) in enumerate(roles) if r == "c"]
    perm += [d for d, (r, _) in enumerate(roles) if r == "s"]
    return ConvGeometry(
        spec=spec,
        window=window,
        batch=tuple((a, batch[a]) for a in order),
        channel=channel[0] if channel else None,
        kernel=(kernels[0], ext[kernels[0]]) if kernels else None,
        spatial=tuple(spatial),
        x_perm=tuple(perm),
        x_split=tuple(split) if len(split) != len(x_shape) else (),
        w_axes=rhs,
        out_axes=out,
    )


def conv_call_geometry(
    literal: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...]
) -> ConvGeometry:
    """The geometry of an `InstrConv` call from its literal and operand shapes (ValueError when
    they do not describe a convolution: the shape rule refuses such a term first)."""
    spec, window = split_conv_literal(literal)
    g = conv_geometry(spec, window, tuple(x_shape), tuple(w_shape))
    if isinstance(g, str):
        raise ValueError(f"not a direct convolution: {g}")
    return g


def _grouped_channel(
    a: Affine, rhs: tuple[str, ...], out: tuple[str, ...], ext: dict[str, int], size: int
) -> tuple[str, str] | None:
    """(group, channel) when `a` reads a channel dimension in groups, `C*g + c` with `g` a
    batch index (weights and result), `c` a channel (weights, summed) of extent C, covering the
    whole dimension (how the channel-packing rule splits a depthwise convolution's channels)."""
    if a.const != 0 or len(a.terms) != 2:
        return None
    (g, cg), (c, cc) = sorted(a.terms, key=lambda t: -t[1])
    grouped = g in rhs and g in out and c in rhs and c not in out
    if grouped and cc == 1 and cg == ext[c] and ext[g] * ext[c] == size:
        return g, c
    return None
