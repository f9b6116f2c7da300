"""Gemmini's own tiling: the choices of `tiled_matmul_auto` in Gemmini's C library, as a schedule.

Reimplements the decisions (not the code) of ucb-bar/gemmini-rocc-tests, `include/gemmini.h`
(`tiled_matmul_auto`, `tiled_matmul`, `tiled_matmul_outer`) with the constants of
`include/gemmini_params.h`, as read at commit 180c46848eca06933df4a2ab8c1351ba1d005e09
(2023-10-07, "Merge pull request #44 from rogerhh/dev"). The library's constants are derived from
the target: DIM from the matrix unit, BANK_NUM x BANK_ROWS from the scratchpad, ACC_ROWS from the
accumulator. See docs/gemmini-default.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from isamap.hardware.footprint import OPERANDS, operand_layout
from isamap.hardware.matrix_form import matrix_form
from isamap.hardware.target import Target
from isamap.ir.errors import IsamapError, SourceLoc
from isamap.ir.program import DATAFLOWS, MatmulCall, TileSchedule

__all__ = ["GEMMINI_LOOP_ORDER", "GemminiParams", "auto_tiles", "gemmini_default", "gemmini_params"]

#: The loop nest of `tiled_matmul_outer`: `for i0: for j0: for k0:` (C tile kept across k0).
GEMMINI_LOOP_ORDER = "ijk"


@dataclass(frozen=True)
class GemminiParams:
    """The `gemmini_params.h` constants a target implies.

    `dim` is the (square) systolic array's side and the block edge; `spad_rows` is
    BANK_NUM x BANK_ROWS, the scratchpad's rows of `dim` input elements; `acc_rows` is ACC_ROWS,
    the accumulator's rows of `dim` accumulator elements.
    """

    dim: int
    bank_num: int
    bank_rows: int
    acc_rows: int

    @property
    def spad_rows(self) -> int:
        return self.bank_num * self.bank_rows


def _error(target: Target, message: str) -> IsamapError:
    return IsamapError(f"gemmini-default: {message}", SourceLoc(target.path))


def _matrix_instruction(target: Target, instruction: str | None) -> str:
    """`instruction`, or the first matrix product on a matrix unit of the target."""
    if instruction is not None:
        return instruction
    for ins in target.instructions.values():
        unit = target.units.get(ins.unit)
        on_array = unit is not None and unit.kind == "matrix" and ins.kind == "compute"
        if on_array and matrix_form(ins.semantics) is not None:
            return ins.name
    raise _error(target, f"target '{target.name}' has no matrix instruction on a matrix unit")


def gemmini_params(target: Target, instruction: str | None = None) -> GemminiParams:
    """DIM, BANK_NUM, BANK_ROWS and ACC_ROWS of `target` for matrix instruction `instruction`
    (by default the first one on a matrix unit).

    Gemmini keeps A and B in one scratchpad and C in an accumulator of its own, both in rows of
    DIM elements, and the library counts tiles in those rows, DIM to a block. Here they are the
    memories the instruction declares for its operands, holding as many blocks as the machine's
    accounting gives (`footprint.OperandSpace.block_rows`), so a tile the library's row counts
    admit is one the functional machine can hold.

    Raises IsamapError (at the target file) if the target is not laid out like Gemmini: no
    square matrix unit, A and B in different memories, or C sharing theirs.
    """
    name = _matrix_instruction(target, instruction)
    ins = target.instruction(name)
    unit = target.units[ins.unit]
    if unit.kind != "matrix":
        raise _error(target, f"{name} runs on '{unit.name}', not on a matrix unit")
    if unit.rows != unit.cols:
        raise _error(target, f"Gemmini's DIM needs a square array, got {unit.rows}x{unit.cols}")
    dim = unit.rows
    layout = operand_layout(target, name)
    a, b, c = (layout.space(role) for role in OPERANDS)
    if a.memory != b.memory:
        raise _error(
            target,
            f"Gemmini's library keeps A and B in one scratchpad; {name} reads A from "
            f"'{a.memory}' and B from '{b.memory}'",
        )
    if c.memory == a.memory:
        raise _error(
            target,
            f"Gemmini's library keeps C in an accumulator of its own; {name} keeps it in "
            f"'{c.memory}' with A and B",
        )
    if a.block_rows != b.block_rows:
        raise _error(target, f"{name}'s A and B blocks take different rows of '{a.memory}'")
    spad_rows = layout.rows_of(a.memory) // a.block_rows * dim
    banks = target.memories[a.memory].banks
    return GemminiParams(
        dim=dim,
        bank_num=banks,
        bank_rows=spad_rows // banks,
        acc_rows=layout.rows_of(c.memory) // c.block_rows * dim,
    )


def _spad_rows(p: GemminiParams, ti: int, tj: int, tk: int) -> int:
    """Scratchpad rows of one A tile (ti x tk blocks) and one B tile (tk x tj blocks)."""
    return (ti * tk + tk * tj) * p.dim


def _acc_rows(p: GemminiParams, ti: int, tj: int) -> int:
    """Accumulator rows of one C tile (ti x tj blocks)."""
    return ti * tj * p.dim


def _initial_tiles(
    p: GemminiParams, blocks: tuple[int, int, int], double_buffered: bool
) -> tuple[int, int, int]:
    """The starting tile: a square C tile as big as the accumulator (or its half) allows, and
    tile_K filling the A or B share of the scratchpad (or of its half), clamped to the matrix."""
    parts = 2 if double_buffered else 1
    # One operand's share of the scratchpad, in blocks: half of the (half-)scratchpad.
    mats_in_partition = (p.spad_rows // 2 // parts) // p.dim
    mats_in_acc = (p.acc_rows // parts) // p.dim
    max_ij = math.isqrt(mats_in_acc)  # the library truncates a float sqrt: the same for ints
    if max_ij == 0:
        raise ValueError(f"accumulator of {p.acc_rows} rows holds no {p.dim}x{p.dim} block")
    max_k = mats_in_partition // max_ij
    if max_k == 0:
        raise ValueError(f"scratchpad of {p.spad_rows} rows holds no A and B blocks")
    bi, bj, bk = blocks
    return min(bi, max_ij), min(bj, max_ij), min(bk, max_k)


def auto_tiles(
    p: GemminiParams, blocks: tuple[int, int, int], double_buffered: bool
) -> tuple[int, int, int]:
    """tile_I, tile_J, tile_K (in blocks) `tiled_matmul_auto` picks for `blocks` along I, J, K.

    Starts from `_initial_tiles`, then grows one block at a time, in rounds of J, then I, then K,
    each step taken only if A+B still fit the usable scratchpad, C the usable accumulator (J and I)
    and the tile stays within the padded matrix; stops after a round that grew nothing.
    """
    parts = 2 if double_buffered else 1
    max_spad = p.spad_rows // parts
    max_acc = p.acc_rows // parts
    bi, bj, bk = blocks
    ti, tj, tk = _initial_tiles(p, blocks, double_buffered)
    grew = True
    while grew:
        grew = False
        if (
            _spad_rows(p, ti, tj + 1, tk) <= max_spad
            and _acc_rows(p, ti, tj + 1) <= max_acc
            and tj + 1 <= bj
        ):
            tj, grew = tj + 1, True
        if (
            _spad_rows(p, ti + 1, tj, tk) <= max_spad
            and _acc_rows(p, ti + 1, tj) <= max_acc
            and ti + 1 <= bi
        ):
            ti, grew = ti + 1, True
        if _spad_rows(p, ti, tj, tk + 1) <= max_spad and tk + 1 <= bk:
            tk, grew = tk + 1, True
    return ti, tj, tk


def gemmini_default(call: MatmulCall, target: Target, dataflow: str = "WS") -> TileSchedule:
    """The schedule Gemmini's `tiled_matmul_auto` would run `call` with on `target`.

    Weight-stationary runs double-buffered (each tile gets half the scratchpad and half the
    accumulator); output-stationary runs single-buffered. Loops are i, j, k (outer to inner);
    a batch (`call.b > 1`) repeats the same tiling per element.

    Raises ValueError if the dataflow is unknown; IsamapError (at the target file) if the
    target is not laid out like Gemmini, the call's block is not DIM x DIM x DIM, or the
    target cannot hold one tile.
    """
    if dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow {dataflow!r} not in {DATAFLOWS}")
    p = gemmini_params(target, call.instruction)
    if call.block != (p.dim, p.dim, p.dim):
        block = f"the call's block is {call.block}"
        raise _error(target, f"Gemmini tiles in {p.dim}^3 blocks, {block}")
    # The library pads each dimension up to a multiple of DIM: its blocks are the call's blocks.
    double_buffered = dataflow == "WS"
    try:
        ti, tj, tk = auto_tiles(p, call.blocks, double_buffered)
    except ValueError as err:
        raise _error(target, f"no tile of {call.instruction} fits: {err}") from None
    s = TileSchedule(
        dataflow=dataflow,
        tile_i=ti,
        tile_j=tj,
        tile_k=tk,
        loop_order=GEMMINI_LOOP_ORDER,
        double_buffer=double_buffered,
    )
    # the library's row counts are the machine's (gemmini_params), so this holds by construction
    over = operand_layout(target, call.instruction).overruns(s)
    if over:
        raise _error(
            target, f"the library's tile {s.describe()} does not fit: {over[0].message('memory')}"
        )
    return s
