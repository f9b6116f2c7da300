"""What a tile schedule occupies in each on-chip memory, counted in that memory's own rows.

The one accounting behind both the scheduler's fit check (`timing.ArrayModel.fits`) and the
functional machine's buffers (`machine.CallMachine`), so a schedule the scheduler accepts is one
the machine runs and the reverse: each operand of a matrix instruction lives in the memory the
instruction declares for it (A, B and C may share one memory or use three), a block row takes
whole memory rows, and a double-buffered schedule holds two tiles of every operand.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from isamap.hardware.matrix_form import matrix_form
from isamap.hardware.target import Target
from isamap.ir.errors import IsamapError, SourceLoc
from isamap.ir.program import TileSchedule

__all__ = ["OPERANDS", "OperandLayout", "OperandSpace", "Overrun", "operand_layout"]

#: The operands of a matrix call, in the order their buffers are allocated.
OPERANDS = ("A", "B", "C")


@dataclass(frozen=True)
class OperandSpace:
    """How one operand's blocks sit in its memory.

    A memory with `row_bytes` is addressed by rows of that width; one without is byte-addressed
    (rows of one byte). A block is stored row by row and starts on a fresh memory row. Block rows
    narrower than a memory row are packed, as many to a row as fit whole (VTA's weight buffer
    holds a 16x16 block in one row); a wider block row is cut into chunks of as many elements as
    one row holds, each chunk on its own row(s).
    """

    role: str  # "A", "B" or "C"
    memory: str  # the memory the instruction declares for this operand
    block: tuple[int, int]  # rows x columns of elements of one instruction block
    elem_bytes: int  # the instruction's element type for this operand
    row_bytes: int  # the memory's row width in bytes (1 when it declares none)

    @property
    def per_row(self) -> int:
        """Elements of this operand one memory row holds (one, if an element is wider)."""
        return max(1, self.row_bytes // self.elem_bytes)

    @property
    def rows_per_chunk(self) -> int:
        """Memory rows one chunk of up to `per_row` elements takes (more than one only when an
        element is wider than a row)."""
        return -(-(self.per_row * self.elem_bytes) // self.row_bytes)

    def shape_rows(self, shape: tuple[int, int]) -> int:
        """Memory rows a block of `shape` (rows, columns of elements) takes."""
        r, c = shape
        if c <= self.per_row:
            return -(-r // (self.per_row // c)) * self.rows_per_chunk
        return r * -(-c // self.per_row) * self.rows_per_chunk

    @property
    def block_rows(self) -> int:
        """Memory rows one instruction block takes."""
        return self.shape_rows(self.block)

    def positions(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(row, slot) of every element of a block of `shape`, relative to the block's first row:
        the layout `shape_rows` counts, for the machine to store elements where they lie."""
        return _positions(self, shape)


@lru_cache(maxsize=256)
def _positions(space: OperandSpace, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    r, c = shape
    y, x = np.meshgrid(np.arange(r), np.arange(c), indexing="ij")
    step = space.rows_per_chunk
    if c <= space.per_row:
        lines = space.per_row // c
        rows, slots = (y // lines) * step, (y % lines) * c + x
    else:
        chunks = -(-c // space.per_row)
        rows, slots = (y * chunks + x // space.per_row) * step, x % space.per_row
    rows.flags.writeable = slots.flags.writeable = False  # shared by every caller
    return rows, slots


@dataclass(frozen=True)
class Overrun:
    """A memory a schedule needs more rows of than it has."""

    memory: str
    needed: int
    rows: int
    row_bytes: int
    buffers: tuple[tuple[str, int], ...]  # (label, rows) of every buffer asked of it

    def message(self, kind: str) -> str:
        labels = ", ".join(f"{label} {n}" for label, n in self.buffers)
        unit = f"{self.row_bytes} bytes" if self.row_bytes > 1 else "1 byte"
        return (
            f"{kind} overrun: needs {self.needed} rows, has {self.rows} rows of {unit} "
            f"({self.memory}: {labels})"
        )


@dataclass(frozen=True)
class OperandLayout:
    """Where a matrix instruction's A, B and C tiles live, and how many rows each memory has."""

    instruction: str
    operands: tuple[OperandSpace, OperandSpace, OperandSpace]  # A, B, C
    capacity: tuple[tuple[str, int], ...]  # (memory, rows), each memory an operand lives in

    def space(self, role: str) -> OperandSpace:
        return self.operands[OPERANDS.index(role)]

    def rows_of(self, memory: str) -> int:
        return dict(self.capacity)[memory]

    @staticmethod
    def tile_blocks(s: TileSchedule) -> dict[str, int]:
        """Blocks of one A, B and C tile of `s`."""
        return {"A": s.tile_i * s.tile_k, "B": s.tile_k * s.tile_j, "C": s.tile_i * s.tile_j}

    def buffers(self, s: TileSchedule) -> dict[str, list[tuple[str, int]]]:
        """Every buffer `s` needs, per memory in allocation order: (label, rows); labels are the
        operand and the copy (`A0`, `A1` when double-buffered)."""
        copies = 2 if s.double_buffer else 1
        blocks = self.tile_blocks(s)
        out: dict[str, list[tuple[str, int]]] = {}
        for op in self.operands:
            for n in range(copies):
                rows = blocks[op.role] * op.block_rows
                out.setdefault(op.memory, []).append((f"{op.role}{n}", rows))
        return out

    def footprint(self, s: TileSchedule) -> dict[str, int]:
        """Rows `s` occupies in each memory its operands live in."""
        return {mem: sum(n for _, n in asked) for mem, asked in self.buffers(s).items()}

    def overruns(self, s: TileSchedule) -> list[Overrun]:
        """Every memory `s` needs more rows of than it has (empty when it fits)."""
        rows = dict(self.capacity)
        width = {op.memory: op.row_bytes for op in self.operands}
        out = []
        for mem, asked in self.buffers(s).items():
            needed = sum(n for _, n in asked)
            if needed > rows[mem]:
                out.append(Overrun(mem, needed, rows[mem], width[mem], tuple(asked)))
        return out

    @cached_property
    def _limits(self) -> tuple[tuple[int, int, int, int], ...]:
        """Per memory: its rows and the rows one block of A, B and C takes in it (0 if the
        operand lives elsewhere); `fits` is `footprint` in closed form, called in search loops."""
        out = []
        for mem, rows in self.capacity:
            a, b, c = (op.block_rows if op.memory == mem else 0 for op in self.operands)
            out.append((rows, a, b, c))
        return tuple(out)

    def fits(self, s: TileSchedule) -> bool:
        """Every tile of `s` (both copies when double-buffered) fits in its memory: the same
        count as `footprint`."""
        copies = 2 if s.double_buffer else 1
        a, b, c = s.tile_i * s.tile_k, s.tile_k * s.tile_j, s.tile_i * s.tile_j
        return all(copies * (ra * a + rb * b + rc * c) <= rows for rows, ra, rb, rc in self._limits)


_LAYOUTS: dict[tuple[int, str], tuple[Target, OperandLayout]] = {}


def operand_layout(target: Target, instruction: str) -> OperandLayout:
    """The layout of matrix instruction `instruction`'s operands on `target` (memoised).

    Element sizes are the instruction's own (its `dtypes`, else the target's input and
    accumulator types). Raises IsamapError if the instruction is not a matrix product.
    """
    key = (id(target), instruction)
    hit = _LAYOUTS.get(key)
    if hit is not None and hit[0] is target:
        return hit[1]
    ins = target.instruction(instruction)
    form = matrix_form(ins.semantics)
    if form is None:
        raise IsamapError(
            f"instruction {instruction} is not a matrix product", SourceLoc(target.path)
        )
    bm, bn, bk = form.tile("m"), form.tile("n"), form.tile("k")
    shapes = {"A": (bm, bk), "B": (bk, bn), "C": (bm, bn)}
    tensors = {"A": form.lhs, "B": form.rhs, "C": form.out}
    spaces = []
    for role in OPERANDS:
        memory = target.memories[ins.operands[tensors[role]]]
        spaces.append(
            OperandSpace(
                role=role,
                memory=memory.name,
                block=shapes[role],
                elem_bytes=target.dtype_bytes(ins.semantics.dtype(tensors[role])),
                row_bytes=memory.row_bytes or 1,
            )
        )
    a, b, c = spaces
    capacity = tuple(
        (name, target.memories[name].capacity_bytes // (target.memories[name].row_bytes or 1))
        for name in dict.fromkeys(s.memory for s in spaces)
    )
    layout = OperandLayout(instruction, (a, b, c), capacity)
    _LAYOUTS[key] = (target, layout)
    return layout
