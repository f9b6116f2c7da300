"""How Gemmini's library issues a convolution: on its conv path, not as a GEMM over an im2col copy.

The library runs a convolution with `tiled_conv_auto` and the `loop_conv_ws` hardware loop, not as
`imagenet/mobilenet.c`'s default im2col GEMM. So in the baseline's mapping, a product that reads
an im2col window of its input (`window` then `reshape`, some summed index shifting a pixel) is
issued as the tap accumulation it equals (`ir/taps.py`: one product per filter tap on shifted
views of the input, accumulated; the input tile loaded with its halo once) wherever the library's
conv loop would run the layer as it lies (`_as_taps`: NHWC input, HWIO weights, not a layer the
library packs, a tile a schedule runs as it is); anywhere else the product keeps its GEMM.
`conv_path` is the `issue` step Gemmini's baseline registers (`schedule/registry.py`), applied
after the generic unswapping of `schedule/baseline.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from isamap.hardware.target import Target
from isamap.hardware.timing import ArrayModel, tap_call
from isamap.ir.kernel import Affine
from isamap.ir.mapping import Attr, MapNode, Mapping
from isamap.ir.program import MatmulCall
from isamap.ir.taps import TapGeometry
from isamap.ir.window import WindowSpec
from isamap.schedule.baseline import prune_dead
from isamap.targets.gemmini.baseline_conv import conv_schedule

__all__ = ["conv_path"]


def _runs(axes: list[tuple[str, int]], sizes: tuple[int, ...]) -> list[list[tuple[str, int]]]:
    """`axes` cut into consecutive runs whose extents multiply to `sizes` (each run also takes
    the axes of extent 1 that follow it; the last takes the rest); empty if they do not (a
    reshape that does not merge whole axes)."""
    out: list[list[tuple[str, int]]] = []
    i = 0
    for size in sizes[:-1]:
        run: list[tuple[str, int]] = []
        while i < len(axes) and (math.prod(e for _, e in run) < size or axes[i][1] == 1):
            run.append(axes[i])
            i += 1
        if math.prod(e for _, e in run) != size:
            return []
        out.append(run)
    rest = axes[i:]
    return [*out, rest] if math.prod(e for _, e in rest) == sizes[-1] else []


def _plain_names(spec: WindowSpec) -> WindowSpec:
    """`spec` with its axes renamed without `#` (a packed channel's `c#G16`): the names are the
    spec's own, and `#` separates the fields of a tap geometry's text."""
    names: dict[str, str] = {}
    for name, _ in spec.axes:
        new = name.replace("#", "_")
        while new in names.values() or (new != name and new in dict(spec.axes)):
            new += "_"
        names[name] = new
    exprs = tuple(Affine(tuple((names[n], c) for n, c in a.terms), a.const) for a in spec.exprs)
    return WindowSpec(tuple((names[n], e) for n, e in spec.axes), exprs)


Runs = list[list[tuple[str, int]]]


def _im2col(mapping: Mapping, node: MapNode) -> tuple[int, MapNode, WindowSpec, Runs] | None:
    """(operand, window node, its spec, the spec's axes cut into [batch, depth, pixels]) when
    operand 0 or 1 of product call `node` is an im2col view (a `window`, then a `reshape`)."""
    if node.op != "instr" or node.attrs.get("taps") or len(node.args) not in (2, 3):
        return None
    for side in (1, 0):
        view = mapping.nodes[node.args[side]]
        if view.op != "reshape" or len(view.shape) != 3:
            continue
        window = mapping.nodes[view.args[0]]
        if window.op != "window":
            continue
        spec = _plain_names(WindowSpec.parse(str(window.attrs["spec"])))
        runs = _runs(list(spec.axes), tuple(view.shape))
        if runs:
            b, first, second = runs
            return side, window, spec, [b, first, second] if side == 1 else [b, second, first]
    return None


def _taps_of(
    spec: WindowSpec, runs: list[list[tuple[str, int]]]
) -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[int]] | None:
    """(taps, channels, the source dimensions the pixels read) of an im2col window: the depth
    axes that shift a pixel are taps, the rest channels; None when it is no convolution (no
    tap, or a dimension mixing channels or batch with pixels)."""
    depth, pixels = ({n for n, _ in r} for r in runs[1:])
    taps = {n for a in spec.exprs if set(a.indices()) & pixels for n in a.indices() if n in depth}
    dims: list[int] = []
    for dim, a in enumerate(spec.exprs):
        names = set(a.indices())
        if names & pixels:
            # the library's conv reads each input dimension through one output index and at
            # most one tap (`baseline_conv.conv_shape`); a channel read with the pixels is none
            if names - pixels - taps or len(names & pixels) != 1 or len(names & taps) > 1:
                return None
            dims.append(dim)
        elif names & taps:
            return None
    if not taps:
        return None
    return [x for x in runs[1] if x[0] in taps], [x for x in runs[1] if x[0] not in taps], dims


def _channels_last(spec: WindowSpec, chans: list[tuple[str, int]]) -> bool:
    """Whether the input is read channels-last (NHWC): the layout `tiled_conv` reads
    (`gemmini.h` line 2407: pixel `(b, irow, icol)` at `* in_stride + kch`, `in_stride =
    in_channels`, line 2851). An NCHW layer would need its input re-laid out through DRAM
    first; it keeps its GEMM."""
    names = {n for n, _ in chans}
    reads = [i for i, a in enumerate(spec.exprs) if names & set(a.indices())]
    return reads == [len(spec.exprs) - 1]


def _packs_pixels(
    node: MapNode,
    spec: WindowSpec,
    taps: list[tuple[str, int]],
    chans: list[tuple[str, int]],
    dims: list[int],
) -> bool:
    """Whether the library would pack several filter columns into one DIM-deep block: with
    HAS_FIRST_LAYER_OPTIMIZATIONS (`gemmini_params.h` line 82) `sp_tiled_conv` reads
    `max_pixels_per_row = min(DIM / channels, kcols)` adjacent pixels per scratchpad row
    (`gemmini.h` lines 1404-1411) when the channels are at most DIM / 2. A tap accumulation pads
    each tap's channels to DIM on its own, so it would charge such a layer (an RGB first layer)
    up to kcols times the library's folds; it keeps its im2col GEMM under `tiled_matmul_auto`
    instead, the library's other way to run it (`imagenet/mobilenet.c` lines 73-90)."""
    dim = int(str(node.attrs.get("tile", "1x1x1x1")).split("x")[3])
    channels = math.prod(e for _, e in chans)
    tap_names = dict(taps)
    columns = [tap_names[n] for n in spec.exprs[dims[-1]].indices() if n in tap_names]
    return dim // channels >= 2 and bool(columns) and columns[0] >= 2


def _block_diagonal(mapping: Mapping, node_id: int) -> bool:
    """Whether the weights `node_id` are isamap's packing of a depthwise (grouped) convolution:
    a block-diagonal tensor (`einsum-pack-channels`), seen through views and transposes. The
    library runs such a layer channel by channel (`tiled_conv_dw`, `gemmini.h` line 2550), which
    a tap accumulation cannot express (docs/calibration.md, "Left out"): it keeps its GEMM."""
    node = mapping.nodes[node_id]
    while node.op in ("reshape", "transpose") and node.args:
        node = mapping.nodes[node.args[0]]
    return node.op == "block_diag"


def _on_conv_path(node: MapNode, geometry: TapGeometry, target: Target) -> bool:
    """Whether the tap accumulation of `geometry` replacing product call `node` runs the
    library's conv tile (`baseline_conv.conv_schedule`); where it cannot, the call keeps its
    GEMM under `tiled_matmul_auto`."""
    name = str(node.attrs["instruction"])
    model = ArrayModel.for_instruction(target, name)
    a = node.attrs
    b, m, n = (int(str(a[r])) for r in "bmn")
    call = tap_call(MatmulCall(node.id, name, b, m, n, geometry.channels, model.block), geometry,
                    model.block[2])  # fmt: skip
    return conv_schedule(model, call, target) is not None


@dataclass(frozen=True)
class _Taps:
    """How a product over an im2col window is issued as a tap accumulation: the views (a window
    of the same input, [b, t, m, k]), the weights per tap ([b, t, k, n], a view of the call's
    weights) and the call's attributes."""

    window: int  # the im2col window node (its input is the views' input)
    spec: WindowSpec
    views: tuple[int, int, int, int]
    weights: tuple[int, int, int, int]
    attrs: dict[str, Attr]


def _as_taps(mapping: Mapping, node: MapNode, target: Target) -> _Taps | None:
    """The tap accumulation product call `node` equals, where the library's conv loop would run
    it as it lies (module docstring; docs/calibration.md, "The baseline's convolutions"): the
    pixels are the rows of the product (the result is `[b, pixels, kernels]`, the NHWC the
    library writes), the input is read channels-last, each tap's weights are a slice of the
    weights as they lie (HWIO), the layer is not one the library packs, and a schedule runs the
    library's tile as it is. None otherwise: the call keeps its GEMM."""
    im2col = _im2col(mapping, node)
    if im2col is None or im2col[0] != 0:
        return None
    _, window, spec, runs = im2col
    found = _taps_of(spec, runs)
    if found is None:
        return None
    taps, chans, dims = found
    batch, depth, pixels = runs
    if (
        not _channels_last(spec, chans)
        or _packs_pixels(node, spec, taps, chans, dims)
        or _block_diagonal(mapping, node.args[1])
    ):
        return None
    names = [n for n, _ in depth]
    if [n for n in names if n in dict(taps)] + [n for n in names if n in dict(chans)] != names:
        return None  # the weights' depth is not taps then channels: a re-layout per tap
    b, t = math.prod(e for _, e in batch), math.prod(e for _, e in taps)
    c, p = math.prod(e for _, e in chans), math.prod(e for _, e in pixels)
    source = mapping.nodes[window.args[0]].shape
    geometry = TapGeometry("A", c, tuple(pixels), tuple(taps), tuple(spec.exprs[d] for d in dims),
                           tuple(source[d] for d in dims))  # fmt: skip
    if not _on_conv_path(node, geometry, target):
        return None
    attrs = dict(node.attrs)
    attrs.update(taps=t, k=c, geometry=geometry.to_string())
    tile = [int(x) for x in str(attrs.get("tile", "1x1x1x1")).split("x")]
    counts = [math.ceil(int(str(attrs[r])) / tile[i]) for i, r in enumerate("bmnk")]
    attrs["tiles"] = "x".join(str(x) for x in [*counts[:3], counts[3] * t])
    views = WindowSpec(tuple(batch + taps + pixels + chans), spec.exprs)
    cols = mapping.nodes[node.args[1]].shape[2]
    return _Taps(window.id, views, (b, t, p, c), (b, t, c, cols), attrs)


def conv_path(mapping: Mapping, target: Target) -> Mapping:
    """`mapping` with every product over an im2col window the library's conv loop runs as it
    lies issued as a tap accumulation (`_as_taps`)."""
    out = Mapping(mapping.kernel, mapping.target, mapping.cost_model, mapping.cost)
    new_id: dict[int, int] = {}
    changed = False

    def add(node: MapNode) -> int:
        node = replace(node, id=len(out.nodes))
        out.nodes.append(node)
        return node.id

    def view(op: str, arg: int, shape: tuple[int, ...], attr: str, value: str) -> int:
        return add(MapNode(0, op, (arg,), {attr: value}, shape, "view"))

    for node in mapping.nodes:
        conv = _as_taps(mapping, node, target)
        if conv is None:
            new_id[node.id] = add(replace(node, args=tuple(new_id[a] for a in node.args)))
            continue
        changed = True
        source = new_id[mapping.nodes[conv.window].args[0]]
        gathered = view("window", source, conv.spec.shape(), "spec", conv.spec.to_string())
        views = view("reshape", gathered, conv.views, "shape", ",".join(map(str, conv.views)))
        weights = new_id[node.args[1]]
        w = view("reshape", weights, conv.weights, "shape", ",".join(map(str, conv.weights)))
        rest = tuple(new_id[a] for a in node.args[2:])
        new_id[node.id] = add(replace(node, args=(views, w, *rest), attrs=conv.attrs))
    if not changed:
        return mapping
    out.outputs = {name: new_id[i] for name, i in mapping.outputs.items()}
    return prune_dead(out)
