"""Gemmini's own convolution tiling: `tiled_conv_auto`'s choice as a tap-accumulation schedule.

Gemmini's library does not run a convolution as a GEMM over an im2col copy: `tiled_conv_auto`
picks a tile of the convolution itself — batches, output rows and columns, output channels,
kernel rows and columns, input channels — that fits half the scratchpad and half the accumulator
(the other halves hold the next tile), and the `loop_conv_ws` hardware loop loads each tile's
input rows with their halo once, its weights and bias, and gathers the windows on chip. isamap
already times exactly that data movement for a tap accumulation (`ir/taps.py`: the shifted views
of the input, loaded with their halo once; `hardware/timing.py`, `tap_move`), so the library's
conv is a tap-accumulation call with the library's tile, timed by the same code as isamap's own
schedules.

Reimplements the decisions (not the code) of ucb-bar/gemmini-rocc-tests `include/gemmini.h` at
commit 180c46848eca06933df4a2ab8c1351ba1d005e09; line numbers below are that file's. Depthwise
layers (`tiled_conv_dw_auto`, line 2923) choose with one channel in and out (line 2951).
docs/calibration.md lists what is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from isamap.hardware.target import Target
from isamap.hardware.timing import ArrayModel
from isamap.ir.kernel import Affine
from isamap.ir.program import MatmulCall, TileSchedule
from isamap.ir.taps import tap_depth
from isamap.targets.gemmini.baseline import GemminiParams, gemmini_params

__all__ = [
    "ConvShape",
    "ConvTiles",
    "acc_rows",
    "conv_schedule",
    "conv_shape",
    "conv_tiles",
    "spad_rows",
]


@dataclass(frozen=True)
class ConvShape:
    """What `tiled_conv_auto` is called with (no pooling, no input dilation, no transposes).

    A depthwise layer is one such convolution per channel, of one channel in and out: what
    `tiled_conv_dw_auto` (line 2923) chooses for, with `args[3] = args[6] = 1` (line 2951).
    `downsample`: the library's special case of a 1x1 stride-2 unpadded convolution of an
    even-sized input (line 2666), which loads every second input row and column only."""

    batch: int
    out_rows: int
    out_cols: int
    out_channels: int
    kernel_rows: int
    kernel_cols: int
    in_channels: int
    stride: int = 1
    dilation: int = 1  # kernel dilation
    downsample: bool = False


@dataclass(frozen=True)
class ConvTiles:
    """One tile of the convolution: `args` of `tiled_conv_stride_auto` (line 2670)."""

    batches: int
    porows: int
    pocols: int
    pochs: int
    krows: int
    kcols: int
    kchs: int

    def args(self) -> tuple[int, ...]:
        return (self.batches, self.porows, self.pocols, self.pochs, self.krows, self.kcols,
                self.kchs)  # fmt: skip


_OROWS, _OCOLS, _OCHS, _KCHS = 1, 2, 3, 6  # indices into args (lines 2674-2677)


def _rows(p: GemminiParams, shape: ConvShape, t: ConvTiles) -> tuple[int, int]:
    """Scratchpad rows (input tile with its halo, then weights) and accumulator rows of a tile:
    `tiled_conv_total_spad_rows` (lines 1791-1831) with pool size and stride 1, input dilation 1
    and no transposes. Every pixel of a tile takes one row per DIM channels."""
    dim = p.dim
    krows_dilated = t.krows + (shape.dilation - 1) * (t.krows - 1)
    kcols_dilated = t.kcols + (shape.dilation - 1) * (t.kcols - 1)
    irows = t.porows * shape.stride + krows_dilated - 1  # (the library's bound: "- 2 * padding"
    icols = t.pocols * shape.stride + kcols_dilated - 1  # is left out, line 1807)
    ds = 1 if shape.downsample else 0
    in_banks, out_banks = -(-t.kchs // dim), -(-t.pochs // dim)
    a_rows = in_banks * t.batches * (irows >> ds) * (icols >> ds)
    b_rows = out_banks * t.kcols * t.krows * t.kchs
    c_rows = out_banks * t.batches * t.porows * t.pocols
    return a_rows + b_rows, c_rows


def spad_rows(p: GemminiParams, shape: ConvShape, t: ConvTiles) -> int:
    """Scratchpad rows one tile reserves (input with halo and weights)."""
    return _rows(p, shape, t)[0]


def acc_rows(p: GemminiParams, shape: ConvShape, t: ConvTiles) -> int:
    """Accumulator rows one tile reserves (its outputs)."""
    return _rows(p, shape, t)[1]


def conv_tiles(p: GemminiParams, shape: ConvShape) -> ConvTiles:
    """The tile `tiled_conv_auto` picks for `shape`.

    Starts from the whole layer (lines 2671, 2951); while the tile overflows half the scratchpad
    or half the accumulator (lines 2680-2681, 2690), shrinks its largest argument — output
    columns only while they are above DIM or the tile has one output row left (line 2696),
    channels down to a multiple of DIM or by DIM (lines 2704-2710), anything else by one; then
    grows the output columns while the tile fits (lines 2723-2745), then every argument in
    turn, one step each, until nothing grows (lines 2747-2770). `tiled_conv_dw_auto` runs the
    same loops (lines 2969-3049) on one channel in and out. Raises ValueError if not even a
    tile of one of everything fits.
    """
    dim = p.dim
    max_spad, max_acc = p.spad_rows // 2, p.acc_rows // 2  # halves: double buffering
    top = (
        shape.batch,
        shape.out_rows,
        shape.out_cols,
        shape.out_channels,
        shape.kernel_rows,
        shape.kernel_cols,
        shape.in_channels,
    )

    def fits(args: list[int]) -> bool:
        s, a = _rows(p, shape, ConvTiles(*args))
        return s <= max_spad and a <= max_acc

    args = list(top)
    while not fits(args):
        max_val, max_idx = -1, -1
        for i, v in enumerate(args):
            # "We avoid reducing ocols when possible to keep the spatial array fully utilized"
            if not (i == _OCOLS and v <= dim and args[_OROWS] > 1) and v > max_val:
                max_val, max_idx = v, i
        if args[max_idx] == 1:
            raise ValueError(f"no tile of {shape} fits {max_spad} scratchpad rows and "
                             f"{max_acc} accumulator rows")  # fmt: skip
        if max_idx in (_OCHS, _KCHS):  # "no point in subtracting by just one"
            v = args[max_idx]
            v = (v // dim) * dim if v % dim else v - dim
            args[max_idx] = v or 1
        else:
            args[max_idx] -= 1
    while args[_OCOLS] < top[_OCOLS]:
        grown = [*args[:_OCOLS], args[_OCOLS] + 1, *args[_OCOLS + 1 :]]
        if not fits(grown):
            break
        args = grown
    grew = True
    while grew:
        grew = False
        for i in range(len(args)):
            if args[i] + 1 > top[i]:
                continue
            grown = [*args[:i], args[i] + 1, *args[i + 1 :]]
            if fits(grown):
                args, grew = grown, True
    return ConvTiles(*args)


def _term(expr: Affine, names: set[str]) -> list[tuple[str, int]]:
    return [(n, c) for n, c in expr.terms if n in names]


def conv_shape(call: MatmulCall) -> ConvShape | None:
    """The convolution a tap-accumulation call computes, as `tiled_conv_auto` takes it; None
    when the library's 2-D conv cannot express it (more than two spatial dimensions, different
    strides or dilations per dimension, a pixel read through more than one output index).

    The views' row axes are the output pixels (batch axes, read plainly, among them); each
    input dimension with a tap is a spatial one, `stride * out + dilation * tap - pad`. The
    output channels are the other operand's extent; each call batch (a channel group) is a
    separate library call of the same tile."""
    g = call.taps
    if g is None:
        return None
    rows, taps = {n for n, _ in g.rows}, {n for n, _ in g.taps}
    extent = dict(g.rows) | dict(g.taps)
    # per spatial dimension: out size, taps, stride, dilation, pad, input size
    spatial: list[tuple[int, int, int, int, int, int]] = []
    batch = 1
    for expr, bound in zip(g.exprs, g.bounds, strict=True):
        outs, tap = _term(expr, rows), _term(expr, taps)
        if len(outs) != 1 or len(tap) > 1 or len(outs) + len(tap) != len(expr.terms):
            return None
        (o, stride), t = outs[0], (tap[0] if tap else None)
        if t is None and stride == 1 and expr.const == 0:
            batch *= extent[o]  # a batch axis of the pixels
            continue
        dilation = t[1] if t else 1
        spatial.append((extent[o], extent[t[0]] if t else 1, stride, dilation, -expr.const, bound))
    if not spatial or len(spatial) > 2 or batch * math.prod(s[0] for s in spatial) != g.row_count:
        return None
    if len({s[2] for s in spatial}) > 1 or len({s[3] for s in spatial}) > 1:
        return None
    if len(spatial) == 1:
        spatial.insert(0, (1, 1, spatial[0][2], spatial[0][3], 0, 2))
    (orows, krows, stride, dilation, _, _), (ocols, kcols, *_) = spatial
    out_channels = call.n if g.operand == "A" else call.m
    downsample = (
        stride == 2
        and krows == kcols == 1
        and all(s[4] == 0 and s[5] % 2 == 0 for s in spatial)  # line 2666
    )
    return ConvShape(
        batch=batch,
        out_rows=orows,
        out_cols=ocols,
        out_channels=out_channels,
        kernel_rows=krows,
        kernel_cols=kcols,
        in_channels=g.channels,
        stride=stride,
        dilation=dilation,
        downsample=downsample,
    )


def conv_schedule(model: ArrayModel, call: MatmulCall, target: Target) -> TileSchedule | None:
    """The schedule of a tap-accumulation `call` that runs `tiled_conv_auto`'s tile; None when
    the call is not a convolution the library's conv path takes (`conv_shape`), or when a
    `TileSchedule` over the stacked taps cannot run that tile as it is.

    The tile's output pixels (batches x porows x pocols) are a run of whole pixel blocks of the
    views, its output channels `ceil(pochs / DIM)` blocks, its depth the blocks of its
    krows x kcols taps (each tap's channels padded to DIM, as the stacked taps are). The loops
    run as `tiled_conv`'s (line 2320): pixels outer, then output channels, then the depth,
    weight-stationary, double-buffered. The stacked depth runs tap by tap, so a tile of some of
    the channels of every tap (`kchs` below the channels) or of some filter columns of several
    rows is not a run of it; and the machine holds a views tile in the rows of its im2col tile,
    not of its halo (`hardware.footprint`), so a tile that fits the library's accounting may
    not fit it. Either way None: the caller keeps the matmul path rather than time another tile.
    """
    shape = conv_shape(call)
    g = call.taps
    if shape is None or g is None:
        return None
    p = gemmini_params(target, call.instruction)
    try:
        t = conv_tiles(p, shape)
    except ValueError:
        return None  # no conv tile fits at all: the matmul path
    whole_taps = t.kcols == shape.kernel_cols or t.krows == 1
    if t.kchs < shape.in_channels or not whole_taps:
        return None
    bm, bn, bk = model.block
    pix_block, och_block = (bm, bn) if g.operand == "A" else (bn, bm)
    pixels = -(-(t.batches * t.porows * t.pocols) // pix_block)
    ochs = -(-t.pochs // och_block)
    depth = t.krows * t.kcols * (tap_depth(g.channels, bk) // bk)
    mb, nb, kb = call.blocks
    pb, ob = (mb, nb) if g.operand == "A" else (nb, mb)
    pix, och, k = min(pixels, pb), min(ochs, ob), min(depth, kb)
    if g.operand == "A":
        s = TileSchedule("WS", pix, och, k, "ijk", double_buffer=True)
    else:
        s = TileSchedule("WS", och, pix, k, "jik", double_buffer=True)
    return s if model.fits(s) else None
