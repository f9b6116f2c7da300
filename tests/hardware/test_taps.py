"""A tap accumulation's call on the machine and in the timing model: the same loads, the same
result as numpy, bytes that count each input pixel of a tile once."""

from __future__ import annotations

import numpy as np
import pytest

import isamap
from isamap.hardware.machine import run_call
from isamap.hardware.target import Target
from isamap.hardware.timing import ArrayModel, call_timing, tap_call
from isamap.ir.kernel import Affine
from isamap.ir.program import MatmulCall, TileSchedule
from isamap.ir.taps import TapGeometry, stack_taps, tap_depth

COMPUTE = "compute_preloaded"


def _geometry(operand: str, c: int, hw: int, stride: int, dilation: int, pad: int) -> TapGeometry:
    """The views of a 3x3 convolution of an hw x hw input with `c` channels."""
    out = (hw + 2 * pad - dilation * 2 - 1) // stride + 1
    exprs = tuple(Affine(((o, stride), (t, dilation)), -pad) for o, t in (("h", "r"), ("w", "s")))
    return TapGeometry(operand, c, (("h", out), ("w", out)), (("r", 3), ("s", 3)), exprs, (hw, hw))


def _input_views(g: TapGeometry, rng: np.random.Generator) -> np.ndarray:
    """[t, pixels, c] views of a random input: a pixel's values are the same at every tap."""
    image = rng.standard_normal((int(np.prod(g.bounds)), g.channels))
    ids = g.pixel_ids(0, g.row_count, 0, g.tap_count)  # [pixels, taps]
    views = np.where((ids >= 0)[..., None], image[np.clip(ids, 0, None)], 0.0)
    return np.transpose(views, (1, 0, 2))


@pytest.fixture(scope="module")
def gemmini() -> Target:
    return isamap.load_target("gemmini")


@pytest.mark.parametrize("operand", ["A", "B"])
@pytest.mark.parametrize(
    ("c", "hw", "stride", "dilation", "pad"),
    [(3, 9, 1, 1, 1), (20, 7, 2, 1, 1), (17, 8, 1, 2, 2)],
    ids=["c3-padded", "c20-strided", "c17-dilated"],
)
def test_machine_loads_what_timing_counts(
    gemmini: Target, operand: str, c: int, hw: int, stride: int, dilation: int, pad: int
) -> None:
    g = _geometry(operand, c, hw, stride, dilation, pad)
    rng = np.random.default_rng(c)
    n = 18
    views = _input_views(g, rng)[None]  # [1, t, pixels, c]
    weights = rng.standard_normal((1, g.tap_count, c, n))
    if operand == "A":
        x, y = views, weights
        base = MatmulCall(0, COMPUTE, 1, g.row_count, n, c, (16, 16, 16))
    else:
        x, y = np.transpose(weights, (0, 1, 3, 2)), np.transpose(views, (0, 1, 3, 2))
        base = MatmulCall(0, COMPUTE, 1, n, g.row_count, c, (16, 16, 16))
    call = tap_call(base, g, 16)
    a, b = stack_taps(x, y, tap_depth(c, 16))
    want = np.einsum("btmk,btkn->bmn", x, y)
    model = ArrayModel.for_instruction(gemmini, COMPUTE)
    for s in (
        TileSchedule("WS", 2, 1, 3, "ijk", True),
        TileSchedule("OS", 1, 2, 1, "kij", False),
        TileSchedule("WS", 4, 2, 5, "jki", True),
    ):
        run = run_call(gemmini, call, s, a, b)
        np.testing.assert_allclose(run.output, want, rtol=1e-10, atol=1e-10)
        timing = call_timing(model, call, s)
        assert run.counts == timing.counts, s
        # each tile's halo once: never more than im2col's bytes for the same tiles
        plain = MatmulCall(0, COMPUTE, 1, call.m, call.n, call.k, call.block)
        im2col = call_timing(model, plain, s)
        assert timing.bytes["dram"] < im2col.bytes["dram"], s


def test_tile_of_all_taps_reads_each_pixel_once() -> None:
    g = _geometry("A", 8, 12, 1, 1, 1)
    assert g.pixels(0, g.row_count, 0, g.tap_count) == 144  # the whole image, padding excluded
    # the first 16 output pixels (a row and 4 of the next) at the first tap row (r = 0): the
    # row above the image is padding, the next one contributes columns -1..4 -> 5 pixels
    assert g.pixels(0, 16, 0, 3) == 5
    assert g.tile_reads(0, 16, 0, 48, 16) == [(5, 8)]
    assert TapGeometry.parse(g.to_string()) == g
    with pytest.raises(ValueError, match="bad tap geometry"):
        TapGeometry.parse("C#8#2#h=3|1*h+0#3")
