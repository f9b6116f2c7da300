"""gemmini_default reproduces the tiles of Gemmini's `tiled_matmul_auto` (include/gemmini.h).

Expected tiles are worked out by hand from the library's rules, with the default Gemmini
(DIM 16, BANK_NUM x BANK_ROWS = 16384 scratchpad rows, ACC_ROWS 1024):

- WS is double-buffered: usable 8192 scratchpad rows, 512 accumulator rows; the start tile is
  tile_I = tile_J = min(blocks, isqrt(512 / 16) = 5), tile_K = min(blocks, (16384/2/2/16) / 5 = 51).
- OS is single-buffered: 16384 and 1024 rows; start tile_I = tile_J = min(blocks, isqrt(64) = 8),
  tile_K = min(blocks, (16384/2/16) / 8 = 64).
- Then rounds of "J+1, I+1, K+1 if it still fits" while anything grew. A tile of ti x tj x tk
  blocks uses (ti*tk + tk*tj) * 16 scratchpad rows and ti*tj*16 accumulator rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isamap.hardware.target import Target, dtype_bytes
from isamap.hardware.target_file import load_target
from isamap.ir.errors import IsamapError
from isamap.ir.program import MatmulCall, TileSchedule
from isamap.targets.gemmini.baseline import (
    GemminiParams,
    auto_tiles,
    gemmini_default,
    gemmini_params,
)


@pytest.fixture(scope="module")
def gemmini() -> Target:
    return load_target("gemmini")


def call(m: int, n: int, k: int, b: int = 1) -> MatmulCall:
    return MatmulCall(0, "compute_preloaded", b, m, n, k, (16, 16, 16))


def tiles(s: TileSchedule) -> tuple[int, int, int]:
    return s.tile_i, s.tile_j, s.tile_k


def modified_gemmini(tmp_path: Path, memory: str, capacity: int) -> Target:
    """A copy of gemmini.toml with `memory`'s capacity_bytes replaced."""
    text = Path(load_target("gemmini").path).read_text()
    head, sep, tail = text.partition(f"[memories.{memory}]")
    old = tail.split("capacity_bytes", 1)[1].split("\n", 1)[0]
    tail = tail.replace(f"capacity_bytes{old}", f"capacity_bytes = {capacity}", 1)
    path = tmp_path / f"gemmini_{memory}_{capacity}.toml"
    path.write_text(head + sep + tail)
    return load_target(str(path))


def test_params_come_from_the_target(gemmini: Target) -> None:
    expected = GemminiParams(dim=16, bank_num=4, bank_rows=4096, acc_rows=1024)
    assert gemmini_params(gemmini) == expected


def test_1024_cubed_ws_is_5x5x51(gemmini: Target) -> None:
    # The example. Start 5x5x51 uses (255 + 255) * 16 = 8160 of 8192 rows; J+1 or I+1
    # would need (255 + 306) * 16 = 8976, K+1 needs 520 * 16 = 8320: nothing grows.
    s = gemmini_default(call(1024, 1024, 1024), gemmini, "WS")
    assert s == TileSchedule("WS", 5, 5, 51, loop_order="ijk", double_buffer=True)


def test_1024_cubed_os_is_8x8x64_single_buffered(gemmini: Target) -> None:
    # Start 8x8x64 fills all 16384 scratchpad rows and all 1024 accumulator rows.
    s = gemmini_default(call(1024, 1024, 1024), gemmini, "OS")
    assert s == TileSchedule("OS", 8, 8, 64, loop_order="ijk", double_buffer=False)


@pytest.mark.parametrize(
    ("mnk", "dataflow", "expected"),
    [
        # One block: every start value is clamped to 1 and nothing can grow.
        ((16, 16, 16), "WS", (1, 1, 1)),
        ((16, 16, 16), "OS", (1, 1, 1)),
        # 4x3x5 blocks: the clamps give the whole matrix, (20 + 15) * 16 = 560 rows.
        ((64, 48, 80), "WS", (4, 3, 5)),
        ((64, 48, 80), "OS", (4, 3, 5)),
        # 64x64x4 blocks, WS: start 5x5x4; round 1: J -> 6 (acc 5*6*16 = 480 <= 512), I -> 6
        # refused (6*6*16 = 576), K at its 4 blocks; round 2: J -> 7 refused (560): 5x6x4.
        ((1024, 1024, 64), "WS", (5, 6, 4)),
        # 110x8x110 blocks: like 1024^3, the start tile already fills the half scratchpad.
        ((1760, 128, 1760), "WS", (5, 5, 51)),
        # 3x529x160 blocks: start 3x5x51; round 1: J -> 6 (459 * 16 = 7344), I at 3, K -> 52
        # (468 * 16); later rounds refuse J -> 7 (tk * 10 > 512) and take K up to 56 (56 * 9 = 504;
        # 57 * 9 = 513 > 512).
        ((35, 8457, 2560), "WS", (3, 6, 56)),
        # 480x1x160 blocks: start 5x1x51; rows = tk * (ti + 1) <= 512. Rounds take I and K
        # together up to 8x1x54 (54 * 9 = 486), then only K: 55, 56 (504); 57 * 9 = 513 stops it.
        ((7680, 16, 2560), "WS", (8, 1, 56)),
    ],
)
def test_library_tiles(
    gemmini: Target, mnk: tuple[int, int, int], dataflow: str, expected: tuple[int, int, int]
) -> None:
    assert tiles(gemmini_default(call(*mnk), gemmini, dataflow)) == expected


def test_non_multiple_of_16_is_padded(gemmini: Target) -> None:
    # 100x50x30 pads to 112x64x32: 7x4x2 blocks, which fit whole (WS start 5x4x2; round 1:
    # J at its 4 blocks, I -> 6 (acc 6*4*16 = 384), round 2: I -> 7 (448), then I is at 7).
    s = gemmini_default(call(100, 50, 30), gemmini, "WS")
    assert tiles(s) == (7, 4, 2)
    # 17x1x300 pads to 32x16x304: 2x1x19 blocks, all of it.
    assert tiles(gemmini_default(call(17, 1, 300), gemmini, "WS")) == (2, 1, 19)


def test_batch_tiles_each_element_alike(gemmini: Target) -> None:
    assert gemmini_default(call(1024, 1024, 1024, b=8), gemmini) == gemmini_default(
        call(1024, 1024, 1024), gemmini
    )


def test_auto_tiles_grows_j_before_i() -> None:
    # A made-up 64-row accumulator, 32 rows double-buffered: the start C tile is 1x1
    # (isqrt(2 blocks) = 1); there is room for one more block and J, tried first, takes it.
    p = GemminiParams(dim=16, bank_num=4, bank_rows=4096, acc_rows=64)
    assert auto_tiles(p, (8, 8, 8), double_buffered=True) == (1, 2, 8)


def fits(target: Target, s: TileSchedule) -> bool:
    dim = gemmini_params(target).dim
    copies = 2 if s.double_buffer else 1
    block = dim * dim
    ab = (s.tile_i * s.tile_k + s.tile_k * s.tile_j) * block * dtype_bytes(target.input_dtype)
    c = s.tile_i * s.tile_j * block * dtype_bytes(target.acc_dtype)
    return (
        ab * copies <= target.memories["scratchpad"].capacity_bytes
        and c * copies <= target.memories["accumulator"].capacity_bytes
    )


@settings(max_examples=200, deadline=None)
@given(
    m=st.integers(1, 9000),
    n=st.integers(1, 9000),
    k=st.integers(1, 9000),
    dataflow=st.sampled_from(["WS", "OS"]),
)
def test_every_schedule_fits(m: int, n: int, k: int, dataflow: str) -> None:
    target = load_target("gemmini")
    c = call(m, n, k)
    s = gemmini_default(c, target, dataflow)
    assert fits(target, s)
    assert s.double_buffer == (dataflow == "WS")
    assert all(t <= b for t, b in zip(tiles(s), c.blocks, strict=True))


def test_bigger_scratchpad_gives_a_bigger_tile(tmp_path: Path, gemmini: Target) -> None:
    big = modified_gemmini(tmp_path, "scratchpad", 2 * 262144)
    assert gemmini_params(big).bank_rows == 8192
    for mnk in [(1024, 1024, 1024), (1760, 128, 1760), (35, 8457, 2560), (7680, 16, 2560)]:
        for dataflow in ("WS", "OS"):
            small_tile = gemmini_default(call(*mnk), gemmini, dataflow)
            big_tile = gemmini_default(call(*mnk), big, dataflow)
            assert fits(big, big_tile)
            size = big_tile.tile_i * big_tile.tile_j * big_tile.tile_k
            assert size >= small_tile.tile_i * small_tile.tile_j * small_tile.tile_k
    # 1024^3 WS: start 5x5x64 (tile_K cap 512 / 5 = 102, clamped to 64 blocks), then J -> 6.
    assert tiles(gemmini_default(call(1024, 1024, 1024), big)) == (5, 6, 64)


def test_bigger_accumulator_gives_a_wider_c_tile(tmp_path: Path) -> None:
    big = modified_gemmini(tmp_path, "accumulator", 2 * 65536)
    # ACC_ROWS 2048: WS C cap isqrt(1024 / 16) = 8, tile_K cap 256 / 8 = 32; 8x8x32 fills the
    # half scratchpad exactly (512 * 16 = 8192 rows) and the half accumulator (1024 rows).
    s = gemmini_default(call(1024, 1024, 1024), big)
    assert tiles(s) == (8, 8, 32)
    assert fits(big, s)


def test_rejects_an_unknown_dataflow(gemmini: Target) -> None:
    with pytest.raises(ValueError, match="dataflow 'XS'"):
        gemmini_default(call(64, 64, 64), gemmini, "XS")


def test_rejects_a_block_the_library_does_not_tile(gemmini: Target) -> None:
    odd = MatmulCall(0, "compute_preloaded", 1, 64, 64, 64, (16, 16, 8))
    with pytest.raises(IsamapError, match=r"gemmini\.toml: gemmini-default: .*16\^3 blocks"):
        gemmini_default(odd, gemmini)
