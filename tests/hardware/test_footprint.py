"""The footprint accounting: rows per block for packed, chunked, wide-element and byte-addressed
layouts, each operand in its own memory, and the machine storing elements where it counts them."""

from __future__ import annotations

import numpy as np
import pytest

import isamap
from isamap.hardware.footprint import OperandSpace, operand_layout
from isamap.hardware.machine import Buffer, RowMemory, SimulationError
from isamap.ir.program import TileSchedule


def space(block: tuple[int, int], elem_bytes: int, row_bytes: int) -> OperandSpace:
    return OperandSpace("A", "mem", block, elem_bytes, row_bytes)


@pytest.mark.parametrize(
    ("block", "elem_bytes", "row_bytes", "rows"),
    [
        ((16, 16), 1, 16, 16),  # gemmini: one block row per row
        ((16, 16), 4, 64, 16),  # gemmini's accumulator
        ((1, 1), 2, 32, 1),  # vecdsp's A: one element still takes a whole row
        ((16, 16), 1, 256, 1),  # VTA's weight buffer: a whole block packed in one row
        ((16, 16), 1, 64, 4),  # four block rows to a row
        ((3, 5), 1, 16, 1),  # three 5-element rows in one 16-byte row
        ((1, 64), 2, 64, 2),  # nnp's vmac B: a 128-byte row over two 64-byte rows
        ((2, 3), 4, 1, 24),  # byte-addressed: 24 bytes, 4 rows per element
        ((2, 3), 8, 4, 12),  # an element wider than a row
    ],
)
def test_block_rows(block: tuple[int, int], elem_bytes: int, row_bytes: int, rows: int) -> None:
    s = space(block, elem_bytes, row_bytes)
    assert s.block_rows == rows
    # the positions the machine uses stay inside the rows counted, and never collide
    r, slot = s.positions(block)
    assert r.min() >= 0 and r.max() < rows
    assert len({(int(a), int(b)) for a, b in zip(r.flat, slot.flat, strict=True)}) == r.size
    assert slot.max() < s.per_row


@pytest.mark.parametrize(
    ("block", "elem_bytes", "row_bytes"), [((16, 16), 1, 64), ((1, 64), 2, 64), ((2, 3), 4, 1)]
)
def test_a_buffer_returns_what_was_written(
    block: tuple[int, int], elem_bytes: int, row_bytes: int
) -> None:
    s = space(block, elem_bytes, row_bytes)
    memory = RowMemory("mem", 4 * s.block_rows, row_bytes)
    (buf,) = memory.allocate([(s, "A0", 2 * s.block_rows)])
    x = np.arange(block[0] * block[1], dtype=float).reshape(block)
    buf.write(s.block_rows, x)
    np.testing.assert_array_equal(buf.read(s.block_rows, block), x)
    with pytest.raises(SimulationError, match="read before any mvin"):
        buf.read(0, block)
    with pytest.raises(SimulationError, match="outside its"):
        buf.write(s.block_rows + 1, x)
    assert isinstance(buf, Buffer)


def test_each_operand_counts_against_its_own_memory() -> None:
    target = isamap.load_target("gemmini")
    layout = operand_layout(target, "compute_preloaded")
    s = TileSchedule("WS", 2, 3, 4, "ijk", True)
    # A 2x4 and B 4x3 blocks of 16 rows, twice; C 2x3 blocks of 16 accumulator rows, twice
    assert layout.footprint(s) == {"scratchpad": 2 * (8 + 12) * 16, "accumulator": 2 * 6 * 16}
    single = TileSchedule("WS", 2, 3, 4, "ijk", False)
    assert layout.footprint(single) == {"scratchpad": 320, "accumulator": 96}
    assert layout.capacity == (("scratchpad", 16384), ("accumulator", 1024))
