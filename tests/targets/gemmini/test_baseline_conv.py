"""The baseline's convolutions on Gemmini's conv path: `tiled_conv_auto`'s tile choice, worked
out by hand from `gemmini.h`, always inside half the scratchpad and accumulator; the baseline of
a convolution layer issued as a tap accumulation, run on the machine and equal to numpy."""

from __future__ import annotations

import random

import numpy as np
import pytest

import isamap
from isamap.compile import CompileResult
from isamap.hardware.machine import run_program
from isamap.hardware.sim import simulate_timing
from isamap.hardware.target import Target
from isamap.hardware.timing import ArrayModel, tap_call
from isamap.ir.builders import conv2d
from isamap.ir.kernel import Affine, Kernel
from isamap.ir.mapping import Mapping
from isamap.ir.program import MatmulCall, Program, TileSchedule
from isamap.ir.reference import evaluate, random_inputs
from isamap.ir.taps import TapGeometry
from isamap.quantize import hardware_kernel
from isamap.schedule.baseline import own_mapping
from isamap.schedule.scheduler import schedule_mapping
from isamap.targets.gemmini import library_schedule
from isamap.targets.gemmini.baseline import GemminiParams, gemmini_default, gemmini_params
from isamap.targets.gemmini.baseline_conv import (
    ConvShape,
    ConvTiles,
    acc_rows,
    conv_schedule,
    conv_shape,
    conv_tiles,
    spad_rows,
)


@pytest.fixture(scope="module")
def gemmini() -> Target:
    return isamap.load_target("gemmini")


@pytest.fixture(scope="module")
def params(gemmini: Target) -> GemminiParams:
    return gemmini_params(gemmini)


# Worked by hand from gemmini.h at 180c468 (DIM 16, 8192 scratchpad and 512 accumulator rows per
# half). MobileNet's first layer, 3 -> 32 channels at 112x112 out, stride 2: the accumulator
# wants 2 x 112 x 112 rows; the loop shrinks the largest argument, output rows first on a tie
# (line 2697 takes the first maximum), so rows and columns come down in turn; at 32 x 32 the
# output channels tie and drop to 16 (line 2708); at 22 x 23 = 506 <= 512 accumulator rows it
# fits (input (2*22 + 2) x (2*23 + 2) = 2208 rows + 27 weight rows); no argument grows by one.
# A depthwise layer at 112x112 (tiled_conv_dw_auto: one channel in and out) stops there too.
# At 14x14 with 16 channels the whole layer fits (196 accumulator rows, 256 + 144 spad rows).
# At 7x7 with 512 channels in and out both channel counts fall by 16 in turn to 112 and 112
# (7 x 81 + 7 x 9 x 112 = 7623 rows); then the growth loop (line 2755) adds one input channel at
# a time up to 119 (8 x 81 + 7 x 9 x 119 = 8145 <= 8192), while 113 output channels do not fit.
HAND = [
    (ConvShape(1, 112, 112, 32, 3, 3, 3, stride=2), ConvTiles(1, 22, 23, 16, 3, 3, 3), 2235, 506),
    (ConvShape(1, 112, 112, 1, 3, 3, 1), ConvTiles(1, 22, 23, 1, 3, 3, 1), 609, 506),
    (ConvShape(1, 14, 14, 16, 3, 3, 16), ConvTiles(1, 14, 14, 16, 3, 3, 16), 400, 196),
    (ConvShape(1, 7, 7, 512, 3, 3, 512), ConvTiles(1, 7, 7, 112, 3, 3, 119), 8145, 343),
]


@pytest.mark.parametrize(("shape", "tiles", "spad", "acc"), HAND)
def test_the_tile_is_the_librarys(
    params: GemminiParams, shape: ConvShape, tiles: ConvTiles, spad: int, acc: int
) -> None:
    got = conv_tiles(params, shape)
    assert got == tiles
    assert (spad_rows(params, shape, got), acc_rows(params, shape, got)) == (spad, acc)


def test_random_tiles_fit_half_of_each_memory_and_cannot_grow(params: GemminiParams) -> None:
    rng = random.Random(9)
    half_spad, half_acc = params.spad_rows // 2, params.acc_rows // 2
    for _ in range(40):
        k = rng.choice([1, 3, 5])
        shape = ConvShape(
            batch=rng.choice([1, 2, 4]),
            out_rows=rng.randint(1, 120),
            out_cols=rng.randint(1, 120),
            out_channels=rng.choice([1, 8, 16, 40, 64, 256, 1000]),
            kernel_rows=k,
            kernel_cols=k,
            in_channels=rng.choice([1, 3, 16, 24, 128, 512]),
            stride=rng.choice([1, 2]),
        )
        t = conv_tiles(params, shape)
        top = (shape.batch, shape.out_rows, shape.out_cols, shape.out_channels, k, k,
               shape.in_channels)  # fmt: skip
        assert all(1 <= a <= m for a, m in zip(t.args(), top, strict=True))
        assert spad_rows(params, shape, t) <= half_spad
        assert acc_rows(params, shape, t) <= half_acc
        for i in range(7):  # the growth loop's fixpoint: no argument grows by one and fits
            args = list(t.args())
            if args[i] == top[i]:
                continue
            args[i] += 1
            bigger = ConvTiles(*args)
            fits = (
                spad_rows(params, shape, bigger) <= half_spad
                and acc_rows(params, shape, bigger) <= half_acc
            )
            assert not fits, (shape, t, i)


def _tap_call(c: int, h: int, k: int, stride: int, operand: str) -> MatmulCall:
    """A 3x3 same-padded convolution of c -> k channels on an h x h input as a tap call."""
    o = (h + 2 - 3) // stride + 1
    rows = (("n", 1), ("h", o), ("w", o))
    exprs = (
        Affine.index("n"),
        Affine((("h", stride), ("r", 1)), -1),
        Affine((("w", stride), ("s", 1)), -1),
    )
    g = TapGeometry(operand, c, rows, (("r", 3), ("s", 3)), exprs, (1, h, h))
    m, n = (o * o, k) if operand == "A" else (k, o * o)
    return tap_call(MatmulCall(0, "compute_preloaded", 1, m, n, c, (16, 16, 16)), g, 16)


def _schedule(operand: str, pixels: int, ochs: int, k: int) -> TileSchedule:
    if operand == "A":
        return TileSchedule("WS", pixels, ochs, k, "ijk", double_buffer=True)
    return TileSchedule("WS", ochs, pixels, k, "jik", double_buffer=True)


@pytest.mark.parametrize("operand", ["A", "B"])
def test_a_tap_call_reads_as_the_library_conv_and_runs_its_tile(
    gemmini: Target, operand: str
) -> None:
    model = ArrayModel.for_instruction(gemmini, "compute_preloaded")
    call = _tap_call(16, 14, 16, 1, operand)  # the third hand-worked layer: one tile
    assert conv_shape(call) == ConvShape(1, 14, 14, 16, 3, 3, 16, stride=1)
    # 196 pixels in 13 blocks, 16 channels in one, 9 taps of one block; pixels, channels, depth
    assert conv_schedule(model, call, gemmini) == _schedule(operand, 13, 1, 9)


@pytest.mark.parametrize("operand", ["A", "B"])
def test_a_tile_no_schedule_can_run_as_it_is_leaves_the_matmul_path(
    gemmini: Target, params: GemminiParams, operand: str
) -> None:
    model = ArrayModel.for_instruction(gemmini, "compute_preloaded")
    # 64 -> 64 channels at 56x56: the library's 506 pixels are 32 blocks; isamap's machine
    # holds a views tile in the rows of its im2col tile (32 x 36 blocks, twice): too many
    call = _tap_call(64, 56, 64, 1, operand)
    shape = conv_shape(call)
    assert shape is not None
    assert conv_tiles(params, shape) == ConvTiles(1, 22, 23, 16, 3, 3, 64)
    assert not model.fits(_schedule(operand, 32, 1, 36))
    assert conv_schedule(model, call, gemmini) is None
    # 512 channels at 7x7: the tile holds 119 of them for every tap, not a run of the taps
    call = _tap_call(512, 7, 512, 1, operand)
    shape = conv_shape(call)
    assert shape is not None and conv_tiles(params, shape).kchs == 119
    assert conv_schedule(model, call, gemmini) is None
    # so the call gets tiled_matmul_auto's tile, as before the conv path
    assert library_schedule(model, call, gemmini) == gemmini_default(call, gemmini)


def test_random_schedules_of_tap_calls_fit_the_machines_accounting(gemmini: Target) -> None:
    rng = random.Random(4)
    model = ArrayModel.for_instruction(gemmini, "compute_preloaded")
    on_conv_path = 0
    for _ in range(16):
        call = _tap_call(
            rng.choice([16, 32, 96, 512]),
            rng.randint(6, 60),
            rng.choice([16, 48, 256]),
            rng.choice([1, 2]),
            rng.choice("AB"),
        )
        s = conv_schedule(model, call, gemmini)
        assert s is None or model.fits(s)
        assert model.fits(library_schedule(model, call, gemmini))
        on_conv_path += s is not None
    assert on_conv_path >= 4  # (so the fit above is checked on conv tiles)


def _baseline(kernel: Kernel, target: Target) -> tuple[CompileResult, Mapping, Program]:
    result = isamap.compile(kernel, target)
    own = own_mapping(result.mapping, target)
    return result, own, schedule_mapping(own, target, "gemmini-default")


def _nhwc(c: int, hw: int, k: int, stride: int) -> Kernel:
    """A 3x3 convolution, NHWC input and HWIO weights: the layouts the library's conv reads."""
    o = f"{stride}*" if stride > 1 else ""
    return isamap.parse_kernel(
        f"tensor X[1, {hw}, {hw}, {c}] i8 pad(0:0, 1:1, 1:1, 0:0)\ntensor W[3, 3, {c}, {k}] i8\n"
        f"O[n, h, w, k] += X[n, {o}h + r - 1, {o}w + s - 1, c] * W[r, s, c, k]\n"
    )


@pytest.mark.parametrize(
    ("kernel", "converted"),
    [(_nhwc(32, 16, 32, 1), True), (_nhwc(24, 11, 40, 2), True), (_nhwc(32, 9, 24, 1), False)],
    ids=["im2col", "im2col-stride2", "taps"],
)
def test_the_baseline_of_a_conv_layer_is_a_tap_accumulation_equal_to_numpy(
    gemmini: Target, kernel: Kernel, converted: bool
) -> None:
    result, own, program = _baseline(kernel, gemmini)
    # isamap's own mapping is the im2col GEMM, or already the tap accumulation
    assert all(bool(n.attrs.get("taps")) != converted for n in result.mapping.instruction_calls())
    (call,) = program.calls
    assert call.call.taps is not None and call.call.taps.tap_count == 9
    assert call.strategy == "gemmini-default"
    model = ArrayModel.for_instruction(gemmini, call.call.instruction)
    assert call.schedule == conv_schedule(model, call.call, gemmini)  # the library's conv tile
    inputs = random_inputs(kernel, seed=2)
    got = run_program(program, own, kernel, gemmini, inputs)
    want = evaluate(kernel, inputs)
    for name in kernel.outputs():
        np.testing.assert_array_equal(got[name], want[name])
    # and it is what the report's baseline is timed on
    assert result.report.baseline_cycles == simulate_timing(program, own, gemmini, kernel).cycles


def test_an_nchw_layer_keeps_its_gemm(gemmini: Target) -> None:
    # tiled_conv reads NHWC inputs and HWIO weights; NCHW / OIHW would be re-laid out first
    kernel = hardware_kernel(conv2d(1, 16, 10, 10, 32, 3, 3, padding=1), gemmini)
    result, own, program = _baseline(kernel, gemmini)
    assert all(not n.attrs.get("taps") for n in result.mapping.instruction_calls())
    assert all(c.call.taps is None for c in program.calls)
    inputs = random_inputs(kernel, seed=4)
    got = run_program(program, own, kernel, gemmini, inputs)
    np.testing.assert_array_equal(got["O"], evaluate(kernel, inputs)["O"])


def test_a_first_layer_keeps_its_im2col_gemm(gemmini: Target) -> None:
    # 3 channels: the library packs the 3 filter columns into one 16-deep block
    # (max_pixels_per_row); a tap accumulation would pad each tap to 16, so the baseline stays
    # tiled_matmul_auto on the im2col GEMM
    kernel = _nhwc(3, 12, 32, 2)
    _, own, program = _baseline(kernel, gemmini)
    assert all(c.call.taps is None for c in program.calls)
    inputs = random_inputs(kernel, seed=5)
    got = run_program(program, own, kernel, gemmini, inputs)
    np.testing.assert_array_equal(got["O"], evaluate(kernel, inputs)["O"])
